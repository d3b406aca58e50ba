"""A team's MCP tool servers and the tools each one offers (the list cached at the last refresh)."""

import json

from django.conf import settings
from django.db import models

from chatapp.teams.models import Team, state_token, token_of

DEFAULT_TIMEOUT = 30
MIN_TIMEOUT = 1
MAX_TIMEOUT = 300
# What one chat request may carry: OpenAI-compatible servers refuse more than 128 tools.
MAX_OFFERED_TOOLS = 128
MAX_DESCRIPTION_CHARS = 4_000  # of a tool's description; a longer one is left out
MAX_SCHEMA_CHARS = 16_000  # of a tool's input schema as compact JSON; a larger one is left out


def too_long_to_offer(description: str, input_schema: object) -> bool:
    """Past the size a chat request may carry of one tool: its description, or its input schema
    as compact JSON."""
    schema = json.dumps(input_schema, ensure_ascii=False, separators=(",", ":"))
    return len(description) > MAX_DESCRIPTION_CHARS or len(schema) > MAX_SCHEMA_CHARS


class ServerStatus(models.TextChoices):
    UP = "up", "Up"
    DOWN = "down", "Down"


class ToolServerQuerySet(models.QuerySet["ToolServer"]):
    def for_team(self, team_id: int) -> "ToolServerQuerySet":
        return self.filter(team_id=team_id).order_by("name", "id")


class ToolServer(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="tool_servers")
    name = models.CharField(max_length=40)
    url = models.CharField(max_length=500)
    # Fernet token (chatapp.teams.crypto, as the provider key); the plain token is never shown.
    token_encrypted = models.TextField(blank=True)
    timeout = models.PositiveSmallIntegerField(default=DEFAULT_TIMEOUT)
    status = models.CharField(max_length=4, choices=ServerStatus.choices, default=ServerStatus.UP)
    # Why the last connection failed, in words a team admin can act on; never a secret.
    last_error = models.CharField(max_length=500, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ToolServerQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="tool_server_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"

    @property
    def has_token(self) -> bool:
        return bool(self.token_encrypted)

    @property
    def is_up(self) -> bool:
        return self.status == ServerStatus.UP

    def state(self) -> str:
        """Its settings as the Tools page shows them, as a state_token (never the token)."""
        return state_token(self, ["name", "url", "timeout", "has_token"])

    def etag_state(self) -> str:
        """What an API PATCH changes, its settings and each tool's choices: its ETag."""
        tools = [[tool.name, tool.enabled, tool.ask_first] for tool in self.tools.all()]
        return token_of([self.state(), tools])


class Tool(models.Model):
    server = models.ForeignKey(ToolServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict, blank=True)
    # From the server's annotations: readOnlyHint true and destructiveHint not true.
    read_only = models.BooleanField(default=False)
    # Set by the team's admins; kept when the list is refreshed.
    ask_first = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="tool_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def schema_text(self) -> str:
        return json.dumps(self.input_schema, indent=2, ensure_ascii=False)

    @property
    def needs_approval(self) -> bool:
        return not self.read_only or self.ask_first
