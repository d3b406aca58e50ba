"""Database cost of the chat, on SQLite and on PostgreSQL.

writes: answers streamed through a live daphne whose SQL statements are counted
        (bench/counting_asgi.py): write statements per answer, by table, for a short fast
        answer and a long one at chat pace (the target: a constant few plus about one
        checkpoint per second, none per token).
reads:  10,000 conversations and one 5,000-message conversation seeded with bulk_create; the
        sidebar (GET /api/conversations/) and the conversation (GET /api/conversations/<id>/
        and the page /c/<id>/) timed in-process with Django's test client, and their queries
        counted beside a user with 10 conversations of 10 messages (the count must not grow).

PostgreSQL runs use BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/ltc_bench;
that database is dropped and created anew) and are skipped when it cannot be reached.

    python -m bench.database [--quick] [--only writes|reads] [--backends sqlite,postgres]
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/database.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    PYTHON,
    ROOT,
    Stack,
    StackOptions,
    app_stream,
    direct_client,
    median,
    postgres_available,
    reset_postgres,
    run,
    write_result,
)

TARGET_READ_MS = 100.0
CONVERSATIONS = 10_000
LONG_CONVERSATION = 5_000
SMALL = 10
WRITE_VERBS = ("INSERT", "UPDATE", "DELETE")

# --- writes per answer (live daphne, statements counted) --------------------------------------


async def count_queries(stack: Stack, http) -> dict:
    response = await http.get(f"{stack.app_url}/_bench/queries")
    response.raise_for_status()
    return response.json()


def difference(after: dict, before: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


async def measure_writes(stack: Stack, answers: list[tuple[str, int, float]]) -> list[dict]:
    """Each answer alone: (label, tokens, tokens per second) -> its statements by kind."""
    results = []
    async with direct_client() as http:
        ws = await stack.open_socket()
        try:
            conversation_id = None
            for label, tokens, tps in answers:
                content = f"Database question ({label}). [sim:long tokens={tokens}]"
                content += f" [sim:pace tps={tps:g} ttft=0.05]"
                before = await count_queries(stack, http)
                follow_up = label.startswith("follow-up")
                stream = await app_stream(ws, content, conversation_id if follow_up else None)
                await asyncio.sleep(0.5)  # anything written after message.done counts too
                statements = difference(await count_queries(stack, http), before)
                conversation_id = stream.conversation_id
                results.append(writes_figures(label, tokens, tps, stream, statements))
        finally:
            await ws.close()
    return results


def writes_figures(label: str, tokens: int, tps: float, stream, statements: dict) -> dict:
    writes = {k: v for k, v in statements.items() if k.split()[0] in WRITE_VERBS}
    seconds = stream.total if stream.finished else float("nan")
    return {
        "answer": label,
        "ok": stream.ok,
        "error": stream.error,
        "tokens": tokens,
        "pace_tps": tps,
        "seconds": seconds,
        "writes": sum(writes.values()),
        "writes_by_table": writes,
        "selects": statements.get("SELECT", 0),
        "statements": statements,
        "writes_minus_seconds": sum(writes.values()) - seconds,
    }


def run_writes(database_url: str | None, quick: bool) -> list[dict]:
    slow_tokens = 60 if quick else 300
    answers = [
        ("new conversation, fast", 600, 450.0),
        ("follow-up, fast", 600, 450.0),
        ("follow-up, fast", 600, 450.0),
        ("follow-up, chat pace", slow_tokens, 30.0),
    ]
    options = StackOptions(
        tokens_per_second=30, database_url=database_url, asgi="bench.counting_asgi:application"
    )
    with Stack(options) as stack:
        return run(measure_writes(stack, answers))


# --- reads: sidebar and conversation over a large history (in-process) -----------------------

ENDPOINTS = {
    "sidebar": "/api/conversations/",
    "conversation": "/api/conversations/{id}/",
    "conversation page": "/c/{id}/",
}
# Measured and shown, without a target: a search that matches nothing reads every row.
EXTRA_ENDPOINTS = {"search, no match": "/api/conversations/?q=no-such-words"}


def reads_child(quick: bool) -> dict:
    """Runs in its own process, Django configured from the environment set by `run_reads`."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    big, small = seed()
    repeats = 3 if quick else 7
    endpoints = {**ENDPOINTS, **EXTRA_ENDPOINTS}
    results = {name: measure_endpoint(url, big, small, repeats) for name, url in endpoints.items()}
    for name in EXTRA_ENDPOINTS:
        results[name]["meets_target"] = None
    return results


def seed() -> tuple[tuple, tuple]:
    """The big user (10,000 conversations, one of 5,000 messages) and a small one."""
    from django.contrib.auth import get_user_model

    from chatapp.teams.models import Membership, Role, Team

    started = time.perf_counter()
    users = []
    for name, conversations, messages in (
        ("reader", CONVERSATIONS, LONG_CONVERSATION),
        ("light", SMALL, SMALL),
    ):
        user = get_user_model().objects.create_user(name, password="bench-reader-password")
        team = Team.objects.create(name=f"{name} team")
        Membership.objects.create(team=team, user=user, role=Role.OWNER)
        long_id = seed_conversations(user, team, conversations, messages)
        users.append((user, long_id))
    analyze()
    print(f"  seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return users[0], users[1]


def analyze() -> None:
    """Planner statistics, as a database that has run a while would have them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def seed_conversations(user, team, count: int, messages: int) -> int:
    from chatapp.chat.models import Conversation, Message, MessageRole, MessageStatus

    model = "Llama-4-Maverick-17B-128E-Instruct-FP8"
    rows = [
        Conversation(team=team, owner=user, title=f"Benchmark conversation {i}", model=model)
        for i in range(count)
    ]
    Conversation.objects.bulk_create(rows, batch_size=1000)
    long = Conversation.objects.filter(owner=user).order_by("id").first()
    question = "How do I make the relay faster without losing a token? " * 2
    answer = "Coalesce deltas into frames, keep the ORM off the hot path, checkpoint. " * 16
    Message.objects.bulk_create(
        [
            Message(
                conversation=long,
                role=MessageRole.USER if i % 2 == 0 else MessageRole.ASSISTANT,
                content=question if i % 2 == 0 else answer,
                status=MessageStatus.COMPLETE,
                model="" if i % 2 == 0 else model,
                prompt_tokens=None if i % 2 == 0 else 40,
                completion_tokens=None if i % 2 == 0 else 300,
            )
            for i in range(messages)
        ],
        batch_size=1000,
    )
    return long.pk


def measure_endpoint(path: str, big: tuple, small: tuple, repeats: int) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    figures: dict = {"path": path}
    for label, (user, long_id) in (("large", big), ("small", small)):
        client = Client()
        client.force_login(user)
        url = path.format(id=long_id)
        response = client.get(url)  # warm-up: templates, URL resolver, connection
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        queries = len(captured.captured_queries)  # the next request clears the log
        times, cpu_times = [], []
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1e3)
            cpu_times.append((time.process_time() - cpu_started) * 1e3)
        figures[label] = {
            "status": response.status_code,
            "bytes": len(response.content),
            "queries": queries,
            "ms_median": median(times),
            "ms_max": max(times),
            "cpu_ms_median": median(cpu_times),  # what other work on the machine cannot inflate
        }
    figures["constant_queries"] = figures["large"]["queries"] == figures["small"]["queries"]
    figures["meets_target"] = (
        figures["large"]["status"] == 200
        and figures["constant_queries"]
        and figures["large"]["ms_median"] < TARGET_READ_MS
    )
    return figures


def run_reads(database_url: str, quick: bool) -> dict:
    """The read measurements in a fresh process configured for this database."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="chatapp.settings",
        DATABASE_URL=database_url,
        SECRET_KEY="bench-reads",
        DEBUG="0",
        STATIC_MANIFEST="0",
        SECURE_SSL_REDIRECT="0",
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="WARNING",
    )
    args = [PYTHON, "-m", "bench.database", "--reads-child"] + (["--quick"] if quick else [])
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-4000:] if done.returncode else "")
    if done.returncode:
        raise RuntimeError("the read benchmark failed (see above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- entry point ----------------------------------------------------------------------------


def backends(requested: str | None) -> dict[str, str | None]:
    """backend name -> a database URL for the stack (None: a fresh SQLite file)."""
    names = (requested or "sqlite,postgres").split(",")
    chosen: dict[str, str | None] = {}
    if "sqlite" in names:
        chosen["sqlite"] = None
    postgres_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    if "postgres" in names:
        if postgres_available(postgres_url):
            chosen["postgres"] = postgres_url
        else:
            print(f"database: PostgreSQL at {postgres_url} not reachable, skipped")
    return chosen


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("writes", "reads"))
    parser.add_argument("--backends", help="sqlite,postgres (default: both)")
    parser.add_argument("--reads-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reads_child:
        print(json.dumps(reads_child(args.quick)))
        return {}
    result: dict = {"benchmark": "database", "quick": args.quick, "writes": {}, "reads": {}}
    for backend, url in backends(args.backends).items():
        if args.only in (None, "writes"):
            result["writes"][backend] = run_writes(url, args.quick)
            print_writes(backend, result["writes"][backend])
        if args.only in (None, "reads"):
            result["reads"][backend] = run_backend_reads(backend, url, args.quick)
            print_reads(backend, result["reads"][backend])
    path = write_result("database", result)
    print(f"  -> {path}")
    return result


def run_backend_reads(backend: str, url: str | None, quick: bool) -> dict:
    if url is not None:
        reset_postgres(url)
        return run_reads(url, quick)
    with tempfile.TemporaryDirectory(prefix="ltc-bench-reads-") as tmp:
        return run_reads(f"sqlite:///{Path(tmp) / 'reads.sqlite3'}", quick)


def print_writes(backend: str, answers: list[dict]) -> None:
    for a in answers:
        tables = ", ".join(f"{k} {v}" for k, v in sorted(a["writes_by_table"].items()))
        print(
            f"database writes ({backend}): {a['answer']}: {a['tokens']} tokens in"
            f" {a['seconds']:.1f} s -> {a['writes']} writes ({tables}); {a['selects']} selects"
        )


def print_reads(backend: str, endpoints: dict) -> None:
    for name, f in endpoints.items():
        large, small = f["large"], f["small"]
        print(
            f"database reads ({backend}): {name} {f['path']}: HTTP {large['status']},"
            f" {large['ms_median']:.1f} ms median, {large['queries']} queries"
            f" (small user: {small['queries']}), {large['bytes'] / 1024:.0f} KiB"
        )


if __name__ == "__main__":
    main()
