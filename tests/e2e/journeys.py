"""Steps the journeys share: signing up, watching a page, reaching things with the keyboard."""

from dataclasses import dataclass, field

from tests.browser.chat_page import PASSWORD
from tests.browser.conftest import DESKTOP, WAIT_MS, PageWatch


def sign_up(page, username: str, email: str = "", password: str = PASSWORD) -> None:
    """Fill the signup form the page shows (wherever it came from) and submit it."""
    page.get_by_label("Username").fill(username)
    if email:
        page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Password confirmation").fill(password)
    page.get_by_role("button", name="Sign up").click()


def new_context(browser, origin: str, **options):
    """A browser context on `origin` (desktop size unless told) with the suite's wait bound."""
    context = browser.new_context(base_url=origin, **{"viewport": DESKTOP, **options})
    context.set_default_timeout(WAIT_MS)
    return context


@dataclass
class JourneyWatch(PageWatch):
    """PageWatch, plus the responses that failed (so a console 404 names its URL)."""

    failed_responses: list[str] = field(default_factory=list)

    def on_console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def on_response(self, response) -> None:
        if response.status >= 400:
            self.failed_responses.append(f"{response.status} {response.url}")


def watched_page(context, origin: str) -> tuple:
    """A new page whose errors, failed responses and off-site requests are recorded."""
    watch = JourneyWatch(origin=origin)
    page = context.new_page()
    page.on("console", watch.on_console)
    page.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    page.on("request", watch.on_request)
    page.on("response", watch.on_response)
    return page, watch


def assert_clean(watch: JourneyWatch) -> None:
    assert (watch.console_errors, watch.failed_responses) == ([], [])
    assert watch.page_errors == []
    assert watch.offsite_requests == []


def tab_to(page, target, *, limit: int = 60, key: str = "Tab") -> None:
    """Press Tab (or `key`) until `target` holds the focus, as a keyboard-only user would."""
    handle = target.element_handle()
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate("(el) => document.activeElement === el", handle):
            return
    raise AssertionError(f"{limit} presses of {key} never reached {target}")


def expect_socket_open(page) -> None:
    page.wait_for_selector("html[data-socket=open]")
