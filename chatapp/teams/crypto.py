"""Team provider keys encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The key is derived with HKDF from FIELD_ENCRYPTION_KEY when set, else from SECRET_KEY.
Decryption also tries the other secrets (and SECRET_KEY_FALLBACKS), so setting
FIELD_ENCRYPTION_KEY later, or rotating SECRET_KEY with a fallback, keeps stored keys readable;
`manage.py reencrypt_secrets` then encrypts them all with the current one.
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

HKDF_INFO = b"llama-team-chat team provider keys"


class KeyUnreadable(Exception):
    """The stored key was encrypted with a secret this server no longer has."""


@functools.lru_cache(maxsize=8)
def _fernet(secret: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _secrets() -> list[str]:
    candidates = [
        settings.FIELD_ENCRYPTION_KEY,
        settings.SECRET_KEY,
        *getattr(settings, "SECRET_KEY_FALLBACKS", []),
    ]
    return list(dict.fromkeys(secret for secret in candidates if secret))


def _keys() -> MultiFernet:
    return MultiFernet([_fernet(secret) for secret in _secrets()])


def encrypt(plain: str) -> str:
    return _keys().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken:
        raise KeyUnreadable(
            "The team's provider key can no longer be read (the server's secret changed):"
            " a team owner must enter it again."
        ) from None


def reencrypt(token: str) -> str:
    """The same secret, encrypted with the current key (the first of `_secrets`)."""
    try:
        return _keys().rotate(token.encode()).decode()
    except InvalidToken:
        raise KeyUnreadable("encrypted with a secret this server no longer has") from None
