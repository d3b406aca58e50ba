"""Deleting a user in the admin site: the teams they leave keep everyone else's data."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatapp.chat.models import Conversation, Message
from chatapp.core.sessions import SessionStore
from chatapp.teams.actions import ensure_personal_team
from chatapp.teams.audit_trail import verify_chain
from chatapp.teams.models import AuditEvent, Membership, Role, Team, TeamPolicy


def delete_one(client, user):
    return client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})


def delete_selected(client, *users):
    selected = [user.pk for user in users]
    form = {"action": "delete_selected", "_selected_action": selected, "post": "yes"}
    return client.post("/admin/auth/user/", form)


def chat(team, owner) -> Conversation:
    return Conversation.objects.create(team=team, owner=owner, model="Llama-3.3-8B-Instruct")


def role_of(team, user) -> str | None:
    membership = Membership.objects.filter(team=team, user=user).first()
    return membership.role if membership else None


@pytest.fixture
def staff_client(client, site_admin):
    client.force_login(site_admin)
    return client


@pytest.fixture
def shared_personal_team(make_user, member):
    """paula's personal team, which max joined; both chatted in it."""
    paula = make_user("paula")
    team = ensure_personal_team(paula)
    Membership.objects.create(team=team, user=member, role=Role.MEMBER)
    chat(team, paula)
    chat(team, member)
    return team


@pytest.mark.parametrize("delete", [delete_one, delete_selected])
def test_a_personal_team_others_are_in_is_handed_over_not_deleted(
    staff_client, site_admin, shared_personal_team, member, delete
):
    paula = shared_personal_team.personal_owner
    response = delete(staff_client, paula)
    assert response.status_code == 302, response.content[:2000]

    assert not get_user_model().objects.filter(username="paula").exists()
    team = Team.objects.get(pk=shared_personal_team.pk)
    assert team.personal_owner is None
    assert [c.owner for c in Conversation.objects.filter(team=team)] == [member]
    assert role_of(team, member) == Role.OWNER  # the team keeps an owner
    removed = AuditEvent.objects.get(team=team, action="member.remove")
    assert (removed.actor, removed.details) == (site_admin, {"user": "paula", "role": "owner"})
    promoted = AuditEvent.objects.get(team=team, action="member.role")
    assert promoted.details == {"user": "max", "old": "member", "new": "owner"}


def test_a_personal_team_goes_with_its_owner_when_nobody_else_stays(
    staff_client, shared_personal_team, member, make_user
):
    paula = shared_personal_team.personal_owner
    lonely = make_user("lena")
    team = ensure_personal_team(lonely)
    chat(team, lonely)
    shared_link = f"/admin/teams/team/{shared_personal_team.pk}/change/"
    lonely_link = f"/admin/teams/team/{team.pk}/change/"
    shown = staff_client.get(f"/admin/auth/user/{paula.pk}/delete/").content.decode()
    assert shared_link not in shown
    shown = staff_client.get(f"/admin/auth/user/{lonely.pk}/delete/").content.decode()
    assert lonely_link in shown
    form = {"action": "delete_selected", "_selected_action": [paula.pk, member.pk]}
    shown = staff_client.post("/admin/auth/user/", form).content.decode()
    assert shared_link in shown  # its only other member goes too

    assert delete_selected(staff_client, lonely, paula, member).status_code == 302
    assert not Team.objects.filter(pk__in=[team.pk, shared_personal_team.pk]).exists()
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("delete", [delete_one, delete_selected])
def test_a_person_whose_personal_team_is_under_legal_hold_is_not_deleted(
    staff_client, make_user, delete
):
    """Their team would go with them, and the hold keeps everything in it."""
    lonely = make_user("lena")
    team = ensure_personal_team(lonely)
    TeamPolicy.objects.create(team=team, legal_hold=True)
    shown = staff_client.get(f"/admin/auth/user/{lonely.pk}/delete/").content.decode()
    assert "under legal hold" in shown
    assert "under legal hold" in delete(staff_client, lonely).content.decode()
    assert get_user_model().objects.filter(pk=lonely.pk).exists()
    assert Team.objects.filter(pk=team.pk).exists()
    assert not AuditEvent.objects.filter(action="user.delete").exists()
    TeamPolicy.objects.filter(team=team).update(legal_hold=False)
    assert delete(staff_client, lonely).status_code == 302
    assert not get_user_model().objects.filter(pk=lonely.pk).exists()


@pytest.mark.parametrize("delete", [delete_one, delete_selected])
def test_a_personal_team_deleted_with_its_owner_is_audited(
    staff_client, site_admin, make_user, delete
):
    lonely = make_user("lena")
    team = ensure_personal_team(lonely)
    assert delete(staff_client, lonely).status_code == 302
    deleted = AuditEvent.objects.get(action="team.delete")
    assert (deleted.actor, deleted.team, deleted.team_name) == (site_admin, None, "lena's team")
    assert deleted.details == {"name": "lena's team", "members": 1, "user": "lena"}
    assert deleted.summary.endswith("their personal team lena's team (1 member) with them")
    assert not Team.objects.filter(pk=team.pk).exists()
    assert AuditEvent.objects.filter(action="user.delete").count() == 1
    assert verify_chain() == (2, None)


def test_a_team_whose_last_owner_is_deleted_gets_its_longest_standing_admin_as_owner(
    staff_client, site_admin, team, owner, admin_member, member
):
    other = Team.objects.create(name="Beta")  # another owner stays there: nobody is promoted
    Membership.objects.create(team=other, user=owner, role=Role.OWNER)
    Membership.objects.create(team=other, user=member, role=Role.OWNER)
    Membership.objects.create(team=other, user=admin_member, role=Role.ADMIN)

    assert delete_one(staff_client, owner).status_code == 302

    assert (role_of(team, admin_member), role_of(team, member)) == (Role.OWNER, Role.MEMBER)
    assert (role_of(other, admin_member), role_of(other, member)) == (Role.ADMIN, Role.OWNER)
    promoted = AuditEvent.objects.get(action="member.role")
    assert (promoted.team, promoted.actor, promoted.details["user"]) == (team, site_admin, "adam")


def test_a_user_deleted_outside_the_admin_site_never_takes_a_team_others_are_in(
    shared_personal_team, member
):
    shared_personal_team.personal_owner.delete()
    team = Team.objects.get(pk=shared_personal_team.pk)
    assert team.personal_owner is None
    assert [c.owner for c in Conversation.objects.filter(team=team)] == [member]


@pytest.mark.parametrize("delete", [delete_one, delete_selected])
def test_a_personal_team_holding_a_former_members_conversations_is_kept_for_them(
    staff_client, shared_personal_team, member, delete
):
    """Leaving a team keeps one's conversations in it to read: deleting the team's owner,
    the only member left, must not delete them."""
    paula = shared_personal_team.personal_owner
    Membership.objects.filter(team=shared_personal_team, user=member).delete()
    (kept,) = Conversation.objects.filter(team=shared_personal_team, owner=member)
    link = f"/admin/teams/team/{shared_personal_team.pk}/change/"
    assert link not in staff_client.get(f"/admin/auth/user/{paula.pk}/delete/").content.decode()

    assert delete(staff_client, paula).status_code == 302

    team = Team.objects.get(pk=shared_personal_team.pk)
    assert (team.personal_owner, team.memberships.count()) == (None, 0)
    assert [c.pk for c in Conversation.objects.filter(team=team)] == [kept.pk]
    reader = Client()
    reader.force_login(member)
    assert reader.get(f"/api/conversations/{kept.pk}/").status_code == 200
    assert not AuditEvent.objects.filter(action="team.delete").exists()
    removed = AuditEvent.objects.get(team=team, action="member.remove")
    assert removed.details == {"user": "paula", "role": "owner"}

    # The admin site's team list finds such teams, to delete them when no longer wanted.
    def listed(members: str) -> dict[int, int]:
        page = staff_client.get(f"/admin/teams/team/?members={members}")
        return {t.pk: t.member_count for t in page.context["cl"].result_list}

    assert listed("none") == {team.pk: 0}
    assert team.pk not in listed("some")


def test_the_deletion_page_counts_a_persons_messages_rather_than_listing_them(
    staff_client, make_user
):
    lena = make_user("lena")
    conversation = chat(ensure_personal_team(lena), lena)
    for _ in range(30):
        Message.objects.create(conversation=conversation, role="user", content="Hello")
    shown = staff_client.get(f"/admin/auth/user/{lena.pk}/delete/").content.decode()
    assert "<li>Messages: 30</li>" in shown and "<li>Conversations: 1</li>" in shown
    assert "user message" not in shown  # no line per message
    assert f"/admin/teams/team/{lena.memberships.get().team_id}/change/" in shown


@pytest.mark.parametrize("delete", [delete_one, delete_selected])
def test_a_deleted_users_sessions_are_deleted_with_them(staff_client, member, owner, delete):
    """A session is the account's data too (its key a credential): none outlives it."""
    for person in (member, member, owner):
        Client().force_login(person)
    assert delete(staff_client, member).status_code == 302
    store = SessionStore()
    signed_in = [
        store.decode(data).get("_auth_user_id")
        for data in Session.objects.values_list("session_data", flat=True)
    ]
    assert str(member.pk) not in signed_in
    assert signed_in.count(str(owner.pk)) == 1  # everyone else's stay


def test_deleting_many_users_reads_the_sessions_once(staff_client, make_user):
    """Finding a user's sessions reads every live one: once for all the accounts deleted."""
    users = [make_user(f"leaving{number}") for number in range(4)]
    for person in users:
        Client().force_login(person)
    with CaptureQueriesContext(connection) as queries:
        assert delete_selected(staff_client, *users).status_code == 302
    table = Session._meta.db_table
    scans = [q for q in queries.captured_queries if f'"session_data" FROM "{table}"' in q["sql"]]
    assert len(scans) == 1
    assert Session.objects.count() == 1  # the admin's own
