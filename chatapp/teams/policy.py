"""What a user may ask of the model in a team: settings resolution, model policy, quotas, usage.

Settings resolve: site defaults -> team defaults -> user settings page -> conversation/request.
Saved defaults the team's policy does not allow are skipped; a request that breaks the policy
is refused with a PolicyError naming the field.
"""

import math
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from chatapp.llm import KNOWN_MODELS as LLM_KNOWN_MODELS
from chatapp.llm import MODEL_MAX_OUTPUT, LlamaClient, ProviderConfig
from chatapp.teams import crypto
from chatapp.teams.models import (
    Membership,
    RecentRequest,
    TeamPolicy,
    TeamProvider,
    TeamUsage,
)
from chatapp.teams.network import GuardedLlamaClient

KNOWN_MODELS = list(LLM_KNOWN_MODELS)
SITE_DEFAULTS = {"temperature": 0.6, "top_p": 0.9, "max_tokens": 2048}
SETTING_NAMES = ("model", "temperature", "max_tokens", "top_p")
MAX_TEMPERATURE = {"llama": 1.0, "openai": 2.0}  # the native API accepts 0..1 only
MAX_TOKENS_CAP = 131_072  # for models we know nothing about (a team's own server)
RATE_WINDOW = timedelta(minutes=1)


@dataclass
class PolicyError(Exception):
    """A request the team's policy refuses; code is stable, message is for the user."""

    code: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Limits:
    """The highest values a team's requests may use."""

    temperature: float
    max_tokens: int

    def max_tokens_for(self, model: str) -> int:
        return min(self.max_tokens, MODEL_MAX_OUTPUT.get(model, MAX_TOKENS_CAP))


def team_policy(team) -> TeamPolicy:
    """The team's stored policy, or an unsaved one meaning "no restrictions"."""
    return TeamPolicy.objects.filter(team=team).first() or TeamPolicy(team=team)


def team_provider(team) -> TeamProvider | None:
    return TeamProvider.objects.filter(team=team).first()


def site_models() -> list[str]:
    """The models offered with the site's provider; the site's default model comes first."""
    return list(dict.fromkeys([django_settings.LLAMA_DEFAULT_MODEL, *KNOWN_MODELS]))


def site_defaults() -> dict:
    return {"model": django_settings.LLAMA_DEFAULT_MODEL, **SITE_DEFAULTS}


@dataclass(frozen=True)
class TeamRules:
    """A team's policy and provider, read once, with the models and ceilings they imply."""

    policy: TeamPolicy
    provider: TeamProvider | None
    models: list[str]
    limits: Limits


def team_rules(team) -> TeamRules:
    policy, provider = team_policy(team), team_provider(team)
    chosen = [m for m in policy.allowed_models or [] if isinstance(m, str) and m]
    protocol = django_settings.LLAMA_API_PROTOCOL
    if provider is not None and provider.uses_own_server:
        models = chosen or site_models()  # a team's own server may name models freely
        protocol = provider.protocol
    else:
        models = [m for m in chosen if m in site_models()] or site_models()
    limits = Limits(MAX_TEMPERATURE[protocol], policy.max_tokens_limit or MAX_TOKENS_CAP)
    return TeamRules(policy, provider, models, limits)


def allowed_models(team) -> list[str]:
    """The models the team may use: its allow-list, or every model its provider offers."""
    return team_rules(team).models


def setting_limits(team) -> Limits:
    """The ceilings the team's requests must stay under (for forms: input max values)."""
    return team_rules(team).limits


def team_defaults(team, policy: TeamPolicy | None = None) -> dict:
    policy = policy or team_policy(team)
    values = {
        "model": policy.default_model,
        "temperature": policy.default_temperature,
        "max_tokens": policy.default_max_tokens,
        "top_p": policy.default_top_p,
    }
    return {k: v for k, v in values.items() if v not in (None, "")}


def user_defaults(user) -> dict:
    from chatapp.accounts.models import UserSettings

    stored = UserSettings.objects.filter(user=user).first()
    if stored is None:
        return {}
    values = {name: getattr(stored, name) for name in SETTING_NAMES}
    return {k: v for k, v in values.items() if v not in (None, "")}


def _check(rules: TeamRules, name: str, value, model: str) -> None:
    """Raise PolicyError when one setting is out of the team's bounds."""
    if name == "model":
        if not isinstance(value, str) or value not in rules.models:
            message = f"The model {value!r} is not available in this team: pick one of the list."
            raise PolicyError("model_not_allowed", message, "model")
        return
    if name == "max_tokens":
        high = rules.limits.max_tokens_for(model)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            message = f"max_tokens must be a whole number between 1 and {high} in this team."
            raise PolicyError("invalid_setting", message, name)
        return
    high = rules.limits.temperature if name == "temperature" else 1.0
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or math.isnan(value) or not 0 <= value <= high:
        raise PolicyError("invalid_setting", f"{name} must be a number from 0 to {high:g}.", name)


def _checked(rules: TeamRules, values: dict, fallback_model: str) -> dict:
    """The known, non-None settings of one layer, each checked (raises on the first bad one)."""
    values = {k: v for k, v in values.items() if k in SETTING_NAMES and v is not None}
    model = values.get("model", fallback_model)
    for name, value in values.items():
        _check(rules, name, value, model if model in rules.models else fallback_model)
    return values


def validate_settings(team, values: dict) -> dict:
    """Check settings against the team's policy; raise PolicyError naming the field.

    Missing or None values are not checked: they fall back to the layer below.
    """
    rules = team_rules(team)
    _checked(rules, values, _default_model(rules))
    return values


def _default_model(rules: TeamRules) -> str:
    """The model a blank choice means: the team's default, else the site's, if allowed."""
    for model in (rules.policy.default_model, django_settings.LLAMA_DEFAULT_MODEL):
        if model in rules.models:
            return model
    return rules.models[0]


def effective_settings(
    user, team, requested: dict | None = None, rules: TeamRules | None = None
) -> dict:
    """Merge the layers; skip saved defaults the policy refuses, refuse a bad request."""
    rules = rules or team_rules(team)
    values = site_defaults()
    if values["model"] not in rules.models:
        values["model"] = rules.models[0]
    for layer in (team_defaults(team, rules.policy), user_defaults(user)):
        for name, value in layer.items():
            try:
                values.update(_checked(rules, {name: value}, values["model"]))
            except PolicyError:
                continue  # a saved default this team does not allow: keep the layer below
    values.update(_checked(rules, requested or {}, values["model"]))
    # Defaults stay under the ceilings of the final model; checked requests already are.
    values["temperature"] = min(values["temperature"], rules.limits.temperature)
    values["max_tokens"] = min(values["max_tokens"], rules.limits.max_tokens_for(values["model"]))
    return values


def llama_client(team, rules: TeamRules | None = None) -> LlamaClient:
    """A client for the provider the team's requests go to.

    A team URL is only ever used with the team's own key, through the network guard; a team
    key without a URL goes to the site's URL; otherwise the site's URL and key. The site's key
    is never sent anywhere but the site's URL.
    """
    provider = rules.provider if rules else team_provider(team)
    site_url = django_settings.LLAMA_API_BASE_URL
    site_protocol = django_settings.LLAMA_API_PROTOCOL
    if provider is None or not provider.has_key:
        return LlamaClient(_config(site_url, django_settings.LLAMA_API_KEY, site_protocol))
    try:
        key = crypto.decrypt(provider.api_key_encrypted)
    except crypto.KeyUnreadable as exc:
        raise PolicyError("provider_key_unreadable", str(exc)) from None
    if provider.base_url:
        return GuardedLlamaClient(_config(provider.base_url, key, provider.protocol))
    return LlamaClient(_config(site_url, key, site_protocol))


def _config(base_url: str, api_key: str, protocol: str) -> ProviderConfig:
    return ProviderConfig(
        base_url,
        api_key,
        protocol,
        max_attempts=django_settings.LLAMA_MAX_ATTEMPTS,
        **django_settings.LLAMA_TIMEOUTS,
    )


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def tokens_used(team, since: date) -> int:
    totals = TeamUsage.objects.filter(team=team, day__gte=since).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    return (totals["prompt"] or 0) + (totals["completion"] or 0)


def check_quota(user, team, rules: TeamRules | None = None) -> None:
    """Admit one request upstream, or raise PolicyError(quota_exceeded | rate_limited).

    Call once per request about to be sent (a new message or a regenerate), before sending:
    an admitted call counts against the per-minute limit.
    """
    policy = rules.policy if rules else team_policy(team)
    if policy.monthly_token_budget is not None:
        _check_budget(team, policy.monthly_token_budget)
    if policy.rate_limit_per_minute:
        _admit(user, team, policy.rate_limit_per_minute)


def _check_budget(team, budget: int) -> None:
    today = timezone.now().date()
    used = tokens_used(team, month_start(today))
    if used >= budget:
        resets = f"{next_month(today):%B} 1"
        message = (
            f"This team has used its monthly budget of {budget:,} tokens ({used:,} used)."
            f" It resets on {resets}; a team owner or admin can raise it on the team's policy page."
        )
        raise PolicyError("quota_exceeded", message)


def _admit(user, team, per_minute: int) -> None:
    now = timezone.now()
    window = RecentRequest.objects.filter(user=user, team=team)
    with transaction.atomic():
        # Locking the membership row serialises one user's requests across processes.
        Membership.objects.select_for_update().filter(user=user, team=team).first()
        window.filter(created_at__lte=now - RATE_WINDOW).delete()
        if window.count() >= per_minute:
            message = (
                f"You can send {per_minute} message{'s' if per_minute != 1 else ''} a minute"
                " in this team: wait a few seconds and try again."
            )
            raise PolicyError("rate_limited", message)
        RecentRequest.objects.create(user=user, team=team, created_at=now)


def record_usage(team, user, model: str, prompt_tokens: int, completion_tokens: int) -> None:
    """Add an answer's token counts to the team's usage for today (an atomic upsert)."""
    key = {"team": team, "user": user, "model": model, "day": timezone.now().date()}
    increments = {
        "prompt_tokens": F("prompt_tokens") + max(0, int(prompt_tokens or 0)),
        "completion_tokens": F("completion_tokens") + max(0, int(completion_tokens or 0)),
        "requests": F("requests") + 1,
    }
    with transaction.atomic():
        if TeamUsage.objects.filter(**key).update(**increments):
            return
        try:
            with transaction.atomic():  # a savepoint: another process may insert first
                TeamUsage.objects.create(
                    **key,
                    prompt_tokens=max(0, int(prompt_tokens or 0)),
                    completion_tokens=max(0, int(completion_tokens or 0)),
                    requests=1,
                )
        except IntegrityError:
            TeamUsage.objects.filter(**key).update(**increments)
