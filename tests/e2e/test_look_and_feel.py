"""Using the chat without a mouse, in the dark theme, and on a phone."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage, log_in
from tests.browser.conftest import PHONE
from tests.e2e.journeys import (
    assert_clean,
    expect_socket_open,
    new_context,
    tab_to,
    watched_page,
)

pytestmark = pytest.mark.browser

# Text on the chat page whose contrast with what is behind it must pass WCAG AA (4.5:1).
READABLE = {
    "answer text": ".message-assistant .markdown p",
    "answer list": ".message-assistant .markdown li",
    "question": ".message-user .bubble",
    "code": ".code-block code",
    "code language": ".code-language",
    "answer details": ".message-meta",
    "title": "#conversation-title",
    "conversation in the list": ".conversation-link",
    "message box": "#composer-input",
    "hint under the box": "#composer-hint",
    "sidebar links": ".sidebar-links a",
}

# Every kind of token the highlighter colours; samples of each are added to a rendered block.
TOKENS = ["keyword", "title", "attr", "string", "built_in", "comment", "name", "bullet"]
TOKENS += ["section", "addition", "deletion"]
READABLE |= {f"code {token}": f".code-block [data-sample={token}]" for token in TOKENS}

CONTRAST = """(selector) => {
    const parse = (css) => {
        const parts = css.match(/[\\d.]+/g).map(Number);
        return {r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1};
    };
    const over = (top, bottom) => ({
        r: top.r * top.a + bottom.r * (1 - top.a),
        g: top.g * top.a + bottom.g * (1 - top.a),
        b: top.b * top.a + bottom.b * (1 - top.a),
        a: 1,
    });
    // What is painted behind an element: its ancestors' backgrounds, composited.
    const behind = (element) => {
        const layers = [];
        for (let e = element; e; e = e.parentElement) {
            const colour = parse(getComputedStyle(e).backgroundColor);
            if (colour.a > 0) layers.push(colour);
            if (colour.a === 1) break;
        }
        return layers.reverse().reduce((base, layer) => over(layer, base),
                                       {r: 255, g: 255, b: 255, a: 1});
    };
    const luminance = ({r, g, b}) => {
        const linear = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
    };
    const element = document.querySelector(selector);
    if (!element) return null;
    const background = behind(element);
    const text = over(parse(getComputedStyle(element).color), background);
    const [light, dark] = [luminance(text), luminance(background)].sort((x, y) => y - x);
    return {ratio: (light + 0.05) / (dark + 0.05), background: luminance(background)};
}"""


def add_token_samples(page) -> None:
    page.evaluate(
        """(tokens) => {
            const code = document.querySelector('.code-block code');
            for (const token of tokens) {
                const sample = document.createElement('span');
                sample.className = `hljs-${token}`;
                sample.dataset.sample = token;
                sample.textContent = ` ${token} `;
                code.append(sample);
            }
        }""",
        TOKENS,
    )


def contrast_report(page) -> dict[str, dict]:
    return {name: page.evaluate(CONTRAST, selector) for name, selector in READABLE.items()}


def overflows_horizontally(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )


def focus_is_visible(page) -> bool:
    """The focused element draws a focus ring (an outline or a box-shadow)."""
    return page.evaluate(
        """() => {
            const style = getComputedStyle(document.activeElement);
            const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
            return outline || style.boxShadow !== 'none';
        }"""
    )


def test_keyboard_only_from_login_to_answers(page, user, sim):
    page.goto("/accounts/login/")
    page.keyboard.type(user.username)  # the username field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(user.password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/")
    expect_socket_open(page)
    chat = ChatPage(page)
    expect(chat.input).to_be_focused()
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Enter")
    chat.wait_for_status("complete")
    first_url = page.url

    # Back to the sidebar for a new chat, then to the first conversation again.
    tab_to(page, page.get_by_role("button", name="New chat"), key="Shift+Tab")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/$"))
    expect(chat.input).to_be_focused()
    page.keyboard.type("A second question")
    page.keyboard.press("Enter")
    chat.wait_for_status("complete")
    expect(page.locator(".conversation-link")).to_have_count(2)
    tab_to(page, page.get_by_role("link", name="Typed without a mouse"), key="Shift+Tab")
    assert focus_is_visible(page)
    page.keyboard.press("Enter")
    page.wait_for_url(first_url)
    expect(chat.questions).to_have_text(["Typed without a mouse"])

    # The answer's own buttons and the theme toggle are reachable too.
    tab_to(page, chat.last_answer().get_by_role("button", name="Regenerate"))
    assert focus_is_visible(page)
    tab_to(page, page.get_by_role("button", name="Dark theme"))
    assert focus_is_visible(page)
    page.keyboard.press("Space")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")


def test_dark_theme_keeps_every_text_readable(logged_in_page):
    page = logged_in_page
    chat = ChatPage(page)
    chat.send("Show me **code** in the dark")
    chat.wait_for_status("complete")
    add_token_samples(page)
    light = contrast_report(page)
    page.get_by_role("button", name="Dark theme").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = contrast_report(page)
    for name in READABLE:
        assert light[name]["background"] > 0.5, f"{name}: the light theme is light"
        assert dark[name]["background"] < 0.1, f"{name}: the dark theme is dark"
    too_faint = {
        f"{theme}: {name}": round(report[name]["ratio"], 2)
        for theme, report in [("light", light), ("dark", dark)]
        for name in READABLE
        if report[name]["ratio"] < 4.5
    }
    assert too_faint == {}


def test_phone_width_chat_with_the_drawer(browser, app_server, user, sim):
    context = new_context(browser, app_server.url, viewport=PHONE, has_touch=True)
    try:
        page, watch = watched_page(context, app_server.url)
        log_in(page, user)
        chat = ChatPage(page)
        sidebar = page.get_by_role("complementary", name="Conversations")
        expect(sidebar).to_be_hidden()
        chat.send("A question from the bus, with a long code line please")
        chat.wait_for_status("complete")
        assert not overflows_horizontally(page)  # wide code scrolls inside its block
        expect(chat.input).to_be_in_viewport()

        # From the drawer: a new chat, then back to the first conversation.
        opener = page.get_by_role("button", name="Open conversations")
        opener.tap()
        expect(sidebar).to_be_in_viewport()
        page.get_by_role("button", name="New chat").tap()
        expect(sidebar).to_be_hidden()
        chat.send("Second question on the phone")
        chat.wait_for_status("complete")
        opener.tap()
        first = sidebar.get_by_role("link", name="A question from the bus")
        expect(sidebar.locator(".conversation-link")).to_have_count(2)
        first.tap()
        expect(sidebar).to_be_hidden()
        expect(chat.questions).to_have_text(
            ["A question from the bus, with a long code line please"]
        )

        # The other pages fit the phone too.
        for path in ["/settings/", "/teams/"]:
            page.goto(path)
            assert not overflows_horizontally(page), path
        assert_clean(watch)
    finally:
        context.close()
