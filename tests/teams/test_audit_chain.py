"""The audit trail's hash chain, its check (`audit_verify`) and its export (command and page)."""

import csv
import io
import json
import os
import re
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chatapp.teams import actions, audit_trail
from chatapp.teams.audit_trail import EXPORT_FIELDS, export_chunks, verify_chain
from chatapp.teams.models import AuditEvent, Team
from tests.databases import uses_postgres

EXPORT_URL = "/site/audit/"


@pytest.fixture
def trail(team, owner, member):
    actions.save_prompt(owner, team, name="P", content="one")
    actions.set_policy(owner, team, {"rate_limit_per_minute": 4})
    actions.invite(owner, team, email="new@example.com")
    return list(AuditEvent.objects.order_by("id"))


def verify() -> str:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def test_each_event_carries_the_hash_of_the_one_before(trail):
    assert trail[0].prev_hash == ""
    for before, event in zip(trail, trail[1:], strict=False):
        assert event.prev_hash == before.hash and len(event.hash) == 64
    assert len({e.hash for e in trail}) == len(trail)


def test_verify_passes_on_an_untouched_trail(trail):
    assert verify() == (
        f"The audit trail is intact: {len(trail)} events checked."
        f" The newest is event {trail[-1].pk}, hash {trail[-1].hash}.\n"
    )


def test_one_event_is_counted_in_the_singular(trail):
    AuditEvent.objects.exclude(pk=trail[0].pk).delete()
    assert verify().startswith("The audit trail is intact: 1 event checked. The newest")
    actions.create_team(trail[0].actor, "Second")
    AuditEvent.objects.filter(pk=AuditEvent.objects.latest("id").pk).update(summary="x")
    with pytest.raises(CommandError, match="The 1 event before it is intact.$"):
        verify()


def test_an_empty_trail_or_a_broken_first_event_is_said_without_a_count_of_none(trail):
    AuditEvent.objects.filter(pk=trail[0].pk).update(summary="x")
    with pytest.raises(CommandError, match=f"broken at event {trail[0].pk}: .* the first event.$"):
        verify()
    AuditEvent.objects.all().delete()
    assert verify() == "The audit trail is empty: there is nothing to check yet.\n"


def test_verify_fails_naming_the_first_edited_row(trail):
    AuditEvent.objects.filter(pk=trail[1].pk).update(summary="nothing happened")
    with pytest.raises(CommandError, match=f"broken at event {trail[1].pk}: its content"):
        verify()


def test_verify_fails_when_a_row_is_removed(trail):
    AuditEvent.objects.filter(pk=trail[1].pk).delete()
    with pytest.raises(CommandError, match=f"broken at event {trail[2].pk}: its previous-hash"):
        verify()


def test_verify_fails_when_details_are_edited_even_with_a_rehashed_row(trail):
    # Rewriting a row's hash to match its new content still breaks the link to the next row.
    event = trail[0]
    event.details = {"forged": True}
    AuditEvent.objects.filter(pk=event.pk).update(details=event.details, hash=event.compute_hash())
    with pytest.raises(CommandError, match=f"broken at event {trail[1].pk}"):
        verify()


def test_events_removed_from_the_end_are_found_against_an_earlier_check_s_hash(trail):
    """Nothing follows the newest events to break: removing them leaves a shorter chain that
    holds. The hash an earlier check printed is the anchor that shows it."""
    said = verify()
    newest = trail[-1]
    assert f"The newest is event {newest.pk}, hash {newest.hash}." in said
    out = io.StringIO()
    call_command("audit_verify", "--expect", newest.hash, stdout=out)
    assert "intact" in out.getvalue()
    AuditEvent.objects.filter(pk=newest.pk).delete()
    assert "is intact" in verify()  # the chain alone cannot tell
    with pytest.raises(CommandError, match=f"No event has the hash {newest.hash}: .*removed"):
        call_command("audit_verify", "--expect", newest.hash, stdout=io.StringIO())


def test_an_expected_hash_that_is_no_hash_is_a_usage_error(trail):
    with pytest.raises(CommandError, match="--expect: .*64 hexadecimal"):
        call_command("audit_verify", "--expect", "abc", stdout=io.StringIO())


def test_deleting_a_team_or_a_user_keeps_the_chain_intact(trail, team, owner):
    owner.delete()
    Team.objects.filter(pk=team.pk).delete()
    assert verify_chain() == (len(trail), None)
    kept = AuditEvent.objects.get(pk=trail[0].pk)
    assert (kept.team, kept.actor) == (None, None)
    assert (kept.team_name, kept.actor_name) == ("Acme", "olivia")


def test_an_event_cannot_be_saved_again(trail):
    with pytest.raises(ValueError, match="never changed"):
        trail[0].save()


def body(response) -> bytes:
    assert response.streaming  # written as it is read, never whole in memory
    return b"".join(response.streaming_content)


def test_export_command_writes_json_and_csv(trail, tmp_path):
    out, said = io.StringIO(), io.StringIO()
    call_command("audit_export", "--format", "json", stdout=out, stderr=said)
    assert said.getvalue().strip() == f"Exported {len(trail)} audit events as json."
    rows = json.loads(out.getvalue())
    assert [r["id"] for r in rows] == [e.pk for e in trail]
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[0]["team_name"] == "Acme"
    target = tmp_path / "audit.csv"
    call_command("audit_export", "--format", "csv", "--output", str(target), stderr=io.StringIO())
    with target.open(newline="") as stream:
        table = list(csv.DictReader(stream))
    assert [int(r["id"]) for r in table] == [e.pk for e in trail]
    assert json.loads(table[1]["details"]) == trail[1].details


def test_export_command_s_file_is_readable_by_its_owner_only(trail, tmp_path):
    """The trail names people, their addresses and admins' reasons for reading conversations."""
    fresh, earlier = tmp_path / "audit.json", tmp_path / "earlier.csv"
    earlier.write_text("old")
    earlier.chmod(0o644)
    for target, format in ((fresh, "json"), (earlier, "csv")):
        call_command(
            "audit_export", "--format", format, "--output", str(target), stderr=io.StringIO()
        )
        assert os.stat(target).st_mode & 0o777 == 0o600
    assert len(json.loads(fresh.read_text())) == len(trail)


def test_an_export_that_fails_part_way_leaves_the_earlier_file_whole(trail, tmp_path, monkeypatch):
    """The database goes away half way through: last night's export is still there, whole,
    and no partial file lies beside it."""
    target = tmp_path / "audit.json"
    call_command("audit_export", "--output", str(target), stderr=io.StringIO())
    earlier = target.read_text()

    def lost_connection():
        yield AuditEvent.objects.order_by("id").first()
        raise RuntimeError("the database went away")

    monkeypatch.setattr(audit_trail, "events_in_order", lost_connection)
    with pytest.raises(RuntimeError):
        call_command("audit_export", "--output", str(target), stderr=io.StringIO())
    assert target.read_text() == earlier
    assert [p.name for p in tmp_path.iterdir()] == ["audit.json"]


def test_export_command_says_when_it_cannot_write_its_file(trail, tmp_path):
    with pytest.raises(CommandError, match="Cannot write .*missing/audit.json: No such file"):
        call_command("audit_export", "--output", str(tmp_path / "missing" / "audit.json"))


@pytest.mark.parametrize("format", ["json", "csv"])
def test_the_page_s_export_comes_in_chunks_holding_what_the_command_writes(trail, format):
    out = io.StringIO()
    call_command("audit_export", "--format", format, stdout=out, stderr=io.StringIO())
    chunks = list(export_chunks(format, size=100))
    assert len(chunks) > len(trail) // 2
    assert b"".join(chunks).decode() == out.getvalue()


@pytest.mark.django_db
def test_an_empty_trail_exports_as_an_empty_list_or_a_header():
    assert json.loads(b"".join(export_chunks("json"))) == []
    header = b"".join(export_chunks("csv")).decode()
    assert list(csv.reader(io.StringIO(header))) == [list(EXPORT_FIELDS)]


def test_csv_cells_never_start_a_spreadsheet_formula(team, make_user, client, site_admin):
    evil = make_user("=cmd|calc")
    actions.create_team(evil, "+SUM(A1)")
    client.force_login(site_admin)
    response = client.post(EXPORT_URL, {"format": "csv"})
    table = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert table[0]["actor_name"] == "'=cmd|calc" and table[0]["team_name"] == "'+SUM(A1)"


def test_csv_cells_are_quoted_so_a_semicolon_cannot_start_a_new_cell(
    team, owner, client, site_admin
):
    # A spreadsheet whose list separator is ";" splits unquoted text there: "Acme;=1+2" would
    # be two cells, the second a formula. Every cell is quoted, as OWASP advises.
    actions.create_team(owner, "Acme;=1+2")
    client.force_login(site_admin)
    text = body(client.post(EXPORT_URL, {"format": "csv"})).decode()
    assert '"Acme;=1+2"' in text
    assert text.startswith('"id","created_at",')


# ---- the site admins' page ----------------------------------------------------------------


def test_site_admin_sees_the_chain_status_and_the_trail(client, site_admin, trail):
    client.force_login(site_admin)
    response = client.get(EXPORT_URL)
    assert response.status_code == 200
    assert f"The hash chain is intact: {len(trail)} events checked." in response.content.decode()
    AuditEvent.objects.filter(pk=trail[0].pk).update(summary="x")
    broken = client.get(EXPORT_URL).content.decode()
    assert f"broken at event {trail[0].pk}" in broken
    assert "(edited). It is the first event." in broken  # no count of the none before it
    AuditEvent.objects.exclude(pk=trail[0].pk).delete()
    AuditEvent.objects.filter(pk=trail[0].pk).update(summary=trail[0].summary)
    assert "The hash chain is intact: 1 event checked." in client.get(EXPORT_URL).content.decode()


def test_the_page_checks_the_newest_events_and_the_whole_chain_on_demand(
    client, site_admin, trail, monkeypatch
):
    monkeypatch.setattr(audit_trail, "RECENT_EVENTS", 2)
    client.force_login(site_admin)
    # An edit older than the window is not read on every view of the page...
    AuditEvent.objects.filter(pk=trail[0].pk).update(summary="x")
    page = client.get(EXPORT_URL).content.decode()
    assert "The newest 2 events are intact, and linked to the event before them." in page
    assert "This page checks the newest 2 events" in page
    assert "?check=all" in page and "manage.py audit_verify" in page
    # ...but asking for the whole chain finds it.
    whole = client.get(EXPORT_URL, {"check": "all"}).content.decode()
    assert f"broken at event {trail[0].pk}" in whole
    # A link into the window that does not hold shows at once.
    AuditEvent.objects.filter(pk=trail[0].pk).update(summary=trail[0].summary)
    AuditEvent.objects.filter(pk=trail[1].pk).delete()
    monkeypatch.setattr(audit_trail, "RECENT_EVENTS", 1)
    page = client.get(EXPORT_URL).content.decode()
    assert f"broken at event {trail[2].pk}: its previous-hash" in page
    assert "It is the first event checked." in page


def test_the_page_checks_no_more_than_its_window(site_admin, trail, monkeypatch):
    monkeypatch.setattr(audit_trail, "RECENT_EVENTS", 2)
    client = Client()
    client.force_login(site_admin)
    with CaptureQueriesContext(connection) as queries:
        client.get(EXPORT_URL)
    # Every read of the events is bounded: the page's 50 rows and the checked window.
    reads = [q["sql"] for q in queries if '"prev_hash"' in q["sql"]]
    assert reads and all("LIMIT" in sql for sql in reads)


def test_an_empty_site_trail_says_so_instead_of_an_empty_table(client, site_admin):
    client.force_login(site_admin)
    page = client.get(EXPORT_URL).content.decode()
    assert "Nothing is recorded yet: the hash chain starts with the first event." in page
    assert "<table" not in page and "0 events" not in page


def test_site_admin_downloads_json_and_the_export_is_audited(client, site_admin, trail):
    client.force_login(site_admin)
    response = client.post(EXPORT_URL, {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert "attachment" in response["Content-Disposition"]
    rows = json.loads(body(response))
    assert rows[-1]["action"] == "audit.export" and rows[-1]["actor_name"] == "siteadmin"
    assert verify_chain() == (len(trail) + 1, None)


def test_a_bad_format_is_a_clear_400_and_writes_nothing(client, site_admin, trail):
    client.force_login(site_admin)
    response = client.post(EXPORT_URL, {"format": "xml"})
    assert response.status_code == 400 and b"csv or json" in response.content
    assert AuditEvent.objects.count() == len(trail)


@pytest.mark.parametrize("who", ["owner", "member", "outsider"])
def test_everyone_but_site_admins_gets_404(client, who, request, trail):
    client.force_login(request.getfixturevalue(who))
    assert client.get(EXPORT_URL).status_code == 404
    assert client.post(EXPORT_URL, {"format": "json"}).status_code == 404
    assert AuditEvent.objects.count() == len(trail)


def test_anonymous_is_sent_to_login(client):
    response = client.get(EXPORT_URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_wrong_method_and_missing_csrf_are_refused(site_admin, trail):
    client = Client(enforce_csrf_checks=True)
    client.force_login(site_admin)
    assert client.put(EXPORT_URL).status_code == 403  # CSRF first, like every write
    assert client.post(EXPORT_URL, {"format": "json"}).status_code == 403
    relaxed = Client()
    relaxed.force_login(site_admin)
    assert relaxed.delete(EXPORT_URL).status_code == 405
    assert AuditEvent.objects.count() == len(trail)


# ---- concurrent writers -------------------------------------------------------------------


@pytest.mark.skipif(not uses_postgres(), reason="the advisory lock is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain(make_user):
    teams = [Team.objects.create(name=f"T{n}") for n in range(4)]
    user = make_user("writer")
    barrier = threading.Barrier(len(teams))

    def write(team):
        try:
            barrier.wait()
            for n in range(10):
                actions.audit(team, user, "policy.update", f"change {n}")
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(t,)) for t in teams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    prev_hashes = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(prev_hashes) == 40 and len(set(prev_hashes)) == 40
    assert verify_chain() == (40, None)


def test_the_page_does_not_count_the_whole_trail(site_admin, trail):
    """Each view would otherwise count every event (a full pass over a million rows)."""
    client = Client()
    client.force_login(site_admin)
    with CaptureQueriesContext(connection) as queries:
        for query in ({}, {"before": trail[-1].pk}, {"after": trail[0].pk}):
            assert client.get(EXPORT_URL, query).status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts == []


def many_events(count: int) -> list[int]:
    for number in range(count):
        actions.audit(None, None, "audit.export", f"event {number}")
    return list(AuditEvent.objects.order_by("-id").values_list("pk", flat=True))


def shown(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td data-label="#">(\d+)</td>', page)]


def test_the_pager_walks_older_and_newer_by_event(client, site_admin):
    ids = many_events(120)
    client.force_login(site_admin)
    first = client.get(EXPORT_URL).content.decode()
    assert shown(first) == ids[:50]
    assert "Newer</a>" not in first and f'href="?before={ids[49]}"' in first
    second = client.get(EXPORT_URL, {"before": ids[49]}).content.decode()
    assert shown(second) == ids[50:100]
    assert f'href="?after={ids[50]}"' in second and f'href="?before={ids[99]}"' in second
    last = client.get(EXPORT_URL, {"before": ids[99]}).content.decode()
    assert shown(last) == ids[100:] and "Older</a>" not in last
    assert shown(client.get(EXPORT_URL, {"after": ids[100]}).content.decode()) == ids[50:100]
    assert shown(client.get(EXPORT_URL, {"after": ids[60]}).content.decode()) == ids[10:60]
    # Fewer than a page newer than it: the newest page, whole.
    assert shown(client.get(EXPORT_URL, {"after": ids[40]}).content.decode()) == ids[:50]


@pytest.mark.parametrize("value", ["x", "-1", "1.5", "9" * 30, ""])
def test_a_bad_pager_value_shows_the_newest_events(client, site_admin, value):
    ids = many_events(60)
    client.force_login(site_admin)
    for name in ("before", "after"):
        response = client.get(EXPORT_URL, {name: value})
        assert response.status_code == 200
        assert shown(response.content.decode()) == ids[:50]
