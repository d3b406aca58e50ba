"""Work that grows with a team's size and age, on PostgreSQL: what each send, upload and audit
page view reads, and what deleting accounts in bulk costs.

Seeds one team of 500 members using 3 models every day for 12 months (its usage rows:
members x models x days, 45,000 a month), 20,000 uploads in the team, 1,000,000 audit events
(the newest 1,001 written through the model, so the page's check of the newest 1,000 holds)
and 100 accounts with a personal team each, in the big team too. Rows are inserted with
`generate_series`, as a restore would. Then it runs the statements the app runs for the
monthly budget check, the upload quota check and `/site/audit/`, and prints PostgreSQL's
EXPLAIN ANALYZE of each (rows read, ms) and the median of the whole call; and counts the
statements of deleting the 100 accounts (rolled back).

Uses BENCH_GROWTH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/ltc_bench_growth;
dropped and created anew unless --reuse).

    python -m bench.growth [--reuse]
"""

import argparse
import logging
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/growth.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import postgres_available, reset_postgres  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ltc_bench_growth"
MEMBERS, MODELS, MONTHS = 500, 3, 12
UPLOADS, AUDIT_EVENTS, DELETED = 20_000, 1_000_000, 100


def setup(url: str, reuse: bool) -> None:
    if not reuse:
        reset_postgres(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-growth")
    os.environ["STATIC_MANIFEST"] = "0"
    os.environ["SECURE_SSL_REDIRECT"] = "0"  # the test client speaks plain HTTP
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatapp.settings")
    import django
    from django.core.management import call_command

    django.setup()
    logging.disable(logging.WARNING)  # the access log of each request timed
    call_command("migrate", verbosity=0)


def seed() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from chatapp.core.dates import month_start, next_month
    from chatapp.teams import actions
    from chatapp.teams.models import AuditAction, Membership, Team, TeamPolicy

    User = get_user_model()
    if Team.objects.filter(name="Growth").exists():
        return
    print("seeding...", flush=True)
    users = User.objects.bulk_create(
        [User(username=f"member{n}", password="!") for n in range(MEMBERS)]
    )
    team = Team.objects.create(name="Growth")
    Membership.objects.bulk_create(
        [
            Membership(team=team, user=u, role="owner" if n == 0 else "member")
            for n, u in enumerate(users)
        ]
    )
    TeamPolicy.objects.create(
        team=team, monthly_token_budget=10**12, member_monthly_token_budget=10**9
    )
    today = timezone.now().date()
    # The current month whole (as on its last day) and the 11 before it.
    last = next_month(month_start(today))
    first = month_start(today)
    for _ in range(MONTHS - 1):
        first = month_start(first - timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO teams_teamusage (team_id, user_id, model, day, api_key_ref,
                   prompt_tokens, completion_tokens, requests)
               SELECT %s, u.id, 'model-' || m, d::date, 0, 400, 300, 2
               FROM auth_user u, generate_series(1, %s) m,
                    generate_series(%s::date, %s::date - 1, interval '1 day') d
               WHERE u.username LIKE 'member%%'""",
            [team.pk, MODELS, first, last],
        )
        cursor.execute(
            """INSERT INTO uploads_upload (owner_id, team_id, kind, name, content_type, size,
                   text, file, created_at)
               SELECT %s, %s, 'image', 'photo-' || n || '.png', 'image/png',
                      20000 + n % 1000, '', 'uploads/' || n || '.png', now()
               FROM generate_series(1, %s) n""",
            [users[0].pk, team.pk, UPLOADS],
        )
        cursor.execute(
            """INSERT INTO teams_auditevent (team_id, actor_id, team_name, actor_name, action,
                   summary, details, created_at, prev_hash, hash)
               SELECT %s, %s, 'Growth', 'member0', 'member.role', 'member0 changed a role',
                      '{}', now() - (n || ' seconds')::interval, '', md5(n::text)
               FROM generate_series(%s, 1, -1) n""",
            [team.pk, users[0].pk, AUDIT_EVENTS - 1001],
        )
    for n in range(1001):
        actions.audit(team, users[0], AuditAction.ROLE_CHANGE, f"member0 changed role {n}")
    for n in range(DELETED):
        leaving = User.objects.create(username=f"leaving{n}", password="!")
        Membership.objects.create(team=team, user=leaving)
        actions.ensure_personal_team(leaving)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print("seeded", flush=True)


def explain(sql: str, params) -> tuple[float, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        plan = [row[0] for row in cursor.fetchall()]
    ms = float(plan[-1].split(":")[1].split()[0])
    return ms, "\n    ".join(plan)


def measure(label: str, call) -> None:
    """The statements `call` runs that take more than 0.2 ms, explained, and the median of
    the whole call over 20 runs (each in a transaction rolled back)."""
    from django.db import connection, transaction

    statements = []

    def record(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    # Not CaptureQueriesContext: a request's start empties the list it reads.
    with transaction.atomic(), connection.execute_wrapper(record):
        call()
        transaction.set_rollback(True)
    timings = []
    for _ in range(20):
        with transaction.atomic():
            started = time.perf_counter()
            call()
            timings.append((time.perf_counter() - started) * 1000)
            transaction.set_rollback(True)
    print(f"\n== {label}: {len(statements)} statements, median {statistics.median(timings):.1f} ms")
    for sql, params in statements:
        if not sql.lstrip().upper().startswith("SELECT") or " FOR " in sql:
            continue
        with transaction.atomic():
            ms, plan = explain(sql, params)
        if ms >= 0.2:
            print(f"  {ms:.2f} ms  {sql[:200]}\n    {plan}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    args = parser.parse_args()
    url = os.environ.get("BENCH_GROWTH_POSTGRES_URL", DEFAULT_URL)
    if not postgres_available(url):
        sys.exit(f"PostgreSQL is not reachable at {url}")
    setup(url, args.reuse)
    seed()

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from chatapp.accounts import actions as account_actions
    from chatapp.chat.actions import replies
    from chatapp.teams.models import AuditEvent, Team
    from chatapp.uploads.actions import check_room

    User = get_user_model()
    team = Team.objects.select_related("policy").get(name="Growth")
    member = User.objects.get(username="member7")
    measure(
        "budget check (chat.send, /v1)", lambda: replies.check_budget(team, member, team.policy)
    )
    measure("upload quota check", lambda: check_room(team, 1000))

    admin = User.objects.filter(is_superuser=True).first() or User.objects.create_superuser(
        "growth-admin", password="x"
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(admin)
    deep = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True)[25_000]
    for path in ("/site/audit/", f"/site/audit/?before={deep}"):
        assert client.get(path).status_code == 200
        measure(f"GET {path}", lambda path=path: client.get(path))

    leaving = list(User.objects.filter(username__startswith="leaving"))
    with transaction.atomic():
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            account_actions.delete_users(admin, leaving)
        took = (time.perf_counter() - started) * 1000
        transaction.set_rollback(True)
    print(
        f"\n== deleting {len(leaving)} accounts: {len(queries)} statements,"
        f" {len(queries) / len(leaving):.0f} an account, {took:.0f} ms"
    )


if __name__ == "__main__":
    main()
