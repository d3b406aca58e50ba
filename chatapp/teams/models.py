import hashlib
import json
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from chatapp.llm import GUARD_CATEGORIES


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


MANAGER_ROLES = (Role.OWNER, Role.ADMIN)


class TeamQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(memberships__user=user)

    def held(self) -> "TeamQuerySet":
        """Under legal hold: nothing in them may be deleted, the whole team included."""
        return self.filter(policy__legal_hold=True)


class Team(models.Model):
    name = models.CharField(max_length=100)
    # Set only on the team created automatically for a user with no team. Deleting the user
    # never deletes the team by itself: accounts.actions.delete_users decides (others may be in it).
    personal_owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="personal_team",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="teams"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_personal(self) -> bool:
        return self.personal_owner_id is not None


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="membership_unique_team_user"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGER_ROLES


def new_invitation_token() -> str:
    return secrets.token_urlsafe(32)


def default_invitation_expiry():
    return timezone.now() + timedelta(days=7)


class Invitation(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    # Blank for a shareable link that anyone holding it may use once.
    email = models.EmailField(blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    token = models.CharField(max_length=64, unique=True, default=new_invitation_token)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=default_invitation_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # An address-bound invitation claimed by an account whose address nobody has verified
    # (no email configured): it waits for a team admin to confirm that account.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(role=Role.OWNER), name="invitation_role_not_owner"),
        ]

    def __str__(self) -> str:
        return f"Invitation to {self.team} for {self.email or 'link'}"

    @property
    def is_usable(self) -> bool:
        return (
            self.accepted_at is None
            and self.expires_at > timezone.now()
            and self.maker_still_invites()
        )

    def maker_still_invites(self) -> bool:
        """Whether its maker is still an owner or admin of its team, with an active account:
        one made by someone who has since left, been removed, lost the role or been deactivated
        lets nobody in (until they are an owner or admin there again)."""
        if self.invited_by_id is None:  # its maker's account was deleted
            return False
        return Membership.objects.filter(
            team_id=self.team_id,
            user_id=self.invited_by_id,
            user__is_active=True,
            role__in=MANAGER_ROLES,
        ).exists()


class ResponseFormat(models.TextChoices):
    TEXT = "text", "Text"
    JSON_OBJECT = "json_object", "JSON object"
    JSON_SCHEMA = "json_schema", "JSON matching a saved schema"


class JsonSchema(models.Model):
    """A named JSON Schema a team's answers can be asked to follow (response_format)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="json_schemas")
    name = models.CharField(max_length=64)
    schema = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="json_schema_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    def state(self) -> str:
        """Its name and schema, as a state_token."""
        return state_token(self, ("name", "schema"))


class SystemPromptQuerySet(models.QuerySet["SystemPrompt"]):
    def for_team(self, team: "Team") -> "SystemPromptQuerySet":
        return self.filter(team=team).order_by("position", "id")


def token_of(value) -> str:
    """A short digest of a JSON-able value; dict keys sorted, as PostgreSQL stores a JSON
    object's keys in its own order."""
    shown = json.dumps(value, default=str, sort_keys=True)
    return hashlib.sha256(shown.encode()).hexdigest()[:32]


def state_token(row: models.Model, fields) -> str:
    """A token of the fields of `row` an edit page shows: the page sends it back with a save,
    and a save from a page read before another change of them is refused rather than saved
    over it."""
    return token_of([getattr(row, name) for name in fields])


class SystemPrompt(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="system_prompts")
    name = models.CharField(max_length=100)
    content = models.TextField(max_length=20_000)
    is_default = models.BooleanField(default=False)
    # Conversations started from a locked prompt keep its text; members cannot replace it.
    locked = models.BooleanField(default=False)
    # The answer format a conversation started from this prompt asks for (its own choice wins).
    response_format = models.CharField(
        max_length=12, choices=ResponseFormat.choices, default=ResponseFormat.TEXT
    )
    json_schema = models.ForeignKey(
        "JsonSchema", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    position = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SystemPromptQuerySet.as_manager()

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team"],
                condition=Q(is_default=True),
                name="system_prompt_one_default_per_team",
            ),
            models.UniqueConstraint(fields=["team", "name"], name="system_prompt_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    def state(self) -> str:
        """What its edit page shows and saves, as a state_token."""
        fields = ["name", "content", "is_default", "locked", "response_format", "json_schema_id"]
        return state_token(self, fields)


class SystemPromptVersion(models.Model):
    """A previous text of a prompt, kept on every edit."""

    prompt = models.ForeignKey(SystemPrompt, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    content = models.TextField()
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "version"], name="system_prompt_version_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Protocol(models.TextChoices):
    LLAMA = "llama", "Native Llama API"
    OPENAI = "openai", "OpenAI-compatible"


class SafetyMode(models.TextChoices):
    OFF = "off", "Off: nothing is sent to Llama Guard"
    FLAG = "flag", "Flag: mark flagged messages for review, block nothing"
    BLOCK = "block", "Block: stop flagged messages and mark them for review"


class SafetyOnError(models.TextChoices):
    FAIL_OPEN = "fail_open", "Let the message through, with a note saying it was not screened"
    FAIL_CLOSED = "fail_closed", "Refuse the message until Llama Guard answers again"


class DataAction(models.TextChoices):
    OFF = "off", "Off"
    REDACT = "redact", "Redact: send a placeholder instead"
    BLOCK = "block", "Block: refuse the question"


class TeamPolicy(models.Model):
    """What a team's people may ask of the model; blank fields mean "the site's choice"."""

    team = models.OneToOneField(
        Team, on_delete=models.CASCADE, primary_key=True, related_name="policy"
    )
    # Empty: every model the provider offers.
    allowed_models = models.JSONField(default=list, blank=True)
    default_model = models.CharField(max_length=200, blank=True)
    default_temperature = models.FloatField(null=True, blank=True)
    default_top_p = models.FloatField(null=True, blank=True)
    default_max_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_tokens_limit = models.PositiveIntegerField(null=True, blank=True)
    monthly_token_budget = models.PositiveBigIntegerField(null=True, blank=True)
    # What one person may use of it per month; empty: no limit of their own.
    member_monthly_token_budget = models.PositiveBigIntegerField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # Llama Guard screening of questions (before they go upstream) and answers (as they stream).
    safety_input = models.CharField(max_length=5, choices=SafetyMode.choices, default="off")
    safety_output = models.CharField(max_length=5, choices=SafetyMode.choices, default="off")
    # The Llama Guard categories that count (S1..S14); empty: all of them.
    safety_categories = models.JSONField(default=list, blank=True)
    safety_on_error = models.CharField(
        max_length=11, choices=SafetyOnError.choices, default="fail_open"
    )
    # Data that never leaves (chatapp/teams/datafilter.py): built-in detectors and own patterns.
    data_card = models.CharField(max_length=6, choices=DataAction.choices, default="off")
    data_iban = models.CharField(max_length=6, choices=DataAction.choices, default="off")
    data_email = models.CharField(max_length=6, choices=DataAction.choices, default="off")
    data_phone = models.CharField(max_length=6, choices=DataAction.choices, default="off")
    data_api_key = models.CharField(max_length=6, choices=DataAction.choices, default="off")
    data_private_key = models.CharField(max_length=6, choices=DataAction.choices, default="off")
    # [{"name": "PROJECT", "pattern": "PRJ-\\d{4}", "action": "redact"}], checked when saved.
    data_patterns = models.JSONField(default=list, blank=True)
    # One-click questions an empty chat offers (set with the team's prompts).
    starter_suggestions = models.JSONField(default=list, blank=True)
    # Retention (chatapp/chat/retention.py): conversations untouched this many days are deleted
    # by `manage.py purge_expired`; empty keeps them forever. A legal hold (set by owners only)
    # deletes nothing, whatever the number of days.
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    legal_hold = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "team policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(default_temperature__isnull=True)
                | Q(default_temperature__gte=0, default_temperature__lte=2),
                name="team_policy_temperature_range",
            ),
            models.CheckConstraint(
                condition=Q(default_top_p__isnull=True)
                | Q(default_top_p__gte=0, default_top_p__lte=1),
                name="team_policy_top_p_range",
            ),
            models.CheckConstraint(
                condition=Q(max_tokens_limit__isnull=True) | Q(max_tokens_limit__gte=1),
                name="team_policy_max_tokens_limit_positive",
            ),
            models.CheckConstraint(
                condition=Q(rate_limit_per_minute__isnull=True) | Q(rate_limit_per_minute__gte=1),
                name="team_policy_rate_limit_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"Policy of {self.team}"


class TeamProvider(models.Model):
    """A team's own Llama API server and key; without one the team uses the site's."""

    team = models.OneToOneField(
        Team, on_delete=models.CASCADE, primary_key=True, related_name="provider"
    )
    base_url = models.CharField(max_length=500, blank=True)
    protocol = models.CharField(max_length=10, choices=Protocol.choices, default=Protocol.LLAMA)
    # Fernet token (chatapp.teams.crypto); the plain key is never stored or shown.
    api_key_encrypted = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(protocol__in=Protocol.values), name="team_provider_protocol_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Provider of {self.team}"

    @property
    def has_key(self) -> bool:
        return bool(self.api_key_encrypted)

    @property
    def uses_own_server(self) -> bool:
        # A team URL is only ever used with the team's own key.
        return bool(self.base_url) and self.has_key


class TeamUsage(models.Model):
    """Tokens used per team, user, model and day, from the upstream's own counts."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="usage")
    # Kept when a user is deleted, so the team's monthly total stays right.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.CharField(max_length=200)
    day = models.DateField()
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    # The ApiKey the tokens were used through, 0 for the chat page. A number rather than a
    # link, so that the row and the month's totals outlive the key.
    api_key_ref = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "team usage"
        constraints = [
            models.UniqueConstraint(
                fields=["team", "user", "model", "day", "api_key_ref"],
                name="team_usage_unique_day_key",
            ),
        ]
        indexes = [models.Index(fields=["team", "day"], name="team_usage_team_day")]

    def __str__(self) -> str:
        return f"{self.team} / {self.user} / {self.model} on {self.day}"


class TeamMonthUsage(models.Model):
    """A member's tokens in a team for a month: the sums of their TeamUsage rows, kept by the
    statements that write those (`actions.record_usage`, `take_back_usage`), so the budget
    check on every send reads a row per member rather than each day's row per model."""

    # Its unique key, team first, is the index.
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", db_index=False)
    # Kept when a user is deleted, as their TeamUsage rows are.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    month = models.DateField()  # the first day of the month
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "month", "user"], name="team_month_usage_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.team} / {self.user} in {self.month:%Y-%m}"


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> "ApiKeyQuerySet":
        """Not revoked and not expired: the keys the OpenAI-compatible API accepts."""
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """A person's key for the OpenAI-compatible API (/v1/). Only a hash of the secret is kept;
    `prefix`, the key's first characters, is what pages show to tell keys apart."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    # The team a request goes to when it names none (the session's team at creation).
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20, unique=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="api_key_user_live")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class BudgetNotice(models.Model):
    """The team crossed `percent` (80 or 100) of its monthly token `budget` in `month`; at
    most one per team, month, budget and threshold, so owners hear of each crossing once (and
    again of a new budget's)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budget_notices")
    month = models.DateField()  # the first day of the month
    percent = models.PositiveSmallIntegerField()
    budget = models.PositiveBigIntegerField()
    used = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "month", "budget", "percent"], name="budget_notice_once_a_month"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.team} reached {self.percent}% of its budget in {self.month:%Y-%m}"


class RecentRequest(models.Model):
    """One row per chat request admitted in the last minute, for the per-user rate limit."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["user", "team", "created_at"], name="recent_request_window"),
        ]

    def __str__(self) -> str:
        return f"Request by {self.user_id} in {self.team_id} at {self.created_at}"


class BudgetHold(models.Model):
    """The tokens an API answer still streaming (or a request for a conversation's title) may
    spend, held against the team's monthly budgets from its admission until its usage is
    recorded (`teams.quota`). Answers on the chat page hold theirs on their streaming row
    instead. A hold past `expires_at` (its process died) counts no more, and the reaper
    deletes it; when the supervisor sees the process relaying it exit (`server_process`,
    `chatapp.core.processes`), it goes at once."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    tokens = models.PositiveBigIntegerField()
    expires_at = models.DateTimeField()
    # The token of the process relaying the answer ("" from a release before it was named).
    server_process = models.CharField(max_length=32, blank=True, default="", db_default="")

    class Meta:
        indexes = [models.Index(fields=["team", "expires_at"], name="budget_hold_team")]

    def __str__(self) -> str:
        return f"{self.tokens} tokens held by {self.user_id} in {self.team_id}"


class AuditAction(models.TextChoices):
    TEAM_CREATE = "team.create", "Team created"
    TEAM_RENAME = "team.rename", "Team renamed"
    TEAM_DELETE = "team.delete", "Team deleted"
    TEAM_PERSONAL_OWNER = "team.personal_owner", "Whose personal team changed"
    INVITE = "invitation.create", "Invitation created"
    INVITE_REVOKE = "invitation.revoke", "Invitation revoked"
    INVITE_ACCEPT = "invitation.accept", "Invitation accepted"
    INVITE_CLAIM = "invitation.claim", "Invitation awaiting confirmation"
    INVITE_CONFIRM = "invitation.confirm", "Invitation confirmed"
    ROLE_CHANGE = "member.role", "Role changed"
    MEMBER_REMOVE = "member.remove", "Member removed"
    MEMBER_LEAVE = "member.leave", "Member left"
    PROMPT_CREATE = "prompt.create", "Prompt created"
    PROMPT_UPDATE = "prompt.update", "Prompt edited"
    PROMPT_DELETE = "prompt.delete", "Prompt deleted"
    PROMPT_REORDER = "prompt.reorder", "Prompts reordered"
    POLICY_UPDATE = "policy.update", "Model policy changed"
    PROVIDER_UPDATE = "provider.update", "Provider changed"
    KEY_SET = "provider.key_set", "Provider key set"
    KEY_CLEAR = "provider.key_clear", "Provider key removed"
    MEMBER_ADD = "member.add", "Member added"
    ADMIN_ACCESS = "conversation.admin_access", "Admin read access to a conversation"
    CONVERSATION_DELETE = "conversation.delete", "Conversation deleted by a site admin"
    AUDIT_EXPORT = "audit.export", "Audit trail exported"
    SAFETY_REVIEW = "safety.review", "Flagged message reviewed"
    API_KEY_CREATE = "api_key.create", "API key created"
    API_KEY_REVOKE = "api_key.revoke", "API key revoked"
    BUDGET_THRESHOLD = "budget.threshold", "Monthly budget threshold crossed"
    TOOL_SERVER_ADD = "tool_server.add", "Tool server added"
    TOOL_SERVER_UPDATE = "tool_server.update", "Tool server changed"
    TOOL_SERVER_REFRESH = "tool_server.refresh", "Tool server's tools refreshed"
    TOOL_SERVER_REMOVE = "tool_server.remove", "Tool server removed"
    TOOL_UPDATE = "tool.update", "Tool settings changed"
    SHARE_CREATE = "conversation.share", "Conversation shared"
    SHARE_REVOKE = "conversation.share_revoke", "Conversation share revoked"
    RETENTION_PURGE = "retention.purge", "Old conversations deleted by the retention policy"
    SCHEMA_CREATE = "json_schema.create", "JSON schema created"
    SCHEMA_UPDATE = "json_schema.update", "JSON schema edited"
    SCHEMA_DELETE = "json_schema.delete", "JSON schema deleted"
    USER_SETTINGS = "user.settings", "User settings changed"
    USER_CREATE = "user.create", "User created"
    USER_ACCESS = "user.access", "User's access changed"
    USER_IDENTITY = "user.identity", "User's username or email changed"
    USER_PASSWORD = "user.password", "User's password set"
    USER_DELETE = "user.delete", "User deleted"
    USER_PERMISSIONS = "user.permissions", "User's groups or permissions changed"
    GROUP_PERMISSIONS = "group.permissions", "Group's permissions changed"
    GROUP_DELETE = "group.delete", "Group deleted"


# Any constant: the advisory lock that serialises audit writes on PostgreSQL.
AUDIT_CHAIN_LOCK = 7_300_118


def lock_audit_chain() -> None:
    """Hold the chain's write lock until the current transaction ends.

    On PostgreSQL two writers would otherwise both read the same last row and fork the chain;
    SQLite's IMMEDIATE transactions already allow one writer at a time."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AUDIT_CHAIN_LOCK])


class AuditEvent(models.Model):
    """An admin action in a team (or on the site when team is empty); details never hold a secret.

    Each event carries the hash of the one before it, so an edited, inserted or deleted row
    breaks the chain (`manage.py audit_verify`). Deleting a team or a user empties the links
    below, not the names kept beside them, which are what the hash covers."""

    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    team_name = models.CharField(max_length=100, blank=True)
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A team's events, newest first, a page at a time (its audit page).
            models.Index(fields=["team", "-id"], name="audit_event_team_newest"),
            # The events of one action, newest first (the admin's filter, and its count).
            models.Index(fields=["action", "-id"], name="audit_event_action_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} in {self.team_name or 'the site'}: {self.summary}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("Audit events are written once and never changed.")
        if self.team is not None and not self.team_name:
            self.team_name = self.team.name[:100]
        if self.actor is not None and not self.actor_name:
            self.actor_name = self.actor.get_username()[:150]
        with transaction.atomic():
            lock_audit_chain()
            last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
            self.prev_hash = last or ""
            self.hash = self.compute_hash()
            super().save(*args, **kwargs)

    def compute_hash(self) -> str:
        return chain_hash(
            self.prev_hash,
            {
                "created_at": self.created_at.isoformat(),
                "team": self.team_name,
                "actor": self.actor_name,
                "action": self.action,
                "summary": self.summary,
                "details": self.details,
            },
        )


def chain_hash(prev_hash: str, content: dict) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def describe_categories(categories: tuple[str, ...] | list[str]) -> str:
    """Llama Guard categories in words: "S1 Violent Crimes and S10 Hate"."""
    named = [f"{c} {GUARD_CATEGORIES[c]}" if c in GUARD_CATEGORIES else c for c in categories]
    if not named:
        return "unsafe"
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


class SafetyStage(models.TextChoices):
    INPUT = "input", "Question"
    OUTPUT = "output", "Answer"


class SafetyDecision(models.TextChoices):
    PENDING = "", "Not reviewed"
    REVIEWED = "reviewed", "Reviewed"
    FALSE_POSITIVE = "false_positive", "False positive"


class SafetyFlag(models.Model):
    """A question or answer Llama Guard flagged, for the team's reviewers."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="safety_flags")
    # Named as a string: chat sits above teams, so no import runs up (docs/architecture.md).
    message = models.ForeignKey(
        "chat.Message", on_delete=models.CASCADE, related_name="safety_flags"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    stage = models.CharField(max_length=6, choices=SafetyStage.choices)
    blocked = models.BooleanField(default=False)
    categories = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    decision = models.CharField(
        max_length=14, choices=SafetyDecision.choices, default="", blank=True
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["team", "decision"], name="safety_flag_team_decision")]

    def __str__(self) -> str:
        return f"{self.stage} flag on message {self.message_id}"

    @property
    def category_names(self) -> str:
        return describe_categories(self.categories)
