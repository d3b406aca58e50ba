from django import forms

from chatapp.tools.models import DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT

TOKEN_WIDGET = forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"})


class ServerForm(forms.Form):
    """A tool server's settings; the URL and name rules are the actions' (chatapp.tools.actions)."""

    name = forms.CharField(max_length=40, help_text="For example helpdesk or weather.")
    url = forms.CharField(
        max_length=500,
        label="URL",
        help_text="The server's Streamable HTTP endpoint, such as https://tools.example.com/mcp.",
    )
    token = forms.CharField(
        max_length=2000,
        required=False,
        strip=True,
        label="Bearer token",
        widget=TOKEN_WIDGET,
        help_text="Optional, at least 8 characters; write-only: it is never shown again.",
    )
    timeout = forms.IntegerField(
        min_value=MIN_TIMEOUT,
        max_value=MAX_TIMEOUT,
        initial=DEFAULT_TIMEOUT,
        label="Timeout (seconds)",
        help_text="How long one tool call may take.",
    )


class ServerChangeForm(ServerForm):
    clear_token = forms.BooleanField(required=False, label="Remove the stored token")
    # The server's state() as the page read it (chatapp.tools.actions.change_server).
    seen = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["token"].help_text = "Write-only: leave empty to keep the stored token."

    def changes(self) -> dict:
        """change_server's arguments: token None keeps the stored one, "" removes it."""
        data = self.cleaned_data
        token = data["token"] or ("" if data["clear_token"] else None)
        return {
            "name": data["name"],
            "url": data["url"],
            "token": token,
            "timeout": data["timeout"],
            "seen": data["seen"],
        }
