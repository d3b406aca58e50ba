"""The site at /admin/: Django's, refusing odd input before it reaches the database."""

from functools import wraps

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import BadRequest
from django.http import Http404

LARGEST_KEY = 2**63 - 1  # every model's key here is a number (a 64-bit one at most)


class SiteAdmin(admin.AdminSite):
    """Answers 400 to input the admin's pages would take to the database and fail on there
    (a 500): a NUL in the address's query (PostgreSQL's text refuses it), or rows picked for
    an action by something other than their key; nothing is changed. An address naming a
    key no row can have (SQLite's integers overflow) is 404."""

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def checked(request, *args, **kwargs):
            if any("\x00" in key + "".join(values) for key, values in request.GET.lists()):
                raise BadRequest("A NUL character in the address's query")
            if not all(map(_is_key, request.POST.getlist(ACTION_CHECKBOX_NAME))):
                raise BadRequest("Rows picked by something other than their key")
            object_id = kwargs.get("object_id", "")
            if object_id.isdigit() and not _is_key(object_id):
                raise Http404("No row has this key")
            return inner(request, *args, **kwargs)

        return checked


def _is_key(value: str) -> bool:
    return value.isascii() and value.isdigit() and int(value) <= LARGEST_KEY


class SiteAdminConfig(AdminConfig):
    """django.contrib.admin, with SiteAdmin as the site at /admin/."""

    default_site = "chatapp.core.admin_site.SiteAdmin"
