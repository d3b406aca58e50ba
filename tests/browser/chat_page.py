"""Driving the chat page from browser tests: sign in, send, watch answers (a page object)."""

import json
from dataclasses import dataclass

from tests.support.polling import wait_for

PASSWORD = "browser-test-password-42"


@dataclass(frozen=True)
class BrowserUser:
    username: str
    password: str = PASSWORD


def log_in(page, user: BrowserUser) -> None:
    """Sign in through the login form and wait for the chat page's websocket to open."""
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")
    page.wait_for_selector("html[data-socket=open]")


def hold_requests(page, pattern: str) -> list:
    """Hold back the page's requests matching `pattern`: each route joins the list, and goes
    on when the test chooses (`route.continue_()`, or `fulfill`)."""
    held: list = []
    page.route(pattern, lambda route: held.append(route))
    return held


def wait_until_held(page, held: list, what: str) -> None:
    """Wait until a request is held. Route handlers run only while Playwright is given the
    page's events, so the wait hands them over between looks."""
    wait_for(lambda: held or page.wait_for_timeout(50), what)


def reload_holding(page, pattern: str) -> list:
    """Reload the page with the requests matching `pattern` held back, once the first has
    been made."""
    held = hold_requests(page, pattern)
    page.reload()
    page.wait_for_selector("html[data-socket=open]")
    wait_until_held(page, held, f"a request for {pattern}")
    return held


def json_from(output: str):
    """The last line a app_server.run_python snippet printed, parsed as JSON."""
    return json.loads(output.strip().splitlines()[-1])


class ChatPage:
    """The chat page's parts, by role and label where the page offers them."""

    def __init__(self, page):
        self.page = page
        self.input = page.get_by_label("Message", exact=True)
        self.send_button = page.get_by_role("button", name="Send message")
        self.stop_button = page.get_by_role("button", name="Stop generating")
        self.answers = page.locator(".message-assistant")
        self.questions = page.locator(".message-user")
        self.sidebar_items = page.locator(".conversation-item")

    def send(self, text: str) -> None:
        """Type a message and press Enter (the keyboard path users take), once the page is
        connected: sent before that, the page keeps the text and says it was not sent."""
        self.page.wait_for_selector("html[data-socket=open]", state="attached")
        self.input.fill(text)
        self.input.press("Enter")

    def last_answer(self):
        return self.answers.last

    def drop_the_connection_at_the_next_send(self, delivered: bool = False) -> None:
        """The network drops as the next question leaves: its frame is lost, or (delivered)
        gets through just before the socket closes."""
        self.page.evaluate(
            """(delivered) => {
                const socket = window.chatPage.socket;
                const send = socket.send.bind(socket);
                socket.send = (frame) => {
                    if (frame.type !== "chat.send") return send(frame);
                    socket.send = send;
                    const sent = delivered && send(frame);
                    socket.ws.close();
                    return delivered ? sent : true;
                };
            }""",
            delivered,
        )

    def wait_for_status(self, status: str, answer=None) -> None:
        """Wait until the answer (default: the last) has this status (complete, stopped...)."""
        (answer or self.last_answer()).and_(self.page.locator(f"[data-status={status}]")).wait_for()

    def wait_for_text_longer_than(self, length: int) -> int:
        """Wait until the last answer's raw text is longer than `length`; return its length."""
        handle = self.page.wait_for_function(
            """(length) => {
                const answers = window.chatPage.state.messages.filter(m => m.role === 'assistant');
                const last = answers[answers.length - 1];
                return last && last.content.length > length ? last.content.length : false;
            }""",
            arg=length,
        )
        return handle.json_value()

    def answer_content(self, answer=None) -> str:
        """The raw markdown the page holds for an answer (what the server streamed)."""
        element = (answer or self.last_answer()).element_handle()
        return self.page.evaluate(
            """(el) => {
                const page = window.chatPage;
                return page.state.messages.find((m) => page.messages.elementOf(m) === el).content;
            }""",
            element,
        )

    def conversation_id(self) -> int:
        return self.page.evaluate("window.chatPage.conversationId")

    def record_frames(self) -> None:
        """From now on, note the type of every frame the page's socket receives."""
        self.page.evaluate(
            """() => {
                window.framesSeen = [];
                window.chatPage.socket.addEventListener(
                    "frame", (event) => window.framesSeen.push(event.detail.type));
            }"""
        )

    def frames_seen(self) -> list[str]:
        """The types of the frames received since record_frames()."""
        return self.page.evaluate("window.framesSeen")

    def api(self, path: str):
        """GET a JSON API path with the page's session."""
        return self.page.evaluate(
            "async (path) => (await fetch(path, {headers: {Accept: 'application/json'}})).json()",
            path,
        )
