import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.http import Http404
from django.utils import timezone

from chatapp.teams.models import JsonSchema, Membership, SystemPrompt, Team

# How long a temporary chat outlives its start when nobody ends it (see purge_temporary).
TEMPORARY_LIFETIME = timedelta(hours=24)


class ConversationQuerySet(models.QuerySet):
    """Conversation lookups. Which helper a caller wants:

    - `for_user(user)`: everything the user may open, temporary chats included (reading,
      renaming, deleting one conversation by id).
    - `.saved()`: leaves out temporary chats; every list, search result, export, backup and
      data download goes through it (`for_user(user).saved()`).
    - `.pinned_first()`: the sidebar's order, pinned conversations before the rest.
    - `.temporary_expired(now)`: the temporary chats `purge_temporary` deletes.
    """

    def for_user(self, user):
        """Conversations are private to their owner, whatever team they were started in."""
        return self.filter(owner=user)

    def saved(self):
        """Conversations kept in history: not temporary chats."""
        return self.filter(temporary=False)

    def pinned_first(self):
        return self.order_by("-pinned", "-updated_at", "-id")

    def temporary_expired(self, now: datetime) -> "ConversationQuerySet":
        return self.filter(temporary=True, created_at__lte=now - TEMPORARY_LIFETIME)


class Conversation(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="conversations")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    system_prompt = models.ForeignKey(
        SystemPrompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The exact text the conversation started with; later prompt edits do not change it.
    system_prompt_text = models.TextField(blank=True)
    system_prompt_locked = models.BooleanField(default=False)
    model = models.CharField(max_length=200)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    # Off: the team's tools are not offered to the model in this conversation.
    tools_enabled = models.BooleanField(default=True)
    # The answer format asked for ("text", "json_object", "json_schema"); blank: the prompt's.
    response_format = models.CharField(max_length=12, blank=True)
    json_schema = models.ForeignKey(
        JsonSchema, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The message the shown branch runs through (see chatapp.chat.tree); null: the newest.
    active_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Shown on top of the sidebar; retention never deletes a pinned conversation.
    pinned = models.BooleanField(default=False)
    # Not saved in history: absent from lists, search and exports, deleted when it ends or
    # after TEMPORARY_LIFETIME (chatapp.chat.actions.conversations.purge_temporary).
    temporary = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-updated_at", "-id"], name="conversation_owner_recent"),
            models.Index(fields=["team", "owner", "-updated_at"], name="conversation_team_recent"),
            # The sidebar's pages (pinned_first), read in order rather than sorted.
            models.Index(
                fields=["owner", "-pinned", "-updated_at", "-id"],
                condition=Q(temporary=False),
                name="conversation_sidebar",
            ),
            models.Index(
                fields=["team", "owner", "-pinned", "-updated_at", "-id"],
                condition=Q(temporary=False),
                name="conversation_team_sidebar",
            ),
            models.Index(
                fields=["created_at"],
                condition=Q(temporary=True),
                name="conversation_temporary_age",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature__isnull=True) | Q(temperature__gte=0, temperature__lte=2),
                name="conversation_temperature_range",
            ),
            models.CheckConstraint(
                condition=Q(top_p__isnull=True) | Q(top_p__gte=0, top_p__lte=1),
                name="conversation_top_p_range",
            ),
            models.CheckConstraint(
                condition=Q(max_tokens__isnull=True) | Q(max_tokens__gte=1),
                name="conversation_max_tokens_positive",
            ),
        ]

    def __str__(self) -> str:
        # Not the title: it is the member's own words, shown wherever Django names the object.
        return f"Conversation {self.pk}"

    @property
    def settings(self) -> dict:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
        }


def related_or_none(instance: models.Model, name: str) -> Any:
    """`instance.<name>`, a nullable foreign key: read along with it (select_related,
    prefetch_related) or looked up now; None also when the row went since `instance` was read."""
    try:
        return getattr(instance, name)
    except ObjectDoesNotExist:
        return None


def get_conversation_for_user(user, conversation_id, related: Iterable[str] = ()) -> Conversation:
    """The user's conversation, or 404 for a missing id or anyone else's; `related`: relations
    to read along with it (`select_related`)."""
    conversations = Conversation.objects.for_user(user)
    if related:  # select_related() with no names would join every relation
        conversations = conversations.select_related(*related)
    try:
        return conversations.get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise Http404("No such conversation") from None


class MessageRole(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class MessageStatus(models.TextChoices):
    STREAMING = "streaming", "Streaming"
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    INTERRUPTED = "interrupted", "Interrupted"
    ERROR = "error", "Error"
    BLOCKED = "blocked", "Blocked"  # an answer the team's safety policy stopped


class MessageQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(conversation__owner=user)


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # The message this one follows; siblings share a parent (an edited question, another
    # answer). Null for the conversation's first messages.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=10, choices=MessageRole.choices)
    content = models.TextField(blank=True)
    status = models.CharField(
        max_length=12, choices=MessageStatus.choices, default=MessageStatus.COMPLETE
    )
    # The number of deltas the stored content holds, so a late subscriber can join the stream.
    seq = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    upstream_request_id = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # Llama Guard's findings, as message.done carries them: {"flagged", "categories", ...}.
    safety = models.JSONField(null=True, blank=True)
    # What the team's data filter replaced upstream in a question: [{"placeholder", "label"}].
    redactions = models.JSONField(default=list, blank=True)
    # An answer's tool calls and their results, in the order the model made them:
    # [{"id", "name", "arguments", "status", "content", "is_error", "elapsed", "round", "offset"}]
    # (offset: how much of the answer's text came before the call's round).
    tool_calls = models.JSONField(default=list, blank=True)
    # JSON output: while streaming, the format asked for (with the schema to check against);
    # once ended, the outcome message.done carries: {"type", "valid", "error"?, "name"?}.
    format = models.JSONField(null=True, blank=True)
    # While streaming, the tokens the answer may spend (its prompt and max tokens), held
    # against the team's monthly budgets until its usage is recorded (`teams.quota`).
    reserved_tokens = models.PositiveIntegerField(default=0)
    # While streaming, the completion tokens of its turns that called tools, which
    # reserved_tokens holds as spent: the reaper's estimate counts them once (as output).
    tool_turns_completion_tokens = models.PositiveIntegerField(default=0, db_default=0)
    # Refreshed by the process generating the answer; a stale one means that process died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The server process generating the answer (chatapp.core.processes.token()): once it has
    # exited, the supervisor ends the answers that name it without waiting for the heartbeat.
    # Empty in the database by default: a process of the release before writes no token.
    server_process = models.CharField(max_length=32, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["conversation_id", "id"]
        indexes = [
            models.Index(fields=["conversation", "id"], name="message_conversation_order"),
            models.Index(
                fields=["status", "heartbeat_at"],
                condition=Q(status="streaming"),
                name="message_streaming_heartbeat",
            ),
            # The chat page tells a team's admins of a key refused in the last day.
            models.Index(
                fields=["conversation", "updated_at"],
                condition=Q(error_code="auth_failed"),
                name="message_key_refused",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=MessageRole.values), name="message_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=MessageStatus.values), name="message_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A message written without a parent continues the conversation's newest message,
        # so a plain sequence of writes stays one straight branch. Writers that place a
        # message in the tree themselves (null: a new first question) set `explicit_parent`.
        if self._state.adding and self.parent_id is None and not self.explicit_parent:
            self.parent_id = (
                Message.objects.filter(conversation_id=self.conversation_id)
                .order_by("-id")
                .values_list("id", flat=True)
                .first()
            )
        super().save(*args, **kwargs)

    explicit_parent = False

    @property
    def usage(self) -> dict | None:
        return usage_dict(self.prompt_tokens, self.completion_tokens)


def usage_dict(prompt_tokens: int | None, completion_tokens: int | None) -> dict | None:
    if prompt_tokens is None and completion_tokens is None:
        return None
    return {"prompt_tokens": prompt_tokens or 0, "completion_tokens": completion_tokens or 0}


def get_message_for_user(user, message_id) -> Message:
    try:
        return Message.objects.for_user(user).select_related("conversation").get(pk=message_id)
    except (Message.DoesNotExist, ValueError, TypeError):
        raise Http404("No such message") from None


class AdminAccessGrantQuerySet(models.QuerySet):
    def active(self):
        return self.filter(expires_at__gt=timezone.now())


class AdminAccessGrant(models.Model):
    """A site admin's time-limited read access to one conversation, with the reason given.

    Conversations are private to their owner; this is the only way anyone else reads one, and
    its owner sees every grant on their settings page, also once the conversation is gone."""

    # Null once the conversation is deleted (a temporary chat ends, retention): the grant stays.
    conversation = models.ForeignKey(
        Conversation,
        null=True,
        on_delete=models.SET_NULL,
        related_name="admin_access_grants",
    )
    # The conversation's owner, who is shown the grant.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # Null once the admin's account is deleted; the name they had stays with the grant.
    admin = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    admin_name = models.CharField(max_length=150)
    reason = models.TextField(max_length=1000)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = AdminAccessGrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["conversation", "admin", "expires_at"], name="admin_access_lookup"
            ),
        ]

    def __str__(self) -> str:
        return f"Read access to conversation {self.conversation_id} until {self.expires_at}"

    @property
    def is_active(self) -> bool:
        return self.expires_at > timezone.now()


def new_share_token() -> str:
    return secrets.token_urlsafe(18)


class ShareAudience(models.TextChoices):
    TEAM = "team", "The whole team"
    MEMBERS = "members", "Chosen members"


class JSONArrayLength(models.Func):
    """The length of a JSON array column, counted by the database (SQLite, PostgreSQL)."""

    function = "json_array_length"
    output_field = models.IntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, function="jsonb_array_length", **extra)


class ShareQuerySet(models.QuerySet):
    def listed(self):
        """Without their snapshots, each counted instead: a list never reads the messages."""
        listed = self.defer("messages", "system_prompt")
        return listed.annotate(message_count=JSONArrayLength("messages"))

    def visible_to(self, user):
        """Shares the user may read: their own, and those that name the whole team or them,
        of a team both they and the share's author are still in, while the author's account
        is active (an author who leaves or is deactivated stops sharing there; the share comes
        back if they rejoin or are reactivated)."""
        author_in_team = Membership.objects.filter(team=OuterRef("team"), user=OuterRef("owner"))
        in_team = (
            Q(team__memberships__user=user)
            & Q(owner__is_active=True)
            & Q(Exists(author_in_team))
            & (Q(audience=ShareAudience.TEAM) | Q(members=user))
        )
        matching = self.filter(Q(owner=user) | in_team).values("pk")
        return self.filter(pk__in=matching)


class Share(models.Model):
    """A read-only snapshot of a conversation's shown branch, taken when it was shared.

    Later edits of the conversation do not change it; deleting the conversation (or revoking
    the share) deletes it. `messages` holds [{"role", "content", "status", "created_at",
    "files", "unscreened"}], the text of answers withheld by the safety policy left out (and of
    answers still streaming under output screening, which may yet be); `system_prompt` is
    the conversation's system prompt then, which readers see beside the answers it shaped."""

    token = models.CharField(max_length=40, unique=True, default=new_share_token)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="shares")
    audience = models.CharField(max_length=10, choices=ShareAudience.choices)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True)
    # The database default lets a process of a release before it still share while the
    # migrations of an upgrade are applied.
    system_prompt = models.TextField(blank=True, default="", db_default="")
    messages = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ShareQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # The owner's shares, newest first, a page at a time (Your shares).
        indexes = [models.Index(fields=["owner", "-created_at", "-id"], name="share_owner_recent")]
        constraints = [
            models.CheckConstraint(
                condition=Q(audience__in=ShareAudience.values), name="share_audience_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Share {self.pk} of conversation {self.conversation_id}"


def get_share_for_viewer(user, token) -> Share:
    """A share the user may read, or 404 for an unknown token and for everyone else."""
    share = Share.objects.visible_to(user).filter(token=str(token)).first()
    if share is None:
        raise Http404("No such share")
    return share
