"""After signing out, the browser's Back button shows none of the signed-in pages again: they
were never kept (Cache-Control: no-store), so going back asks the server, which sends the
sign-in page."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("path", ["/settings/", "/teams/"])
def test_back_after_signing_out_shows_the_sign_in_page_not_the_account(logged_in_page, user, path):
    page = logged_in_page
    page.goto(path)
    expect(page.locator(".username")).to_have_text(user.username)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    page.go_back()
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    expect(page.get_by_label("Username")).to_be_visible()
    expect(page.get_by_text(user.username)).to_have_count(0)
