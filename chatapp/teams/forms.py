from urllib.parse import urlsplit

from django import forms

from chatapp.llm import MODEL_MAX_OUTPUT
from chatapp.teams import network
from chatapp.teams.models import Protocol, Role, SystemPrompt
from chatapp.teams.policy import MAX_TEMPERATURE, MAX_TOKENS_CAP, SITE_DEFAULTS, site_models


class TeamForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)


class InviteForm(forms.Form):
    email = forms.EmailField(
        required=False,
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
    name = forms.CharField(max_length=100, strip=True)
    content = forms.CharField(max_length=20_000, widget=forms.Textarea(attrs={"rows": 8}))
    is_default = forms.BooleanField(required=False, label="Default for new chats")
    locked = forms.BooleanField(
        required=False,
        label="Locked",
        help_text="Members cannot replace or edit the system message of chats started from it.",
    )

    def __init__(self, *args, team, prompt: SystemPrompt | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.team, self.prompt = team, prompt

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        others = SystemPrompt.objects.filter(team=self.team, name=name)
        if self.prompt is not None:
            others = others.exclude(pk=self.prompt.pk)
        if others.exists():
            raise forms.ValidationError("A prompt with this name already exists in this team.")
        return name


def _model_ids(text: str) -> list[str]:
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    for model_id in ids:
        if len(model_id) > 200 or any(c.isspace() for c in model_id):
            raise forms.ValidationError(f"{model_id[:40]!r} is not a model id (one per line).")
    return list(dict.fromkeys(ids))


class PolicyForm(forms.Form):
    """The team's model policy; which models it lists depends on the team's provider."""

    default_model = forms.CharField(max_length=200, required=False)
    default_temperature = forms.FloatField(
        min_value=0,
        max_value=2,
        required=False,
        help_text="0 to 1 (to 2 with an OpenAI-compatible server)."
        f" Site default: {SITE_DEFAULTS['temperature']}.",
    )
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
    rate_limit_per_minute = forms.IntegerField(
        min_value=1,
        max_value=10_000,
        required=False,
        label="Messages per minute per person",
        help_text="Empty: no limit.",
    )

    def __init__(self, *args, own_server: bool, protocol: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.own_server, self.protocol = own_server, protocol
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

    def clean_allowed_models(self) -> list[str]:
        value = self.cleaned_data["allowed_models"]
        return _model_ids(value) if self.own_server else list(value)

    def clean(self) -> dict:
        data = super().clean()
        models = data.get("allowed_models") or site_models()
        model = data.get("default_model")
        if model and "allowed_models" in data and model not in models:
            self.add_error("default_model", "Pick a model the team is allowed to use.")
        high = MAX_TEMPERATURE[self.protocol]
        temperature = data.get("default_temperature")
        if temperature is not None and temperature > high:
            self.add_error("default_temperature", f"This provider accepts 0 to {high:g}.")
        self._check_max_tokens(data, model)
        return data

    def _check_max_tokens(self, data: dict, model: str | None) -> None:
        default, limit = data.get("default_max_tokens"), data.get("max_tokens_limit")
        if default and limit and default > limit:
            self.add_error("default_max_tokens", "Keep the default at or under the largest.")
        model_limit = MODEL_MAX_OUTPUT.get(model or "")
        if default and model_limit and default > model_limit:
            self.add_error("default_max_tokens", f"{model} answers at most {model_limit} tokens.")


def clean_provider_url(value: str) -> str:
    """A team server URL: https (or http when private addresses are allowed), a public host."""
    url = value.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    schemes = ("https", "http") if network.private_allowed() else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
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
    if problem := network.check_url_host(parts.hostname, port):
        raise forms.ValidationError(problem)
    return url


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
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only: leave empty to keep the stored key.",
    )
    clear_key = forms.BooleanField(required=False, label="Remove the stored key")

    def clean_base_url(self) -> str:
        return clean_provider_url(self.cleaned_data["base_url"])

    def clean_api_key(self) -> str:
        key = self.cleaned_data["api_key"]
        if any(c.isspace() for c in key) or not key.isprintable():
            raise forms.ValidationError("The key cannot contain spaces or control characters.")
        return key
