from django.contrib import admin
from django.core.exceptions import PermissionDenied


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
