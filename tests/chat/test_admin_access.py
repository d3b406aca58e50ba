"""Break-glass reading: site admins cannot read members' conversations unless they record a
reason, which gives time-limited access to that one conversation, shown to its owner and kept in
the audit trail."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chatapp.chat.models import AdminAccessGrant, Conversation, Message
from chatapp.chat.views import ADMIN_READ_PER_PAGE
from chatapp.teams.audit_trail import verify_chain
from chatapp.teams.models import AuditEvent

SECRET = "the quarterly numbers are bad"
REASON = "Abuse report #41 names this conversation"


@pytest.fixture
def conversation(team, member):
    convo = Conversation.objects.create(
        team=team, owner=member, model="Llama-3.3-8B-Instruct", title=f"About {SECRET}"
    )
    Message.objects.create(conversation=convo, role="user", content=SECRET)
    Message.objects.create(conversation=convo, role="assistant", content="I am sorry to hear it")
    return convo


@pytest.fixture
def admin_client(site_admin):
    client = Client()  # its own: tests use it beside the member's client
    client.force_login(site_admin)
    return client


def request_url(convo) -> str:
    return reverse("admin_access_request", args=[convo.pk])


def read_url(convo) -> str:
    return reverse("admin_access_read", args=[convo.pk])


# ---- nothing readable by default ----------------------------------------------------------


def test_the_django_admin_shows_no_conversation_text(admin_client, conversation):
    pages = [
        "/admin/chat/conversation/",
        f"/admin/chat/conversation/{conversation.pk}/change/",
        f"/admin/chat/conversation/{conversation.pk}/delete/",
        "/admin/chat/conversation/?q=quarterly",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert SECRET not in response.content.decode(), page
        assert "sorry to hear" not in response.content.decode(), page
    assert admin_client.get("/admin/chat/message/").status_code == 404
    listing = admin_client.get("/admin/chat/conversation/").content.decode()
    assert request_url(conversation) in listing


def test_site_admin_reads_nothing_without_a_grant(admin_client, conversation):
    response = admin_client.get(read_url(conversation))
    assert response.status_code == 302 and response["Location"] == request_url(conversation)
    form = admin_client.get(request_url(conversation)).content.decode()
    assert SECRET not in form and conversation.owner.username in form
    # The owner's own pages and API stay 404 to the site admin.
    assert admin_client.get(f"/c/{conversation.pk}/").status_code == 404
    assert admin_client.get(f"/api/conversations/{conversation.pk}/").status_code == 404


# ---- the grant ----------------------------------------------------------------------------


def test_a_reason_gives_time_limited_access_to_that_conversation_only(
    admin_client, site_admin, conversation, team, member
):
    other = Conversation.objects.create(team=team, owner=member, model="m", title="other")
    response = admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    assert response.status_code == 302 and response["Location"] == read_url(conversation)
    page = admin_client.get(read_url(conversation)).content.decode()
    assert SECRET in page and "sorry to hear" in page and REASON in page
    assert admin_client.get(read_url(other)).status_code == 302  # still needs its own reason
    grant = AdminAccessGrant.objects.get()
    assert grant.admin == site_admin and grant.reason == REASON
    assert timedelta(minutes=14) < grant.expires_at - grant.created_at <= timedelta(minutes=15)


def test_the_read_page_shows_the_messages_once_and_no_flashed_notices(admin_client, conversation):
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    page = admin_client.get(read_url(conversation)).content.decode()
    assert page.count(SECRET) == 2  # the title and the message, not a flashed copy too
    assert 'class="flash' not in page


def test_a_long_conversation_is_read_a_page_at_a_time(admin_client, conversation):
    """Every branch's messages, oldest first, ADMIN_READ_PER_PAGE a page: the first page links
    to the next, which shows the rest; an odd page number shows a page, never a 500."""
    Message.objects.bulk_create(
        Message(conversation=conversation, role="user", content=f"line-{n:03}-end")
        for n in range(ADMIN_READ_PER_PAGE)
    )  # with the fixture's two: the last falls on page 2
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    first = admin_client.get(read_url(conversation)).content.decode()
    assert SECRET in first and "line-047-end" in first and "line-048-end" not in first
    assert first.count('class="admin-read-message"') == ADMIN_READ_PER_PAGE
    assert 'href="?page=2"' in first and f"({ADMIN_READ_PER_PAGE + 2} messages)" in first
    second = admin_client.get(read_url(conversation), {"page": 2}).content.decode()
    assert "line-048-end" in second and "line-049-end" in second and "line-047-end" not in second
    assert second.count('class="admin-read-message"') == 2 and 'href="?page=1"' in second
    for odd in ("0", "-1", "abc", "99999999999999999999"):
        response = admin_client.get(read_url(conversation), {"page": odd})
        assert response.status_code == 200 and "admin-read-message" in response.content.decode()


def test_the_read_page_costs_the_same_queries_however_long_the_conversation(
    admin_client, conversation, team, member
):
    short = Conversation.objects.create(team=team, owner=member, model="m", title="short")
    Message.objects.create(conversation=short, role="user", content="hello")
    Message.objects.bulk_create(
        Message(conversation=conversation, role="assistant", content=f"answer {n}")
        for n in range(3 * ADMIN_READ_PER_PAGE)
    )
    for convo in (short, conversation):
        admin_client.post(request_url(convo), {"reason": REASON, "minutes": "15"})
    with CaptureQueriesContext(connection) as one_message:
        assert admin_client.get(read_url(short)).status_code == 200
    with CaptureQueriesContext(connection) as many:
        assert admin_client.get(read_url(conversation), {"page": 2}).status_code == 200
    assert len(many) == len(one_message)


def test_the_access_ends_when_the_grant_expires(admin_client, conversation):
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "60"})
    AdminAccessGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = admin_client.get(read_url(conversation))
    assert response.status_code == 302 and response["Location"] == request_url(conversation)


def test_a_grant_is_one_admins_own(client, conversation, make_user):
    first = make_user("root1", is_staff=True, is_superuser=True)
    second = make_user("root2", is_staff=True, is_superuser=True)
    client.force_login(first)
    client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    client.force_login(second)
    assert client.get(read_url(conversation)).status_code == 302


def test_the_audit_trail_keeps_who_when_and_why(admin_client, conversation, team):
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    event = AuditEvent.objects.get(action="conversation.admin_access")
    grant = AdminAccessGrant.objects.get()
    assert (event.team, event.actor_name) == (team, "siteadmin")
    assert event.details == {
        "conversation_id": conversation.pk,
        "owner": "max",
        "reason": REASON,
        "expires_at": grant.expires_at.isoformat(),
    }
    assert REASON in event.summary and SECRET not in event.summary
    assert verify_chain()[1] is None


@pytest.mark.parametrize(
    "data, field",
    [
        ({"reason": "", "minutes": "15"}, "reason"),
        ({"reason": "because", "minutes": "15"}, "reason"),  # too short to say why
        ({"reason": REASON, "minutes": "100000"}, "minutes"),
        ({"reason": REASON, "minutes": "abc"}, "minutes"),
        ({"reason": "x" * 1001, "minutes": "15"}, "reason"),
    ],
)
def test_bad_input_is_a_clear_400_and_grants_nothing(admin_client, conversation, data, field):
    response = admin_client.post(request_url(conversation), data)
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert not AdminAccessGrant.objects.exists()
    assert not AuditEvent.objects.filter(action="conversation.admin_access").exists()


# ---- what the owner sees ------------------------------------------------------------------


def test_the_owner_sees_who_read_when_and_why(member_client, admin_client, conversation):
    assert "No site admin has read" in member_client.get("/settings/admin-access/").content.decode()
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    log = member_client.get("/settings/admin-access/").content.decode()
    assert REASON in log and "siteadmin" in log
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "admin-access-notice" in page and REASON in page
    assert "/settings/admin-access/" in member_client.get("/settings/").content.decode()


def test_the_owner_still_sees_the_grant_once_the_conversation_is_gone(
    member_client, admin_client, conversation
):
    """A temporary chat ends, retention purges, the owner deletes: the record of the read stays."""
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    assert member_client.delete(f"/api/conversations/{conversation.pk}/").status_code == 204
    log = member_client.get("/settings/admin-access/").content.decode()
    assert REASON in log and "siteadmin" in log and "deleted" in log
    assert SECRET not in log
    assert AdminAccessGrant.objects.get().conversation_id is None


def test_the_owner_still_sees_the_grant_once_the_admin_s_account_is_deleted(
    member_client, admin_client, conversation, site_admin
):
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    site_admin.delete()
    log = member_client.get("/settings/admin-access/").content.decode()
    assert REASON in log and "siteadmin" in log
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert REASON in page and "siteadmin" in page


def test_nobody_sees_grants_on_conversations_they_do_not_own(
    owner_client, admin_client, conversation
):
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    assert REASON not in owner_client.get("/settings/admin-access/").content.decode()


# ---- who may ask, methods, CSRF -----------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "member", "admin_member", "outsider"])
def test_everyone_but_site_admins_gets_404(client, who, request, conversation):
    client.force_login(request.getfixturevalue(who))
    assert client.get(request_url(conversation)).status_code == 404
    data = {"reason": REASON, "minutes": "15"}
    assert client.post(request_url(conversation), data).status_code == 404
    assert client.get(read_url(conversation)).status_code == 404
    assert not AdminAccessGrant.objects.exists()


def test_a_staff_user_who_is_not_superuser_gets_404(client, make_user, conversation):
    client.force_login(make_user("staffer", is_staff=True))
    assert client.get(request_url(conversation)).status_code == 404


def test_a_missing_conversation_is_404(admin_client):
    assert admin_client.get(reverse("admin_access_request", args=[999999])).status_code == 404
    assert admin_client.get(reverse("admin_access_read", args=[999999])).status_code == 404


def test_anonymous_is_sent_to_login(client, conversation):
    for url in (request_url(conversation), read_url(conversation), "/settings/admin-access/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_wrong_methods_are_405(admin_client, conversation):
    assert admin_client.delete(request_url(conversation)).status_code == 405
    assert admin_client.post(read_url(conversation)).status_code == 405
    assert admin_client.post("/settings/admin-access/").status_code == 405


def test_the_grant_needs_the_csrf_token(site_admin, conversation):
    client = Client(enforce_csrf_checks=True)
    client.force_login(site_admin)
    response = client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    assert response.status_code == 403
    assert not AdminAccessGrant.objects.exists()


def test_the_admin_site_cannot_delete_a_grant(admin_client, conversation):
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    grant = AdminAccessGrant.objects.get()
    url = f"/admin/chat/adminaccessgrant/{grant.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [grant.pk], "post": "yes"}
    admin_client.post("/admin/chat/adminaccessgrant/", bulk)
    assert AdminAccessGrant.objects.filter(pk=grant.pk).exists()


def test_the_admin_site_still_deletes_an_account_with_grants_on_it(
    admin_client, conversation, member
):
    admin_client.post(request_url(conversation), {"reason": REASON, "minutes": "15"})
    response = admin_client.post(f"/admin/auth/user/{member.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not AdminAccessGrant.objects.exists()  # the owner's own record, gone with them


# ---- deleting in the admin site -----------------------------------------------------------


@pytest.mark.parametrize("bulk", [False, True])
def test_deleting_a_conversation_in_the_admin_site_is_audited_without_its_words(
    admin_client, conversation, team, member, bulk
):
    """A site admin deleting a member's conversation is in the team's trail, as reading one
    is: who, whose, which, and how many messages, never its title or text."""
    if bulk:
        form = {"action": "delete_selected", "_selected_action": [conversation.pk], "post": "yes"}
        response = admin_client.post("/admin/chat/conversation/", form)
    else:
        url = f"/admin/chat/conversation/{conversation.pk}/delete/"
        response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    event = AuditEvent.objects.get(action="conversation.delete")
    assert (event.team, event.actor_name) == (team, "siteadmin")
    assert event.details == {"conversation_id": conversation.pk, "owner": "max", "messages": 2}
    assert str(conversation.pk) in event.summary and "max" in event.summary
    assert SECRET not in event.summary and SECRET not in str(event.details)
    assert verify_chain()[1] is None
