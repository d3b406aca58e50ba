from django.http import Http404


def is_site_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_superuser)


def require_site_admin(user) -> None:
    """Site-admin pages are 404 to everyone else, like anything else not theirs."""
    if not is_site_admin(user):
        raise Http404("No such page")
