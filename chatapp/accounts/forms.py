import secrets

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.forms.utils import ErrorDict

from chatapp.accounts import keys
from chatapp.accounts.signup import signup_refusal
from chatapp.accounts.usernames import lookalike_refusal
from chatapp.core.text import NameField, validate_one_line
from chatapp.teams import policy


class NewUsernameMixin:
    """A new account's name may not pass for another's (chatapp.accounts.usernames)."""

    def clean_username(self):
        username = super().clean_username()  # None when another account has it
        refusal = lookalike_refusal(username) if username else ""
        if refusal:
            raise forms.ValidationError(refusal)
        return username


class SignupForm(NewUsernameMixin, UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional; used for team invitations.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, invitation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.invitation = invitation
        self.refused = False  # the signup policy, not the input, said no

    def clean_email(self):
        email = self.cleaned_data.get("email", "").strip().lower()
        if email and get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email already exists.")
        return email

    def full_clean(self):
        """The signup policy first: a signup it refuses is told that alone, never which names
        or addresses other accounts hold (nor is the password reset page). Under the domain
        policy an address is judged by its domain as typed; the fields check the rest."""
        typed = str(self.data.get("email", "")).strip()
        refusal = signup_refusal(typed, self.invitation) if self.is_bound else None
        if not refusal:
            super().full_clean()
            return
        self._errors, self.cleaned_data = ErrorDict(), {}
        self.refused = True
        self.add_error(None, refusal)


class ConfirmSignupForm(forms.Form):
    """The password a signup chose, typed where its confirmation link is opened in a browser
    that did not sign up: whoever only reads the mail cannot activate an account someone else
    holds the password of."""

    password = forms.CharField(
        label="Password",
        max_length=4096,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        typed = self.cleaned_data["password"]
        if not self.user.check_password(typed):
            raise forms.ValidationError(
                f"That is not the password {self.user.get_username()} was signed up with:"
                " nothing was confirmed."
            )
        return typed


class ChatSettingsForm(forms.Form):
    """The user's own defaults; a blank field falls back to the team's (then the site's)."""

    model = forms.ChoiceField(required=False)
    temperature = forms.FloatField(
        required=False, widget=forms.NumberInput(attrs={"step": "0.05", "inputmode": "decimal"})
    )
    max_tokens = forms.IntegerField(
        required=False, label="Max tokens", widget=forms.NumberInput(attrs={"step": "1"})
    )
    top_p = forms.FloatField(
        required=False,
        label="Top p",
        widget=forms.NumberInput(attrs={"step": "0.05", "inputmode": "decimal"}),
    )

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        rules = policy.team_rules(team)
        self.models = rules.models
        # What a blank field means: the team's default, else the site's, under its limits.
        self.fallback = policy.resolve_settings(team, {}, rules=rules)
        limits = rules.limits
        choices = [
            ("", f"Team default ({self.fallback['model']})"),
            *[(name, name) for name in self.models],
        ]
        saved = self.initial.get("model")
        if saved and saved not in self.models:
            # Shown rather than hidden behind the first choice, which a save would store;
            # clean() refuses it, so it goes only when the member picks another.
            label = f"{saved} (not offered in this team: {self.fallback['model']} is used)"
            choices.append((saved, label))
        self.fields["model"].choices = choices
        max_tokens = limits.max_tokens_for(self.fallback["model"])
        help_texts = {
            "model": "Only the models your team allows are listed.",
            "temperature": f"Randomness, from 0 (focused) to {limits.temperature:g} (creative).",
            "max_tokens": f"The longest answer, in tokens: 1 to {max_tokens} in this team.",
            "top_p": "Nucleus sampling, from 0 to 1.",
        }
        for name, text in help_texts.items():
            self.fields[name].help_text = text
            if name != "model":
                self.fields[name].widget.attrs["placeholder"] = f"Default: {self.fallback[name]}"
        if not self.is_bound:
            self._note_unused(rules)

    def _note_unused(self, rules: policy.TeamRules) -> None:
        """A saved value the team does not allow (its policy changed since, or it was saved in
        another team) stays shown as saved, saying what is used instead."""
        saved = {k: v for k, v in self.initial.items() if k in policy.SETTING_NAMES}
        saved = {k: v for k, v in saved.items() if v not in (None, "")}
        used = policy.resolve_settings(self.team, saved, rules=rules)
        for name in ("temperature", "max_tokens", "top_p"):
            value = saved.get(name)
            if value is not None and value != used[name]:
                note = f"Your saved {value} is not allowed in this team: {used[name]} is used."
                self.fields[name].help_text += " " + note

    def clean(self):
        cleaned = super().clean()
        chosen = self.chosen()
        model = chosen.get("model", self.fallback["model"])
        # Each value is checked on its own against the team's policy, so every bad field is named.
        for name, value in chosen.items():
            values = {name: value}
            if name == "max_tokens" and model in self.models:
                values["model"] = model  # the ceiling depends on the model
            try:
                policy.validate_settings(self.team, values)
            except policy.PolicyError as exc:
                self.add_error(name, exc.message)
        return cleaned

    def chosen(self) -> dict:
        """The fields the user filled in."""
        data = getattr(self, "cleaned_data", {})
        return {k: v for k, v in data.items() if k in policy.SETTING_NAMES and v not in (None, "")}

    def stored_values(self) -> dict:
        """Every setting, blank ones as empty/None, in the shape UserSettings stores."""
        chosen = self.chosen()
        return {
            "model": chosen.get("model", ""),
            **{name: chosen.get(name) for name in ("temperature", "max_tokens", "top_p")},
        }


class ApiKeyForm(forms.Form):
    """A new personal API key: a name and, optionally, the last day it works."""

    name = NameField(
        max_length=100,
        validators=[validate_one_line],
        help_text="What the key is for, such as the script that will use it.",
        widget=forms.TextInput(attrs={"dir": "auto"}),
    )
    expires = forms.DateField(
        required=False,
        label="Works until",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional: the last day the key works (to its end, UTC). Empty: never expires.",
    )
    # Names this rendering of the form, so that sending it again (a reload of the page that
    # shows the new key) is told apart from asking for a second key.
    once = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, prefix="key", **kwargs)
        self.user = user
        if not self.is_bound:
            self.initial["once"] = secrets.token_urlsafe(16)

    def clean_expires(self):
        day = self.cleaned_data.get("expires")
        try:
            return keys.parse_expiry(day.isoformat() if day else None)
        except keys.KeyProblem as problem:
            raise forms.ValidationError(str(problem)) from None

    def clean(self):
        cleaned = super().clean()
        try:
            keys.check_room(self.user)
        except keys.KeyProblem as problem:
            raise forms.ValidationError(str(problem)) from None
        return cleaned


class DeleteAccountForm(forms.Form):
    """The person confirms deleting their account with their password, or, where no password
    of theirs signs anyone in (single sign-on, passwords off, none set), their username."""

    confirmation = forms.CharField(max_length=4096, strip=False)

    def __init__(self, *args, user, by_password: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.user, self.by_password = user, by_password
        field = self.fields["confirmation"]
        if by_password:
            field.label, field.widget = "Your password", forms.PasswordInput()
            field.widget.attrs["autocomplete"] = "current-password"
        else:
            field.label = "Your username"
            field.widget.attrs.update(autocomplete="off", spellcheck="false")

    def clean_confirmation(self):
        typed = self.cleaned_data["confirmation"]
        if self.by_password:
            if not self.user.check_password(typed):
                raise forms.ValidationError(
                    "That is not your password: nothing was deleted.", code="wrong_password"
                )
        elif typed.strip() != self.user.get_username():
            raise forms.ValidationError(
                f"Type your username, {self.user.get_username()}, exactly: nothing was deleted."
            )
        return typed
