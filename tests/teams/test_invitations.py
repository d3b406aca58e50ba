"""Inviting by email or shareable link; accepting: log in first, expiry, single use, email match."""

import re
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chatapp.core import actions as core_actions
from chatapp.core.locking import lock_rows
from chatapp.core.models import AddressMail
from chatapp.teams import actions
from chatapp.teams.models import AuditEvent, Invitation, Membership, Role, Team
from chatapp.teams.services import SESSION_TEAM_KEY
from tests.conftest import PASSWORD
from tests.databases import uses_postgres, wait_for_lock_waiters


def invite(client, team, **data):
    return client.post(reverse("teams:invite", args=[team.pk]), {"role": "member", **data})


def accept_url(invitation) -> str:
    return f"/invite/{invitation.token}/"


@pytest.fixture
def link(team, owner):
    return Invitation.objects.create(team=team, invited_by=owner)


def test_owner_creates_a_shareable_link_shown_on_the_members_page(owner_client, team, owner):
    response = invite(owner_client, team, email="", days="3")
    invitation = Invitation.objects.get(team=team)
    assert response.status_code == 302
    assert invitation.email == "" and invitation.role == Role.MEMBER
    assert timedelta(days=2, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=3)
    page = owner_client.get(reverse("teams:members", args=[team.pk]))
    assert f"/invite/{invitation.token}/".encode() in page.content
    assert AuditEvent.objects.get(action="invitation.create").details["role"] == "member"


def test_the_page_showing_invitation_links_is_kept_out_of_caches(owner_client, team, link):
    """A link lets whoever holds it join: the page must not stay in the browser's cache (or a
    proxy's) for the next person at that computer."""
    page = owner_client.get(reverse("teams:members", args=[team.pk]))
    assert link.token in page.content.decode()
    assert "no-store" in page["Cache-Control"] and "private" in page["Cache-Control"]
    refused = invite(owner_client, team, email="not-an-email")  # the page again, with the error
    assert refused.status_code == 400 and link.token in refused.content.decode()
    assert "no-store" in refused["Cache-Control"]


def test_admin_invites_by_email(admin_client, team, owner, admin_member):
    invite(admin_client, team, email="New.Person@Example.com", role="admin")
    invitation = Invitation.objects.get(team=team)
    assert (invitation.email, invitation.role) == ("new.person@example.com", Role.ADMIN)


def test_invitation_is_emailed_when_email_is_configured(owner_client, team, owner, settings):
    settings.EMAIL_URL = "smtp://mail.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    invite(owner_client, team, email="new@example.com")
    invitation = Invitation.objects.get(team=team)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new@example.com"]
    assert f"/invite/{invitation.token}/" in mail.outbox[0].body


def test_inviting_one_address_over_and_over_mails_it_once_a_while(
    owner_client, team, owner, settings, make_user
):
    """Inviting, revoking and inviting again (from any team) would flood the address's inbox
    with mails the site sends: each invitation is still made, its link shown to copy."""
    settings.EMAIL_URL = "smtp://mail.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    other_team = actions.create_team(make_user("oscar"), "Other")
    other_client = Client()
    other_client.force_login(other_team.memberships.get().user)
    for client, inviting in ((owner_client, team), (other_client, other_team)) * 2:
        response = invite(client, inviting, email="New@example.com")
        assert response.status_code == 302
        revoke = reverse(
            "teams:invitation_revoke", args=[inviting.pk, inviting.invitations.get().pk]
        )
        assert client.post(revoke).status_code == 302
    assert [m.to for m in mail.outbox] == [["new@example.com"]]
    page = invite(owner_client, team, email="new@example.com", role="admin")
    assert "was not emailed" in owner_client.get(page["Location"]).content.decode()
    assert team.invitations.filter(email="new@example.com", role="admin").exists()

    AddressMail.objects.update(sent_at=timezone.now() - actions.INVITATION_MAIL_PAUSE)
    invite(other_client, other_team, email="new@example.com")
    assert [m.to for m in mail.outbox] == [["new@example.com"]] * 2


def test_an_invitation_that_could_not_be_mailed_takes_no_pause(
    owner_client, team, owner, settings, monkeypatch
):
    """The mail server was down: inviting the address again mails it at once."""
    settings.EMAIL_URL = "smtp://mail.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    def mail_server_down(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    with monkeypatch.context() as patched:
        patched.setattr(core_actions, "send_mail", mail_server_down)
        page = invite(owner_client, team, email="new@example.com")
    assert "could not be sent" in owner_client.get(page["Location"]).content.decode()
    actions.revoke_invitation(owner, team.invitations.get())  # to invite the address again
    page = invite(owner_client, team, email="new@example.com", role="admin")
    assert "Invitation emailed to" in owner_client.get(page["Location"]).content.decode()
    assert [m.to for m in mail.outbox] == [["new@example.com"]]


def test_a_team_name_stored_with_a_line_break_still_mails_its_invitations(
    owner_client, team, owner, settings
):
    """A name saved before names were checked (or straight into the database) would make the
    mail's subject two header lines: the mail is refused, and the invitation page failed."""
    settings.EMAIL_URL = "smtp://mail.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    Team.objects.filter(pk=team.pk).update(name="Acme\nBcc: all@example.com")
    response = invite(owner_client, team, email="new@example.com")
    assert response.status_code == 302
    (message,) = mail.outbox
    assert message.subject == "You are invited to Acme Bcc: all@example.com on Llama team chat"
    assert message.recipients() == ["new@example.com"]


def test_no_email_is_sent_without_email_configured(owner_client, team, owner, settings):
    settings.EMAIL_URL = ""
    invite(owner_client, team, email="new@example.com")
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"email": "not-an-email"}, b"Enter a valid email address"),
        ({"role": "owner"}, b"Select a valid choice"),
        ({"days": "0"}, b"greater than or equal to 1"),
        ({"email": "max@example.com"}, b"already a member"),
        # Longer than the invitation's column holds (PostgreSQL would refuse it with a 500).
        ({"email": "a" * 250 + "@example.com"}, b"at most 254 characters"),
    ],
)
def test_bad_invitations_are_refused(owner_client, team, owner, member, data, error):
    response = invite(owner_client, team, **data)
    assert response.status_code == 400
    assert error in response.content
    assert not Invitation.objects.exists()


def test_anonymous_visitor_is_sent_to_log_in_and_back(client, link):
    response = client.get(accept_url(link))
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/invite/{link.token}/"
    login = client.get(response["Location"])
    assert f"/accounts/signup/?next=/invite/{link.token}/".encode() in login.content.replace(
        b"%2F", b"/"
    )


def test_signing_up_from_a_link_joins_its_team_and_uses_the_link(client, link):
    data = {"username": "nina", "email": "", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post(f"/accounts/signup/?next=/invite/{link.token}/", data)
    assert response["Location"] == f"/teams/{link.team_id}/"
    assert Membership.objects.get(user__username="nina", team=link.team).role == Role.MEMBER
    link.refresh_from_db()
    assert link.accepted_by.username == "nina"


def test_signing_up_from_an_address_bound_invitation_comes_back_to_it(client, team, owner):
    bound = Invitation.objects.create(team=team, invited_by=owner, email="nina@example.com")
    data = {"username": "nina", "email": "nina@example.com"}
    data |= {"password1": PASSWORD, "password2": PASSWORD}
    response = client.post(f"/accounts/signup/?next=/invite/{bound.token}/", data)
    assert response["Location"] == f"/invite/{bound.token}/"
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"Accept and join" in page.content


def test_accepting_a_link_joins_the_team_and_makes_it_current(outsider_client, outsider, link):
    assert outsider_client.get(accept_url(link)).status_code == 200
    assert not Membership.objects.filter(user=outsider, team=link.team).exists()
    response = outsider_client.post(accept_url(link))
    assert response.status_code == 302 and response["Location"] == f"/teams/{link.team_id}/"
    assert Membership.objects.get(user=outsider, team=link.team).role == Role.MEMBER
    assert outsider_client.session[SESSION_TEAM_KEY] == link.team_id
    link.refresh_from_db()
    assert link.accepted_by == outsider and link.accepted_at is not None
    assert AuditEvent.objects.get(action="invitation.accept").actor == outsider


def test_a_link_works_only_once(outsider_client, link, make_user, client):
    outsider_client.post(accept_url(link))
    client.force_login(make_user("late"))
    response = client.post(accept_url(link))
    assert response.status_code == 410
    assert b"already been used" in response.content
    assert link.team.memberships.count() == 2  # the owner and the first to accept


def test_an_expired_invitation_is_refused(outsider_client, outsider, link):
    Invitation.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    page = outsider_client.get(accept_url(link))
    assert page.status_code == 410 and b"expired" in page.content
    assert b"Accept and join" not in page.content
    assert outsider_client.post(accept_url(link)).status_code == 410
    assert not Membership.objects.filter(user=outsider).exists()


@pytest.fixture
def no_email(settings):
    settings.EMAIL_URL = ""


@pytest.fixture
def with_email(settings):
    settings.EMAIL_URL = "smtp://mail.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_an_email_invitation_needs_the_matching_account(team, owner, make_user, client, no_email):
    invitation = Invitation.objects.create(
        team=team, invited_by=owner, email="nina@example.com", role=Role.ADMIN
    )
    client.force_login(make_user("eve"))  # eve@example.com
    response = client.post(accept_url(invitation))
    assert response.status_code == 403
    assert b"different email address" in response.content
    assert Invitation.objects.get(pk=invitation.pk).claimed_by is None


def test_an_unverified_address_is_not_enough_to_join(team, owner, make_user, client, no_email):
    """Anyone can sign up with someone else's address: the address must be proven first."""
    invitation = Invitation.objects.create(
        team=team, invited_by=owner, email="nina@example.com", role=Role.ADMIN
    )
    nina = make_user("nina")  # nina@example.com, never verified
    client.force_login(nina)
    response = client.post(accept_url(invitation))
    assert response.status_code == 200
    assert b"has to confirm that this account" in response.content
    assert not Membership.objects.filter(team=team, user=nina).exists()
    invitation.refresh_from_db()
    assert (invitation.claimed_by, invitation.accepted_at) == (nina, None)
    assert b"has to confirm" in client.get(accept_url(invitation)).content


def test_without_email_a_team_admin_confirms_the_account(
    team, owner, owner_client, make_user, no_email
):
    invitation = Invitation.objects.create(
        team=team, invited_by=owner, email="nina@example.com", role=Role.ADMIN
    )
    nina = Client()
    nina.force_login(make_user("nina"))
    nina.post(accept_url(invitation))
    page = owner_client.get(reverse("teams:members", args=[team.pk]))
    assert b"<bdi>nina</bdi> asks to join with it" in page.content
    confirm = reverse("teams:invitation_confirm", args=[team.pk, invitation.pk])
    assert owner_client.post(confirm).status_code == 302
    assert Membership.objects.get(team=team, user__username="nina").role == Role.ADMIN
    assert AuditEvent.objects.get(action="invitation.confirm").actor == owner
    assert Invitation.objects.get(pk=invitation.pk).accepted_at is not None


def test_only_the_teams_admins_confirm_an_account(
    team, owner, member, outsider, make_user, no_email
):
    invitation = Invitation.objects.create(team=team, invited_by=owner, email="nina@example.com")
    nina = Client()
    nina.force_login(make_user("nina"))
    nina.post(accept_url(invitation))
    confirm = reverse("teams:invitation_confirm", args=[team.pk, invitation.pk])
    for user, status in ((member, 403), (outsider, 404)):
        browser = Client()
        browser.force_login(user)
        assert browser.post(confirm).status_code == status
    assert not Membership.objects.filter(team=team, user__username="nina").exists()


def test_confirming_someone_who_joined_meanwhile_says_so_and_records_nothing(
    team, owner, owner_client, make_user, no_email
):
    """nina asked with the admin invitation, then joined through a member link: confirming
    her would neither make her an admin nor use the invitation, so it is not said to have."""
    invitation = Invitation.objects.create(
        team=team, email="nina@example.com", role=Role.ADMIN, invited_by=owner
    )
    nina = make_user("nina")
    browser = Client()
    browser.force_login(nina)
    browser.post(accept_url(invitation))
    Membership.objects.create(team=team, user=nina, role=Role.MEMBER)
    confirm = reverse("teams:invitation_confirm", args=[team.pk, invitation.pk])
    response = owner_client.post(confirm)
    assert response.status_code == 400
    assert b"already a member" in response.content
    assert not AuditEvent.objects.filter(action="invitation.confirm").exists()
    assert Membership.objects.get(team=team, user=nina).role == Role.MEMBER


def test_confirming_before_anyone_asked_changes_nothing(owner_client, team, owner, no_email):
    invitation = Invitation.objects.create(team=team, invited_by=owner, email="nina@example.com")
    confirm = reverse("teams:invitation_confirm", args=[team.pk, invitation.pk])
    assert owner_client.post(confirm).status_code == 400
    assert Invitation.objects.get(pk=invitation.pk).accepted_at is None


def confirmation_link() -> str:
    (message,) = mail.outbox
    return re.search(r"https?://\S+(/invite/\S+/confirm/\S+/)", message.body)[1]


def test_with_email_a_link_to_the_address_confirms_it(team, owner, make_user, client, with_email):
    invitation = Invitation.objects.create(
        team=team, invited_by=owner, email="nina@example.com", role=Role.ADMIN
    )
    nina = make_user("nina")
    nina.email = "Nina@Example.COM"  # the address matches whatever its case
    nina.save()
    client.force_login(nina)
    response = client.post(accept_url(invitation))
    assert response.status_code == 200
    assert b"We sent a confirmation link to" in response.content
    assert mail.outbox[0].to == ["nina@example.com"]
    assert not Membership.objects.filter(team=team, user=nina).exists()
    link = confirmation_link()
    assert b"Confirm and join" in client.get(link).content
    assert client.post(link).status_code == 302
    assert Membership.objects.get(team=team, user=nina).role == Role.ADMIN


def test_a_confirmation_link_works_only_for_its_account(team, owner, make_user, client, with_email):
    invitation = Invitation.objects.create(team=team, invited_by=owner, email="nina@example.com")
    client.force_login(make_user("nina"))
    client.post(accept_url(invitation))
    link = confirmation_link()
    tampered = link.replace("/confirm/", "/confirm/x")
    assert client.post(tampered).status_code == 403
    client.force_login(make_user("sam"))  # another account: not the reader
    assert client.post(link).status_code == 403
    assert not Membership.objects.filter(team=team).exclude(user=owner).exists()


def test_accepting_over_and_over_mails_the_address_once_a_while(
    team, owner, make_user, client, with_email
):
    """Anyone can invite an address from their own team and press Accept again and again: the
    confirmation goes to the address once a while, and the page says to look for it."""
    other_team = actions.create_team(make_user("oscar"), "Other")
    invitations = [
        Invitation.objects.create(team=each, invited_by=each.memberships.first().user, email=to)
        for each, to in ((team, "nina@example.com"), (other_team, "Nina@example.com"))
    ]
    client.force_login(make_user("nina"))
    for invitation in invitations * 2:
        response = client.post(accept_url(invitation))
        assert response.status_code == 200
    assert [m.to for m in mail.outbox] == [["nina@example.com"]]
    assert "mailed a confirmation link to" in response.content.decode()
    assert "a few minutes ago" in response.content.decode()
    assert client.post(confirmation_link()).status_code == 302  # the one mailed still works
    assert Membership.objects.filter(team=team, user__username="nina").exists()

    AddressMail.objects.update(sent_at=timezone.now() - actions.ADDRESS_MAIL_PAUSE)
    assert client.post(accept_url(invitations[1])).status_code == 200
    assert [m.to[0].lower() for m in mail.outbox] == ["nina@example.com"] * 2


def test_a_confirmation_that_could_not_be_mailed_can_be_asked_again_at_once(
    team, owner, make_user, client, with_email, monkeypatch
):
    invitation = Invitation.objects.create(team=team, invited_by=owner, email="nina@example.com")
    client.force_login(make_user("nina"))

    def mail_server_down(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    with monkeypatch.context() as patched:
        patched.setattr(core_actions, "send_mail", mail_server_down)
        assert client.post(accept_url(invitation)).status_code == 503
    assert b"We sent a confirmation link to" in client.post(accept_url(invitation)).content
    assert [m.to for m in mail.outbox] == [["nina@example.com"]]


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_while_the_confirmation_is_mailed(
    team, owner, make_user, client, with_email, monkeypatch
):
    """A mail server may take seconds (up to EMAIL_TIMEOUT): meanwhile no transaction holds
    the pause's row, nor SQLite's one write lock, which every answer's checkpoint needs."""
    invitation = Invitation.objects.create(team=team, invited_by=owner, email="nina@example.com")
    client.force_login(make_user("nina"))
    open_while_sending = []
    sent = core_actions.send_mail

    def send_mail(*args, **kwargs):
        open_while_sending.append(connection.in_atomic_block)
        return sent(*args, **kwargs)

    monkeypatch.setattr(core_actions, "send_mail", send_mail)
    assert b"We sent a confirmation link to" in client.post(accept_url(invitation)).content
    assert open_while_sending == [False]
    assert [m.to for m in mail.outbox] == [["nina@example.com"]]


def test_a_member_following_a_link_does_not_use_it_up(member_client, member, link):
    response = member_client.post(accept_url(link))
    assert response.status_code == 302
    assert Invitation.objects.get(pk=link.pk).accepted_at is None


def test_an_unknown_token_is_404(outsider_client):
    assert outsider_client.get("/invite/not-a-token/").status_code == 404
    assert outsider_client.post("/invite/not-a-token/").status_code == 404


@pytest.mark.parametrize("path", ["/invite/a%00b/", "/invite/a%00b/confirm/sig/"])
def test_a_token_no_invitation_could_have_is_404_not_a_500(outsider_client, path):
    # A NUL is no text PostgreSQL can compare: the token must not reach the query.
    assert outsider_client.get(path).status_code == 404
    assert outsider_client.post(path).status_code == 404


def test_accept_refuses_other_methods(outsider_client, link):
    assert outsider_client.delete(accept_url(link)).status_code == 405


def test_revoking_an_invitation_deletes_it(owner_client, team, owner, link):
    url = reverse("teams:invitation_revoke", args=[team.pk, link.pk])
    assert owner_client.post(url).status_code == 302
    assert not Invitation.objects.filter(pk=link.pk).exists()
    assert AuditEvent.objects.filter(action="invitation.revoke").exists()


def test_an_invitation_used_while_the_page_showed_it_is_not_revoked(
    owner_client, team, owner, outsider, link
):
    """Accepted after the members page listed it: revoking then says it is used, and neither
    deletes it nor writes a revocation of an invitation someone joined with."""
    shown = Invitation.objects.get(pk=link.pk)  # as the members page read it
    actions.accept_invitation(outsider, link.token)
    with pytest.raises(actions.ActionError, match="already been used"):
        actions.revoke_invitation(owner, shown)
    url = reverse("teams:invitation_revoke", args=[team.pk, link.pk])
    assert owner_client.post(url).status_code == 404  # the page's button, once it is used
    assert Invitation.objects.get(pk=link.pk).accepted_by == outsider
    assert not AuditEvent.objects.filter(action="invitation.revoke").exists()


def test_an_invitation_two_admins_revoke_at_once_is_revoked_once(team, owner, admin_member, link):
    """Both pages read it; the second revocation finds it gone: it says so and writes no
    second revocation (of an invitation the other admin revoked) in the audit trail."""
    shown = Invitation.objects.get(pk=link.pk)  # as the second admin's page read it
    actions.revoke_invitation(owner, Invitation.objects.get(pk=link.pk))
    with pytest.raises(actions.ActionError, match="revoked meanwhile"):
        actions.revoke_invitation(admin_member, shown)
    revoked = AuditEvent.objects.filter(action="invitation.revoke")
    assert list(revoked.values_list("actor", flat=True)) == [owner.pk]


def test_invitations_of_another_team_cannot_be_revoked(owner_client, team, owner, make_user):
    other = team.__class__.objects.create(name="Other")
    theirs = Invitation.objects.create(team=other)
    url = reverse("teams:invitation_revoke", args=[team.pk, theirs.pk])
    assert owner_client.post(url).status_code == 404
    assert Invitation.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize("ending", ["removed", "left", "demoted", "deactivated"])
def test_an_admin_who_lost_their_place_cannot_come_back_by_their_own_link(
    team, owner, admin_member, owner_client, make_user, ending
):
    """Removing an admin ends their access at once: the links they made let nobody in, them
    included, until they are an owner or admin of the team again."""
    made = actions.invite(admin_member, team, role=Role.ADMIN)
    membership = Membership.objects.get(team=team, user=admin_member)
    owners = Membership.objects.get(team=team, user=owner)
    if ending == "removed":
        actions.remove_member(owners, membership)
    elif ending == "left":
        actions.leave_team(membership)
    elif ending == "demoted":
        actions.change_role(owners, membership, Role.MEMBER)
    else:
        admin_member.is_active = False
        admin_member.save()
    returning = Client()
    gone = ending in ("removed", "left")  # else someone they passed the link to
    returning.force_login(admin_member if gone else make_user("nina"))
    page = returning.get(accept_url(made))
    assert page.status_code == 410
    assert b"no longer an owner or admin" in page.content
    assert returning.post(accept_url(made)).status_code == 410
    assert not Membership.objects.filter(team=team, role=Role.ADMIN, user__is_active=True).exists()
    assert Invitation.objects.get(pk=made.pk).accepted_at is None
    members_page = owner_client.get(reverse("teams:members", args=[team.pk]))
    assert b"lets nobody in" in members_page.content


def test_a_link_works_again_once_its_maker_is_an_admin_again(team, owner, admin_member, client):
    made = actions.invite(admin_member, team)
    Membership.objects.filter(team=team, user=admin_member).update(role=Role.MEMBER)
    assert not Invitation.objects.get(pk=made.pk).is_usable
    Membership.objects.filter(team=team, user=admin_member).update(role=Role.ADMIN)
    assert Invitation.objects.get(pk=made.pk).is_usable


def test_an_address_with_an_invitation_waiting_is_not_invited_twice(owner_client, team, owner):
    """Two links for one person would both work: the page says one is waiting, and where."""
    assert invite(owner_client, team, email="new@example.com").status_code == 302
    waiting = Invitation.objects.get(team=team)
    response = invite(owner_client, team, email="New@Example.com", role="admin")
    assert response.status_code == 400
    page = response.content.decode()
    assert "new@example.com already has an invitation to this team waiting" in page
    assert "revoke it to invite them again" in page
    assert waiting.token in page  # the link to copy instead
    assert list(Invitation.objects.all()) == [waiting]
    assert AuditEvent.objects.filter(action="invitation.create").count() == 1


@pytest.mark.parametrize("gone", ["expired", "used"])
def test_an_address_whose_invitation_expired_or_was_used_is_invited_again(
    owner_client, team, owner, gone
):
    assert invite(owner_client, team, email="new@example.com").status_code == 302
    if gone == "expired":
        Invitation.objects.update(expires_at=timezone.now())
    else:
        Invitation.objects.update(accepted_at=timezone.now())
    assert invite(owner_client, team, email="new@example.com").status_code == 302
    assert Invitation.objects.filter(email="new@example.com").count() == 2


def test_another_team_may_invite_an_address_this_one_has(owner_client, team, owner, make_user):
    other_team = actions.create_team(make_user("oscar"), "Other")
    actions.invite(owner, team, email="new@example.com")
    actions.invite(other_team.memberships.get().user, other_team, email="new@example.com")
    assert Invitation.objects.filter(email="new@example.com").count() == 2


@pytest.mark.skipif(not uses_postgres(), reason="SQLite already queues every writer")
@pytest.mark.django_db(transaction=True)
def test_one_address_invited_twice_at_once_gets_one_invitation(team, owner, admin_member):
    """A double click on Invite, or two admins at once: one invitation, the other refused."""
    outcomes = []

    def invite_new_person(actor):
        try:
            actions.invite(actor, team, email="new@example.com")
            outcomes.append("invited")
        except actions.ActionError as error:
            outcomes.append(error.message.partition(" waiting")[0])
        except Exception as error:  # the page would answer 500
            outcomes.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=invite_new_person, args=(a,)) for a in (owner, admin_member)]
    with transaction.atomic():
        lock_rows(Team.objects.filter(pk=team.pk))  # both start, then go on together
        for thread in threads:
            thread.start()
        wait_for_lock_waiters(2)
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [
        "invited",
        "new@example.com already has an invitation to this team",
    ]
    assert Invitation.objects.filter(team=team).count() == 1
