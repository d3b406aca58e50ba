"""The safety review queue: who may see flagged text, decisions, the audit trail, usage counts."""

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.timezone import make_aware
from prometheus_client import REGISTRY

from chatapp.chat.models import Conversation, Message
from chatapp.teams import actions
from chatapp.teams.models import AuditEvent, Membership, Role, SafetyFlag, Team
from chatapp.teams.safety import Finding
from chatapp.uploads.actions import create_upload
from chatapp.uploads.models import Upload
from tests.conftest import client_for
from tests.uploads.files import image_bytes, pdf_with_text

ANSWER = "A withheld answer about zebras"


@pytest.fixture
def flagged(team, member) -> SafetyFlag:
    conversation = Conversation.objects.create(team=team, owner=member, title="Zebras")
    Message.objects.create(conversation=conversation, role="user", content="Tell me")
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content=ANSWER, status="blocked"
    )
    return actions.flag_message(team, member, answer.pk, Finding("output", ("S10",), True))


def queue_url(team, show: str = "") -> str:
    return reverse("teams:safety", args=[team.pk]) + (f"?show={show}" if show else "")


def review_url(flag) -> str:
    return reverse("teams:safety_review", args=[flag.team_id, flag.pk])


@pytest.mark.parametrize("role", ["owner", "admin_member"])
def test_owners_and_admins_see_the_flagged_text(request, role, team, flagged):
    client = client_for(Client(), request.getfixturevalue(role))
    response = client.get(queue_url(team))

    assert response.status_code == 200
    page = response.content.decode()
    assert ANSWER in page
    assert "Blocked answer" in page and "by max" in page and "S10 Hate" in page
    assert "In answer to:" in page and "Tell me" in page  # what Llama Guard judged it with


def test_members_get_403_and_never_see_the_text(member_client, team, flagged):
    response = member_client.get(queue_url(team))

    assert response.status_code == 403
    assert ANSWER.encode() not in response.content
    assert member_client.post(review_url(flagged), {"decision": "reviewed"}).status_code == 403
    flagged.refresh_from_db()
    assert flagged.decision == ""


def test_outsiders_get_404(outsider_client, team, flagged):
    assert outsider_client.get(queue_url(team)).status_code == 404
    assert outsider_client.post(review_url(flagged), {"decision": "reviewed"}).status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(client, team):
    response = client.get(queue_url(team))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_flag_of_another_team_is_404(owner_client, owner, flagged):
    other = actions.create_team(owner, "Other")
    url = reverse("teams:safety_review", args=[other.pk, flagged.pk])

    assert owner_client.post(url, {"decision": "reviewed"}).status_code == 404


@pytest.mark.parametrize("decision", ["reviewed", "false_positive"])
def test_a_decision_is_recorded_and_audited(owner_client, owner, team, flagged, decision):
    before = REGISTRY.get_sample_value("chat_safety_reviews_total", {"decision": decision}) or 0
    response = owner_client.post(review_url(flagged), {"decision": decision, "show": "pending"})

    assert response.status_code == 302
    flagged.refresh_from_db()
    assert (flagged.decision, flagged.decided_by) == (decision, owner)
    event = AuditEvent.objects.get(action="safety.review")
    assert event.details == {
        "flag": flagged.pk,
        "message": flagged.message_id,
        "decision": decision,
    }
    assert ANSWER not in event.summary and "S10" not in event.summary
    assert REGISTRY.get_sample_value("chat_safety_reviews_total", {"decision": decision}) == (
        before + 1
    )
    assert ANSWER.encode() not in owner_client.get(queue_url(team)).content  # left the queue
    assert ANSWER.encode() in owner_client.get(queue_url(team, "all")).content


def test_a_bad_decision_is_400_and_changes_nothing(owner_client, flagged):
    assert owner_client.post(review_url(flagged), {"decision": "delete"}).status_code == 400
    assert owner_client.get(review_url(flagged)).status_code == 405
    flagged.refresh_from_db()
    assert flagged.decision == ""
    assert not AuditEvent.objects.filter(action="safety.review").exists()


def test_the_queue_is_per_team(owner_client, owner, make_user, flagged):
    zed = make_user("zed")
    theirs = Team.objects.get(pk=actions.create_team(zed, "Theirs").pk)
    conversation = Conversation.objects.create(team=theirs, owner=zed, title="x")
    message = Message.objects.create(conversation=conversation, role="user", content="Secret")
    actions.flag_message(theirs, zed, message.pk, Finding("input", ("S1",), False))

    page = owner_client.get(queue_url(flagged.team, "all")).content
    assert ANSWER.encode() in page and b"Secret" not in page


def test_the_usage_page_counts_flags(owner_client, team, flagged):
    page = owner_client.get(reverse("teams:usage", args=[team.pk])).content.decode()

    assert "Llama Guard flagged 1 message" in page
    assert "1 answer blocked" in page


def test_the_usage_page_counts_the_flags_of_the_month_shown(owner_client, team, flagged):
    """From the month's first instant to the last, in the site's time zone."""
    first = make_aware(datetime(2026, 11, 1))
    SafetyFlag.objects.filter(pk=flagged.pk).update(created_at=first)
    november = reverse("teams:usage", args=[team.pk]) + "?month=2026-11"
    assert "Llama Guard flagged 1 message" in owner_client.get(november).content.decode()
    SafetyFlag.objects.filter(pk=flagged.pk).update(created_at=first - timedelta(microseconds=1))
    assert "Nothing flagged in November 2026" in owner_client.get(november).content.decode()
    october = november.replace("2026-11", "2026-10")
    assert "Llama Guard flagged 1 message" in owner_client.get(october).content.decode()


@pytest.fixture
def flagged_files(team, member):
    """A question flagged with a picture and a report attached, and a file of another question
    that was not flagged."""
    conversation = Conversation.objects.create(team=team, owner=member, title="Pictures")
    question = Message.objects.create(conversation=conversation, role="user", content="Look")
    other = Message.objects.create(conversation=conversation, role="user", content="And this")
    picture = create_upload(member, team, "beach.png", image_bytes(60, 40))
    report = create_upload(member, team, "report.pdf", pdf_with_text("Q3"))
    unflagged = create_upload(member, team, "other.png", image_bytes())
    Upload.objects.filter(pk__in=[picture.pk, report.pk]).update(message=question)
    Upload.objects.filter(pk=unflagged.pk).update(message=other)
    actions.flag_message(team, member, question.pk, Finding("input", ("S12",), True))
    return picture, report, unflagged


def test_reviewers_see_and_open_the_files_sent_with_a_flagged_question(
    admin_member, team, flagged_files
):
    picture, report, unflagged = flagged_files
    client = client_for(Client(), admin_member)
    page = client.get(queue_url(team)).content.decode()

    assert f'<img src="/api/uploads/{picture.pk}/" alt="beach.png" width="60" height="40"' in page
    assert "<summary>Show beach.png" in page  # closed until the reviewer opens it
    assert f'href="/api/uploads/{report.pk}/" download>report.pdf</a>' in page
    assert "other.png" not in page
    assert "In answer to" not in page  # a question is judged alone
    image = client.get(f"/api/uploads/{picture.pk}/")
    assert (image.status_code, image["Content-Type"]) == (200, "image/png")
    assert client.get(f"/api/uploads/{report.pk}/")["Content-Disposition"].startswith("attachment")
    assert client.get(f"/api/uploads/{unflagged.pk}/").status_code == 404
    assert client.delete(f"/api/uploads/{picture.pk}/").status_code == 403
    assert Upload.objects.filter(pk=picture.pk).exists()


@pytest.mark.parametrize("role", [Role.MEMBER, None])
def test_other_members_and_outsiders_cannot_open_a_flagged_question_s_files(
    make_user, team, role, flagged_files
):
    someone = make_user("sam")
    if role:
        Membership.objects.create(team=team, user=someone, role=role)
    client = client_for(Client(), someone)
    picture, report, _ = flagged_files
    for upload in (picture, report):
        assert client.get(f"/api/uploads/{upload.pk}/").status_code == 404


def test_a_reviewer_who_left_the_team_or_became_a_member_can_no_longer_open_them(
    admin_member, team, flagged_files
):
    picture, _, _ = flagged_files
    client = client_for(Client(), admin_member)
    membership = Membership.objects.get(team=team, user=admin_member)
    membership.role = Role.MEMBER
    membership.save()
    assert client.get(f"/api/uploads/{picture.pk}/").status_code == 404
    membership.delete()
    assert client.get(f"/api/uploads/{picture.pk}/").status_code == 404


def test_reviewers_of_another_team_cannot_open_them(outsider, flagged_files):
    theirs = Team.objects.create(name="Elsewhere")
    Membership.objects.create(team=theirs, user=outsider, role=Role.OWNER)
    picture, _, _ = flagged_files
    client = client_for(Client(), outsider)
    assert client.get(f"/api/uploads/{picture.pk}/").status_code == 404


def test_the_queue_s_pages_keep_what_it_shows(owner_client, team, member, flagged):
    """Past 50 flags the queue has pages; each page link keeps the choice of what it shows."""
    conversation = flagged.message.conversation
    for _ in range(50):
        answer = Message.objects.create(
            conversation=conversation, role="assistant", content=ANSWER, status="blocked"
        )
        actions.flag_message(team, member, answer.pk, Finding("output", ("S10",), True))
    page = owner_client.get(queue_url(team, "all")).content.decode()
    assert 'href="?show=all&amp;page=2">Older</a>' in page
    newer = owner_client.get(queue_url(team, "all") + "&page=2").content.decode()
    assert 'href="?show=all&amp;page=1">Newer</a>' in newer


def test_a_later_page_reads_the_messages_of_its_own_flags_only(owner_client, team, member, flagged):
    """A later page joined every flag before it to its messages and people, only to skip them
    (a cost that grew with the page number)."""
    conversation = flagged.message.conversation
    for _ in range(52):
        answer = Message.objects.create(
            conversation=conversation, role="assistant", content=ANSWER, status="blocked"
        )
        actions.flag_message(team, member, answer.pk, Finding("output", ("S10",), True))
    with CaptureQueriesContext(connection) as queries:
        response = owner_client.get(queue_url(team, "all") + "&page=2")
    assert [flag.pk for flag in response.context["flags"]] == list(
        SafetyFlag.objects.filter(team=team).order_by("-pk").values_list("pk", flat=True)[50:]
    )
    read = [q["sql"] for q in queries if 'JOIN "chat_message"' in q["sql"]]
    assert read and not [sql for sql in read if "OFFSET" in sql]


def test_a_decision_returns_the_reviewer_to_the_page_they_were_on(
    owner_client, team, member, flagged
):
    conversation = flagged.message.conversation
    for _ in range(50):
        answer = Message.objects.create(
            conversation=conversation, role="assistant", content=ANSWER, status="blocked"
        )
        actions.flag_message(team, member, answer.pk, Finding("output", ("S10",), True))
    page = owner_client.get(queue_url(team, "all") + "&page=2").content.decode()
    assert f'id="flag-{flagged.pk}"' in page  # the oldest flag is on the second page
    assert '<input type="hidden" name="page" value="2">' in page

    response = owner_client.post(
        review_url(flagged), {"decision": "reviewed", "show": "all", "page": "2"}
    )
    assert response.status_code == 302
    assert response["Location"] == queue_url(team, "all") + "&page=2"


@pytest.mark.parametrize("page", ["", "0", "1", "x", "-1", "²", "9" * 30])
def test_a_decision_with_no_usable_page_returns_to_the_first(owner_client, team, flagged, page):
    response = owner_client.post(
        review_url(flagged), {"decision": "reviewed", "show": "pending", "page": page}
    )
    assert response.status_code == 302
    assert response["Location"] == queue_url(team, "pending")
