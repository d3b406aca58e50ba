"""Creating and switching teams; roles, removing members, leaving; the last-owner rules."""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chatapp.chat.models import Conversation, Message
from chatapp.core.locking import lock_rows
from chatapp.teams import actions, audit_trail
from chatapp.teams.models import ApiKey, AuditEvent, Invitation, Membership, Role, Team
from chatapp.teams.services import SESSION_TEAM_KEY
from chatapp.teams.views import INVITATIONS_PER_PAGE, MEMBERS_PER_PAGE
from tests.databases import uses_postgres, wait_for_lock_waiters


def role_url(team, user) -> str:
    return reverse("teams:member_role", args=[team.pk, Membership.objects.get(user=user).pk])


def remove_url(team, user) -> str:
    return reverse("teams:member_remove", args=[team.pk, Membership.objects.get(user=user).pk])


def role_of(team, user) -> str | None:
    membership = Membership.objects.filter(team=team, user=user).first()
    return membership.role if membership else None


def test_creating_a_team_makes_you_its_owner_and_current(owner_client, owner):
    response = owner_client.post("/teams/", {"name": "  Research  "})
    team = Team.objects.get(name="Research")
    assert response.status_code == 302
    assert response["Location"] == f"/teams/{team.pk}/"
    assert role_of(team, owner) == Role.OWNER
    assert owner_client.session[SESSION_TEAM_KEY] == team.pk
    assert AuditEvent.objects.get(team=team).action == "team.create"


def test_creating_a_team_without_a_name_is_a_form_error(owner_client, owner):
    before = Team.objects.count()
    response = owner_client.post("/teams/", {"name": "   "})
    assert response.status_code == 400
    assert b"This field is required" in response.content
    assert Team.objects.count() == before


@pytest.mark.parametrize(
    "name",
    ["Acme\nBcc: all@example.com", "Acme\r\nX: y", "Acme\tOps", "gro\u202epuor", "a\u2066b"],
)
def test_a_team_name_is_one_line_without_control_or_direction_characters(
    owner_client, owner, client, site_admin, name
):
    """A line break reaches the subject of every mail naming the team; a direction override
    shows the name reversed to everyone in it."""
    assert_refused_on_both_pages(owner_client, client, site_admin, name, name, b"one line of text")


INVISIBLE_NAMES = ["\u200b", "\u200b\u200d\ufeff", "\u2060", "\u00ad", "\u0301", "\u3164", "\u2800"]


@pytest.mark.parametrize("name", INVISIBLE_NAMES)
def test_a_team_name_has_something_to_see(owner_client, client, site_admin, name):
    """Zero-width characters, a lone accent or a Hangul or Braille blank would make a team
    that every list and the team switcher show as nothing."""
    assert_refused_on_both_pages(
        owner_client, client, site_admin, f" {name} ", name, b"nothing to see"
    )


def assert_refused_on_both_pages(owner_client, client, site_admin, typed, admin_typed, says):
    """The Teams page (`typed`) and /admin/ (`admin_typed`) refuse the name, saying `says`,
    and no team is made."""
    before = Team.objects.count()
    response = owner_client.post("/teams/", {"name": typed})
    assert response.status_code == 400
    assert says in response.content
    client.force_login(site_admin)
    response = client.post("/admin/teams/team/add/", {"name": admin_typed})
    assert response.status_code == 200 and says in response.content
    assert Team.objects.count() == before


def test_a_team_name_may_be_emoji_or_have_invisible_joiners_among_letters(owner_client):
    for name in ["🦙", "👨\u200d👩\u200d👧", "می\u200cخواهم", "·", "日本"]:
        assert owner_client.post("/teams/", {"name": name}).status_code == 302, name
    assert Team.objects.filter(name="می\u200cخواهم").exists()


def test_team_list_shows_every_team_of_the_user_and_the_current_one(
    owner_client, owner, team, django_assert_max_num_queries
):
    other = Team.objects.create(name="Second")
    Membership.objects.create(team=other, user=owner, role=Role.MEMBER)
    owner_client.post(reverse("teams:switch", args=[other.pk]))
    with django_assert_max_num_queries(8):
        response = owner_client.get("/teams/")
    assert response.status_code == 200
    assert b"Acme" in response.content and b"Second" in response.content
    assert response.context["current"] == other


def test_switching_keeps_the_team_in_the_session(member_client, member, team):
    response = member_client.post(reverse("teams:switch", args=[team.pk]), {"next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert member_client.session[SESSION_TEAM_KEY] == team.pk


@pytest.mark.parametrize("target", ["https://evil.example/", "home", "-1", "http://["])
def test_switching_ignores_an_unsafe_or_unreadable_next(member_client, team, member, target):
    # A bare word would be looked up as a view's name.
    response = member_client.post(reverse("teams:switch", args=[team.pk]), {"next": target})
    assert response["Location"] == "/teams/"


def test_owner_changes_a_role_and_it_is_audited(owner_client, team, owner, member):
    response = owner_client.post(role_url(team, member), {"role": "admin"})
    assert response.status_code == 302
    assert role_of(team, member) == Role.ADMIN
    event = AuditEvent.objects.get(action="member.role")
    assert event.actor == owner
    assert event.details == {"user": "max", "old": "member", "new": "admin"}


def test_an_invalid_role_is_refused(owner_client, team, owner, member):
    response = owner_client.post(role_url(team, member), {"role": "king"})
    assert response.status_code == 400
    assert role_of(team, member) == Role.MEMBER


def test_admin_can_promote_a_member_to_admin(admin_client, team, owner, admin_member, member):
    assert admin_client.post(role_url(team, member), {"role": "admin"}).status_code == 302
    assert role_of(team, member) == Role.ADMIN


def test_admin_cannot_make_owners_or_touch_owners(admin_client, team, owner, admin_member, member):
    assert admin_client.post(role_url(team, member), {"role": "owner"}).status_code == 403
    assert admin_client.post(role_url(team, owner), {"role": "member"}).status_code == 403
    assert admin_client.post(remove_url(team, owner)).status_code == 403
    assert role_of(team, member) == Role.MEMBER
    assert role_of(team, owner) == Role.OWNER


def test_the_last_owner_cannot_be_demoted(owner_client, team, owner):
    response = owner_client.post(role_url(team, owner), {"role": "admin"})
    assert response.status_code == 400
    assert b"A team needs an owner" in response.content
    assert role_of(team, owner) == Role.OWNER
    assert not AuditEvent.objects.exists()


def test_an_owner_may_step_down_when_another_owner_remains(owner_client, team, owner, member):
    Membership.objects.filter(user=member).update(role=Role.OWNER)
    assert owner_client.post(role_url(team, owner), {"role": "member"}).status_code == 302
    assert role_of(team, owner) == Role.MEMBER


def test_the_action_refuses_to_demote_the_last_owner(team, owner):
    membership = Membership.objects.get(user=owner)
    with pytest.raises(actions.ActionError, match="needs an owner"):
        actions.change_role(membership, membership, Role.MEMBER)
    assert role_of(team, owner) == Role.OWNER


def test_an_admin_cannot_demote_someone_made_an_owner_a_moment_ago(
    team, owner, admin_member, member
):
    acting = Membership.objects.get(user=admin_member)
    target = Membership.objects.get(user=member)  # read as a member, as the page did
    Membership.objects.filter(user=member).update(role=Role.OWNER)
    with pytest.raises(actions.ActionError, match="Only owners") as refused:
        actions.change_role(acting, target, Role.MEMBER)
    assert refused.value.forbidden
    assert role_of(team, member) == Role.OWNER


def test_an_owner_demoted_a_moment_ago_cannot_demote_another(team, owner, admin_member, member):
    Membership.objects.filter(user__in=[admin_member, member]).update(role=Role.OWNER)
    acting = Membership.objects.get(user=member)  # read as an owner, as the page did
    Membership.objects.filter(user=member).update(role=Role.MEMBER)
    with pytest.raises(actions.ActionError, match="Only owners"):
        actions.change_role(acting, Membership.objects.get(user=admin_member), Role.MEMBER)
    assert role_of(team, admin_member) == Role.OWNER


@pytest.mark.parametrize("change", ["promote", "remove"])
def test_an_admin_demoted_a_moment_ago_changes_nobody(team, owner, admin_member, member, change):
    """The page let them act as an admin; an owner made them a member before it was saved."""
    acting = Membership.objects.get(user=admin_member)  # read as an admin, as the page did
    target = Membership.objects.get(user=member)
    Membership.objects.filter(user=admin_member).update(role=Role.MEMBER)
    with pytest.raises(actions.ActionError) as refused:
        if change == "promote":
            actions.change_role(acting, target, Role.ADMIN)
        else:
            actions.remove_member(acting, target)
    assert refused.value.forbidden
    assert role_of(team, member) == Role.MEMBER
    assert not AuditEvent.objects.filter(action__in=["member.role", "member.remove"]).exists()


@pytest.mark.skipif(not uses_postgres(), reason="SQLite already queues every writer")
@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner(team, owner, member):
    Membership.objects.filter(user=member).update(role=Role.OWNER)
    ours, theirs = Membership.objects.get(user=owner), Membership.objects.get(user=member)
    outcomes = []

    def demote(acting, target):
        try:
            actions.change_role(acting, target, Role.MEMBER)
            outcomes.append("demoted")
        except actions.ActionError as error:
            outcomes.append(error.message)
        except Exception as error:  # a deadlock, say: the page would answer 500
            outcomes.append(repr(error))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=demote, args=(ours, theirs)),
        threading.Thread(target=demote, args=(theirs, ours)),
    ]
    with transaction.atomic():
        # Both changes start, then wait here, and go on together once this ends.
        lock_rows(Team.objects.filter(pk=team.pk))
        lock_rows(Membership.objects.filter(team=team))
        for thread in threads:
            thread.start()
        wait_for_lock_waiters(2)
    for thread in threads:
        thread.join()
    # The second change finds its actor no longer an owner.
    assert sorted(outcomes) == ["Only owners can change or remove an owner.", "demoted"]
    assert Membership.objects.filter(team=team, role=Role.OWNER).count() == 1


@pytest.mark.skipif(not uses_postgres(), reason="SQLite already queues every writer")
@pytest.mark.django_db(transaction=True)
def test_two_first_sign_ins_to_a_team_the_groups_name_make_one_team(make_user):
    """Two people of one group sign in at once, before the team their group names exists."""
    people = [make_user("ann"), make_user("bob")]
    outcomes = []

    def sign_in(user):
        try:
            actions.apply_group_roles(user, {"Engineering": Role.MEMBER}, {"Engineering"})
            outcomes.append("joined")
        except Exception as error:  # the sign-in would answer 500
            outcomes.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_in, args=(user,)) for user in people]
    with transaction.atomic():
        # Both look for the team and go on together once this ends (the audit trail's lock).
        AuditEvent.objects.create(action="team.create", summary="holds the chain's lock")
        for thread in threads:
            thread.start()
        wait_for_lock_waiters(2)
    for thread in threads:
        thread.join()
    assert outcomes == ["joined", "joined"]
    (engineering,) = Team.objects.filter(name="Engineering")
    assert sorted(engineering.memberships.values_list("user__username", flat=True)) == [
        "ann",
        "bob",
    ]


def test_an_owner_removes_another_owner(owner_client, team, owner, member):
    Membership.objects.filter(user=member).update(role=Role.OWNER)
    assert owner_client.post(remove_url(team, member)).status_code == 302
    assert role_of(team, member) is None


def test_owner_removes_a_member(owner_client, team, owner, member):
    assert owner_client.post(remove_url(team, member)).status_code == 302
    assert role_of(team, member) is None
    assert AuditEvent.objects.get(action="member.remove").details["user"] == "max"


def test_removing_yourself_is_refused_with_a_hint(owner_client, team, owner, member):
    response = owner_client.post(remove_url(team, owner))
    assert response.status_code == 400
    assert b"Leave team" in response.content
    assert role_of(team, owner) == Role.OWNER


def test_a_member_leaves(member_client, team, owner, member):
    member_client.post(reverse("teams:switch", args=[team.pk]))
    response = member_client.post(reverse("teams:leave", args=[team.pk]))
    assert response.status_code == 302
    assert role_of(team, member) is None
    assert AuditEvent.objects.get(action="member.leave").actor == member
    # The session's current team falls back to a team the user is still in.
    assert member_client.get("/teams/").context["current"] != team


def test_the_last_owner_cannot_leave(owner_client, team, owner, member):
    response = owner_client.post(reverse("teams:leave", args=[team.pk]))
    assert response.status_code == 400
    assert b"last owner" in response.content
    assert role_of(team, owner) == Role.OWNER
    assert not AuditEvent.objects.exists()


def test_the_last_owner_is_told_why_instead_of_offered_a_leave_button(owner_client, team, member):
    url = reverse("teams:detail", args=[team.pk])
    page = owner_client.get(url).content.decode()
    assert "Leave team" not in page
    assert "make someone else an owner before you can leave" in page
    Membership.objects.filter(user=member).update(role=Role.OWNER)
    assert "Leave team" in owner_client.get(url).content.decode()


def test_leaving_a_team_single_sign_on_joins_people_to_says_so(
    member_client, team, member, settings
):
    url = reverse("teams:detail", args=[team.pk])
    assert "You will need a new invitation to come back" in member_client.get(url).content.decode()
    settings.OIDC_ENABLED = True
    settings.OIDC_GROUP_MAP = f"engineering={team.name}:member"
    page = member_client.get(url).content.decode()
    assert "Single sign-on joins you to it again at your next sign-in" in page
    assert "new invitation" not in page


def test_an_owner_may_leave_when_another_owner_remains(owner_client, team, owner, member):
    Membership.objects.filter(user=member).update(role=Role.OWNER)
    assert owner_client.post(reverse("teams:leave", args=[team.pk])).status_code == 302
    assert role_of(team, owner) is None


@pytest.mark.parametrize("how", ["leaves", "is removed"])
def test_whoever_hands_over_their_personal_team_gets_a_new_one(how, client, make_user, member):
    """Someone made an owner of Max's personal team, Max leaves it or is removed: it stays
    the others' ordinary team, and Max gets a personal team of his own again when he needs
    one, not the team he is no longer in (nor a 500)."""
    personal = actions.ensure_personal_team(member)
    Membership.objects.filter(user=member).exclude(team=personal).delete()
    heir = make_user("hana")
    Membership.objects.create(team=personal, user=heir, role=Role.OWNER)
    if how == "leaves":
        client.force_login(member)
        response = client.post(reverse("teams:leave", args=[personal.pk]))
    else:
        client.force_login(heir)
        response = client.post(remove_url(personal, member))
        client.force_login(member)
    assert response.status_code == 302
    personal.refresh_from_db()
    assert not personal.is_personal and role_of(personal, heir) == Role.OWNER
    me = client.get("/api/me/")
    assert me.status_code == 200
    current = me.json()["current_team"]
    assert current["id"] != personal.pk and current["role"] == Role.OWNER
    assert Team.objects.get(pk=current["id"]).personal_owner == member
    page = client.get("/")
    assert page.context["current_team"].pk == current["id"]


def test_a_personal_team_left_outside_the_team_pages_is_not_handed_back(client, member):
    """The owner's membership deleted in /admin/: the person gets a new personal team rather
    than a session's team they are not in (and /api/me/ answers, not a 500)."""
    personal = actions.ensure_personal_team(member)
    Membership.objects.filter(user=member).delete()
    client.force_login(member)
    me = client.get("/api/me/")
    assert me.status_code == 200
    assert me.json()["current_team"]["id"] != personal.pk
    assert Team.objects.get(pk=me.json()["current_team"]["id"]).personal_owner == member
    assert not Team.objects.get(pk=personal.pk).is_personal


def test_members_page_shows_people_without_n_plus_one(
    owner_client, team, owner, make_user, django_assert_max_num_queries
):
    for n in range(15):
        Membership.objects.create(team=team, user=make_user(f"user{n}"))
    with django_assert_max_num_queries(10):
        response = owner_client.get(reverse("teams:members", args=[team.pk]))
    assert response.content.count(b"teams/%d/members/" % team.pk) >= 15


def test_a_large_teams_members_page_lists_people_a_page_at_a_time(owner_client, owner, team):
    people = [
        get_user_model().objects.create_user(f"person{n:03}", email=f"p{n}@example.com")
        for n in range(MEMBERS_PER_PAGE + 5)
    ]
    Membership.objects.bulk_create(Membership(team=team, user=p) for p in people)
    ApiKey.objects.create(user=people[-1], team=team, name="ci", prefix="k1", secret_hash="h1")
    url = reverse("teams:members", args=[team.pk])

    # olivia, then person000 to person098; person099 to person104 on the next page.
    first = owner_client.get(url).content.decode()
    assert "olivia" in first and "person098" in first and "person099" not in first
    assert "<code>k1…</code>" not in first
    assert 'href="?page=2"' in first

    second = owner_client.get(url, {"page": 2}).content.decode()
    assert "person099" in second and "person104" in second and "person098" not in second
    assert "<code>k1…</code>" in second  # the keys of the people on the page


def test_a_role_changed_on_a_later_page_returns_to_that_page(owner_client, owner, team):
    people = [
        get_user_model().objects.create_user(f"person{n:03}") for n in range(MEMBERS_PER_PAGE)
    ]
    Membership.objects.bulk_create(Membership(team=team, user=p) for p in people)
    page = owner_client.get(reverse("teams:members", args=[team.pk]), {"page": 2})
    last = people[-1]  # alone on the second page, after olivia and 99 others
    action = f"{role_url(team, last)}?page=2"
    assert f'action="{action}"' in page.content.decode()
    response = owner_client.post(action, {"role": Role.ADMIN})
    assert response["Location"] == f"/teams/{team.pk}/members/?page=2"
    assert role_of(team, last) == Role.ADMIN


def open_invitations(team, owner, count: int) -> list[Invitation]:
    """`count` shareable links, made one after another: the newest is listed first."""
    made = timezone.now() - timedelta(hours=1)
    invitations = Invitation.objects.bulk_create(
        Invitation(team=team, invited_by=owner, token=f"link-{n:03}", role=Role.MEMBER)
        for n in range(count)
    )
    for n, invitation in enumerate(invitations):  # bulk_create sets one created_at for all
        Invitation.objects.filter(pk=invitation.pk).update(created_at=made + timedelta(seconds=n))
    return invitations


def test_open_invitations_are_listed_a_page_at_a_time(owner_client, owner, team):
    """Up to TEAM_MAX_PENDING_INVITATIONS: the newest INVITATIONS_PER_PAGE first, a link to the
    next page, which shows the rest; odd page numbers show a page, never a 500."""
    open_invitations(team, owner, INVITATIONS_PER_PAGE + 3)
    url = reverse("teams:members", args=[team.pk])
    newest, last_first = f"link-{INVITATIONS_PER_PAGE + 2:03}", "link-003"
    first = owner_client.get(url).content.decode()
    assert newest in first and last_first in first and "link-002" not in first
    assert first.count('class="invite-link"') == INVITATIONS_PER_PAGE
    assert 'href="?invitations=2"' in first
    assert f"({INVITATIONS_PER_PAGE + 3} open invitations)" in first
    second = owner_client.get(url, {"invitations": 2}).content.decode()
    assert "link-000" in second and "link-002" in second and last_first not in second
    assert second.count('class="invite-link"') == 3 and 'href="?invitations=1"' in second
    for odd in ("0", "-1", "abc", "99999999999999999999"):
        response = owner_client.get(url, {"invitations": odd, "page": odd})
        assert response.status_code == 200 and 'class="invite-link"' in response.content.decode()


def test_those_asking_to_join_are_listed_first(owner_client, owner, team, make_user):
    invitations = open_invitations(team, owner, INVITATIONS_PER_PAGE + 3)
    nina = make_user("nina")
    Invitation.objects.filter(pk=invitations[0].pk).update(
        email="nina@example.com", claimed_by=nina, claimed_at=timezone.now()
    )
    first = owner_client.get(reverse("teams:members", args=[team.pk])).content.decode()
    assert "Confirm nina" in first and first.index("link-000") < first.index("link-052")


def test_the_members_and_invitations_pages_keep_each_other(owner_client, owner, team):
    """Each list's Previous and Next keep the other's page; a change made on a later page of
    either comes back to it."""
    people = [
        get_user_model().objects.create_user(f"person{n:03}") for n in range(MEMBERS_PER_PAGE)
    ]
    Membership.objects.bulk_create(Membership(team=team, user=p) for p in people)
    invitations = open_invitations(team, owner, INVITATIONS_PER_PAGE + 1)
    url = reverse("teams:members", args=[team.pk])
    page = owner_client.get(url, {"page": 2, "invitations": 2}).content.decode()
    assert 'href="?invitations=2&amp;page=1"' in page  # the members' Previous
    assert 'href="?page=2&amp;invitations=1"' in page  # the invitations' Previous
    oldest = invitations[0]  # alone on the second page of invitations
    revoke = reverse("teams:invitation_revoke", args=[team.pk, oldest.pk])
    assert f'action="{revoke}?page=2&amp;invitations=2"' in page
    assert f'action="{role_url(team, people[-1])}?page=2&amp;invitations=2"' in page
    response = owner_client.post(f"{revoke}?page=2&invitations=2")
    assert response["Location"] == f"{url}?page=2&invitations=2"
    assert not Invitation.objects.filter(pk=oldest.pk).exists()
    assert owner_client.get(response["Location"]).status_code == 200  # the last page, now
    revoke = reverse("teams:invitation_revoke", args=[team.pk, invitations[1].pk])
    assert owner_client.post(f"{revoke}?page=x&invitations=-1")["Location"] == url


def test_the_members_page_costs_the_same_queries_with_many_invitations(owner_client, owner, team):
    url = reverse("teams:members", args=[team.pk])
    open_invitations(team, owner, 1)
    with CaptureQueriesContext(connection) as one:
        assert owner_client.get(url).status_code == 200
    Invitation.objects.all().delete()
    open_invitations(team, owner, 2 * INVITATIONS_PER_PAGE)
    with CaptureQueriesContext(connection) as many:
        assert owner_client.get(url, {"invitations": 2}).status_code == 200
    assert len(many) == len(one)


def test_members_see_no_emails_or_controls(member_client, team, owner, member):
    response = member_client.get(reverse("teams:members", args=[team.pk]))
    assert b"olivia" in response.content
    assert b"olivia@example.com" not in response.content
    assert b"Create invitation" not in response.content


def test_team_pages_show_the_current_team_in_the_header(owner_client, team):
    page = owner_client.get(f"/teams/{team.pk}/").content.decode()
    chip = f'class="team-chip" href="/teams/" title="Your current team" dir="auto">{team.name}<'
    assert chip in page


# The admin site: memberships changed there are audited too.


def test_site_admin_membership_changes_are_audited(client, site_admin, team, member, outsider):
    client.force_login(site_admin)
    membership = Membership.objects.get(user=member)
    url = f"/admin/teams/membership/{membership.pk}/change/"
    response = client.post(url, {"user": outsider.pk, "team": team.pk, "role": Role.ADMIN})
    assert response.status_code == 302, response.content[:2000]
    assert (role_of(team, member), role_of(team, outsider)) == (Role.ADMIN, None)
    changed = AuditEvent.objects.get(action="member.role")
    assert (changed.actor, changed.details["old"], changed.details["new"]) == (
        site_admin,
        Role.MEMBER,
        Role.ADMIN,
    )

    added = {"user": outsider.pk, "team": team.pk, "role": Role.MEMBER}
    assert client.post("/admin/teams/membership/add/", added).status_code == 302
    assert AuditEvent.objects.get(action="member.add").actor == site_admin

    bulk = {
        "action": "delete_selected",
        "_selected_action": list(
            Membership.objects.filter(user__in=[member, outsider]).values_list("pk", flat=True)
        ),
        "post": "yes",
    }
    assert client.post("/admin/teams/membership/", bulk).status_code == 302
    assert role_of(team, member) is None and role_of(team, outsider) is None
    removed = AuditEvent.objects.filter(action="member.remove", actor=site_admin)
    assert removed.count() == 2


def test_the_team_page_of_the_admin_site_links_to_its_people(
    client, site_admin, team, member, outsider
):
    """The team's page says how many people are in it and links to their memberships, a page
    at a time, where they are changed (audited): none of them is a line of the team's page."""
    client.force_login(site_admin)
    page = client.get(f"/admin/teams/team/{team.pk}/change/").content.decode()
    link = f"/admin/teams/membership/?team__id__exact={team.pk}"
    assert f'<a href="{link}">1 member</a>' in page
    assert f">{member.username}<" not in page and f"{member.username} in" not in page
    Membership.objects.create(team=Team.objects.create(name="Other"), user=outsider)
    listed = client.get(link).content.decode()
    assert f">{member.username}<" in listed and f">{outsider.username}<" not in listed


def test_the_admin_sites_team_page_does_not_grow_with_its_people(client, site_admin, team, member):
    client.force_login(site_admin)
    url = f"/admin/teams/team/{team.pk}/change/"
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        small = client.get(url).content.decode()
    for number in range(10):
        person = get_user_model().objects.create_user(f"person{number}", password="x")
        Membership.objects.create(team=team, user=person, role=Role.MEMBER)
    with CaptureQueriesContext(connection) as many:
        large = client.get(url).content.decode()
    assert len(many) == len(few)
    assert "11 members</a>" in large and "person9" not in large
    assert large.count("<tr") == small.count("<tr")


def test_site_admin_revokes_invitations_audited_and_cannot_make_them(
    client, site_admin, team, owner
):
    invitation = actions.invite(owner, team, email="new@example.com")
    client.force_login(site_admin)
    assert client.get("/admin/teams/invitation/add/").status_code == 403
    shown = client.get(f"/admin/teams/invitation/{invitation.pk}/change/")
    assert shown.status_code == 200 and invitation.token not in shown.content.decode()
    url = f"/admin/teams/invitation/{invitation.pk}/delete/"
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert AuditEvent.objects.get(action="invitation.revoke").actor == site_admin


def test_site_admin_deleting_a_used_invitation_is_told_why_not(
    client, site_admin, team, owner, make_user
):
    invitation = actions.invite(owner, team)
    actions.accept_invitation(make_user("newcomer"), invitation.token)
    client.force_login(site_admin)
    url = f"/admin/teams/invitation/{invitation.pk}/delete/"
    response = client.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert "already been used" in response.content.decode()
    bulk = {"action": "delete_selected", "_selected_action": [invitation.pk], "post": "yes"}
    response = client.post("/admin/teams/invitation/", bulk, follow=True)
    assert response.status_code == 200
    assert "already been used" in response.content.decode()
    assert Invitation.objects.filter(pk=invitation.pk).exists()
    assert not AuditEvent.objects.filter(action="invitation.revoke").exists()


def test_site_admin_team_creation_renaming_and_deletion_are_audited(
    client, site_admin, team, member
):
    client.force_login(site_admin)
    form = {"name": "Research"}
    assert client.post("/admin/teams/team/add/", form).status_code == 302
    created = AuditEvent.objects.get(action="team.create", actor=site_admin)
    assert (created.team.name, created.team_name) == ("Research", "Research")

    form["name"] = "Platform"
    response = client.post(f"/admin/teams/team/{team.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    renamed = AuditEvent.objects.get(action="team.rename")
    assert (renamed.actor, renamed.team, renamed.details) == (
        site_admin,
        team,
        {"old": "Acme", "new": "Platform"},
    )

    bulk = {"action": "delete_selected", "_selected_action": [team.pk], "post": "yes"}
    assert client.post("/admin/teams/team/", bulk).status_code == 302
    deleted = AuditEvent.objects.get(action="team.delete")
    assert (deleted.actor, deleted.team, deleted.team_name) == (site_admin, None, "Platform")
    research = created.team
    assert (
        client.post(f"/admin/teams/team/{research.pk}/delete/", {"post": "yes"}).status_code == 302
    )
    assert AuditEvent.objects.filter(action="team.delete", team_name="Research").count() == 1
    assert audit_trail.verify_chain()[1] is None


def test_deleting_a_team_costs_the_same_statements_whatever_its_number_of_members(
    site_admin, make_user, django_capture_on_commit_callbacks
):
    """Its members' answers stop and their pages hear of it together, not one by one."""

    def statements_deleting_team_of(size: int) -> int:
        team = Team.objects.create(name=f"Team of {size}")
        for number in range(size):
            person = make_user(f"person{size}_{number}")
            role = Role.OWNER if number == 0 else Role.MEMBER
            Membership.objects.create(team=team, user=person, role=role)
            Conversation.objects.create(team=team, owner=person, model="m")
        with (
            CaptureQueriesContext(connection) as queries,
            django_capture_on_commit_callbacks(execute=True),
        ):
            actions.admin_delete_team(site_admin, team)
        assert not Team.objects.filter(pk=team.pk).exists()
        return len(queries)

    assert statements_deleting_team_of(10) == statements_deleting_team_of(2)


def test_the_admin_sites_team_deletion_page_counts_what_goes_rather_than_listing_it(
    client, site_admin, make_user
):
    """A team's every message would be a line of the page (and read whole to make it)."""
    client.force_login(site_admin)

    def confirmation_of_team_with(size: int) -> str:
        team = Team.objects.create(name=f"Team of {size}")
        person = make_user(f"person{size}")
        Membership.objects.create(team=team, user=person, role=Role.OWNER)
        for _ in range(size):
            chat = Conversation.objects.create(team=team, owner=person, model="m")
            for _ in range(size):
                Message.objects.create(conversation=chat, role="user", content="Hello")
        return client.get(f"/admin/teams/team/{team.pk}/delete/").content.decode()

    small, large = confirmation_of_team_with(2), confirmation_of_team_with(10)
    assert "<li>Messages: 100</li>" in large and "<li>Conversations: 10</li>" in large
    assert "<li>Memberships: 1</li>" in large
    assert large.count("<li") == small.count("<li")
    assert "Team: <a href=" in large


def test_site_admin_changing_whose_personal_team_it_is_is_audited(
    client, site_admin, team, member, outsider
):
    client.force_login(site_admin)
    form = {"name": "Acme"}
    url = f"/admin/teams/team/{team.pk}/change/"
    for owner in (member.pk, outsider.pk, ""):
        response = client.post(url, {**form, "personal_owner": owner})
        assert response.status_code == 302, response.content[:2000]
    assert client.post(url, form).status_code == 302  # unchanged: no event

    events = AuditEvent.objects.filter(action="team.personal_owner").order_by("id")
    assert [(e.actor, e.team, e.summary, e.details) for e in events] == [
        (
            site_admin,
            team,
            "siteadmin made the team Acme the personal team of max in the admin site",
            {"old": None, "new": "max"},
        ),
        (
            site_admin,
            team,
            "siteadmin made the team Acme the personal team of eve instead of max"
            " in the admin site",
            {"old": "max", "new": "eve"},
        ),
        (
            site_admin,
            team,
            "siteadmin made the team Acme no longer the personal team of eve in the admin site",
            {"old": "eve", "new": None},
        ),
    ]
    assert Team.objects.get(pk=team.pk).personal_owner is None
    assert audit_trail.verify_chain() == (3, None)


def test_a_sign_in_joins_the_team_its_group_names_in_another_letter_case(make_user):
    """A site admin made "engineering" before the map named "Engineering": one team, as the
    team form already treats the two names as one."""
    made = Team.objects.create(name="engineering")
    actions.apply_group_roles(make_user("ann"), {"Engineering": Role.MEMBER}, {"Engineering"})
    assert list(Team.objects.filter(name__iexact="engineering")) == [made]
    assert list(made.memberships.values_list("user__username", flat=True)) == ["ann"]


def test_a_member_a_site_admin_adds_is_not_labelled_added_by_sign_in(
    client, site_admin, team, owner, outsider
):
    client.force_login(site_admin)
    added = {"user": outsider.pk, "team": team.pk, "role": Role.MEMBER}
    assert client.post("/admin/teams/membership/add/", added).status_code == 302
    client.force_login(owner)
    page = client.get(reverse("teams:audit", args=[team.pk])).content.decode()
    row = next(line for line in page.splitlines() if "in the admin site" in line)
    assert "by sign-in" not in row
    assert ">Member added<" in row


def test_a_team_name_is_stored_composed(owner_client, owner):
    """Typed with a combining accent (e + U+0301), as with é: one name, however typed."""
    assert owner_client.post("/teams/", {"name": "Cafe\u0301"}).status_code == 302
    assert Team.objects.filter(name="Caf\u00e9").exists()
