"""Chromium signs in through the real test OpenID Connect provider and signs out again."""

import os
import uuid
from contextlib import contextmanager

import pytest

from tests.browser.conftest import DESKTOP, SIMULATOR, WAIT_MS, serve_app
from tests.identity.provider_process import CLIENT_ID, CLIENT_SECRET, PASSWORD, run_provider

pytestmark = pytest.mark.browser

GROUP_MAP = "engineering=Engineering:member"


@contextmanager
def environment(**values):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    with run_provider(tmp_path_factory.mktemp("browser_oidc_provider")) as running:
        yield running


@pytest.fixture(scope="module")
def sso_server(provider, simulators, tmp_path_factory):
    """A live app that signs in through the provider (local passwords still on)."""
    sso = {
        "OIDC_ISSUER_URL": provider.issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_SCOPES": "openid email profile groups",
        "OIDC_BUTTON_LABEL": "Sign in with Acme SSO",
        "OIDC_GROUP_MAP": GROUP_MAP,
    }
    with (
        environment(**sso),
        serve_app(simulators.get(SIMULATOR), tmp_path_factory.mktemp("sso_app")) as server,
    ):
        provider.allow_redirects_to(server.url)
        yield server


@pytest.fixture
def sso_page(browser, sso_server):
    context = browser.new_context(base_url=sso_server.url, viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS)
    yield context.new_page()
    context.close()


def test_chromium_signs_in_through_the_provider_and_out_again(sso_page, sso_server, provider):
    page = sso_page
    name = f"b{uuid.uuid4().hex[:8]}"
    provider.add_person(
        name, email=f"{name}@corp.example", email_verified=True, groups=["engineering"]
    )
    page.goto("/settings/")
    page.wait_for_url("**/accounts/login/?next=/settings/")
    page.get_by_role("link", name="Sign in with Acme SSO").click()

    page.wait_for_url(f"{provider.origin}/login/**")
    page.get_by_label("Provider username").fill(name)
    page.get_by_label("Provider password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()

    page.wait_for_url(f"{sso_server.url}/settings/")
    assert page.locator(".username").first.inner_text() == name
    teams = sso_server.run_python(
        "from chatapp.teams.models import Membership\n"
        f"print(list(Membership.objects.filter(user__username={name!r})"
        ".values_list('team__name', 'role')))"
    )
    assert teams.strip() == "[('Engineering', 'member')]"

    page.get_by_role("button", name="Log out").click()
    page.wait_for_selector("h1:has-text('Signed out')")
    provider_link = page.get_by_role("link", name="Sign out of the identity provider too")
    assert provider_link.get_attribute("href").startswith(f"{provider.issuer}/logout/?")

    # The provider's end-session page ends its session there and sends the browser back.
    provider_link.click()
    page.get_by_role("button", name="Logout").click()
    page.wait_for_url(f"{sso_server.url}/accounts/login/")
    page.goto("/settings/")
    page.wait_for_url("**/accounts/login/?next=/settings/")
    page.get_by_role("link", name="Sign in with Acme SSO").click()
    page.wait_for_url(f"{provider.origin}/login/**")  # asked for the password again
