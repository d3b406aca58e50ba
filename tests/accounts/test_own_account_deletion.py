"""A person deleting their own account from Settings: confirmed, refused while a team needs
them, the same deletion as in the admin site, and then signed out."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.contrib.sessions.models import Session
from django.test import Client

from chatapp.accounts.actions import delete_own_account
from chatapp.chat.models import Conversation
from chatapp.core.sessions import SessionStore
from chatapp.teams.actions import ActionError, create_api_key, ensure_personal_team
from chatapp.teams.audit_trail import verify_chain
from chatapp.teams.models import ApiKey, AuditEvent, Membership, Role, Team, TeamPolicy
from tests.conftest import PASSWORD

URL = "/settings/delete-account/"
User = get_user_model()


def chat(team, owner) -> Conversation:
    return Conversation.objects.create(team=team, owner=owner, model="Llama-3.3-8B-Instruct")


def exists(user) -> bool:
    return User.objects.filter(pk=user.pk).exists()


def signed_in_ids() -> list[str]:
    store = SessionStore()
    sessions = Session.objects.values_list("session_data", flat=True)
    return [store.decode(data).get("_auth_user_id") for data in sessions]


def test_settings_offers_it_and_the_page_says_what_goes_and_what_stays(member_client):
    assert URL in member_client.get("/settings/").content.decode()
    page = member_client.get(URL)
    assert page.status_code == 200
    shown = page.content.decode()
    for words in ("conversations", "files you uploaded", "shared", "API keys", "sessions"):
        assert words in shown
    assert "audit trail" in shown
    assert 'type="password"' in shown and "Type your password to confirm" in shown


def test_anonymous_is_sent_to_the_login_page_and_nothing_is_deleted(client, member):
    for response in (client.get(URL), client.post(URL, {"confirmation": PASSWORD})):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert exists(member)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods_get_405_and_delete_nothing(member_client, member, method):
    assert getattr(member_client, method)(URL).status_code == 405
    assert exists(member)


def test_a_post_without_the_csrf_token_is_refused(member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    assert client.post(URL, {"confirmation": PASSWORD}).status_code == 403
    assert exists(member)


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("wrong password", "That is not your password: nothing was deleted."),
        ("max", "That is not your password: nothing was deleted."),  # the username
        ("", "This field is required."),
    ],
)
def test_a_wrong_password_says_so_and_changes_nothing(member_client, member, team, typed, said):
    conversation = chat(team, member)
    response = member_client.post(URL, {"confirmation": typed})
    assert response.status_code == 400
    assert said in response.content.decode()
    assert exists(member) and Conversation.objects.filter(pk=conversation.pk).exists()
    assert not AuditEvent.objects.exists()
    assert member_client.get("/settings/").status_code == 200  # still signed in


def test_someone_elses_password_deletes_nobody(outsider_client, outsider, member, make_user):
    otto = make_user("otto")
    otto.set_password("another password 123")
    otto.save()
    response = outsider_client.post(URL, {"confirmation": "another password 123"})
    assert response.status_code == 400
    assert exists(outsider) and exists(member) and User.objects.filter(username="otto").exists()


def test_the_account_goes_with_what_is_its_and_the_person_is_signed_out(
    member_client, member, owner, team
):
    mine, theirs = chat(team, member), chat(team, owner)
    create_api_key(member, team, "script")
    Client().force_login(member)  # another browser
    Client().force_login(owner)

    response = member_client.post(URL, {"confirmation": PASSWORD})

    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "Your account and everything in it were deleted." in [
        str(m) for m in get_messages(response.wsgi_request)
    ]
    assert not exists(member)
    assert not Conversation.objects.filter(pk=mine.pk).exists()
    assert Conversation.objects.filter(pk=theirs.pk).exists()
    assert not ApiKey.objects.filter(name="script").exists()
    assert str(member.pk) not in signed_in_ids() and str(owner.pk) in signed_in_ids()
    assert member_client.get("/settings/").status_code == 302  # signed out
    assert "were deleted" in member_client.get("/accounts/login/").content.decode()

    deleted = AuditEvent.objects.get(action="user.delete")
    assert (deleted.actor, deleted.team, deleted.details) == (None, None, {"user": "max"})
    assert deleted.summary == "max deleted their own account"
    left = AuditEvent.objects.get(action="member.remove")
    assert (left.team, left.details) == (team, {"user": "max", "role": "member"})
    assert left.summary == "max (member) deleted their own account"
    assert Membership.objects.get(team=team, user=owner).role == Role.OWNER
    assert verify_chain()[1] is None


def test_a_personal_team_nobody_else_is_in_goes_too(client, make_user):
    lena = make_user("lena")
    personal = ensure_personal_team(lena)
    chat(personal, lena)
    client.force_login(lena)
    assert client.post(URL, {"confirmation": PASSWORD}).status_code == 302
    assert not Team.objects.filter(pk=personal.pk).exists()
    gone = AuditEvent.objects.get(action="team.delete")
    said = (
        "lena deleted their own account, and their personal team lena's team (1 member) with them"
    )
    assert gone.summary == said


def test_the_only_owner_of_a_team_with_other_members_is_refused(owner_client, owner, team, member):
    page = owner_client.get(URL).content.decode()
    assert "You are the only owner of Acme" in page and 'name="confirmation"' not in page

    response = owner_client.post(URL, {"confirmation": PASSWORD})

    assert response.status_code == 409
    assert "make someone else an owner" in response.content.decode()
    assert exists(owner) and Membership.objects.get(team=team, user=owner).role == Role.OWNER
    assert not AuditEvent.objects.exists()


def test_the_refusal_is_checked_again_where_the_account_is_deleted(owner, team, member):
    """The page's check and the deletion are not one moment: the action checks under lock."""
    with pytest.raises(ActionError, match="only owner of Acme"):
        delete_own_account(owner)
    assert exists(owner) and not AuditEvent.objects.exists()


def test_an_owner_with_another_owner_beside_them_may_go(owner_client, owner, team, admin_member):
    Membership.objects.filter(team=team, user=admin_member).update(role=Role.OWNER)
    assert owner_client.post(URL, {"confirmation": PASSWORD}).status_code == 302
    assert not exists(owner)
    assert not AuditEvent.objects.filter(action="member.role").exists()  # nobody promoted


def test_the_only_owner_of_their_personal_team_others_joined_is_refused(client, make_user, member):
    paula = make_user("paula")
    personal = ensure_personal_team(paula)
    Membership.objects.create(team=personal, user=member, role=Role.MEMBER)
    client.force_login(paula)
    assert client.post(URL, {"confirmation": PASSWORD}).status_code == 409
    assert Team.objects.get(pk=personal.pk).personal_owner == paula


def test_a_personal_team_under_legal_hold_is_not_deleted_with_its_owner(client, make_user):
    lena = make_user("lena")
    personal = ensure_personal_team(lena)
    TeamPolicy.objects.create(team=personal, legal_hold=True)
    client.force_login(lena)
    response = client.post(URL, {"confirmation": PASSWORD})
    assert response.status_code == 409
    assert "under legal hold" in response.content.decode()
    assert exists(lena) and Team.objects.filter(pk=personal.pk).exists()


def test_a_hold_on_a_team_where_one_has_no_conversations_does_not_keep_the_account(
    member_client, member, team, owner
):
    """The hold keeps what is in the team (tests/chat/test_legal_hold.py): a member with no
    conversation there loses it nothing."""
    TeamPolicy.objects.create(team=team, legal_hold=True)
    theirs = chat(team, owner)
    assert member_client.post(URL, {"confirmation": PASSWORD}).status_code == 302
    assert not exists(member) and Conversation.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize("how", ["no password", "passwords off"])
def test_without_a_password_to_sign_in_with_the_username_confirms(
    member_client, member, settings, how
):
    if how == "no password":
        member.set_unusable_password()
        member.save()
        member_client.force_login(member)
    else:
        settings.LOCAL_PASSWORDS = False
    page = member_client.get(URL).content.decode()
    assert "Type your username, <strong>max</strong>" in page and 'type="password"' not in page

    refused = member_client.post(URL, {"confirmation": PASSWORD})
    assert (
        refused.status_code == 400
        and "Type your username, max, exactly" in refused.content.decode()
    )
    assert exists(member)

    assert member_client.post(URL, {"confirmation": "max"}).status_code == 302
    assert not exists(member)
