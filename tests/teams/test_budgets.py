"""Budgets people can see: the meters (settings page, composer, /api/budget/), the per-person
monthly limit, and the owners' notices when the team crosses 80% and 100%."""

import threading

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from chatapp.teams import actions
from chatapp.teams.models import (
    AuditAction,
    AuditEvent,
    BudgetNotice,
    Membership,
    Role,
    TeamPolicy,
)
from chatapp.teams.policy import PolicyError
from chatapp.teams.quota import check_budget
from tests.databases import uses_postgres, wait_for_lock_waiters

pytestmark = pytest.mark.django_db
MODEL = "Llama-3.3-70B-Instruct"


def use(team, user, tokens: int) -> None:
    actions.record_usage(team, user, MODEL, tokens, 0)


def test_no_budget_no_meter(member_client):
    assert member_client.get("/api/budget/").json()["meters"] == []
    page = member_client.get("/settings/").content.decode()
    assert 'class="budget-meter ' not in page


def test_the_meters_show_the_team_budget_and_ones_own_limit(member_client, member, owner, team):
    TeamPolicy.objects.create(team=team, monthly_token_budget=1000, member_monthly_token_budget=100)
    use(team, owner, 500)
    use(team, member, 50)
    team_meter, own = member_client.get("/api/budget/").json()["meters"]
    assert (team_meter["kind"], team_meter["used"], team_meter["percent"]) == ("team", 550, 55)
    assert team_meter["level"] == "ok"
    assert (own["kind"], own["used"], own["limit"], own["level"]) == ("person", 50, 100, "ok")
    for url in ("/settings/", "/"):
        page = member_client.get(url).content.decode()
        assert "Team budget this month" in page and "Your limit this month" in page


def test_a_warning_at_80_percent_and_a_clear_message_at_100(member_client, member, team):
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    use(team, member, 85)
    (meter,) = member_client.get("/api/budget/").json()["meters"]
    assert meter["level"] == "warn" and "85%" in meter["message"]
    use(team, member, 20)
    (meter,) = member_client.get("/api/budget/").json()["meters"]
    assert meter["level"] == "full" and "refused" in meter["message"]
    assert "budget-full" in member_client.get("/").content.decode()


def test_the_meters_of_the_team_asked_for_not_the_sessions(member_client, member, team):
    """A chat page of another team than the session's current one refreshes its own meters."""
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    use(team, member, 85)
    other = actions.create_team(member, "Side project")
    member_client.post(f"/teams/{other.pk}/switch/")
    assert member_client.get("/api/budget/").json() == {"team_id": other.pk, "meters": []}
    answer = member_client.get("/api/budget/", {"team": team.pk}).json()
    assert answer["team_id"] == team.pk
    assert [(m["kind"], m["used"]) for m in answer["meters"]] == [("team", 85)]


def test_the_meters_of_a_team_one_is_not_in_are_404(member_client, outsider):
    elsewhere = actions.create_team(outsider, "Elsewhere")
    TeamPolicy.objects.create(team=elsewhere, monthly_token_budget=100)
    response = member_client.get("/api/budget/", {"team": elsewhere.pk})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_ones_own_limit_refuses_only_that_person(member, owner, team):
    policy = TeamPolicy.objects.create(team=team, member_monthly_token_budget=100)
    use(team, member, 100)
    with pytest.raises(PolicyError) as refused:
        check_budget(team, policy, member)
    assert refused.value.code == "quota_exceeded" and "your monthly limit" in refused.value.message
    check_budget(team, policy, owner)  # the others go on


def test_owners_are_told_once_per_threshold_a_month(
    owner, member, team, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_URL = "locmem://"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    use(team, member, 50)
    assert not BudgetNotice.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        use(team, member, 30)
        use(team, member, 5)
    assert list(BudgetNotice.objects.values_list("percent", flat=True)) == [80]
    assert [m.to for m in mail.outbox] == [[owner.email]]
    assert "80%" in mail.outbox[0].subject
    with django_capture_on_commit_callbacks(execute=True):
        use(team, member, 20)
        use(team, member, 20)
    assert sorted(BudgetNotice.objects.values_list("percent", flat=True)) == [80, 100]
    assert len(mail.outbox) == 2 and "whole" in mail.outbox[1].subject
    assert AuditEvent.objects.filter(action=AuditAction.BUDGET_THRESHOLD).count() == 2


def test_an_answer_crossing_both_thresholds_at_once_mails_only_the_whole_budget(
    owner, member, team, settings, django_capture_on_commit_callbacks
):
    """Both crossings are recorded, but "passed 80%" would only repeat the mail that says
    the whole budget is used."""
    settings.EMAIL_URL = "locmem://"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    use(team, member, 50)
    with django_capture_on_commit_callbacks(execute=True):
        use(team, member, 60)
    assert sorted(BudgetNotice.objects.values_list("percent", flat=True)) == [80, 100]
    assert AuditEvent.objects.filter(action=AuditAction.BUDGET_THRESHOLD).count() == 2
    assert [m.to for m in mail.outbox] == [[owner.email]]
    assert "whole" in mail.outbox[0].subject and "80%" not in mail.outbox[0].subject


def test_a_deactivated_owner_is_not_mailed(
    owner, member, team, settings, make_user, django_capture_on_commit_callbacks
):
    """An owner whose account was deactivated (they left the company) gets no more mail."""
    settings.EMAIL_URL = "locmem://"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    former = make_user("former")
    Membership.objects.create(team=team, user=former, role=Role.OWNER)
    type(former).objects.filter(pk=former.pk).update(is_active=False)
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    with django_capture_on_commit_callbacks(execute=True):
        use(team, member, 90)
    assert [m.to for m in mail.outbox] == [[owner.email]]


def test_the_notice_shows_to_owners_only(client, owner, member, team):
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    use(team, member, 90)
    client.force_login(owner)
    assert "passed 80% of its monthly token budget" in client.get("/settings/").content.decode()
    client.force_login(member)
    assert "passed 80%" not in client.get("/settings/").content.decode()


def test_past_the_whole_budget_only_that_notice_shows(client, owner, member, team):
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    use(team, member, 90)
    use(team, member, 20)
    client.force_login(owner)
    page = client.get("/settings/").content.decode()
    assert "used its whole monthly token budget" in page
    assert "passed 80%" not in page


def test_a_notice_goes_with_its_budget_and_a_new_budget_is_told_again(client, owner, member, team):
    policy = TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    use(team, member, 110)
    client.force_login(owner)
    assert "used its whole monthly token budget" in client.get("/").content.decode()
    policy.monthly_token_budget = None  # lifted: nothing is over any more
    policy.save()
    assert "monthly token budget on" not in client.get("/").content.decode()
    policy.monthly_token_budget = 1000  # raised: its own 80% is news
    policy.save()
    assert "monthly token budget on" not in client.get("/").content.decode()
    use(team, member, 700)
    page = client.get("/settings/").content.decode()
    assert "passed 80% of its monthly token budget" in page and "(810 of 1,000 tokens)" in page
    assert sorted(BudgetNotice.objects.values_list("budget", "percent")) == [
        (100, 80),
        (100, 100),
        (1000, 80),
    ]


def test_a_budget_set_below_what_the_team_used_is_told_at_once(
    client, owner, member, team, settings, django_capture_on_commit_callbacks
):
    """No answer can end under a budget already spent (every message is refused), so its
    crossings are told as it is set, not at the next answer's end, which never comes."""
    settings.EMAIL_URL = "locmem://"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    TeamPolicy.objects.create(team=team, monthly_token_budget=10_000)
    use(team, member, 500)
    with django_capture_on_commit_callbacks(execute=True):
        actions.set_policy(owner, team, {"monthly_token_budget": 400})
    assert sorted(BudgetNotice.objects.values_list("budget", "percent")) == [(400, 80), (400, 100)]
    assert len(mail.outbox) == 1 and "whole" in mail.outbox[0].subject
    client.force_login(owner)
    assert "used its whole monthly token budget" in client.get("/settings/").content.decode()
    actions.set_policy(owner, team, {"monthly_token_budget": 600})  # 83%: told too
    assert (600, 80) in BudgetNotice.objects.values_list("budget", "percent")


def test_without_email_the_notice_is_still_made(
    owner, member, team, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_URL = ""
    TeamPolicy.objects.create(team=team, monthly_token_budget=10)
    with django_capture_on_commit_callbacks(execute=True):
        use(team, member, 10)
    assert BudgetNotice.objects.count() == 2
    assert mail.outbox == []
    assert BudgetNotice.objects.filter(month=timezone.now().date().replace(day=1)).count() == 2


@pytest.mark.skipif(not uses_postgres(), reason="SQLite already queues every writer")
@pytest.mark.django_db(transaction=True)
def test_two_processes_noting_one_threshold_at_once_mail_the_owners_once(
    owner, member, team, settings
):
    """Two answers end at the same moment in two processes, each seeing the team past 80%:
    one notice, one audit event, one mail."""
    settings.EMAIL_URL = "locmem://"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    TeamPolicy.objects.create(team=team, monthly_token_budget=100)
    use(team, member, 85)
    BudgetNotice.objects.all().delete()  # as though neither process had noted it yet
    mail.outbox.clear()
    noted = AuditEvent.objects.filter(action=AuditAction.BUDGET_THRESHOLD)
    before = noted.count()
    outcomes = []

    def note() -> None:
        try:
            outcomes.append(len(actions.note_budget_thresholds(team)))
        except Exception as error:  # the answer's end would fail
            outcomes.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=note) for _ in range(2)]
    with transaction.atomic():
        AuditEvent.objects.create(action="team.create", summary="holds the chain's lock")
        # Both read the usage; one notes the threshold and waits on the trail's lock, the
        # other waits on the notice's unique index.
        for thread in threads:
            thread.start()
        wait_for_lock_waiters(2)
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [0, 1]
    assert BudgetNotice.objects.count() == 1
    assert noted.count() == before + 1
    assert [m.to for m in mail.outbox] == [[owner.email]]
