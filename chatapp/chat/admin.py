"""Conversations in /admin/ show who, where and when, never what was said: a site admin who
must read one records a reason at /site/conversations/<id>/access/ (chatapp.chat.admin_access)."""

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from chatapp.chat.actions import conversations, replies
from chatapp.chat.errors import ChatError
from chatapp.chat.models import AdminAccessGrant, Conversation
from chatapp.core.admin import CountsWhatGoes, NotDeletedHere
from chatapp.teams.actions import held_notes
from chatapp.teams.models import Team

METADATA = ("id", "owner", "team", "model", "created_at", "updated_at")


@admin.register(Conversation)
class ConversationAdmin(CountsWhatGoes):
    """Deleting one goes through the action, so it is audited and its owner's tabs told."""

    # A table that grows with use: counted once, newest first by key (its index), not sorted
    # whole at each visit.
    show_full_result_count = False
    ordering = ["-id"]

    list_display = (*METADATA, "read_access")
    list_select_related = ["owner", "team"]
    search_fields = ["owner__username"]
    fields = readonly_fields = (*METADATA, "read_access")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_deleted_objects(self, objs, request):
        """A conversation of a team under legal hold is shown as protected: nothing is deleted."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        teams = Team.objects.filter(conversations__in=objs).distinct()
        return deleted, counts, perms_needed, [*protected, *held_notes(teams)]

    def delete_model(self, request, obj):
        replies.stop_deleted_answers(conversations.admin_delete_conversation(request.user, obj))

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ChatError as error:  # a legal hold put on since the page was shown
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:chat_conversation_changelist"))

    def delete_queryset(self, request, queryset):
        for conversation in queryset.select_related("owner", "team"):  # each one audited
            try:
                self.delete_model(request, conversation)
            except ChatError as error:
                self.message_user(request, f"{conversation}: {error.message}", messages.ERROR)

    @admin.display(description="Read access")
    def read_access(self, obj: Conversation) -> str:
        url = reverse("admin_access_request", args=[obj.pk])
        return format_html('<a href="{}">Request read access (reason required)</a>', url)


@admin.register(AdminAccessGrant)
class AdminAccessGrantAdmin(NotDeletedHere):
    """The owner's record of who read their conversation, and why."""

    list_display = ["created_at", "admin_name", "conversation_id", "expires_at", "reason"]
    fields = readonly_fields = (
        "conversation_id",
        "admin_name",
        "reason",
        "created_at",
        "expires_at",
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
