"""Retention: the team policy's window and legal hold (page and JSON API), and
`manage.py purge_expired`: what it deletes and keeps, its receipts, dry runs, idempotence."""

import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from chatapp.chat.actions import retention as retention_actions
from chatapp.chat.actions.sharing import share_conversation
from chatapp.chat.models import Conversation, Message, Share
from chatapp.teams.models import AuditEvent, Membership, Role, Team, TeamPolicy
from chatapp.uploads.actions import create_upload
from chatapp.uploads.models import Upload
from tests.conftest import client_for

SECRET = "SECRET-9a7e"


def policy_url(team) -> str:
    return f"/api/teams/{team.pk}/policy/"


def patch(client: Client, team, body: dict):
    return client.patch(policy_url(team), json.dumps(body), content_type="application/json")


def aged(owner, team, days: float, title: str = f"{SECRET} title", **fields) -> Conversation:
    """A conversation nobody touched for `days` days."""
    chat = Conversation.objects.create(team=team, owner=owner, title=title, model="m", **fields)
    Message.objects.create(conversation=chat, role="user", content=f"{SECRET} question")
    then = timezone.now() - timedelta(days=days)
    Message.objects.filter(conversation=chat).update(updated_at=then, created_at=then)
    Conversation.objects.filter(pk=chat.pk).update(updated_at=then, created_at=then)
    return chat


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_expired", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def keep_30_days(team):
    return TeamPolicy.objects.create(team=team, retention_days=30)


def test_old_conversations_go_and_the_rest_stay(member, owner, team, keep_30_days, make_user):
    old = aged(member, team, 31)
    recent = aged(member, team, 29)
    pinned = aged(member, team, 400, pinned=True)
    # An old conversation with a message written yesterday was touched.
    touched = aged(owner, team, 90)
    Message.objects.filter(conversation=touched).update(
        updated_at=timezone.now() - timedelta(days=1)
    )
    elsewhere = Team.objects.create(name="Forever")
    stranger = make_user("stan")
    Membership.objects.create(team=elsewhere, user=stranger, role=Role.OWNER)
    forever = aged(stranger, elsewhere, 4000)
    output = purge()
    assert "Deleted 1 conversation of team" in output
    left = set(Conversation.objects.values_list("pk", flat=True))
    assert left == {recent.pk, pinned.pk, touched.pk, forever.pk}
    assert old.pk not in left and not Message.objects.filter(conversation_id=old.pk).exists()


def test_a_window_longer_than_the_calendar_keeps_that_team_and_the_rest_still_purge(
    member, team, keep_30_days, make_user
):
    """A window stored past what the policy pages take (written before they bounded it, or
    straight into the database) reaches before year 1: that team keeps everything, and every
    other team's purge still runs."""
    old = aged(member, team, 40)
    elsewhere = Team.objects.create(name="Ages")
    stranger = make_user("stan")
    Membership.objects.create(team=elsewhere, user=stranger, role=Role.OWNER)
    TeamPolicy.objects.create(team=elsewhere, retention_days=10**9)
    ancient = aged(stranger, elsewhere, 4000)
    assert "Would delete 1 conversation of team" in purge("--dry-run")
    output = purge()
    assert "Deleted 1 conversation in 1 team" in output
    assert set(Conversation.objects.values_list("pk", flat=True)) == {ancient.pk}
    assert not Conversation.objects.filter(pk=old.pk).exists()


def test_a_legal_hold_deletes_nothing(member, team, keep_30_days):
    keep_30_days.legal_hold = True
    keep_30_days.save()
    chat = aged(member, team, 1000)
    assert "Deleted 0 conversations in 0 teams" in purge()
    assert Conversation.objects.filter(pk=chat.pk).exists()
    assert not AuditEvent.objects.filter(action="retention.purge").exists()


def test_the_receipt_counts_and_names_the_window_without_content(member, team, keep_30_days):
    aged(member, team, 40)
    aged(member, team, 50)
    purge()
    receipt = AuditEvent.objects.get(action="retention.purge")
    assert receipt.team == team and receipt.actor is None
    assert receipt.details["conversations"] == 2 and receipt.details["retention_days"] == 30
    assert receipt.details["cutoff"] and receipt.details["run_at"]
    assert "2 conversations untouched for 30 days" in receipt.summary
    assert SECRET not in receipt.summary + json.dumps(receipt.details)


def test_purging_again_deletes_nothing_and_writes_no_second_receipt(member, team, keep_30_days):
    aged(member, team, 40)
    purge()
    assert "Deleted 0 conversations" in purge()
    assert AuditEvent.objects.filter(action="retention.purge").count() == 1


def test_a_pin_or_a_message_landing_as_the_purge_runs_keeps_the_conversation(
    member, team, keep_30_days, monkeypatch
):
    """The purge has read its batch when the owner pins one conversation and writes in
    another: both stay, the rest of the batch goes, and the receipt counts what went."""
    pinned, written, gone = aged(member, team, 40), aged(member, team, 40), aged(member, team, 40)
    read_batch = retention_actions._next_batch

    def batch_then_the_owner_acts(window):
        batch = read_batch(window)
        if batch:
            Conversation.objects.filter(pk=pinned.pk).update(pinned=True)
            Message.objects.create(conversation=written, role="user", content="Still needed")
        return batch

    monkeypatch.setattr(retention_actions, "_next_batch", batch_then_the_owner_acts)
    purge()
    assert set(Conversation.objects.values_list("pk", flat=True)) == {pinned.pk, written.pk}
    assert not Conversation.objects.filter(pk=gone.pk).exists()
    receipt = AuditEvent.objects.get(action="retention.purge")
    assert receipt.details["conversations"] == 1


def test_a_run_stopped_part_way_leaves_a_receipt_for_what_it_deleted(
    member, team, keep_30_days, monkeypatch
):
    """Stopped (Ctrl+C, a killed container) after its first batch: what went is receipted,
    and the next run receipts the rest."""
    chats = [aged(member, team, 40) for _ in range(3)]
    monkeypatch.setattr(retention_actions, "BATCH", 2)
    read_batch, calls = retention_actions._next_batch, []

    def stopped_after_the_first_batch(window):
        calls.append(window)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return read_batch(window)

    monkeypatch.setattr(retention_actions, "_next_batch", stopped_after_the_first_batch)
    with pytest.raises(KeyboardInterrupt):
        purge()
    assert Conversation.objects.filter(pk__in=[c.pk for c in chats]).count() == 1
    receipts = AuditEvent.objects.filter(action="retention.purge")
    assert [r.details["conversations"] for r in receipts] == [2]
    monkeypatch.setattr(retention_actions, "_next_batch", read_batch)
    purge()
    assert not Conversation.objects.filter(pk__in=[c.pk for c in chats]).exists()
    assert sorted(r.details["conversations"] for r in receipts.all()) == [1, 2]


@pytest.mark.parametrize(
    "change", [{"legal_hold": True}, {"retention_days": None}, {"retention_days": 365}]
)
def test_a_policy_changed_as_the_purge_runs_stops_it(
    member, team, keep_30_days, monkeypatch, change
):
    """The owner puts a legal hold on (or lifts or widens the window) once the purge has
    read the team's window: nothing more of the team goes, and no receipt is written."""
    chats = [aged(member, team, 40), aged(member, team, 40)]
    read_batch = retention_actions._next_batch

    def batch_then_the_owner_changes_the_policy(window):
        batch = read_batch(window)
        TeamPolicy.objects.filter(pk=keep_30_days.pk).update(**change)
        return batch

    monkeypatch.setattr(retention_actions, "_next_batch", batch_then_the_owner_changes_the_policy)
    purge()
    assert Conversation.objects.filter(pk__in=[c.pk for c in chats]).count() == 2
    assert not AuditEvent.objects.filter(action="retention.purge").exists()


def test_a_dry_run_only_counts(member, team, keep_30_days):
    chat = aged(member, team, 40)
    output = purge("--dry-run")
    assert "Would delete 1 conversation of team" in output
    assert Conversation.objects.filter(pk=chat.pk).exists()
    assert not AuditEvent.objects.filter(action="retention.purge").exists()


def test_files_and_shares_go_with_the_conversation(
    member, team, keep_30_days, uploads_dir, django_capture_on_commit_callbacks
):
    chat = aged(member, team, 40)
    upload = create_upload(member, team, "notes.txt", f"{SECRET} notes".encode())
    upload.message = chat.messages.get()
    upload.save()
    stored = uploads_dir / upload.file.name
    assert stored.exists()
    share_conversation(member, chat, "team")
    Conversation.objects.filter(pk=chat.pk).update(updated_at=timezone.now() - timedelta(days=40))
    with django_capture_on_commit_callbacks(execute=True):
        purge()
    assert not Upload.objects.exists() and not Share.objects.exists()
    assert not stored.exists()


def test_expired_temporary_chats_go_too(member, team):
    chat = aged(member, team, 2, temporary=True)
    assert "and 1 expired temporary chat." in purge("--dry-run")
    assert Conversation.objects.filter(pk=chat.pk).exists()
    assert "and 1 expired temporary chat." in purge()
    assert not Conversation.objects.filter(pk=chat.pk).exists()


# --- the policy -------------------------------------------------------------------------------


def test_owners_and_admins_set_the_window_within_bounds(owner, admin_member, team):
    admin = client_for(Client(), admin_member)
    assert patch(admin, team, {"retention_days": 90}).json()["retention_days"] == 90
    for bad in (0, -1, 36_501, "30", 1.5, True):
        response = patch(admin, team, {"retention_days": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["field"] == "retention_days", bad
    assert TeamPolicy.objects.get(team=team).retention_days == 90
    assert patch(admin, team, {"retention_days": None}).json()["retention_days"] is None
    event = AuditEvent.objects.filter(action="policy.update").first()
    assert "retention_days" in event.details["changes"]


@pytest.mark.parametrize("days", ["36501", "1000000", "2000000000"])
def test_the_admin_site_keeps_the_window_within_the_policy_pages_bounds(
    client, site_admin, team, member, days
):
    """A window the policy page refuses (past a hundred years) is refused in /admin/ too: saved,
    it made the hourly purge fail for every team (a cutoff before year 1), temporary chats
    included."""
    client.force_login(site_admin)
    data = {"team": team.pk, "allowed_models": "[]", "retention_days": days}
    data |= {"safety_input": "off", "safety_output": "off", "safety_categories": "[]"}
    data |= {"safety_on_error": "fail_open", "data_patterns": "[]"}
    data |= {f"data_{kind}": "off" for kind in ("card", "iban", "email", "phone", "api_key")}
    data |= {"data_private_key": "off"}
    client.post("/admin/teams/teampolicy/add/", data)
    assert not TeamPolicy.objects.filter(retention_days__gt=36_500).exists()
    chat = aged(member, team, 2, temporary=True)
    assert "and 1 expired temporary chat." in purge()
    assert not Conversation.objects.filter(pk=chat.pk).exists()


def test_only_owners_set_or_lift_a_legal_hold(owner, admin_member, member, team):
    admin = client_for(Client(), admin_member)
    assert patch(admin, team, {"legal_hold": True}).status_code == 403
    assert patch(client_for(Client(), member), team, {"legal_hold": True}).status_code == 403
    assert not TeamPolicy.objects.filter(team=team, legal_hold=True).exists()
    assert patch(client_for(Client(), owner), team, {"legal_hold": True}).json()["legal_hold"]
    # An admin may change other fields, which leaves the hold as it is, but not lift it.
    assert patch(admin, team, {"retention_days": 10}).json()["legal_hold"] is True
    assert patch(admin, team, {"legal_hold": False}).status_code == 403
    assert patch(admin, team, {"legal_hold": None}).status_code == 403
    assert TeamPolicy.objects.get(team=team).legal_hold is True


def test_the_policy_page_sets_the_window_and_admins_cannot_touch_the_hold(
    owner, admin_member, team
):
    url = f"/teams/{team.pk}/policy/"
    admin = client_for(Client(), admin_member)
    page = admin.get(url)
    assert b'name="retention_days"' in page.content and b"Legal hold" in page.content
    response = admin.post(url, {"retention_days": "14", "legal_hold": "on"})
    assert response.status_code == 302
    stored = TeamPolicy.objects.get(team=team)
    assert stored.retention_days == 14 and stored.legal_hold is False
    client_for(Client(), owner).post(url, {"retention_days": "14", "legal_hold": "on"})
    assert TeamPolicy.objects.get(team=team).legal_hold is True
    # The admin's next save keeps the owner's hold.
    admin.post(url, {"retention_days": "20"})
    stored = TeamPolicy.objects.get(team=team)
    assert stored.retention_days == 20 and stored.legal_hold is True


def test_the_receipt_shows_on_the_teams_audit_page(owner, member, team, keep_30_days):
    aged(member, team, 40)
    purge()
    page = client_for(Client(), owner).get(f"/teams/{team.pk}/audit/")
    assert page.status_code == 200
    assert b"Retention deleted 1 conversation untouched for 30 days" in page.content
    assert SECRET.encode() not in page.content


def test_every_link_on_the_policy_page_opens_for_an_admin(owner, admin_member, team):
    """The retention help names the audit trail; only owners may open it, so only they get
    a link there."""
    admin = client_for(Client(), admin_member)
    page = admin.get(f"/teams/{team.pk}/policy/").content.decode()
    links = set(re.findall(rf'href="(/teams/{team.pk}/[^"]*)"', page))
    assert f"/teams/{team.pk}/safety/" in links  # the page's own links are found
    assert {link: admin.get(link).status_code for link in links} == dict.fromkeys(links, 200)
    owners_page = client_for(Client(), owner).get(f"/teams/{team.pk}/policy/").content.decode()
    assert "in the <a href" in owners_page and f'href="/teams/{team.pk}/audit/"' in owners_page


def test_members_read_on_their_settings_page_how_long_their_teams_keep_conversations(
    member_client, member, team, keep_30_days, make_user
):
    elsewhere = Team.objects.create(name="Elsewhere")
    TeamPolicy.objects.create(team=elsewhere, retention_days=7)
    page = member_client.get("/settings/").content.decode()
    assert "<bdi>Acme</bdi> deletes conversations nobody wrote in for 30 days" in page
    assert "pinned ones are kept" in page
    assert "Elsewhere" not in page  # a team they are not in
    TeamPolicy.objects.filter(pk=keep_30_days.pk).update(legal_hold=True)
    held = member_client.get("/settings/").content.decode()
    # Held, the team deletes nothing (a member is told why when they try to delete anything):
    # the page says it keeps them, temporary chats too, rather than that it deletes them.
    assert "for 30 days" not in held
    kept_all = "<bdi>Acme</bdi> is under legal hold: it keeps every conversation, temporary chats"
    assert kept_all in held
    TeamPolicy.objects.filter(pk=keep_30_days.pk).update(retention_days=None)
    assert kept_all in member_client.get("/settings/").content.decode()
    TeamPolicy.objects.filter(pk=keep_30_days.pk).update(legal_hold=False)
    kept = member_client.get("/settings/").content.decode()
    assert "deletes conversations" not in kept and "legal hold" not in kept
