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
