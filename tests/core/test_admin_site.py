"""Odd input in /admin/ (a hand-edited address, a forged form) is a 400, never a 500: a NUL
reaches PostgreSQL's text columns, which refuse it, and a key no row can have reaches
SQLite's integers, which overflow. Nothing is changed."""

from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatapp.accounts.models import UserSettings
from chatapp.chat.models import AdminAccessGrant, Conversation, Message
from chatapp.teams.actions import audit
from chatapp.teams.models import (
    AuditAction,
    Invitation,
    Membership,
    Role,
    SystemPrompt,
    Team,
    TeamPolicy,
    TeamProvider,
    TeamUsage,
)
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
    not by a column no index sorts (the whole table sorted at each visit). Nothing else reads
    the table: no date hierarchy's scans of every row for its first and last day and its years."""
    Conversation.objects.create(team=team, owner=owner, title="Plans")
    audit(team, owner, AuditAction.INVITE, "owner invited someone")
    TeamUsage.objects.create(team=team, user=owner, model="m", day=date(2026, 12, 1))
    with CaptureQueriesContext(connection) as queries:
        assert site_client.get(page).status_code == 200
    reads = [q["sql"] for q in queries.captured_queries if f'FROM "{table}"' in q["sql"]]
    assert sum("COUNT(" in sql for sql in reads) == 1 and len(reads) == 2
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


def _grow(team, size: int) -> dict:
    """`size` of each kind of row the admin's pages show, all around `team` and one person."""
    users = [
        get_user_model().objects.create_user(f"grown{size}x{n}", f"g{size}x{n}@example.com")
        for n in range(size)
    ]
    heavy = users[0]
    for user in users:
        Membership.objects.create(team=team, user=user, role=Role.MEMBER)
        UserSettings.objects.create(user=user, model="m")
        chat = Conversation.objects.create(team=team, owner=heavy, model="m")
        Message.objects.create(conversation=chat, role="user", content="Hello")
        Invitation.objects.create(team=team, email=f"{user.username}@example.com")
        TeamUsage.objects.create(team=team, user=user, model="m", day=date(2026, 1, 1))
        audit(team, heavy, AuditAction.INVITE, f"{heavy} invited someone")
        AdminAccessGrant.objects.create(
            conversation=chat,
            owner=heavy,
            admin_name="root",
            reason="why",
            expires_at=chat.created_at,
        )
    SystemPrompt.objects.create(team=team, name=f"Prompt {size}", content="Be brief.")
    TeamPolicy.objects.get_or_create(team=team)
    TeamProvider.objects.get_or_create(team=team)
    return {"user": heavy, "team": team, "conversation": chat}


ROW_PAGES = [
    "/admin/",
    *(
        f"/admin/{model}/"
        for model in (
            "auth/user",
            "auth/group",
            "accounts/usersettings",
            "axes/accessattempt",
            "axes/accesslog",
            "axes/accessfailurelog",
            "teams/team",
            "teams/membership",
            "teams/invitation",
            "teams/systemprompt",
            "teams/teampolicy",
            "teams/teamprovider",
            "teams/teamusage",
            "teams/auditevent",
            "chat/conversation",
            "chat/adminaccessgrant",
        )
    ),
    "/admin/auth/user/?q=grown",
    "/admin/teams/team/?members=some",
    "/admin/teams/auditevent/?q=invited",
    "/admin/teams/teamusage/?day__year=2026",
]
ADD_PAGES = [
    "/admin/auth/user/add/",
    "/admin/auth/group/add/",
    "/admin/accounts/usersettings/add/",
    "/admin/teams/team/add/",
    "/admin/teams/membership/add/",
    "/admin/teams/systemprompt/add/",
    "/admin/teams/teampolicy/add/",
    "/admin/teams/teamprovider/add/",
]
OBJECT_PAGES = [
    "/admin/auth/user/{user}/change/",
    "/admin/auth/user/{user}/delete/",
    "/admin/teams/team/{team}/change/",
    "/admin/teams/team/{team}/delete/",
    "/admin/chat/conversation/{conversation}/change/",
    "/admin/chat/conversation/{conversation}/delete/",
]


def _visit(client, page: str) -> tuple[int, bytes]:
    client.get(page)  # once before: what Django caches for the process (content types) is read
    with CaptureQueriesContext(connection) as queries:
        response = client.get(page)
    assert response.status_code == 200, page
    return len(queries), response.content


@pytest.mark.parametrize("page", ROW_PAGES)
def test_a_list_reads_the_same_number_of_times_for_3_rows_as_for_30(site_client, page):
    counts = []
    for size in (3, 30):
        _grow(Team.objects.create(name=f"Team {size}"), size)
        counts.append(_visit(site_client, page)[0])
    assert counts[0] == counts[1]


@pytest.mark.parametrize("page", ADD_PAGES + OBJECT_PAGES)
def test_a_form_or_confirmation_stays_the_same_size_for_3_rows_as_for_30(site_client, page):
    """A change form, an add form or a deletion's confirmation reads and shows no row per
    member, message or user: no list of every person or team to pick from (a key field and
    its lookup instead), no line per member or per message."""
    visits = []
    for size in (3, 30):
        grown = _grow(Team.objects.create(name=f"Team {size}"), size)
        visits.append(_visit(site_client, page.format(**{k: v.pk for k, v in grown.items()})))
    (few_reads, few), (many_reads, many) = visits
    assert few_reads == many_reads
    for tag in (b"<option", b"<tr", b"<li"):
        assert few.count(tag) == many.count(tag), tag
    assert b"grown30x29" not in many


@pytest.mark.parametrize("page", ["/admin/teams/team/", "/admin/teams/team/?q=Acme"])
def test_the_team_list_counts_teams_once_without_reading_their_memberships(
    site_client, owner, member, team, page
):
    """A team per person and a membership per team and person: the list counted the teams
    twice over a join with every membership. Only the shown page's members are counted."""
    Team.objects.create(name="Nobody's")
    with CaptureQueriesContext(connection) as queries:
        response = site_client.get(page)
    assert response.status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT COUNT(")]
    assert len(counts) == 1 and "teams_membership" not in counts[0]
    shown = {row.name: row.member_count for row in response.context["cl"].result_list}
    assert shown == ({"Acme": 2} if "q=" in page else {"Acme": 2, "Nobody's": 0})


def test_a_users_deletion_reads_the_teams_of_their_conversations_once_each(
    site_client, owner, member, team
):
    """Which teams hold a person's conversations (for a legal hold, and what their personal
    team keeps) is one row per team: the conversations' own order made it one per conversation."""
    personal = Team.objects.create(name="Max's", personal_owner=member)
    Membership.objects.create(team=personal, user=member, role=Role.OWNER)
    for chat_team in (team, personal):
        for _ in range(3):
            Conversation.objects.create(team=chat_team, owner=member, model="m")
            Conversation.objects.create(team=chat_team, owner=owner, model="m")
    with CaptureQueriesContext(connection) as queries:
        assert site_client.get(f"/admin/auth/user/{member.pk}/delete/").status_code == 200
    distinct = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT DISTINCT") and 'FROM "chat_conversation"' in q["sql"]
    ]
    assert any('"chat_conversation"."team_id" IN' in sql for sql in distinct)  # its personal team
    assert any('"chat_conversation"."owner_id" IN' in sql for sql in distinct)
    assert all(" ORDER BY " not in sql for sql in distinct), distinct
