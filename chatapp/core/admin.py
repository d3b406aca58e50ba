from collections import Counter
from collections.abc import Iterable

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db import router
from django.db.models import Model
from django.db.models.deletion import Collector, ProtectedError, RestrictedError
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst


class NotDeletedHere(admin.ModelAdmin):
    """Rows /admin/ does not delete one by one (nor with the bulk action); deleting the team
    or user they belong to still takes them, where their foreign key cascades."""

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request, object_id, extra_context=None):
        raise PermissionDenied

    # has_delete_permission stays: False would also refuse deleting their team or user.
    def render_change_form(self, request, context, *args, **kwargs):
        context["show_delete"] = False
        return super().render_change_form(request, context, *args, **kwargs)


def deletion_summary(admin_site: admin.AdminSite, request, *groups: Iterable[Model]):
    """get_deleted_objects' four values, with only the objects of `groups` (each of one
    model) named and what goes with them counted by kind: Django's page lists (and reads
    whole) every row, and a team or a person can hold millions of messages. The rows are
    collected as the deletion itself collects them."""
    lists = [list(objs) for objs in groups if objs]
    if not lists:
        return [], {}, set(), []
    collector = Collector(using=router.db_for_write(type(lists[0][0])))
    try:
        for objs in lists:
            collector.collect(objs)
    except ProtectedError as error:
        return [], {}, set(), [str(obj) for obj in error.protected_objects]
    except RestrictedError as error:
        return [], {}, set(), [str(obj) for obj in error.restricted_objects]
    counts: Counter[type[Model]] = Counter()
    for model, instances in collector.data.items():
        counts[model] += len(instances)
    for rows in collector.fast_deletes:
        counts[rows.model] += rows.count()
    perms_needed = {
        model._meta.verbose_name
        for model in counts
        if admin_site.is_registered(model)
        and not admin_site.get_model_admin(model).has_delete_permission(request)
    }
    model_count = {model._meta.verbose_name_plural: n for model, n in counts.items() if n}
    named = [_named(admin_site, obj) for objs in lists for obj in objs]
    return named, model_count, perms_needed, []


def _named(admin_site: admin.AdminSite, obj: Model) -> str:
    opts = obj._meta
    try:
        url = reverse(
            f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", None, (quote(obj.pk),)
        )
    except NoReverseMatch:
        return f"{capfirst(opts.verbose_name)}: {obj}"
    return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)


class CountsWhatGoes(admin.ModelAdmin):
    """Deleting one asks for confirmation with counts of what goes with it (deletion_summary)."""

    def get_deleted_objects(self, objs, request):
        return deletion_summary(self.admin_site, request, objs)
