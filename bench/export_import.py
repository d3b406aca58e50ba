"""Export and import at the size of a team after a year: what `export_conversations --all`,
`import_conversations` and Download all my data (`GET /api/me/export/`) hold in memory, and how
many queries they run.

Seeds one team of 20 members with 2,000 conversations of 50 messages each (100,000 messages,
about 400 characters each; every fifth conversation with a regenerated answer beside its last
one, every tenth with a tool call, every twentieth with a blocked question's safety flag), all
owned by one member, whose archive is the download measured. Then it measures, each with
tracemalloc (peak of Python allocations) and the number of SQL statements: the export to a
file, the download read to its end, and the import of that file after the conversations are
deleted. It talks to the commands and the endpoint only, so the same script measures an older
checkout.

Uses a new SQLite database in a temporary folder, or BENCH_EXPORT_DATABASE_URL (PostgreSQL:
dropped and created anew).

    python -m bench.export_import [--conversations 2000] [--messages 50]
"""

import argparse
import io
import logging
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/export_import.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import reset_postgres  # noqa: E402

MEMBERS = 20


def setup(folder: str) -> None:
    url = os.environ.get("BENCH_EXPORT_DATABASE_URL")
    if url:
        reset_postgres(url)
    os.environ["DATABASE_URL"] = url or f"sqlite:///{folder}/bench.sqlite3"
    os.environ["MEDIA_ROOT"] = f"{folder}/media"
    os.environ.setdefault("SECRET_KEY", "bench-export")
    os.environ["STATIC_MANIFEST"] = "0"
    os.environ["SECURE_SSL_REDIRECT"] = "0"  # the test client speaks plain HTTP
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatapp.settings")
    import django
    from django.core.management import call_command

    django.setup()
    logging.disable(logging.WARNING)
    call_command("migrate", verbosity=0)


def seed(conversations: int, messages: int):
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from chatapp.chat.models import Conversation, Message
    from chatapp.teams.models import Membership, Role, SafetyFlag, Team

    print(f"seeding {conversations} conversations x {messages} messages...", flush=True)
    users = get_user_model().objects
    users.create_superuser("admin", "admin@example.com", "x")
    team = Team.objects.create(name="Acme")
    people = [users.create_user(f"member{i}", f"m{i}@example.com", "x") for i in range(MEMBERS)]
    for person in people:
        Membership.objects.create(team=team, user=person, role=Role.MEMBER)
    owner = people[0]
    text = "A sentence of a realistic question or answer, with some detail in it. " * 6
    call = {
        "id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Zürich"}',
        "status": "done",
        "content": "Sunny",
        "is_error": False,
        "elapsed": 0.25,
        "round": 1,
        "offset": 0,
    }
    with transaction.atomic():
        chats = Conversation.objects.bulk_create(
            Conversation(team=team, owner=owner, title=f"Conversation {i}", model="Llama")
            for i in range(conversations)
        )
        for number, chat in enumerate(chats):
            rows = [
                Message(
                    conversation=chat,
                    role="user" if i % 2 == 0 else "assistant",
                    content=f"{i}: {text}",
                    status="complete",
                    tool_calls=[call] if i == 1 and number % 10 == 0 else [],
                )
                for i in range(messages)
            ]
            Message.objects.bulk_create(rows)
            for parent, child in zip(rows, rows[1:], strict=False):
                child.parent_id = parent.pk
            if number % 5 == 0:  # another answer beside the last one
                rows.append(
                    Message(
                        conversation=chat,
                        parent_id=rows[-2].pk,
                        role="assistant",
                        content="Another answer",
                    )
                )
                Message.objects.bulk_create(rows[-1:])
            Message.objects.bulk_update(rows, ["parent"])
            chat.active_leaf_id = rows[-1].pk
            if number % 20 == 0:
                SafetyFlag.objects.create(
                    team=team, author=owner, message=rows[0], stage="input", blocked=True
                )
        Conversation.objects.bulk_update(chats, ["active_leaf"])
    print("seeded", flush=True)
    return owner


def measure(label: str, work) -> None:
    from django.db import connection, reset_queries

    reset_queries()
    statements = 0

    def count(execute, sql, params, many, context):
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    tracemalloc.start()
    with connection.execute_wrapper(count):
        detail = work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label}: peak {peak / 2**20:.1f} MiB, {statements} statements; {detail}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        setup(folder)
        from django.core.management import call_command
        from django.test import Client

        from chatapp.chat.models import Conversation

        owner = seed(args.conversations, args.messages)
        path = f"{folder}/export.json"

        def export() -> str:
            call_command("export_conversations", "--all", "-o", path, stderr=io.StringIO())
            return f"{os.path.getsize(path) / 2**20:.0f} MiB file"

        def download() -> str:
            client = Client(HTTP_HOST="localhost")
            client.force_login(owner)
            response = client.get("/api/me/export/")
            assert response.status_code == 200, response.content
            size = sum(len(chunk) for chunk in response.streaming_content)
            return f"{size / 2**20:.0f} MiB archive"

        def restore() -> str:
            out = io.StringIO()
            call_command("import_conversations", path, stdout=out)
            return out.getvalue().splitlines()[0]

        measure("export_conversations --all", export)
        measure("GET /api/me/export/", download)
        Conversation.objects.all().delete()
        measure("import_conversations", restore)


if __name__ == "__main__":
    main()
