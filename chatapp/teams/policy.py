"""What a user may ask of the model in a team: settings resolution, model policy, quotas, usage.

Settings resolve: site defaults -> team defaults -> user settings page -> conversation/request.
"""

from dataclasses import dataclass

from django.conf import settings as django_settings

KNOWN_MODELS = [
    "Llama-4-Maverick-17B-128E-Instruct-FP8",
    "Llama-4-Scout-17B-16E-Instruct-FP8",
    "Llama-3.3-70B-Instruct",
    "Llama-3.3-8B-Instruct",
]
SITE_DEFAULTS = {"temperature": 0.6, "top_p": 0.9, "max_tokens": 2048}
SETTING_NAMES = ("model", "temperature", "max_tokens", "top_p")


@dataclass
class PolicyError(Exception):
    """A request the team's policy refuses; code is stable, message is for the user."""

    code: str
    message: str
    field: str | None = None


def site_defaults() -> dict:
    return {"model": django_settings.LLAMA_DEFAULT_MODEL, **SITE_DEFAULTS}


def allowed_models(team) -> list[str]:
    models = list(KNOWN_MODELS)
    if django_settings.LLAMA_DEFAULT_MODEL not in models:
        models.insert(0, django_settings.LLAMA_DEFAULT_MODEL)
    return models


def team_defaults(team) -> dict:
    return {}


def user_defaults(user) -> dict:
    from chatapp.accounts.models import UserSettings

    stored = UserSettings.objects.filter(user=user).first()
    if stored is None:
        return {}
    values = {name: getattr(stored, name) for name in SETTING_NAMES}
    return {k: v for k, v in values.items() if v not in (None, "")}


def validate_settings(team, values: dict) -> dict:
    """Check types and ranges; raise PolicyError naming the first bad field."""
    model = values.get("model")
    if not isinstance(model, str) or model not in allowed_models(team):
        raise PolicyError("model_not_allowed", f"The model {model!r} is not available.", "model")
    checks = (
        ("temperature", (int, float), 0.0, 2.0),
        ("top_p", (int, float), 0.0, 1.0),
        ("max_tokens", (int,), 1, 131_072),
    )
    for name, types, low, high in checks:
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types) or not low <= value <= high:
            raise PolicyError("invalid_setting", f"{name} must be between {low} and {high}.", name)
    return values


def effective_settings(user, team, requested: dict | None = None) -> dict:
    """Merge the layers and validate the result against the team's policy."""
    values = site_defaults()
    for layer in (team_defaults(team), user_defaults(user), requested or {}):
        values.update({k: v for k, v in layer.items() if k in SETTING_NAMES and v is not None})
    return validate_settings(team, values)


def llama_client(team):
    """A client for the provider the team's requests go to: the site's base URL, protocol and key."""
    from chatapp.llm import LlamaClient, ProviderConfig

    config = ProviderConfig(
        base_url=django_settings.LLAMA_API_BASE_URL,
        api_key=django_settings.LLAMA_API_KEY,
        protocol=django_settings.LLAMA_API_PROTOCOL,
    )
    return LlamaClient(config)


def check_quota(user, team) -> None:
    """Raise PolicyError(quota_exceeded | rate_limited) before anything is sent upstream."""


def record_usage(team, user, model: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Add an answer's token counts to the team's usage for today."""
