from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator

from chatapp.core.group_map import manages, parse_group_map
from chatapp.core.permissions import is_site_admin
from chatapp.core.text import NameField, validate_one_line
from chatapp.llm import GUARD_CATEGORIES, url_problem
from chatapp.teams import json_schemas, network
from chatapp.teams.datafilter import (
    DETECTORS,
    MAX_PATTERNS,
    PATTERN_NAME,
    pattern_problem,
)
from chatapp.teams.models import (
    DataAction,
    Invitation,
    JsonSchema,
    Protocol,
    ResponseFormat,
    Role,
    SafetyMode,
    SafetyOnError,
    SystemPrompt,
)
from chatapp.teams.policy import (
    MAX_TEMPERATURE,
    MAX_TOKENS_CAP,
    SITE_DEFAULTS,
    output_ceiling,
    site_models,
    team_provider,
)


class TeamForm(forms.Form):
    name = NameField(
        max_length=100,
        strip=True,
        validators=[validate_one_line],
        widget=forms.TextInput(attrs={"dir": "auto"}),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        # Its creator would own the team that sign-in then joins the provider's group to.
        if settings.OIDC_ENABLED and not is_site_admin(self.user):
            if manages(parse_group_map(settings.OIDC_GROUP_MAP), name):
                raise forms.ValidationError(
                    f"Single sign-on manages the team {name}: its members come from your"
                    " identity provider's groups. Pick another name, or ask a site admin."
                )
        return name


class InviteForm(forms.Form):
    email = forms.EmailField(
        required=False,
        max_length=Invitation._meta.get_field("email").max_length,  # the column's, not 320
        help_text="Leave empty for a shareable link that anyone holding it may use once.",
    )
    role = forms.ChoiceField(
        choices=[(Role.MEMBER, "Member"), (Role.ADMIN, "Admin")], initial=Role.MEMBER
    )
    days = forms.IntegerField(
        min_value=1, max_value=30, initial=7, label="Valid for (days)", required=False
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class PromptForm(forms.Form):
    name = NameField(
        max_length=100,
        strip=True,
        validators=[validate_one_line],
        widget=forms.TextInput(attrs={"dir": "auto"}),
    )
    content = forms.CharField(
        max_length=20_000, widget=forms.Textarea(attrs={"rows": 8, "dir": "auto"})
    )
    is_default = forms.BooleanField(required=False, label="Default for new chats")
    locked = forms.BooleanField(
        required=False,
        label="Locked",
        help_text="Members cannot replace or edit the system message of chats started from it.",
    )

    # The prompt's state() as the edit page read it (chatapp.teams.actions.save_prompt).
    seen = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    answer_format = forms.ChoiceField(
        label="Answer format",
        required=False,
        help_text="JSON asks the model for JSON answers (a saved schema: JSON that follows it);"
        " the chat page shows them formatted. A member may pick another format in a chat.",
    )

    def __init__(self, *args, team, prompt: SystemPrompt | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.team, self.prompt = team, prompt
        choices = self.fields["answer_format"]
        assert isinstance(choices, forms.ChoiceField)
        choices.choices = answer_format_choices(team)

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        choice = cleaned.pop("answer_format", "") or ResponseFormat.TEXT
        kind, _, schema_id = choice.partition(":")
        cleaned["response_format"] = kind
        cleaned["json_schema"] = (
            JsonSchema.objects.filter(team=self.team, pk=schema_id).first() if schema_id else None
        )
        return cleaned

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        others = SystemPrompt.objects.filter(team=self.team, name=name)
        if self.prompt is not None:
            others = others.exclude(pk=self.prompt.pk)
        if others.exists():
            raise forms.ValidationError("A prompt with this name already exists in this team.")
        return name


def answer_format_choices(team) -> list[tuple[str, str]]:
    """Text, a JSON object, or one of the team's saved schemas ("json_schema:<id>")."""
    saved = JsonSchema.objects.filter(team=team).values_list("pk", "name")
    return [
        (ResponseFormat.TEXT, "Text"),
        (ResponseFormat.JSON_OBJECT, "JSON object"),
        *[(f"json_schema:{pk}", f"JSON schema: {name}") for pk, name in saved],
    ]


def answer_format_value(response_format: str, json_schema_id: int | None) -> str:
    """The answer_format choice for a stored format (a deleted schema: a JSON object)."""
    if response_format == ResponseFormat.JSON_SCHEMA:
        return f"json_schema:{json_schema_id}" if json_schema_id else ResponseFormat.JSON_OBJECT
    return response_format


class JsonSchemaForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        strip=True,
        help_text="Letters, digits, _ and -: the model is told this name.",
    )
    schema = forms.CharField(
        label="JSON Schema",
        max_length=json_schemas.MAX_SCHEMA_BYTES * 2,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
        help_text="A JSON Schema (draft 2020-12), such as"
        ' {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}.',
    )
    # The schema's state() as the edit page read it (chatapp.teams.actions.save_json_schema).
    seen = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, team, saved: JsonSchema | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.team, self.saved = team, saved

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if problem := json_schemas.name_problem(name):
            raise forms.ValidationError(problem)
        others = JsonSchema.objects.filter(team=self.team, name=name)
        if self.saved is not None:
            others = others.exclude(pk=self.saved.pk)
        if others.exists():
            raise forms.ValidationError("A schema with this name already exists in this team.")
        return name

    def clean_schema(self) -> dict:
        value, problem = json_schemas.parse_schema_text(self.cleaned_data["schema"])
        if problem:
            raise forms.ValidationError(problem)
        return value


MAX_STARTERS = 4
MAX_STARTER_LENGTH = 200


class StartersForm(forms.Form):
    suggestions = forms.CharField(
        required=False,
        max_length=MAX_STARTERS * (MAX_STARTER_LENGTH + 2),
        label="Starter suggestions",
        help_text=f"One per line, at most {MAX_STARTERS}: an empty chat offers them as"
        " questions to start with.",
        widget=forms.Textarea(attrs={"rows": 4, "dir": "auto"}),
    )

    def clean_suggestions(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["suggestions"].splitlines()]
        lines = list(dict.fromkeys(line for line in lines if line))
        if len(lines) > MAX_STARTERS:
            raise forms.ValidationError(f"At most {MAX_STARTERS} suggestions, one per line.")
        for line in lines:
            if len(line) > MAX_STARTER_LENGTH:
                raise forms.ValidationError(
                    f"Keep each suggestion under {MAX_STARTER_LENGTH} characters."
                )
        return lines


def is_model_id(text: str) -> bool:
    """No spaces, line breaks or control characters: the policy page lists one id a line."""
    return text.isprintable() and not any(c.isspace() for c in text)


def _model_ids(text: str) -> list[str]:
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    for model_id in ids:
        if len(model_id) > 200 or not is_model_id(model_id):
            raise forms.ValidationError(f"{model_id[:40]!r} is not a model id (one per line).")
    return list(dict.fromkeys(ids))


DATA_LABELS = {
    "card": "Payment card numbers (Luhn-checked)",
    "iban": "IBANs (checksum-checked)",
    "email": "E-mail addresses",
    "phone": "Phone numbers",
    "api_key": "API keys (OpenAI, AWS, GitHub, Slack, Google, Llama shapes)",
    "private_key": "Private keys (PEM blocks)",
}


# A hundred years: past any real retention rule, and small enough for every database.
MAX_RETENTION_DAYS = 36_500


class PolicyForm(forms.Form):
    """The team's model policy; which models it lists depends on the team's provider."""

    default_model = forms.CharField(max_length=200, required=False)
    default_temperature = forms.FloatField(min_value=0, required=False)  # max: the provider's
    default_top_p = forms.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        help_text=f"0 to 1. Site default: {SITE_DEFAULTS['top_p']}.",
    )
    default_max_tokens = forms.IntegerField(
        min_value=1,
        max_value=MAX_TOKENS_CAP,
        required=False,
        help_text=f"Site default: {SITE_DEFAULTS['max_tokens']}.",
    )
    max_tokens_limit = forms.IntegerField(
        min_value=1,
        max_value=MAX_TOKENS_CAP,
        required=False,
        label="Largest max tokens",
        help_text="The most tokens one answer may ask for. Empty: the model's own limit.",
    )
    monthly_token_budget = forms.IntegerField(
        min_value=1,
        max_value=10**15,
        required=False,
        help_text="Prompt plus completion tokens per calendar month (UTC). Empty: no budget.",
    )
    member_monthly_token_budget = forms.IntegerField(
        min_value=1,
        max_value=10**15,
        required=False,
        label="Monthly budget per person",
        help_text="What one person may use of the team's tokens per calendar month. Empty: no"
        " limit of their own.",
    )
    rate_limit_per_minute = forms.IntegerField(
        min_value=1,
        max_value=10_000,
        required=False,
        label="Messages per minute per person",
        help_text="Empty: no limit.",
    )
    safety_input = forms.ChoiceField(
        choices=SafetyMode.choices,
        required=False,
        label="Screen questions",
        help_text="Checked by Llama Guard before they are sent to the model: a blocked"
        " question costs no tokens.",
        widget=forms.RadioSelect,
    )
    safety_output = forms.ChoiceField(
        choices=SafetyMode.choices,
        required=False,
        label="Screen answers",
        help_text="Checked about once a second while they stream, and at the end: a blocked"
        " answer stops at once and its text is kept for the team's reviewers only.",
        widget=forms.RadioSelect,
    )
    safety_categories = forms.MultipleChoiceField(
        choices=[(code, f"{code} {name}") for code, name in GUARD_CATEGORIES.items()],
        required=False,
        label="Categories that count",
        help_text="None ticked: all fourteen.",
        widget=forms.CheckboxSelectMultiple,
    )
    safety_on_error = forms.ChoiceField(
        choices=SafetyOnError.choices,
        required=False,
        label="When Llama Guard cannot be reached",
        widget=forms.RadioSelect,
    )

    retention_days = forms.IntegerField(
        min_value=1,
        max_value=MAX_RETENTION_DAYS,
        required=False,
        label="Delete conversations untouched for (days)",
        help_text="Conversations nobody wrote in for this many days are deleted, with their"
        " files, by the hourly purge. Pinned conversations are kept. Empty: keep forever.",
    )
    legal_hold = forms.BooleanField(
        required=False,
        label="Legal hold: delete nothing",
        help_text="While on, the purge deletes no conversation of the team. Owners only.",
    )

    # actions.policy_state as the page read it: a save over a change made meanwhile is refused.
    seen = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    data_patterns = forms.CharField(
        required=False,
        label="Your own patterns",
        help_text="One per line: a NAME (capitals), redact or block, then a regular expression."
        " For example: PROJECT redact \\bPRJ-\\d{4}\\b",
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args, own_server: bool, protocol: str, is_owner: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.own_server, self.protocol = own_server, protocol
        # One range, the provider's, in the page's limits and in the one message it refuses with.
        high = MAX_TEMPERATURE[protocol]
        temperature = self.fields["default_temperature"]
        temperature.validators.append(
            MaxValueValidator(high, f"This provider accepts 0 to {high:g}.")
        )
        temperature.widget.attrs["max"] = high
        site = SITE_DEFAULTS["temperature"]
        temperature.help_text = f"0 to {high:g} with this team's provider. Site default: {site}."
        # Admins see the hold but cannot change it: a disabled field keeps its stored value.
        self.fields["legal_hold"].disabled = not is_owner
        for name in DETECTORS:
            self.fields[f"data_{name}"] = forms.ChoiceField(
                choices=DataAction.choices,
                required=False,
                label=DATA_LABELS[name],
            )
        if own_server:
            self.fields["allowed_models"] = forms.CharField(
                required=False,
                widget=forms.Textarea(attrs={"rows": 4}),
                help_text="Model ids your server offers, one per line.",
            )
        else:
            self.fields["allowed_models"] = forms.MultipleChoiceField(
                choices=[(m, m) for m in site_models()],
                required=False,
                widget=forms.CheckboxSelectMultiple,
                help_text="None ticked: every model the site offers.",
            )
            self.fields["default_model"] = forms.ChoiceField(
                choices=[("", "The site's default")] + [(m, m) for m in site_models()],
                required=False,
            )
        self.order_fields(["allowed_models"])

    def clean_data_patterns(self) -> list[dict]:
        """Lines of "NAME action regex" as the policy stores them; each regex must compile."""
        lines = [line.strip() for line in self.cleaned_data["data_patterns"].splitlines()]
        lines = [line for line in lines if line]
        if len(lines) > MAX_PATTERNS:
            raise forms.ValidationError(f"At most {MAX_PATTERNS} patterns.")
        patterns = []
        for line in lines:
            name, _, rest = line.partition(" ")
            action, _, pattern = rest.strip().partition(" ")
            if not PATTERN_NAME.fullmatch(name) or action not in ("redact", "block"):
                raise forms.ValidationError(
                    f"{line[:40]!r}: write a NAME in capitals, redact or block, then the pattern."
                )
            if problem := pattern_problem(pattern.strip()):
                raise forms.ValidationError(f"{name}: {problem}.")
            patterns.append({"name": name, "pattern": pattern.strip(), "action": action})
        return patterns

    def clean_allowed_models(self) -> list[str]:
        value = self.cleaned_data["allowed_models"]
        # A model ticked twice (or named twice in the API) is allowed once.
        return _model_ids(value) if self.own_server else list(dict.fromkeys(value))

    def clean(self) -> dict:
        data = super().clean() or {}
        models = data.get("allowed_models") or site_models()
        model = data.get("default_model")
        if model and "allowed_models" in data and model not in models:
            self.add_error("default_model", "Pick a model the team is allowed to use.")
        # No default picked: new chats use the site's default if allowed, else the first.
        site_default = settings.LLAMA_DEFAULT_MODEL
        self._check_max_tokens(
            data, model or (site_default if site_default in models else models[0])
        )
        return data

    def _check_max_tokens(self, data: dict, model: str) -> None:
        default, limit = data.get("default_max_tokens"), data.get("max_tokens_limit")
        if default and limit and default > limit:
            self.add_error("default_max_tokens", "Keep the default at or under the largest.")
        model_limit = output_ceiling(model)
        if default and default > model_limit:
            self.add_error("default_max_tokens", f"{model} answers at most {model_limit} tokens.")

    def policy_values(self) -> dict:
        """The cleaned values as the policy stores them (no default model: "")."""
        data = {k: v for k, v in self.cleaned_data.items() if k != "seen"}
        return dict(
            data,
            default_model=data["default_model"] or "",
            safety_input=data["safety_input"] or SafetyMode.OFF,
            safety_output=data["safety_output"] or SafetyMode.OFF,
            safety_categories=[c for c in GUARD_CATEGORIES if c in data["safety_categories"]],
            safety_on_error=data["safety_on_error"] or SafetyOnError.FAIL_OPEN,
            **{f"data_{name}": data[f"data_{name}"] or DataAction.OFF for name in DETECTORS},
        )


def patterns_text(patterns: list) -> str:
    """The stored patterns as the policy page's text area shows them."""
    lines = []
    for p in patterns:
        if isinstance(p, dict):  # a value that is not an object was refused by the schema
            lines.append(f"{p.get('name', '')} {p.get('action', '')} {p.get('pattern', '')}")
    return "\n".join(lines)


def policy_form_options(team) -> dict:
    """PolicyForm's own_server and protocol: what the team's provider offers and accepts."""
    provider = team_provider(team)
    own_server = provider is not None and provider.uses_own_server
    protocol = provider.protocol if provider and own_server else settings.LLAMA_API_PROTOCOL
    return {"own_server": own_server, "protocol": protocol}


def clean_provider_url(value: str) -> str:
    """A team server URL: https (or http when private addresses are allowed), a public host."""
    url = value.strip().rstrip("/")
    if not url:
        return ""
    # urlsplit silently drops tabs and newlines, which would then break every request.
    if any(not c.isprintable() or c.isspace() for c in url):
        raise forms.ValidationError("The URL cannot contain spaces or control characters.")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, say
        parts = None
    schemes = ("https", "http") if network.private_allowed() else ("https",)
    if parts is None or parts.scheme not in schemes or not parts.hostname:
        raise forms.ValidationError("Enter an https:// URL, such as https://llm.example.com/v1.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise forms.ValidationError(
            "Enter the URL without a user name, password, query or fragment;"
            " put the key in the API key field."
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise forms.ValidationError("The port in this URL is not valid.") from None
    if problem := url_problem(url):  # as the client will read it
        raise forms.ValidationError(f"The URL {problem}.")
    if problem := network.check_url_host(parts.hostname, port):
        raise forms.ValidationError(problem)
    return url


def validate_provider_key(key: str) -> None:
    """A key goes in an HTTP header, which holds only printable ASCII."""
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise forms.ValidationError(
            "The key can hold only ASCII letters, digits and punctuation, without spaces:"
            " paste it exactly as the provider shows it."
        )


class ProviderForm(forms.Form):
    base_url = forms.CharField(
        max_length=500,
        required=False,
        label="Base URL",
        help_text="For example https://api.llama.com/v1 or https://llm.example.com/v1."
        " Empty: the site's server.",
    )
    protocol = forms.ChoiceField(choices=Protocol.choices)
    api_key = forms.CharField(
        max_length=500,
        required=False,
        strip=True,
        label="API key",
        validators=[validate_provider_key],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only: leave empty to keep the stored key.",
    )
    clear_key = forms.BooleanField(required=False, label="Remove the stored key")

    def clean_base_url(self) -> str:
        return clean_provider_url(self.cleaned_data["base_url"])
