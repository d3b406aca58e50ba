"""Stored text full of XSS payloads, rendered by real Chromium: nothing runs, nothing loads.

tests/browser/test_chat_render.py streams payloads through the simulator (one line each, as
it restates the question); here the payloads are whole multi-line markdown documents stored as
model output, plus a user message, a conversation title, a system prompt, a model name and an
upstream error message, all shown by the chat page from a real daphne serving the app.
"""

import json
import uuid

import pytest

from tests.browser import conftest as browser_fixtures
from tests.chat import conftest as chat
from tests.databases import create_database
from tests.resilience.servers import (
    Daphne,
    manage,
    open_chat_page,
    server_env,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser, chromium_path = browser_fixtures.browser, browser_fixtures.chromium_path

TRAP = "http://127.0.0.2:9"  # a loopback address nothing listens on: any request is recorded
MODEL_OUTPUT = f"""# Heading <img src="{TRAP}/h.png" onerror="window.pwned='heading'">

<script>window.pwned='script'</script>

<div onmouseover="window.pwned='div'" style="position:fixed;inset:0">raw html block</div>

<svg><script>window.pwned='svg'</script><image href="{TRAP}/svg.png"/></svg>

<math><mtext><table><mglyph><style><img src=x onerror="window.pwned='math'">

[js](javascript:window.pwned='link') [JS](JaVaScRiPt:window.pwned='case')
[entity](&#106;avascript:window.pwned='entity') [vb](vbscript:msgbox(1))
[html](data:text/html;base64,PHNjcmlwdD5wYXJlbnQucHduZWQ9J2RhdGEnPC9zY3JpcHQ+)
<javascript:window.pwned='autolink'> [reference][r]

[r]: javascript:window.pwned='reference'

![remote]({TRAP}/remote.png) ![inline](data:image/svg+xml,<svg onload=alert(1)>)

<iframe src="{TRAP}/frame"></iframe><object data="{TRAP}/o"></object><embed src="{TRAP}/e">
<form action="{TRAP}/f"><button formaction="{TRAP}/b">go</button></form>
<a href="{TRAP}/x" onclick="window.pwned='anchor'">anchor</a>
<style>@import url({TRAP}/s.css); body {{ background: url({TRAP}/bg.png) }}</style>
<link rel="stylesheet" href="{TRAP}/l.css"><meta http-equiv="refresh" content="0;url={TRAP}/">
<base href="{TRAP}/">

```"><img src=x onerror="window.pwned='language'">
print("code")
```

| a | <img src=x onerror="window.pwned='table'"> |
|---|---|
| <details open ontoggle="window.pwned='details'">x</details> | `<script>` |
"""
SHORT = "<img src=x onerror=\"window.pwned='{}'\"><script>window.pwned='{}'</script>"
SEED = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import ensure_personal_team

data = json.loads({data!r})
user = get_user_model().objects.create_user({username!r}, password="unused-password-1")
conversation = Conversation.objects.create(
    team=ensure_personal_team(user), owner=user, title=data["title"],
    system_prompt_text=data["prompt"], model="Llama-3.3-70B-Instruct",
)
for role, content, extra in [
    ("user", data["user"], {{}}),
    ("assistant", data["model"], {{"model": data["model_name"]}}),
    ("user", "and again", {{}}),
    ("assistant", "", {{"status": "error", "error_code": "upstream_unavailable",
                       "error_message": data["error"]}}),
]:
    Message.objects.create(conversation=conversation, role=role, content=content, **extra)
client = Client()
client.force_login(user)
print(json.dumps({{"session": client.cookies["sessionid"].value, "id": conversation.pk}}))
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory, simulators):
    """A daphne of this module's own, with its own database."""
    tmp = tmp_path_factory.mktemp("xss")
    database = create_database("security", tmp)
    upstream = simulators.get(chat.SIMULATOR)
    server = Daphne("xss", server_env(database.url, upstream), tmp / "daphne.log")
    try:
        manage(server.env, "migrate", "--noinput", "-v", "0")
        yield server.start()
    finally:
        server.stop()
        database.drop()


@pytest.fixture
def poisoned(live) -> dict:
    data = {
        "title": SHORT.format("title", "title2"),
        "prompt": SHORT.format("prompt", "prompt2") + "\n" + MODEL_OUTPUT,
        "user": MODEL_OUTPUT + SHORT.format("user", "user2"),
        "model": MODEL_OUTPUT,
        "model_name": SHORT.format("model", "model2"),
        "error": SHORT.format("error", "error2"),
    }
    code = SEED.format(data=json.dumps(data), username=f"xss_{uuid.uuid4().hex[:8]}")
    return json.loads(manage(live.env, "shell", "-v", "0", "-c", code).strip().splitlines()[-1])


def test_stored_payloads_run_nothing_and_load_nothing(browser, live, poisoned):
    page, watch = open_chat_page(browser, live, poisoned["session"], f"/c/{poisoned['id']}/")
    try:
        page.locator(".message-assistant .markdown h1").wait_for()
        page.locator(".message-assistant[data-status=error] .message-notice").wait_for()
        # Touch everything a handler could hang on, then look.
        touched = 0
        for element in page.locator(".message-assistant *, .message-user *").all():
            if element.is_visible():
                element.hover(force=True, timeout=2000)
                touched += 1
        assert touched > 20
        for link in page.locator(".markdown a[href]").all():  # unsafe targets lose the href
            href = link.get_attribute("href")
            assert href.startswith(("http:", "https:", "mailto:")), href
            assert link.get_attribute("rel") == "noopener noreferrer"
        rendered = page.evaluate(
            """() => {
                const roots = [...document.querySelectorAll(
                    '.markdown, .bubble, .message-notice, .message-meta, .conversation-link,'
                    + ' #system-prompt-text, #model-badge, #conversation-title')];
                return roots.flatMap(root => [...root.querySelectorAll('*')])
                    .filter(el => !el.closest('.code-header, .message-actions'))
                    .flatMap(el => [el.tagName.toLowerCase(),
                                    ...[...el.attributes].map(a => a.name)]);
            }"""
        )
        assert {"h1", "table", "a", "pre", "code"} <= set(rendered)  # markdown did render
        for forbidden in (
            "script",
            "img",
            "svg",
            "iframe",
            "object",
            "embed",
            "form",
            "style",
            "link",
            "meta",
            "base",
            "math",
            "details",
            "button",
        ):
            assert forbidden not in rendered, forbidden
        assert not [name for name in rendered if name.startswith("on") or name == "style"]
        assert page.evaluate("window.pwned") is None
        assert page.title().startswith("<img src=x")  # the title is text, not markup
        assert "<script>" in page.locator(".message-user .bubble").first.inner_text()
        assert [url for url in watch.requests if not url.startswith(live.url)] == []
        assert watch.page_errors == []
        assert watch.console_errors == []  # a blocked script would be reported by the CSP here
    finally:
        page.context.close()
