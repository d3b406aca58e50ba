from django.conf import settings

from chatapp.core.permissions import is_site_admin


def site(request):
    user = getattr(request, "user", None)
    return {
        "offline_demo": settings.LLAMA_OFFLINE_DEMO,
        "local_passwords": settings.LOCAL_PASSWORDS,
        "is_site_admin": user is not None and is_site_admin(user),
    }
