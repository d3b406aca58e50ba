"""A long conversation with many branches: what opening it, switching branch, editing,
regenerating, the conversation API and the export cost, beside a small one.

Seeds, for one user, a conversation of about 2,000 messages and 200 branch points (a main
branch of 650 turns; one question answered 50 times; 150 edited questions, each answered;
40 answers regenerated once; 9 edits deep in it, each followed by 20 turns) and a small one
of about 60 messages with a few branches. Each operation runs on both, in-process, through
the functions the websocket consumer and the views call (subscribe: `conversation_messages`;
switch: `switch_branch` then the state; edit and regenerate: their admission, which plans and
writes the rows, undone afterwards), its queries counted (they must be the same on both) and
its time taken as the median of a few runs. With --browser it also opens the large
conversation's page in Chromium on a live server and reports the main thread's long tasks
(PerformanceObserver) while the page draws it and while it switches branch, and when its first
messages and its whole branch were in the page.

Uses a new SQLite database in a temporary folder, or BENCH_TREES_DATABASE_URL (PostgreSQL:
dropped and created anew).

    python -m bench.trees [--repeats 5] [--browser]
"""

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/trees.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import reset_postgres  # noqa: E402

MAIN_TURNS = 650
WIDE = 50  # answers to one question
EDITS = 150
REGENERATED = 40
DEEP = 9
DEEP_TURNS = 20
MODEL = "Llama-4-Maverick-17B-128E-Instruct-FP8"


def setup(folder: str) -> None:
    url = os.environ.get("BENCH_TREES_DATABASE_URL")
    if url:
        reset_postgres(url)
    os.environ["DATABASE_URL"] = url or f"sqlite:///{folder}/bench.sqlite3"
    os.environ.setdefault("SECRET_KEY", "bench-trees")
    os.environ["STATIC_MANIFEST"] = "0"
    os.environ["SECURE_SSL_REDIRECT"] = "0"  # the test client speaks plain HTTP
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("LLAMA_API_KEY", "bench-key")
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatapp.settings")
    import django
    from django.core.management import call_command

    django.setup()
    logging.disable(logging.WARNING)
    call_command("migrate", verbosity=0)


def seed_tree(user, team, turns: int, wide: int, edits: int, regenerated: int, deep: int) -> dict:
    """One conversation shaped as the module says; returns the ids the operations use."""
    from django.db import transaction

    from chatapp.chat.models import Conversation, Message

    question = "How do I keep a long conversation fast when it has many branches? " * 2
    answer = "Read the tree once, walk it in linear time, and read the branch by id. " * 8

    def add(conversation, parent_id, role, content):
        message = Message(
            conversation=conversation,
            parent_id=parent_id,
            role=role,
            content=content,
            model=MODEL if role == "assistant" else "",
        )
        message.explicit_parent = True
        message.save()
        return message.pk

    with transaction.atomic():
        chat = Conversation.objects.create(team=team, owner=user, title="Branches", model=MODEL)
        questions, answers = [], []
        parent = None
        for n in range(turns):
            parent = add(chat, parent, "user", f"{n}: {question}")
            questions.append(parent)
            parent = add(chat, parent, "assistant", f"{n}: {answer}")
            answers.append(parent)
        main_leaf = parent
        middle = turns // 2
        again = [
            add(chat, questions[middle], "assistant", f"again {n}: {answer}")
            for n in range(wide - 1)  # one question answered `wide` times
        ]
        step = max(1, turns // max(edits, 1))
        for n in range(edits):  # edited questions, each answered
            at = (n * step) % turns
            parent_id = answers[at - 1] if at else None
            edited = add(chat, parent_id, "user", f"edit {n}: {question}")
            add(chat, edited, "assistant", f"edit {n}: {answer}")
        for n in range(regenerated):
            add(chat, questions[(n * 7 + 3) % turns], "assistant", f"regenerated: {answer}")
        for n in range(deep):
            parent = answers[(n + 1) * turns // (deep + 1) - 1]
            for k in range(DEEP_TURNS):
                parent = add(chat, parent, "user", f"deep {n}.{k}: {question}")
                parent = add(chat, parent, "assistant", f"deep {n}.{k}: {answer}")
        chat.active_leaf_id = main_leaf
        chat.save(update_fields=["active_leaf"])
    return {
        "conversation": chat.pk,
        "messages": chat.messages.count(),
        "deep_question": questions[turns - 10],
        "wide_answer": answers[middle],
        "wide_next": again[0],  # its second version
        "leaf_answer": main_leaf,
        "switch_to": answers[turns // 4],  # the branch below it follows the newest answers
    }


def people():
    from django.contrib.auth import get_user_model

    from chatapp.teams.models import Membership, Role, Team

    user = get_user_model().objects.create_user("trees", password="bench-trees-password")
    team = Team.objects.create(name="Trees")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    return user, team


def undo_reply(plan, conversation_id: int, leaf: int) -> None:
    """Take back what an admission wrote: its rows, and the branch shown."""
    from chatapp.chat.actions.replies import start_reply
    from chatapp.chat.models import Conversation, Message

    exchange = start_reply(plan)
    made = [exchange.assistant_message["id"]]
    if exchange.user_message:
        made.append(exchange.user_message["id"])
    Message.objects.filter(pk__in=made).delete()
    Conversation.objects.filter(pk=conversation_id).update(active_leaf_id=leaf)


def operations(user, ids: dict) -> dict:
    from django.test import Client

    from chatapp.chat import lookups
    from chatapp.chat.actions import conversations, replies
    from chatapp.chat.requests import RegenerateRequest, SendRequest

    client = Client()
    client.force_login(user)
    cid, leaf = ids["conversation"], ids["leaf_answer"]
    api = f"/api/conversations/{cid}/"

    def get(url):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response

    def switch():
        conversations.switch_branch(user, ids["switch_to"])
        lookups.conversation_messages(user, cid)
        conversations.switch_branch(user, leaf)

    def edit():
        request = SendRequest(content="A better question")
        plan = replies.admit_edit(user, ids["deep_question"], request, None)
        undo_reply(plan, cid, leaf)

    def regenerate(answer_id):
        plan = replies.admit_regenerate(user, RegenerateRequest(message_id=answer_id), None)
        undo_reply(plan, cid, leaf)

    return {
        "subscribe (conversation.state)": lambda: lookups.conversation_messages(user, cid),
        "switch branch and back (+ state)": switch,
        "edit a question 10 turns from the end": edit,
        "regenerate the last answer": lambda: regenerate(leaf),
        "regenerate an answer with 50 versions": lambda: regenerate(ids["wide_answer"]),
        "GET /api/conversations/<id>/": lambda: get(api),
        "export md": lambda: get(api + "export?format=md"),
        "export json (whole tree)": lambda: get(api + "export?format=json"),
        "page /c/<id>/": lambda: get(f"/c/{cid}/"),
    }


def measure(operation, repeats: int) -> dict:
    from django.db import connection

    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    operation()  # warm-up
    # Not CaptureQueriesContext: a request's start empties the list it reads.
    with connection.execute_wrapper(record):
        operation()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        operation()
        times.append((time.perf_counter() - started) * 1e3)
    return {"queries": len(statements), "ms": statistics.median(times)}


def run_server(repeats: int) -> list[dict]:
    user, team = people()
    large = seed_tree(user, team, MAIN_TURNS, WIDE, EDITS, REGENERATED, DEEP)
    small = seed_tree(user, team, 12, 2, 1, 1, 1)
    print(f"large: {large['messages']} messages; small: {small['messages']}")
    rows = []
    small_ops, large_ops = operations(user, small), operations(user, large)
    for name in large_ops:
        row = {
            "operation": name,
            "small": measure(small_ops[name], repeats),
            "large": measure(large_ops[name], repeats),
        }
        rows.append(row)
        s, big = row["small"], row["large"]
        flag = "" if s["queries"] == big["queries"] else "  <- queries grow"
        print(
            f"{name:42} queries {s['queries']:3} / {big['queries']:3}"
            f"   ms {s['ms']:7.1f} / {big['ms']:7.1f}{flag}"
        )
    return rows


BROWSER_SEED = """
import json
from bench.trees import people, seed_tree, MAIN_TURNS, WIDE, EDITS, REGENERATED, DEEP
from django.contrib.auth import get_user_model
from chatapp.teams.models import Membership, Role, Team
user = get_user_model().objects.get(username="bench")
team = Team.objects.create(name="Trees")
Membership.objects.create(team=team, user=user, role=Role.OWNER)
print(json.dumps(seed_tree(user, team, MAIN_TURNS, WIDE, EDITS, REGENERATED, DEEP)))
"""

# Long tasks of the main thread, from the page's start (buffered) on; and when the number of
# messages in the page changed (after the task that drew them), from the page's start.
OBSERVE = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    window.__longTasks.push({start: entry.startTime, duration: entry.duration});
}).observe({type: "longtask", buffered: true});
window.__counts = [];
new MutationObserver(() => {
  const count = document.querySelectorAll("[data-message-id]").length;
  if (count !== (window.__counts.at(-1)?.count ?? 0))
    window.__counts.push({at: performance.now(), count});
}).observe(document, {subtree: true, childList: true});
"""

# From the click to the moment the version switched to is in the page.
WATCH = """(target) => {
  window.__drawn = null;
  window.__clicked = performance.now();
  const found = () => document.querySelector(`[data-message-id="${target}"]`);
  new MutationObserver((changes, observer) => {
    if (!found()) return;
    window.__drawn = performance.now();
    observer.disconnect();
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def run_browser() -> dict:
    from playwright.sync_api import sync_playwright

    from bench.harness import Stack, manage

    with Stack() as stack:
        ids = json.loads(manage(stack.env, "shell", "-v", "0", "-c", BROWSER_SEED))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            context = browser.new_context()
            context.add_cookies(
                [{"name": "sessionid", "value": stack.session_id, "url": stack.app_url}]
            )
            page = context.new_page()
            page.add_init_script(OBSERVE)
            page.goto(f"{stack.app_url}/c/{ids['conversation']}/")
            selector = f'[data-message-id="{ids["leaf_answer"]}"]'
            page.wait_for_selector(selector, state="attached", timeout=60_000)
            # The whole branch: the earlier messages are drawn after the last ones.
            branch = 2 * MAIN_TURNS
            last = page.locator("[data-message-id]").nth(branch - 1)
            last.wait_for(state="attached", timeout=60_000)
            page.wait_for_timeout(1000)
            opened = page.evaluate("window.__longTasks.splice(0)")
            counts = page.evaluate("window.__counts")
            # The 50-times answered question: its answer's next version, then back.
            timings = []
            for shown, target in (
                (ids["wide_answer"], ids["wide_next"]),
                (ids["wide_next"], ids["wide_answer"]),
            ):
                arrow = page.locator(
                    f'[data-message-id="{shown}"] .version-step[aria-label="'
                    f'{"Next" if target == ids["wide_next"] else "Previous"} version"]'
                )
                arrow.scroll_into_view_if_needed()
                page.evaluate(WATCH, str(target))
                arrow.click()
                page.wait_for_selector(f'[data-message-id="{target}"]', state="attached")
                page.wait_for_function("window.__drawn !== null")
                timings.append(page.evaluate("window.__drawn - window.__clicked"))
            page.wait_for_timeout(1000)
            switched = page.evaluate("window.__longTasks.splice(0)")
            figures = {
                "messages": ids["messages"],
                "open_long_tasks_ms": [round(t["duration"]) for t in opened],
                # From the page's start: the first messages in it, then the whole branch.
                "open_first_drawn_ms": round(counts[0]["at"]),
                "open_first_drawn_count": counts[0]["count"],
                "open_all_drawn_ms": round(counts[-1]["at"]),
                "switch_long_tasks_ms": [round(t["duration"]) for t in switched],
                "switch_drawn_after_ms": [round(t) for t in timings],
                "shown": page.locator("[data-message-id]").count(),
            }
            browser.close()
    print(json.dumps(figures))
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args(argv)
    if args.browser:
        run_browser()
        return
    with tempfile.TemporaryDirectory(prefix="ltc-trees-") as folder:
        setup(folder)
        run_server(args.repeats)


if __name__ == "__main__":
    main()
