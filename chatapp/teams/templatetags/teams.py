from django import template

register = template.Library()


@register.filter
def get(mapping: dict, key: str):
    """A dict value by a key held in a variable: {{ row|get:key }}."""
    return mapping.get(key)
