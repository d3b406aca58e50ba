"""The sign-in form for screen readers: a refused log in is said on the fields it concerns."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_a_refused_log_in_marks_both_fields_and_they_say_why(page, user):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    why = re.compile("Please enter a correct username and password")
    for name in ("Username", "Password"):
        field = page.get_by_label(name)
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(field).to_have_accessible_description(why)
    # The keyboard is back in the first field, whose description a screen reader reads.
    expect(page.get_by_label("Username")).to_be_focused()
    expect(page.get_by_label("Username")).to_have_value(user.username)
