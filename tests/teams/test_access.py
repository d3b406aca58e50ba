"""Every team page and endpoint: who gets 200, 403, 404 and 405."""

import html

import pytest
from django.test import Client
from django.urls import reverse

from chatapp.teams.models import AuditEvent, Invitation, Membership, SystemPrompt

VIEW, MANAGE, OWN = "any member", "owners and admins", "owners only"
PAGES = [
    ("teams:detail", VIEW),
    ("teams:members", VIEW),
    ("teams:prompts", VIEW),
    ("teams:policy", MANAGE),
    ("teams:usage", MANAGE),
    ("teams:safety", MANAGE),
    ("teams:provider", OWN),
    ("teams:audit", OWN),
]
ALLOWED = {
    "owner": {VIEW, MANAGE, OWN},
    "admin_member": {VIEW, MANAGE},
    "member": {VIEW},
}


@pytest.fixture
def prompt(team):
    return SystemPrompt.objects.create(team=team, name="Helper", content="Be helpful.")


@pytest.fixture
def invitation(team, owner):
    return Invitation.objects.create(team=team, email="new@example.com", invited_by=owner)


def post_endpoints(team, member, prompt, invitation) -> list[str]:
    """Every POST-only team endpoint, with ids of real objects in the team."""
    mid = Membership.objects.get(team=team, user=member).pk
    return [
        reverse("teams:switch", args=[team.pk]),
        reverse("teams:leave", args=[team.pk]),
        reverse("teams:member_role", args=[team.pk, mid]),
        reverse("teams:member_remove", args=[team.pk, mid]),
        reverse("teams:invite", args=[team.pk]),
        reverse("teams:invitation_revoke", args=[team.pk, invitation.pk]),
        reverse("teams:prompt_delete", args=[team.pk, prompt.pk]),
        reverse("teams:prompt_move", args=[team.pk, prompt.pk]),
    ]


@pytest.mark.parametrize("role", ["owner", "admin_member", "member"])
@pytest.mark.parametrize(("name", "who"), PAGES)
def test_each_role_sees_the_pages_its_role_allows(client, team, owner, role, name, who, request):
    client.force_login(request.getfixturevalue(role))
    response = client.get(reverse(name, args=[team.pk]))
    assert response.status_code == (200 if who in ALLOWED[role] else 403)


@pytest.mark.parametrize(("name", "who"), PAGES)
def test_outsider_gets_404_on_every_page(outsider_client, team, owner, name, who):
    assert outsider_client.get(reverse(name, args=[team.pk])).status_code == 404


def test_missing_team_is_404(owner_client):
    assert owner_client.get("/teams/999999/").status_code == 404


def test_outsider_gets_404_on_every_post_endpoint(
    outsider_client, team, owner, member, prompt, invitation
):
    for url in post_endpoints(team, member, prompt, invitation):
        assert outsider_client.post(url, {"role": "admin", "direction": "up"}).status_code == 404
    assert Membership.objects.filter(team=team).count() == 2
    assert SystemPrompt.objects.filter(pk=prompt.pk).exists()
    assert Invitation.objects.filter(pk=invitation.pk).exists()
    assert not AuditEvent.objects.exists()


def test_member_gets_403_on_every_management_endpoint(
    member_client, team, owner, member, prompt, invitation
):
    for url in post_endpoints(team, member, prompt, invitation)[2:]:
        response = member_client.post(url, {"role": "admin", "direction": "up"})
        assert response.status_code == 403, url
    for name in ("teams:prompts", "teams:policy", "teams:provider"):
        response = member_client.post(reverse(name, args=[team.pk]), {"name": "x", "content": "y"})
        assert response.status_code == 403, name
    assert Membership.objects.get(team=team, user=member).role == "member"
    assert SystemPrompt.objects.filter(team=team).count() == 1
    assert Invitation.objects.filter(pk=invitation.pk).exists()
    assert not AuditEvent.objects.exists()


def test_post_only_endpoints_refuse_get(owner_client, team, owner, member, prompt, invitation):
    for url in post_endpoints(team, member, prompt, invitation):
        assert owner_client.get(url).status_code == 405, url


@pytest.mark.parametrize(("name", "who"), PAGES)
def test_pages_refuse_other_methods(owner_client, team, name, who):
    url = reverse(name, args=[team.pk])
    assert owner_client.put(url).status_code == 405
    assert owner_client.delete(url).status_code == 405


def test_team_list_refuses_other_methods(owner_client):
    assert owner_client.delete("/teams/").status_code == 405


@pytest.mark.parametrize("path", ["/teams/", "/teams/1/", "/teams/1/members/", "/teams/1/usage/"])
def test_anonymous_users_are_sent_to_log_in(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_a_prompt_of_another_team_is_404(owner_client, team, owner, make_user):
    other = SystemPrompt.objects.create(
        team=Membership.objects.create(
            team=team.__class__.objects.create(name="Other"), user=make_user("zed"), role="owner"
        ).team,
        name="Theirs",
        content="secret",
    )
    assert owner_client.get(f"/teams/{team.pk}/prompts/{other.pk}/").status_code == 404
    assert owner_client.post(f"/teams/{team.pk}/prompts/{other.pk}/delete/").status_code == 404
    assert SystemPrompt.objects.filter(pk=other.pk).exists()


def test_a_membership_of_another_team_is_404(owner_client, team, owner, make_user):
    stranger = make_user("zed")
    other_team = team.__class__.objects.create(name="Other")
    theirs = Membership.objects.create(team=other_team, user=stranger, role="member")
    url = reverse("teams:member_role", args=[team.pk, theirs.pk])
    assert owner_client.post(url, {"role": "admin"}).status_code == 404
    assert Membership.objects.get(pk=theirs.pk).role == "member"


@pytest.mark.parametrize(
    ("role", "name", "says"),
    [
        ("admin_member", "teams:provider", "Only the team's owners can do this"),
        ("admin_member", "teams:audit", "Only the team's owners can do this"),
        ("member", "teams:policy", "Only the team's owners and admins can do this"),
    ],
)
def test_a_refused_page_says_whose_role_allows_it(client, team, owner, role, name, says, request):
    """An admin is not told to ask an admin: the refusal names the role that may do it."""
    client.force_login(request.getfixturevalue(role))
    response = client.get(reverse(name, args=[team.pk]))
    assert response.status_code == 403
    text = html.unescape(response.content.decode())
    assert says in text
    assert "Ask an admin of your team" not in text


def test_a_refused_member_change_says_why(admin_member, owner, team):
    client = Client()
    client.force_login(admin_member)
    theirs = Membership.objects.get(team=team, user=owner)
    url = reverse("teams:member_role", args=[team.pk, theirs.pk])
    response = client.post(url, {"role": "admin"})
    assert response.status_code == 403
    assert "Only owners can change or remove an owner." in html.unescape(response.content.decode())
    assert Membership.objects.get(pk=theirs.pk).role == "owner"


def test_the_json_api_names_the_roles_that_may_write(member_client, team, owner, member):
    response = member_client.patch(
        f"/api/teams/{team.pk}/policy/", {"rate_limit_per_minute": 5}, "application/json"
    )
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "forbidden",
        "message": "Only the team's owners and admins can do this: ask one of them if you need it.",
    }
