"""Odd input in /admin/ (a hand-edited address, a forged form) is a 400, never a 500: a NUL
reaches PostgreSQL's text columns, which refuse it, and a key no row can have reaches
SQLite's integers, which overflow. Nothing is changed."""

from datetime import date

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatapp.chat.models import Conversation
from chatapp.teams.actions import audit
from chatapp.teams.models import AuditAction, Membership, Team, TeamPolicy, TeamUsage
from tests.support.plans import finds_rows_by, sorts_rows

TOO_BIG = "9" * 26  # past any 64-bit key


@pytest.fixture
def site_client(site_admin):
    client = Client(raise_request_exception=False)
    client.force_login(site_admin)
    return client


@pytest.mark.parametrize(
    "page",
    [
        "/admin/teams/membership/?role__exact=%00",
        "/admin/teams/auditevent/?action__exact=%00",
        "/admin/teams/invitation/?email=a%00b",
        "/admin/auth/user/?username=%00",
        "/admin/axes/accessattempt/?username=%00",
        "/admin/teams/team/?q=acme&name__startswith=%00",
    ],
)
def test_a_nul_in_a_list_filter_is_a_400(site_client, owner, page):
    assert site_client.get(page).status_code == 400


@pytest.mark.parametrize("selected", ["abc", "1.5", "%00", "\x00", TOO_BIG])
@pytest.mark.parametrize("confirmed", [False, True])
def test_a_bulk_action_on_ids_that_are_not_keys_is_a_400_and_deletes_nothing(
    site_client, owner, member, team, selected, confirmed
):
    Conversation.objects.create(team=team, owner=member)
    for model in ("teams/team", "teams/membership", "chat/conversation", "auth/user"):
        form = {"action": "delete_selected", "_selected_action": [selected], "index": "0"}
        if confirmed:
            form["post"] = "yes"
        assert site_client.post(f"/admin/{model}/", form).status_code == 400, model
    assert Team.objects.filter(pk=team.pk).exists() and Conversation.objects.exists()
    assert Membership.objects.count() == 2


@pytest.mark.parametrize("view", ["change", "history", "delete"])
@pytest.mark.parametrize("model", ["teampolicy", "teamprovider", "team", "membership"])
def test_an_id_no_row_can_have_is_not_found(site_client, team, model, view):
    TeamPolicy.objects.create(team=team)
    response = site_client.get(f"/admin/teams/{model}/{TOO_BIG}/{view}/")
    assert response.status_code in (302, 403, 404)  # Django's "does not exist", or no deletion


def test_the_same_pages_with_ordinary_input_still_work(site_client, owner, member, team):
    assert site_client.get("/admin/teams/membership/?role__exact=owner").status_code == 200
    form = {"action": "delete_selected", "_selected_action": [team.pk]}
    assert b"Are you sure" in site_client.post("/admin/teams/team/", form).content
    assert site_client.get(f"/admin/teams/team/{team.pk}/change/").status_code == 200


@pytest.mark.parametrize(
    ("page", "table"),
    [
        ("/admin/chat/conversation/", "chat_conversation"),
        ("/admin/teams/auditevent/", "teams_auditevent"),
        ("/admin/teams/teamusage/", "teams_teamusage"),
    ],
)
def test_the_lists_of_the_largest_tables_count_once_and_sort_by_their_key(
    site_client, owner, team, page, table
):
    """These tables grow with every answer or change: their lists count the rows once (not
    again for an unfiltered total) and read them newest first by key, which its index serves,
    not by a column no index sorts (the whole table sorted at each visit)."""
    Conversation.objects.create(team=team, owner=owner, title="Plans")
    audit(team, owner, AuditAction.INVITE, "owner invited someone")
    TeamUsage.objects.create(team=team, user=owner, model="m", day=date(2026, 12, 1))
    with CaptureQueriesContext(connection) as queries:
        assert site_client.get(page).status_code == 200
    reads = [q["sql"] for q in queries.captured_queries if f'FROM "{table}"' in q["sql"]]
    assert sum("COUNT(" in sql for sql in reads) == 1
    [listed] = [sql for sql in reads if sql.startswith(f'SELECT "{table}"."id"')]  # the rows
    assert listed.split("ORDER BY")[1].split("LIMIT")[0].strip() == f'"{table}"."id" DESC'


def test_the_audit_list_filtered_by_action_finds_its_events_by_an_index(site_client, owner, team):
    """Its count and its page read one action's events from an index, not the whole trail."""
    audit(team, owner, AuditAction.INVITE, "owner invited someone")
    audit(team, owner, AuditAction.ROLE_CHANGE, "owner changed a role")
    with CaptureQueriesContext(connection) as queries:
        page = site_client.get("/admin/teams/auditevent/", {"action__exact": "member.role"})
        assert page.status_code == 200
    assert "owner changed a role" in page.content.decode()
    reads = [q["sql"] for q in queries.captured_queries if 'FROM "teams_auditevent"' in q["sql"]]
    assert len(reads) == 2  # the count and the page
    for sql in reads:
        assert finds_rows_by(sql, "action") and not sorts_rows(sql)
