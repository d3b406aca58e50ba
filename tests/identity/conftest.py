import uuid

import pytest

from chatapp.identity import oidc
from tests.identity.provider_process import CLIENT_ID, CLIENT_SECRET, run_provider

OIDC_BACKEND = "chatapp.identity.backends.OIDCBackend"
GROUP_MAP = (
    "engineering=Engineering:member,eng-leads=Engineering:admin,eng-owners=Engineering:owner,"
    "design=Design:member"
)


@pytest.fixture(scope="session")
def provider(tmp_path_factory):
    with run_provider(tmp_path_factory.mktemp("oidc_provider")) as running:
        yield running


def sso_settings(settings, issuer: str) -> None:
    settings.OIDC_ISSUER_URL = issuer
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_BUTTON_LABEL = "Sign in with Acme SSO"
    settings.OIDC_GROUP_MAP = GROUP_MAP
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, OIDC_BACKEND]
    oidc._cache.clear()


@pytest.fixture
def sso(settings, provider, db):
    """The app configured to sign in through the test provider."""
    sso_settings(settings, provider.issuer)
    return provider


@pytest.fixture
def person(sso):
    """A new person at the provider (unique name), with a verified e-mail and no groups."""

    def make(**claims) -> str:
        username = f"p{uuid.uuid4().hex[:8]}"
        defaults = {"email": f"{username}@corp.example", "email_verified": True, "groups": []}
        sso.add_person(username, **{**defaults, **claims})
        return username

    return make
