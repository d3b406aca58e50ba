"""Sharing a conversation inside its team: the JSON API, the share's page for every role and
outsider, revoking, the snapshot, "Continue in my chats", and the audit trail."""

import json
import re
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatapp.chat import planning
from chatapp.chat.actions import sharing
from chatapp.chat.actions.conversations import delete_conversation
from chatapp.chat.actions.sharing import SHARES_PER_PAGE
from chatapp.chat.errors import ChatError
from chatapp.chat.models import Conversation, Message, Share
from chatapp.chat.requests import SendRequest
from chatapp.chat.views import SHARE_PICKER_SIZE
from chatapp.teams import policy
from chatapp.teams.actions import flag_message
from chatapp.teams.models import (
    AuditAction,
    AuditEvent,
    Membership,
    Role,
    SystemPrompt,
    Team,
    TeamPolicy,
)
from chatapp.teams.safety import Finding
from chatapp.uploads.actions import create_upload
from tests.conftest import client_for
from tests.databases import lock_waiters, uses_postgres
from tests.support.plans import sorts_rows
from tests.support.polling import wait_for

SECRET = "SECRET-41d3"


@pytest.fixture
def conversation(member, team):
    """Max's conversation in Acme, on a branch: an earlier answer was regenerated."""
    chat = Conversation.objects.create(team=team, owner=member, title="Taxes", model="m")
    question = Message.objects.create(conversation=chat, role="user", content="How do I **file**?")
    old = Message.objects.create(conversation=chat, role="assistant", content="old answer")
    new = Message(conversation=chat, parent=question, role="assistant", content=f"{SECRET} form A")
    new.explicit_parent = True
    new.save()
    Conversation.objects.filter(pk=chat.pk).update(active_leaf=new)
    assert old.pk < new.pk
    chat.refresh_from_db()
    return chat


@pytest.fixture
def teammate(make_user, team):
    user = make_user("tina")
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def other_team_user(make_user):
    user = make_user("otto")
    Membership.objects.create(team=Team.objects.create(name="Other"), user=user, role=Role.OWNER)
    return user


def post_json(client: Client, url: str, body) -> object:
    return client.post(url, json.dumps(body), content_type="application/json")


def share(client: Client, conversation, **body):
    url = f"/api/conversations/{conversation.pk}/shares/"
    return post_json(client, url, {"audience": "team", **body})


def test_the_owner_shares_with_the_team_and_everyone_in_it_reads_it(
    member, owner, teammate, conversation, client
):
    author = client_for(Client(), member)
    response = share(author, conversation)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["audience"] == "team" and data["messages"] == 2
    assert author.get("/api/shares/").json()["results"] == [data]  # counted by the database
    assert data["conversation_id"] == conversation.pk and data["url"].startswith("/s/")
    for reader in (member, owner, teammate):
        page = client_for(Client(), reader).get(data["url"])
        assert page.status_code == 200
        assert b"How do I **file**?" in page.content
        assert f"{SECRET} form A".encode() in page.content  # the branch shown...
        assert b"old answer" not in page.content  # ...not the other version


def test_chosen_members_only(member, owner, teammate, conversation):
    data = share(
        client_for(Client(), member), conversation, audience="members", members=[teammate.pk]
    ).json()
    assert data["members"] == [teammate.pk]
    assert client_for(Client(), teammate).get(data["url"]).status_code == 200
    assert client_for(Client(), member).get(data["url"]).status_code == 200
    # The team's owner is not among the chosen: not found, whatever their role.
    response = client_for(Client(), owner).get(data["url"])
    assert response.status_code == 404 and SECRET.encode() not in response.content
    event = AuditEvent.objects.get(action="conversation.share")
    assert event.summary.endswith(f"shared conversation {conversation.pk} with 1 member")


def test_other_teams_and_anonymous_visitors_never_see_it(member, other_team_user, conversation):
    url = share(client_for(Client(), member), conversation).json()["url"]
    response = client_for(Client(), other_team_user).get(url)
    assert response.status_code == 404 and SECRET.encode() not in response.content
    assert client_for(Client(), other_team_user).post(url + "fork/").status_code == 404
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert Client().get("/s/not-a-token/").status_code == 302
    assert client_for(Client(), member).get("/s/not-a-token/").status_code == 404


@pytest.mark.parametrize("path", ["/s/a%00b/", "/s/a%00b/fork/"])
def test_a_token_no_share_could_have_is_404_not_a_500(member, path):
    # A NUL is no text PostgreSQL can compare: the token must not reach the query.
    member_client = client_for(Client(), member)
    assert member_client.get(path).status_code == 404
    assert member_client.post(path).status_code == 404


def test_a_member_who_leaves_the_team_loses_the_share(member, teammate, conversation):
    url = share(
        client_for(Client(), member), conversation, audience="members", members=[teammate.pk]
    ).json()["url"]
    Membership.objects.filter(user=teammate).delete()
    assert client_for(Client(), teammate).get(url).status_code == 404


@pytest.mark.parametrize("audience", ["team", "members"])
def test_a_share_stops_showing_to_the_team_when_its_author_leaves(
    audience, member, owner, teammate, team, conversation
):
    author = client_for(Client(), member)
    body = {"audience": audience, "members": [teammate.pk]}
    url = share(author, conversation, **body).json()["url"]
    assert author.post(f"/teams/{team.pk}/leave/").status_code == 302
    for reader in (teammate, owner):
        response = client_for(Client(), reader).get(url)
        assert response.status_code == 404 and SECRET.encode() not in response.content
        assert client_for(Client(), reader).post(url + "fork/").status_code == 404
    assert not Conversation.objects.exclude(owner=member).exists()  # nothing was copied
    # Its author still has it, to read and revoke; back in the team, the team reads it again.
    assert author.get(url).status_code == 200
    assert author.get("/api/shares/").json()["results"][0]["url"] == url
    assert b"hidden: you left this team" in author.get("/settings/shares/").content
    Membership.objects.create(team=team, user=member, role=Role.MEMBER)
    assert client_for(Client(), teammate).get(url).status_code == 200


@pytest.mark.parametrize("audience", ["team", "members"])
def test_a_share_stops_showing_when_its_author_is_deactivated_or_deleted(
    audience, member, owner, teammate, conversation
):
    """A deactivated account speaks for no one: its shares stop showing, as when its author
    leaves the team, and show again if a site admin reactivates it; a deleted one's are gone."""
    body = {"audience": audience, "members": [teammate.pk]}
    url = share(client_for(Client(), member), conversation, **body).json()["url"]
    type(member).objects.filter(pk=member.pk).update(is_active=False)
    for reader in (teammate, owner):
        response = client_for(Client(), reader).get(url)
        assert response.status_code == 404 and SECRET.encode() not in response.content
        assert client_for(Client(), reader).post(url + "fork/").status_code == 404
    assert not Conversation.objects.exclude(owner=member).exists()  # nothing was copied
    type(member).objects.filter(pk=member.pk).update(is_active=True)
    assert client_for(Client(), teammate).get(url).status_code == 200
    member.delete()
    assert client_for(Client(), teammate).get(url).status_code == 404
    assert not Share.objects.exists()


def test_reading_a_share_in_no_team_creates_no_team_and_continuing_it_does(member, conversation):
    """Its author left every team: the page reads (a GET writes nothing) and says where the copy
    would go, the personal team that "Continue in my chats" then creates."""
    author = client_for(Client(), member)
    url = share(author, conversation).json()["url"]
    Membership.objects.filter(user=member).delete()
    teams = list(Team.objects.values_list("pk", flat=True))
    response = author.get(url)
    assert response.status_code == 200
    assert list(Team.objects.values_list("pk", flat=True)) == teams
    page = response.content.decode()
    assert SECRET in page
    assert "into a new chat of yours in max&#x27;s team" in page
    assert response.context["fork"]["prompt"] is None

    forked = author.post(url + "fork/")
    assert forked.status_code == 302
    personal = Team.objects.get(personal_owner=member)
    copy = Conversation.objects.get(owner=member, team=personal)
    assert forked.url == f"/c/{copy.pk}/"
    assert personal.name == "max's team"


def test_after_leaving_the_team_its_conversations_are_not_shared_nor_its_members_shown(
    member, teammate, conversation
):
    Membership.objects.filter(user=member).delete()
    client = client_for(Client(), member)
    response = share(client, conversation)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    page = client.get(f"/c/{conversation.pk}/share/")
    assert page.status_code == 403
    assert b"no longer in this conversation" in page.content
    assert b"tina" not in page.content  # the team's members are not the former member's to see
    posted = client.post(
        f"/c/{conversation.pk}/share/", {"audience": "members", "members": [teammate.pk]}
    )
    assert posted.status_code == 403 and b"tina" not in posted.content
    assert not Share.objects.exists()


def test_bad_shares_are_refused_and_change_nothing(member, other_team_user, conversation, owner):
    client = client_for(Client(), member)
    cases = [
        ({"audience": "everyone"}, "audience"),
        ({"audience": "members", "members": []}, "members"),
        ({"audience": "members", "members": [member.pk]}, "members"),  # only yourself
        ({"audience": "members", "members": [other_team_user.pk]}, "members"),
        ({"audience": "members", "members": [2**40]}, "members"),
        ({"audience": "members", "members": ["1"]}, "members"),  # an item: its list
        ({"audience": "team", "extra": 1}, "extra"),
    ]
    for body, field in cases:
        response = post_json(client, f"/api/conversations/{conversation.pk}/shares/", body)
        assert response.status_code == 400, body
        assert response.json()["error"]["field"] == field, body
    # Somebody else's conversation, even the team owner's view of a member's: not found.
    assert share(client_for(Client(), owner), conversation).status_code == 404
    assert not Share.objects.exists()
    assert not AuditEvent.objects.filter(action="conversation.share").exists()


def test_revoke_makes_it_404_for_everyone_and_only_the_owner_may(member, teammate, conversation):
    owner_client = client_for(Client(), member)
    data = share(owner_client, conversation).json()
    reader = client_for(Client(), teammate)
    assert reader.delete(f"/api/shares/{data['id']}/").status_code == 404
    assert owner_client.get("/api/shares/").json()["results"][0]["id"] == data["id"]
    assert reader.get("/api/shares/").json()["results"] == []
    assert owner_client.delete(f"/api/shares/{data['id']}/").status_code == 204
    assert reader.get(data["url"]).status_code == 404
    assert owner_client.get(data["url"]).status_code == 404
    assert owner_client.delete(f"/api/shares/{data['id']}/").status_code == 404
    assert owner_client.get("/api/shares/").json()["results"] == []


def test_a_share_revoked_twice_at_once_is_revoked_once(member, conversation):
    """A double click on Revoke: both requests found the share before either deleted it. The
    second is told it is gone (404), and the team's trail records one revocation."""
    made = sharing.share_conversation(member, conversation, "team")
    first, second = Share.objects.get(pk=made.pk), Share.objects.get(pk=made.pk)
    sharing.revoke_share(member, first)
    with pytest.raises(ChatError) as refused:
        sharing.revoke_share(member, second)
    assert refused.value.code == "not_found"
    assert AuditEvent.objects.filter(action=AuditAction.SHARE_REVOKE).count() == 1


def test_the_snapshot_ignores_later_edits(member, teammate, conversation):
    url = share(client_for(Client(), member), conversation).json()["url"]
    Message.objects.filter(conversation=conversation).update(content="edited later")
    Message.objects.create(conversation=conversation, role="user", content="a later question")
    Conversation.objects.filter(pk=conversation.pk).update(title="Renamed")
    page = client_for(Client(), teammate).get(url)
    assert f"{SECRET} form A".encode() in page.content
    assert b"edited later" not in page.content and b"a later question" not in page.content
    assert b"Taxes" in page.content


def test_readers_see_the_system_prompt_and_model_the_answers_followed(
    member, teammate, conversation
):
    """A prompt of the author's own can make the answers say anything: a reader who saw only
    the questions would take them for what the model says unprompted."""
    steer = "Whatever is asked, say the deadline <moved> to Friday."
    Conversation.objects.filter(pk=conversation.pk).update(
        system_prompt_text=steer, model="Llama-3.3-70B-Instruct"
    )
    url = share(client_for(Client(), member), conversation).json()["url"]
    Conversation.objects.filter(pk=conversation.pk).update(system_prompt_text="changed later")
    page = client_for(Client(), teammate).get(url).content.decode()
    assert "Whatever is asked, say the deadline &lt;moved&gt; to Friday." in page
    assert "changed later" not in page
    assert "Answered by Llama-3.3-70B-Instruct, following the system prompt" in page


def test_a_share_without_a_system_prompt_names_the_model_only(member, teammate, conversation):
    url = share(client_for(Client(), member), conversation).json()["url"]
    page = client_for(Client(), teammate).get(url).content.decode()
    assert "Answered by m." in page and "System prompt" not in page


def test_withheld_text_is_not_shared(member, teammate, conversation):
    Message.objects.filter(content__startswith=SECRET).update(status="blocked")
    url = share(client_for(Client(), member), conversation).json()["url"]
    page = client_for(Client(), teammate).get(url)
    assert SECRET.encode() not in page.content
    assert SECRET not in json.dumps(Share.objects.get().messages)
    assert b"Withheld by the team" in page.content


@pytest.mark.parametrize("mode, on_error", [("block", "fail_open"), ("flag", "fail_closed")])
def test_an_answer_not_yet_screened_is_not_shared_while_it_streams(
    member, teammate, team, conversation, mode, on_error
):
    """Its text may still end blocked, and the share would keep it for the whole team."""
    TeamPolicy.objects.create(team=team, safety_output=mode, safety_on_error=on_error)
    Message.objects.filter(content__startswith=SECRET).update(status="streaming")
    url = share(client_for(Client(), member), conversation).json()["url"]
    page = client_for(Client(), teammate).get(url)
    assert SECRET.encode() not in page.content
    assert SECRET not in json.dumps(Share.objects.get().messages)
    assert b"Still being written and checked when this was shared" in page.content


@pytest.mark.parametrize("mode", ["off", "flag"])
def test_an_answer_streaming_that_nothing_may_withhold_is_shared_as_far_as_it_went(
    member, teammate, team, conversation, mode
):
    TeamPolicy.objects.create(team=team, safety_output=mode, safety_on_error="fail_open")
    Message.objects.filter(content__startswith=SECRET).update(status="streaming")
    url = share(client_for(Client(), member), conversation).json()["url"]
    assert SECRET.encode() in client_for(Client(), teammate).get(url).content


@pytest.mark.parametrize(
    "status, note",
    [("error", b"No answer was written."), ("streaming", b"Nothing was written yet when")],
)
def test_an_answer_without_text_says_so(member, teammate, conversation, status, note):
    Message.objects.filter(content__startswith=SECRET).update(content="", status=status)
    url = share(client_for(Client(), member), conversation).json()["url"]
    page = client_for(Client(), teammate).get(url)
    assert note in page.content


def test_file_names_are_listed_not_shared(member, teammate, team, conversation):
    upload = create_upload(member, team, "notes.txt", b"private notes")
    Message.objects.filter(role="user").update()
    upload.message = conversation.messages.get(role="user")
    upload.save()
    url = share(client_for(Client(), member), conversation).json()["url"]
    page = client_for(Client(), teammate).get(url)
    assert b"notes.txt" in page.content and b"private notes" not in page.content
    # The share does not open the file to the reader.
    assert client_for(Client(), teammate).get(f"/api/uploads/{upload.pk}/").status_code == 404


def test_continuing_a_share_names_the_questions_files_in_the_copy(
    member, teammate, team, conversation
):
    question = conversation.messages.get(role="user")
    for name in ("notes.txt", "plan.md"):
        upload = create_upload(member, team, name, b"private notes")
        upload.message = question
        upload.save()
    url = share(client_for(Client(), member), conversation).json()["url"]
    client_for(Client(), teammate).post(url + "fork/")
    copy = Conversation.objects.get(owner=teammate)
    copied = copy.messages.get(role="user")
    # Named, so the reader and the model know the question came with files; never opened.
    assert copied.content == (
        "How do I **file**?\n\n[Files not included in the share: notes.txt, plan.md]"
    )
    assert not copied.attachments.exists()


def test_continuing_a_long_share_writes_its_messages_at_once(member, teammate, team):
    """The copy costs the same statements whatever the length of the shared branch."""
    reader = client_for(Client(), teammate)

    def fork_with(turns: int) -> tuple[int, list]:
        chat = Conversation.objects.create(team=team, owner=member, title="Long", model="m")
        for number in range(turns):
            Message.objects.create(conversation=chat, role="user", content=f"q{number}")
            Message.objects.create(conversation=chat, role="assistant", content=f"a{number}")
        url = share(client_for(Client(), member), chat).json()["url"]
        with CaptureQueriesContext(connection) as queries:
            copy_url = reader.post(url + "fork/")["Location"]
        copy = Conversation.objects.get(pk=copy_url.strip("/").split("/")[-1])
        rows = list(copy.messages.order_by("id").values_list("pk", "parent_id", "content"))
        return len(queries), rows

    fork_with(1)  # the reader's first copy also sets their session's current team
    few, _ = fork_with(2)
    many, rows = fork_with(10)
    assert many == few
    assert [content for _, _, content in rows] == [
        text for number in range(10) for text in (f"q{number}", f"a{number}")
    ]
    assert [parent for _, parent, _ in rows] == [None] + [pk for pk, _, _ in rows[:-1]]


def test_continue_in_my_chats_copies_the_snapshot_into_the_viewers_own_conversation(
    member, teammate, team, conversation
):
    SystemPrompt.objects.create(team=team, name="House", content="Be kind.", is_default=True)
    url = share(client_for(Client(), member), conversation).json()["url"]
    reader = client_for(Client(), teammate)
    response = reader.post(url + "fork/")
    assert response.status_code == 302
    copy = Conversation.objects.get(owner=teammate)
    assert response["Location"] == f"/c/{copy.pk}/"
    assert copy.team == team and copy.title == "Taxes"
    assert copy.system_prompt_text == "Be kind."
    rows = list(copy.messages.order_by("id").values("role", "content", "parent_id", "id"))
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", "How do I **file**?"),
        ("assistant", f"{SECRET} form A"),
    ]
    assert rows[0]["parent_id"] is None and rows[1]["parent_id"] == rows[0]["id"]
    # Theirs to read over the API; the original is untouched and still not theirs.
    assert reader.get(f"/api/conversations/{copy.pk}/").status_code == 200
    assert reader.get(f"/api/conversations/{conversation.pk}/").status_code == 404
    assert conversation.messages.count() == 3
    assert reader.get(url + "fork/").status_code == 405


def test_continuing_a_share_revoked_meanwhile_copies_nothing(member, teammate, team, conversation):
    """The viewer's request found the share; its owner revoked it before the copy was made."""
    made = sharing.share_conversation(member, conversation, "team")
    found = Share.objects.get(pk=made.pk)  # as the viewer's request read it
    sharing.revoke_share(member, Share.objects.get(pk=made.pk))
    with pytest.raises(ChatError) as refused:
        sharing.fork_share(teammate, found, team)
    assert refused.value.code == "not_found"
    assert not Conversation.objects.filter(owner=teammate).exists()


@pytest.mark.skipif(not uses_postgres(), reason="SQLite already queues every writer")
@pytest.mark.django_db(transaction=True)
def test_continuing_a_share_as_it_is_revoked_waits_and_copies_nothing(
    member, teammate, team, conversation
):
    """Two processes: the owner revokes the share while a viewer continues it. The copy waits
    for the revocation, then finds the share gone (404): nothing revoked stays readable."""
    url = share(client_for(Client(), member), conversation).json()["url"]
    made = Share.objects.get()
    reader = client_for(Client(), teammate)
    outcome: list[int] = []

    def continue_it() -> None:
        try:
            outcome.append(reader.post(url + "fork/").status_code)
        finally:
            connection.close()

    continuing = threading.Thread(target=continue_it)
    with transaction.atomic():
        sharing.revoke_share(member, made)
        continuing.start()
        wait_for(lambda: outcome or lock_waiters() > 0, "the copy to end or wait on a lock")
    continuing.join(30)
    assert outcome == [404]
    assert not Conversation.objects.filter(owner=teammate).exists()


def test_share_and_revoke_are_audited_without_content(member, conversation):
    client = client_for(Client(), member)
    data = share(client, conversation).json()
    client.delete(f"/api/shares/{data['id']}/")
    events = AuditEvent.objects.filter(team=conversation.team).order_by("id")
    assert [e.action for e in events] == ["conversation.share", "conversation.share_revoke"]
    for event in events:
        text = event.summary + json.dumps(event.details)
        assert "Taxes" not in text and SECRET not in text and "file" not in text
        assert event.details["conversation_id"] == conversation.pk


def test_deleting_the_conversation_deletes_its_shares(member, teammate, conversation):
    client = client_for(Client(), member)
    url = share(client, conversation).json()["url"]
    assert client.delete(f"/api/conversations/{conversation.pk}/").status_code == 204
    assert client_for(Client(), teammate).get(url).status_code == 404
    assert not Share.objects.exists()


def test_a_conversation_deleted_as_it_is_shared_is_404_and_leaves_no_share(
    member, conversation, monkeypatch
):
    """The owner deletes the conversation in another tab (or retention does) after the share
    request found it: the share is refused as for any conversation that is gone, rather than
    left pointing at a deleted row (or failing at commit with a server error)."""
    checked = sharing.check_shareable

    def checked_then_deleted_elsewhere(actor, found):
        checked(actor, found)
        delete_conversation(Conversation.objects.get(pk=found.pk))

    monkeypatch.setattr(sharing, "check_shareable", checked_then_deleted_elsewhere)
    response = share(client_for(Client(), member), conversation)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not Share.objects.exists()
    assert not AuditEvent.objects.filter(action="conversation.share").exists()


def test_the_share_pages_for_the_owner(member, teammate, conversation):
    client = client_for(Client(), member)
    form = client.get(f"/c/{conversation.pk}/share/")
    assert form.status_code == 200 and b"tina" in form.content
    response = client.post(
        f"/c/{conversation.pk}/share/", {"audience": "members", "members": [teammate.pk]}
    )
    assert response.status_code == 302
    created = Share.objects.get()
    listing = client.get("/settings/shares/")
    assert created.token.encode() in listing.content and b"tina" in listing.content
    assert client.post(f"/c/{conversation.pk}/share/", {"audience": "members"}).status_code == 400
    other = client_for(Client(), teammate)
    assert other.get(f"/c/{conversation.pk}/share/").status_code == 404
    assert other.post(f"/settings/shares/{created.pk}/revoke/").status_code == 404
    assert client.post(f"/settings/shares/{created.pk}/revoke/").status_code == 302
    assert not Share.objects.exists()


def test_a_temporary_chat_cannot_be_shared(member, conversation):
    Conversation.objects.filter(pk=conversation.pk).update(temporary=True)
    client = client_for(Client(), member)
    response = share(client, conversation)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "temporary_chat"
    page = client.get(f"/c/{conversation.pk}/share/")
    assert page.status_code == 400 and b"cannot be shared" in page.content
    assert client.post(f"/c/{conversation.pk}/share/", {"audience": "team"}).status_code == 400
    assert not Share.objects.exists()


@pytest.mark.parametrize("audience", ["team", "members"])
def test_every_role_and_outsider(
    audience, member, owner, admin_member, teammate, make_user, other_team_user, conversation
):
    """Max shares with the team, or with Tina only: who reads it (200) and who gets 404."""
    bystander = make_user("bea")  # a plain member of the team, not chosen
    Membership.objects.create(team=conversation.team, user=bystander, role=Role.MEMBER)
    body = {"audience": audience, "members": [teammate.pk]}
    url = share(client_for(Client(), member), conversation, **body).json()["url"]
    everyone_in_team = audience == "team"
    expected = {
        member: 200,  # the conversation's owner
        teammate: 200,  # chosen
        owner: 200 if everyone_in_team else 404,  # the team's owner
        admin_member: 200 if everyone_in_team else 404,
        bystander: 200 if everyone_in_team else 404,
        other_team_user: 404,
    }
    for user, status in expected.items():
        response = client_for(Client(), user).get(url)
        assert response.status_code == status, (audience, user.username)
        assert (SECRET.encode() in response.content) == (status == 200)
    assert Client().get(url).status_code == 302  # anonymous: log in first


def test_a_blocked_question_does_not_go_upstream_from_a_copy(member, teammate, team):
    """docs/safety.md: a blocked question "never goes upstream again, in later turns either";
    only the newest question is screened, so a copy made with Continue in my chats must not
    send it as history either (whoever continues it: the author too)."""
    chat = Conversation.objects.create(team=team, owner=member, title="Locks", model="m")
    question = Message.objects.create(conversation=chat, role="user", content=f"{SECRET} lock?")
    Message.objects.create(
        conversation=chat,
        role="assistant",
        status="error",
        error_code="safety_blocked",
        error_message="Your team's safety policy blocks questions ...",
    )
    flag_message(team, member, question.pk, Finding("input", ("S1",), True))
    url = share(client_for(Client(), member), chat).json()["url"]

    for reader in (teammate, member):
        client_for(Client(), reader).post(url + "fork/")
        copy = Conversation.objects.filter(owner=reader).exclude(pk=chat.pk).get()
        request = SendRequest(content="Something else", conversation_id=copy.pk)
        plan = planning.plan_send(reader, request, team=None)
        assert SECRET not in json.dumps(plan.messages)


def test_the_list_of_shares_comes_page_by_page(member, conversation):
    """Hundreds of shares are listed 50 at a time, newest first, each page in the same
    number of queries; `next` leads to the following page and is null on the last."""
    client = client_for(Client(), member)
    share(client, conversation)
    made = Share.objects.get()
    Share.objects.bulk_create(
        Share(conversation=conversation, owner=member, team=conversation.team, audience="team")
        for _ in range(SHARES_PER_PAGE)
    )
    expected = list(Share.objects.filter(owner=member).values_list("pk", flat=True))
    first = client.get("/api/shares/").json()
    assert [item["id"] for item in first["results"]] == expected[:SHARES_PER_PAGE]
    assert first["next"] == "/api/shares/?page=2"
    with CaptureQueriesContext(connection) as queries:
        second = client.get(first["next"]).json()
    assert [item["id"] for item in second["results"]] == [made.pk] == expected[SHARES_PER_PAGE:]
    assert second["results"][0]["messages"] == 2 and second["next"] is None
    with CaptureQueriesContext(connection) as more_queries:
        client.get("/api/shares/")
    assert len(more_queries) == len(queries)  # 50 shares cost what 1 does
    assert client.get("/api/shares/", {"page": 3}).json() == {"results": [], "next": None}
    assert client.get("/api/shares/", {"page": ""}).json() == first


@pytest.mark.parametrize("url", ["/settings/shares/", "/api/shares/"])
def test_a_page_of_shares_is_read_in_order_from_an_index(member, conversation, url):
    Share.objects.bulk_create(
        Share(conversation=conversation, owner=member, team=conversation.team, audience="team")
        for _ in range(2)
    )
    with CaptureQueriesContext(connection) as queries:
        assert client_for(Client(), member).get(url).status_code == 200
    shares = [q["sql"] for q in queries.captured_queries if 'FROM "chat_share"' in q["sql"]]
    (page,) = [sql for sql in shares if "ORDER BY" in sql]  # beside the page's count, if any
    assert not sorts_rows(page)


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5", "99999999999999999999"])
def test_an_odd_page_of_shares_is_400(member, page):
    response = client_for(Client(), member).get("/api/shares/", {"page": page})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "page"


def test_the_shares_page_comes_page_by_page(member, conversation):
    Share.objects.bulk_create(
        Share(conversation=conversation, owner=member, team=conversation.team, audience="team")
        for _ in range(SHARES_PER_PAGE + 1)
    )
    oldest = Share.objects.filter(owner=member).last()
    client = client_for(Client(), member)
    first = client.get("/settings/shares/")
    assert first.content.count(b'class="share-link"') == SHARES_PER_PAGE
    assert oldest.token.encode() not in first.content and b'href="?page=2"' in first.content
    second = client.get("/settings/shares/", {"page": 2})
    assert (
        second.content.count(b'class="share-link"') == 1 and oldest.token.encode() in second.content
    )
    for odd in ("0", "abc", "99999999999999999999"):
        assert client.get("/settings/shares/", {"page": odd}).status_code == 200


def test_the_share_page_says_what_continuing_it_leaves_behind(member, teammate, team, conversation):
    Conversation.objects.filter(pk=conversation.pk).update(system_prompt_text="Talk like a pirate.")
    upload = create_upload(member, team, "notes.txt", b"private notes")
    upload.message = conversation.messages.get(role="user")
    upload.save()
    url = share(client_for(Client(), member), conversation).json()["url"]
    reader = client_for(Client(), teammate)
    note = reader.get(url).context["fork"]
    assert (note["files"], note["prompt_differs"], note["prompt"]) == (["notes.txt"], True, None)
    page = reader.get(url).content.decode()
    assert 'aria-describedby="fork-note"' in page
    assert "without its files (notes.txt)" in page
    assert "with no system prompt, not the one above" in page

    # Continued with the same prompt, and nothing attached: nothing is left behind to mention.
    SystemPrompt.objects.create(
        team=team, name="Pirate", content="Talk like a pirate.", is_default=True
    )
    upload.delete()
    url = share(client_for(Client(), member), conversation).json()["url"]
    page = reader.get(url).content.decode()
    assert "without its files" not in page and "not the one above" not in page
    assert "into a new chat of yours in Acme" in page


def test_the_share_page_says_the_copy_goes_on_with_the_viewers_default_model(
    member, teammate, conversation
):
    reader = client_for(Client(), teammate)
    default = policy.site_defaults()["model"]
    url = share(client_for(Client(), member), conversation).json()["url"]  # answered by "m"
    note = reader.get(url).context["fork"]
    assert (note["model"], note["model_differs"]) == (default, True)
    page = reader.get(url).content.decode()
    assert f"its next answers come from {default}, your default model, not m" in page

    # Answered by the model the copy goes on with: nothing to say.
    Conversation.objects.filter(pk=conversation.pk).update(model=default)
    url = share(client_for(Client(), member), conversation).json()["url"]
    assert reader.get(url).context["fork"]["model_differs"] is False
    assert "your default model" not in reader.get(url).content.decode()


def teammates(team, count: int, prefix: str = "person") -> list:
    people = get_user_model().objects.bulk_create(
        get_user_model()(username=f"{prefix}{n:03}") for n in range(count)
    )
    Membership.objects.bulk_create(Membership(team=team, user=p) for p in people)
    return people


def boxes(response) -> list[str]:
    """The names the share page offers to choose, in order."""
    return re.findall(
        r'name="members" value="\d+"[^>]*>\s*<bdi>([^<]*)</bdi>', response.content.decode()
    )


def test_a_small_teams_share_page_lists_everyone_and_filters_as_typed(member, owner, conversation):
    page = client_for(Client(), member).get(f"/c/{conversation.pk}/share/")
    assert boxes(page) == ["olivia"]
    html = page.content.decode()
    assert "data-member-filter hidden" in html and 'name="find_people"' not in html


def test_a_large_teams_share_page_lists_the_first_by_name_and_finds_the_others(
    member, owner, team, conversation
):
    """More teammates than SHARE_PICKER_SIZE: the first by name are listed, and Find people
    (a button of the form, so it works without scripts) lists those whose name holds what was
    typed, keeping those already chosen first and checked; it shares nothing."""
    people = teammates(team, SHARE_PICKER_SIZE + 5)
    client = client_for(Client(), member)
    url = f"/c/{conversation.pk}/share/"
    page = client.get(url)
    assert boxes(page) == ["olivia", *[p.username for p in people[: SHARE_PICKER_SIZE - 1]]]
    html = page.content.decode()
    assert 'name="find_people"' in html and "data-member-filter hidden" not in html
    assert f"The first {SHARE_PICKER_SIZE} of {SHARE_PICKER_SIZE + 6} teammates by name" in html

    chosen = people[3]
    found = client.post(
        url, {"audience": "members", "members": [chosen.pk], "find": " 10", "find_people": "1"}
    )
    assert found.status_code == 200 and not Share.objects.exists()
    expected = ["person010", *[f"person{n}" for n in range(100, SHARE_PICKER_SIZE + 5)]]
    assert boxes(found) == ["person003", *expected]
    html = found.content.decode()
    assert re.search(rf'value="{chosen.pk}"[^>]* checked', html)
    assert re.search(r'value="members"[^>]* checked', html)
    assert f"{len(expected)} teammates with a name holding \u201c10\u201d" in html
    assert 'name="find" value="10"' in html and "autofocus" in html

    nobody = client.post(url, {"audience": "members", "find": "zzz", "find_people": "1"})
    assert boxes(nobody) == []
    assert "Nobody else in the team has a name holding \u201czzz\u201d" in nobody.content.decode()
    narrow = client.post(url, {"audience": "members", "find": "person", "find_people": "1"})
    assert len(boxes(narrow)) == SHARE_PICKER_SIZE
    assert "type more of the name to narrow it" in narrow.content.decode()

    last = people[-1]  # never on the first list: chosen after a Find, shared with
    response = client.post(url, {"audience": "members", "members": [chosen.pk, last.pk]})
    assert response.status_code == 302
    assert set(Share.objects.get().members.values_list("pk", flat=True)) == {chosen.pk, last.pk}


@pytest.mark.parametrize(
    "sent",
    [
        {"members": ["abc", "9" * 40, "-1", ""], "find": "x" * 10_000},
        {"members": ["999999999999999999"], "find": "\x00"},  # no query carries a NUL
        {"members": ["1.5", "0x1"], "find": " \t\n"},
    ],
)
def test_odd_choices_and_searches_on_the_share_page_are_never_a_500(
    member, team, conversation, other_team_user, sent
):
    teammates(team, SHARE_PICKER_SIZE + 1)
    client = client_for(Client(), member)
    url = f"/c/{conversation.pk}/share/"
    data = {"audience": "members", **sent}
    assert client.post(url, {**data, "find_people": "1"}).status_code == 200
    assert client.post(url, data).status_code == 400
    outsider = {"audience": "members", "members": [other_team_user.pk], "find_people": "1"}
    listed = boxes(client.post(url, outsider))
    assert "otto" not in listed and "max" not in listed and len(listed) == SHARE_PICKER_SIZE
    assert client.post(url, {**outsider, "find_people": ""}).status_code == 200
    assert not Share.objects.exists()


def test_the_share_page_costs_the_same_queries_whatever_the_teams_size(
    member, owner, team, make_user, conversation
):
    client = client_for(Client(), member)
    url = f"/c/{conversation.pk}/share/"
    with CaptureQueriesContext(connection) as small:
        assert client.get(url).status_code == 200
    people = teammates(team, 3 * SHARE_PICKER_SIZE)
    with CaptureQueriesContext(connection) as large:
        assert client.get(url).status_code == 200
    assert len(large) <= len(small) + 1  # and the count of teammates, said on the page
    chosen = {"members": [p.pk for p in people[-20:]], "find": "person1", "find_people": "1"}
    with CaptureQueriesContext(connection) as found:
        assert client.post(url, {"audience": "members", **chosen}).status_code == 200
    assert len(found) <= len(large) + 1  # and those chosen, beside the ones found
