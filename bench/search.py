"""Conversation search over 1,000,000 messages, on SQLite (FTS5) and PostgreSQL (GIN).

Seeds 10 users with 2,000 conversations of 50 messages each (1,000,000 messages of about 30
words drawn from a 20,000-word vocabulary with Zipf's frequencies, as text is), loaded with
raw executemany and the search index built after the load, as a restore would. Then one
user's `GET /api/conversations/?q=` is timed in-process (Django's test client: the whole
request, parsing to JSON) for a set of queries in web-search syntax: p50/p95 over all of
them (target < 100 ms) and each query's median. (tests/api/test_search.py checks that the
number of statements does not grow with the results.)

PostgreSQL uses BENCH_SEARCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/
ltc_bench_search; dropped and created anew) and is skipped when it cannot be reached.

    python -m bench.search [--quick] [--backends sqlite,postgres]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

if __package__ in (None, ""):  # run as `python bench/search.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    PYTHON,
    ROOT,
    median,
    percentile,
    postgres_available,
    reset_postgres,
    write_result,
)

TARGET_MS = 100.0
USERS = 10
CONVERSATIONS = 2_000  # per user
MESSAGES = 50  # per conversation: 10 x 2,000 x 50 = 1,000,000
WORDS_PER_MESSAGE = 30
VOCABULARY = 20_000
REPEATS = 5
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/ltc_bench_search"


def vocabulary(size: int) -> list[str]:
    """Pronounceable made-up words, most frequent first."""
    rng = random.Random(7)
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    words: set[str] = set()
    ordered = []
    while len(ordered) < size:
        syllables = rng.choice((1, 2, 2, 3, 3, 4))
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        if word not in words:
            words.add(word)
            ordered.append(word)
    return ordered


def queries(words: list[str]) -> dict[str, str]:
    """label -> query: words by how often they occur (rank 1 is in most messages). The
    queries named in WORST_CASES look for words nearly every message holds."""
    return {
        "rare word (rank 15,000)": words[15_000],
        "uncommon word (rank 2,000)": words[2_000],
        "common word (rank 200)": words[200],
        "frequent word (rank 50)": words[50],
        "two uncommon words": f"{words[1_000]} {words[1_500]}",
        "three words": f"{words[300]} {words[700]} {words[3_000]}",
        "a phrase": f'"{words[100]} {words[101]}"',
        "an exclusion": f"{words[500]} -{words[600]}",
        "OR": f"{words[5_000]} OR {words[6_000]}",
        "a title word": "budget",
        "no match": "nosuchwordanywhere",
        "worst: the most frequent word": words[0],
        "worst: a phrase of the two most frequent": f'"{words[0]} {words[1]}"',
    }


WORST_CASES = ("worst: the most frequent word", "worst: a phrase of the two most frequent")


def child(quick: bool) -> dict:
    """Runs in its own process, Django configured from the environment set by `run_backend`."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    words = vocabulary(VOCABULARY)
    scale = 10 if quick else 1
    seeded = seed(words, CONVERSATIONS // scale)
    return {"seed": seeded, "queries": measure(seeded["user_id"], queries(words), quick)}


def seed(words: list[str], conversations: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from chatapp.chat import search_index
    from chatapp.chat.models import Conversation
    from chatapp.teams.models import Membership, Role, Team

    started = time.perf_counter()
    users = []
    for n in range(USERS):
        user = get_user_model().objects.create_user(f"searcher{n}", password="bench-search-pw")
        team = Team.objects.create(name=f"searcher{n} team")
        Membership.objects.create(team=team, user=user, role=Role.OWNER)
        Conversation.objects.bulk_create(
            [
                Conversation(
                    team=team,
                    owner=user,
                    model="Llama-4-Maverick-17B-128E-Instruct-FP8",
                    title=f"{'Budget' if i % 50 == 0 else 'Notes'} {words[i % 5_000]} {i}",
                )
                for i in range(conversations)
            ],
            batch_size=1000,
        )
        users.append(user)
    vendor = connection.vendor
    with connection.cursor() as cursor:  # built once after the load, as a restore does
        search_index_change(cursor, search_index.POSTGRESQL_DOWN, search_index.sqlite_down)
    rows = 0
    rng = random.Random(11)
    weights = [1 / rank for rank in range(1, len(words) + 1)]
    total = 0.0
    cumulative = []
    for w in weights:
        total += w
        cumulative.append(total)
    sql, columns, template = insert_statement()
    content_at, conversation_at = columns.index("content"), columns.index("conversation_id")
    role_at = columns.index("role")

    conversation_ids = list(Conversation.objects.order_by("id").values_list("id", flat=True))

    def message_rows():
        for conversation_id in conversation_ids:
            for i in range(MESSAGES):
                text = " ".join(rng.choices(words, cum_weights=cumulative, k=WORDS_PER_MESSAGE))
                row = list(template)
                row[content_at], row[conversation_at] = text.capitalize() + ".", conversation_id
                row[role_at] = "user" if i % 2 == 0 else "assistant"
                yield row

    with transaction.atomic(), connection.cursor() as cursor:
        if vendor == "postgresql":  # COPY, the fastest way in
            with cursor.cursor.copy(f"COPY chat_message ({', '.join(columns)}) FROM STDIN") as copy:
                for row in message_rows():
                    copy.write_row(row)
                    rows += 1
        else:
            batch = []
            for row in message_rows():
                batch.append(row)
                if len(batch) == 10_000:
                    cursor.executemany(sql, batch)
                    rows, batch = rows + len(batch), []
            cursor.executemany(sql, batch)
            rows += len(batch)
    loaded = time.perf_counter() - started
    with connection.cursor() as cursor:
        search_index_change(cursor, search_index.POSTGRESQL_UP, search_index.sqlite_up)
        cursor.execute("ANALYZE")
    indexed = time.perf_counter() - started - loaded
    print(
        f"  {rows:,} messages loaded in {loaded:.0f} s, indexed in {indexed:.0f} s", file=sys.stderr
    )
    return {
        "messages": rows,
        "users": USERS,
        "conversations_per_user": conversations,
        "load_seconds": loaded,
        "index_seconds": indexed,
        "user_id": users[0].pk,
    }


def search_index_change(cursor, postgresql: list[str], sqlite) -> None:
    """The search index's PostgreSQL statements, or its SQLite function, on this cursor."""
    if cursor.db.vendor == "postgresql":
        for statement in postgresql:
            cursor.execute(statement)
    else:
        sqlite(cursor)


def insert_statement():
    """An INSERT of every message column, the columns, and a template row (a plain
    question's values, to be given its content, conversation and role)."""
    from django.db import connection
    from django.utils import timezone

    from chatapp.chat.models import Message

    now = timezone.now()
    prototype = Message(conversation_id=0, role="user", content="", created_at=now, updated_at=now)
    fields = [f for f in Message._meta.concrete_fields if not f.primary_key]
    template = [f.get_db_prep_save(getattr(prototype, f.attname), connection) for f in fields]
    columns = [f.column for f in fields]
    sql = (
        f"INSERT INTO chat_message ({', '.join(columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))})"
    )
    return sql, columns, template


def measure(user_id: int, chosen: dict[str, str], quick: bool) -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.get(pk=user_id)
    client = Client()
    client.force_login(user)
    results = {}
    repeats = 2 if quick else REPEATS
    for label, q in chosen.items():
        url = "/api/conversations/?" + urlencode({"q": q})
        response = client.get(url)  # warm-up: caches, plan
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1e3)
        data = response.json()
        results[label] = {
            "q": q,
            "status": response.status_code,
            "results_on_page": len(data.get("results", [])),
            "more_pages": bool(data.get("next")),
            "ms": times,
            "ms_median": median(times),
        }
    return results


def summarise(figures: dict) -> dict:
    """p50/p95 over every timing of the usual queries; the worst cases apart."""
    usual = [
        t for label, f in figures["queries"].items() if label not in WORST_CASES for t in f["ms"]
    ]
    return {
        "p50_ms": percentile(usual, 50),
        "p95_ms": percentile(usual, 95),
        "worst_ms": {label: figures["queries"][label]["ms_median"] for label in WORST_CASES},
        "meets_target": percentile(usual, 95) < TARGET_MS,
    }


def run_backend(database_url: str, quick: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="chatapp.settings",
        DATABASE_URL=database_url,
        SECRET_KEY="bench-search",
        DEBUG="0",
        STATIC_MANIFEST="0",
        SECURE_SSL_REDIRECT="0",
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="WARNING",
    )
    args = [PYTHON, "-m", "bench.search", "--child"] + (["--quick"] if quick else [])
    done = subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise RuntimeError("the search benchmark failed (see above)")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["summary"] = summarise(figures)
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 messages")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.quick)))
        return {}
    result: dict = {"benchmark": "search", "quick": args.quick, "backends": {}}
    names = args.backends.split(",")
    if "sqlite" in names:
        with tempfile.TemporaryDirectory(prefix="ltc-bench-search-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'search.sqlite3'}"
            result["backends"]["sqlite"] = run_backend(url, args.quick)
        print_backend("sqlite", result["backends"]["sqlite"])
    postgres_url = os.environ.get("BENCH_SEARCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    if "postgres" in names:
        if postgres_available(postgres_url):
            reset_postgres(postgres_url)
            result["backends"]["postgres"] = run_backend(postgres_url, args.quick)
            print_backend("postgres", result["backends"]["postgres"])
        else:
            print(f"search: PostgreSQL at {postgres_url} not reachable, skipped")
    path = write_result("search", result)
    print(f"  -> {path}")
    return result


def print_backend(backend: str, figures: dict) -> None:
    s, seed_figures = figures["summary"], figures["seed"]
    print(
        f"search ({backend}): {seed_figures['messages']:,} messages (load"
        f" {seed_figures['load_seconds']:.0f} s, index {seed_figures['index_seconds']:.0f} s):"
        f" p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms"
    )
    for label, f in figures["queries"].items():
        more = "+" if f["more_pages"] else ""
        print(
            f"  {label:42} {f['ms_median']:8.1f} ms  {f['results_on_page']:>2}{more} results"
            f"  q={f['q']!r}"
        )


if __name__ == "__main__":
    main()
