"""The first account is told it administers the site; only site admins see the admin link."""

import pytest

from chatapp.accounts.signup import FIRST_ACCOUNT_NOTICE
from tests.conftest import PASSWORD

GOOD = {"username": "ada", "email": "ada@example.com", "password1": PASSWORD, "password2": PASSWORD}
ADMIN_LINK = b'<a href="/admin/">Site admin</a>'
NOTICE = FIRST_ACCOUNT_NOTICE.replace("'", "&#x27;").encode()


@pytest.fixture(autouse=True)
def open_signup(settings):
    settings.SIGNUP_POLICY = "open"


def test_the_first_account_is_told_it_is_the_site_admin(client, db):
    response = client.post("/accounts/signup/", GOOD, follow=True)
    assert response.status_code == 200
    assert NOTICE in response.content
    assert ADMIN_LINK in response.content
    assert NOTICE not in client.get("/").content  # said once


def test_later_accounts_are_not_told_so_and_get_no_admin_link(client, site_admin):
    response = client.post(
        "/accounts/signup/", dict(GOOD, username="bob", email="bob@example.com"), follow=True
    )
    assert response.status_code == 200
    assert NOTICE not in response.content
    assert ADMIN_LINK not in response.content


@pytest.mark.parametrize("path", ["/", "/settings/", "/teams/"])
def test_site_admins_see_the_admin_link_on_every_page(client, site_admin, path):
    client.force_login(site_admin)
    assert ADMIN_LINK in client.get(path).content


@pytest.mark.parametrize("path", ["/", "/settings/", "/teams/"])
def test_members_never_see_the_admin_link(member_client, path):
    assert ADMIN_LINK not in member_client.get(path).content


def test_a_staff_user_who_is_not_a_superuser_gets_no_admin_link(client, make_user, site_admin):
    staff = make_user("stan", is_staff=True)
    client.force_login(staff)
    assert ADMIN_LINK not in client.get("/settings/").content
