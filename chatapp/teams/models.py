import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


MANAGER_ROLES = (Role.OWNER, Role.ADMIN)


class TeamQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(memberships__user=user)


class Team(models.Model):
    name = models.CharField(max_length=100)
    # Set only on the team created automatically for a user with no team.
    personal_owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
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

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(role=Role.OWNER), name="invitation_role_not_owner"),
        ]

    def __str__(self) -> str:
        return f"Invitation to {self.team} for {self.email or 'link'}"

    @property
    def is_usable(self) -> bool:
        return self.accepted_at is None and self.expires_at > timezone.now()


class SystemPromptQuerySet(models.QuerySet):
    def for_team(self, team):
        return self.filter(team=team).order_by("position", "id")


class SystemPrompt(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="system_prompts")
    name = models.CharField(max_length=100)
    content = models.TextField(max_length=20_000)
    is_default = models.BooleanField(default=False)
    # Conversations started from a locked prompt keep its text; members cannot replace it.
    locked = models.BooleanField(default=False)
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
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
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

    class Meta:
        verbose_name_plural = "team usage"
        constraints = [
            models.UniqueConstraint(
                fields=["team", "user", "model", "day"], name="team_usage_unique_day"
            ),
        ]
        indexes = [models.Index(fields=["team", "day"], name="team_usage_team_day")]

    def __str__(self) -> str:
        return f"{self.team} / {self.user} / {self.model} on {self.day}"


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


class AuditAction(models.TextChoices):
    TEAM_CREATE = "team.create", "Team created"
    INVITE = "invitation.create", "Invitation created"
    INVITE_REVOKE = "invitation.revoke", "Invitation revoked"
    INVITE_ACCEPT = "invitation.accept", "Invitation accepted"
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


class AuditEvent(models.Model):
    """An admin action in a team; details never hold a secret."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "-created_at"], name="audit_event_team_recent")]

    def __str__(self) -> str:
        return f"{self.get_action_display()} in {self.team}: {self.summary}"
