"""`manage.py check --deploy` findings of our own, beside Django's security checks."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

# As Django's security.W009 asks of SECRET_KEY, scaled to what HKDF needs of a secret.
FIELD_KEY_MIN_LENGTH = 32
FIELD_KEY_MIN_UNIQUE = 5


@register(Tags.security, deploy=True)
def field_encryption_key_strength(app_configs, **kwargs) -> list[Warning]:
    """A short or repetitive FIELD_ENCRYPTION_KEY is guessable, and with it every team's
    provider key in a copy of the database. It still works: refusing it at start-up would also
    stop `reencrypt_secrets`, which moves the stored secrets off it."""
    key = settings.FIELD_ENCRYPTION_KEY
    if not key or (len(key) >= FIELD_KEY_MIN_LENGTH and len(set(key)) >= FIELD_KEY_MIN_UNIQUE):
        return []
    return [
        Warning(
            f"FIELD_ENCRYPTION_KEY has {len(key)} characters ({len(set(key))} different): it is"
            " easy to guess, and with it the team provider keys stored in the database.",
            hint=(
                f"Use at least {FIELD_KEY_MIN_LENGTH} random characters (`openssl rand -base64"
                " 32`), then move the stored secrets to it with `manage.py reencrypt_secrets`"
                " (docs/operations.md, Rotating SECRET_KEY)."
            ),
            id="chatapp.W001",
        )
    ]


@register(Tags.security, deploy=True)
def site_url_for_mail(app_configs, **kwargs) -> list[Warning]:
    """Mailed links (password resets above all) would otherwise take the host of whoever asked
    for the mail, from any name ALLOWED_HOSTS admits."""
    if not settings.EMAIL_URL or settings.SITE_URL:
        return []
    return [
        Warning(
            "EMAIL_URL is set without SITE_URL: links in mails (password resets, invitations)"
            " start with the Host header of the request that sent them.",
            hint="Set SITE_URL to the address people open, such as https://chat.example.com.",
            id="chatapp.W002",
        )
    ]
