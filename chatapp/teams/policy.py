"""What a user may ask of the model in a team: the model policy and settings resolution.

Settings resolve: site defaults -> team defaults -> user settings page -> conversation/request.
Saved defaults the team's policy does not allow are skipped; a request that breaks the policy
is refused with a PolicyError naming the field.
"""

from dataclasses import dataclass

from django.conf import settings as django_settings
from django.db.models import Q

from chatapp.llm import MODEL_CONTEXT_LIMITS, MODEL_MAX_OUTPUT
from chatapp.teams.models import Team, TeamPolicy, TeamProvider

# Models we know nothing about (vLLM, Ollama...) get a window most local servers offer,
# unless the operator gives theirs (LLAMA_MODEL_CONTEXT).
UNKNOWN_MODEL_CONTEXT = 8192
SITE_DEFAULTS = {"temperature": 0.6, "top_p": 0.9, "max_tokens": 2048}
SETTING_NAMES = ("model", "temperature", "max_tokens", "top_p")
# How the settings forms label them; error messages use the same words.
SETTING_LABELS = {
    "model": "Model",
    "temperature": "Temperature",
    "max_tokens": "Max tokens",
    "top_p": "Top p",
}
MAX_TEMPERATURE = {"llama": 1.0, "openai": 2.0}  # the native API accepts 0..1 only
MAX_TOKENS_CAP = 131_072  # for models we know nothing about (a team's own server)
# A team loaded with these (`select_related`) brings its rules along: team_rules reads no row.
RULES_RELATED = ("policy", "provider")


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
        return min(self.max_tokens, output_ceiling(model))


def output_ceiling(model: str) -> int:
    """The most a model may be asked to write: its own limit where the site knows it, and
    never more than its context window (LLAMA_MODEL_CONTEXT, else what the site assumes)."""
    return min(MODEL_MAX_OUTPUT.get(model, MAX_TOKENS_CAP), context_window(model))


def context_window(model: str) -> int:
    """The tokens a model reads: the operator's word first, then what the site knows."""
    configured = django_settings.LLAMA_MODEL_CONTEXT.get(model)
    return configured or MODEL_CONTEXT_LIMITS.get(model, UNKNOWN_MODEL_CONTEXT)


def team_policy(team) -> TeamPolicy:
    """The team's stored policy, or an unsaved one meaning "no restrictions"."""
    return TeamPolicy.objects.filter(team=team).first() or TeamPolicy(team=team)


def retention_of(user) -> list[tuple[str, int | None, bool]]:
    """(team name, days, held) for each of the user's teams whose policy deletes old
    conversations, or keeps them all under legal hold (then it deletes nothing)."""
    policies = TeamPolicy.objects.filter(team__memberships__user=user).filter(
        Q(retention_days__isnull=False) | Q(legal_hold=True)
    )
    rows = policies.order_by("team__name").values_list("team__name", "retention_days", "legal_hold")
    return [(name, days, held) for name, days, held in rows if days or held]


def team_provider(team) -> TeamProvider | None:
    return TeamProvider.objects.filter(team=team).first()


def site_models() -> list[str]:
    """The models offered with the site's provider (LLAMA_MODELS); the site's default model
    comes first, listed there or not."""
    models = [django_settings.LLAMA_DEFAULT_MODEL, *django_settings.LLAMA_MODELS]
    return list(dict.fromkeys(models))


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
    policy, provider = _policy_and_provider(team)
    # Once each, in order: a list saved before duplicates were refused may hold one twice.
    chosen = list(dict.fromkeys(m for m in policy.allowed_models or [] if isinstance(m, str) and m))
    protocol = django_settings.LLAMA_API_PROTOCOL
    if provider is not None and provider.uses_own_server:
        models = chosen or site_models()  # a team's own server may name models freely
        protocol = provider.protocol
    else:
        models = [m for m in chosen if m in site_models()] or site_models()
    limits = Limits(MAX_TEMPERATURE[protocol], policy.max_tokens_limit or MAX_TOKENS_CAP)
    return TeamRules(policy, provider, models, limits)


def _policy_and_provider(team) -> tuple[TeamPolicy, TeamProvider | None]:
    """Both in one read, or none when the team came with them (RULES_RELATED)."""
    if not all(getattr(Team, name).is_cached(team) for name in RULES_RELATED):
        team = Team.objects.select_related(*RULES_RELATED).filter(pk=team.pk).first() or team
    try:
        policy = team.policy
    except TeamPolicy.DoesNotExist:
        policy = TeamPolicy(team=team)
    try:
        provider = team.provider
    except TeamProvider.DoesNotExist:
        provider = None
    return policy, provider


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


def _check(rules: TeamRules, name: str, value, model: str) -> None:
    """Raise PolicyError when one setting is out of the team's bounds."""
    if name == "model":
        if not isinstance(value, str) or value not in rules.models:
            # Quoted short: the refusal goes back to the sender, who may have sent megabytes.
            asked = repr(value)
            asked = asked if len(asked) <= 80 else asked[:79] + "…"
            message = f"The model {asked} is not available in this team: pick one of the list."
            raise PolicyError("model_not_allowed", message, "model")
        return
    if name == "max_tokens":
        ceiling = rules.limits.max_tokens_for(model)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ceiling:
            message = f"Max tokens must be a whole number between 1 and {ceiling} in this team."
            raise PolicyError("invalid_setting", message, name)
        return
    high = rules.limits.temperature if name == "temperature" else 1.0
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    # Compared, not converted: a whole number too large for a float is just out of range,
    # and NaN fails the comparison.
    if not is_number or not 0 <= value <= high:
        message = f"{SETTING_LABELS[name]} must be a number from 0 to {high:g}."
        raise PolicyError("invalid_setting", message, name)


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


def resolve_settings(
    team,
    user_layer: dict,
    requested: dict | None = None,
    rules: TeamRules | None = None,
    stored: dict | None = None,
) -> dict:
    """Merge site, team and user defaults, a conversation's stored settings and the request
    under the team's policy.

    Saved values the policy refuses (defaults, and a conversation's settings from before the
    policy changed) are skipped; a request that breaks it raises PolicyError. `user_layer` is
    the user's own saved defaults (chatapp.accounts.preferences).
    """
    rules = rules or team_rules(team)
    values = site_defaults()
    if values["model"] not in rules.models:
        values["model"] = rules.models[0]
    for layer in (team_defaults(team, rules.policy), user_layer, stored or {}):
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
