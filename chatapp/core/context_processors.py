from django.conf import settings

from chatapp.core.links import site_root
from chatapp.core.permissions import is_site_admin


def site(request):
    user = getattr(request, "user", None)
    return {
        "offline_demo": settings.LLAMA_OFFLINE_DEMO,
        "local_passwords": settings.LOCAL_PASSWORDS,
        "is_site_admin": user is not None and is_site_admin(user),
        # A callable: only a page showing a link reads the Host (never a refused Host's 400 page).
        "site_root": lambda: site_root(request),
    }
