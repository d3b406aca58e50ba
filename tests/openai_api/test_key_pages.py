"""The settings page's API keys, and the team admins' view of their members' keys."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chatapp.teams.actions import create_team
from chatapp.teams.models import ApiKey, AuditAction, AuditEvent

pytestmark = pytest.mark.django_db


def test_a_key_made_on_the_settings_page_is_shown_once(member_client, member):
    response = member_client.post("/settings/keys/", {"key-name": "laptop"})
    assert response.status_code == 201
    key = ApiKey.objects.get(user=member)
    page = response.content.decode()
    secret = response.context["new_key"]
    assert secret.startswith(key.prefix) and secret in page
    assert "no-store" in response["Cache-Control"]
    later = member_client.get("/settings/").content.decode()
    assert key.prefix in later and "laptop" in later
    assert secret not in later


def test_a_past_expiry_or_blank_name_is_refused(member_client):
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    response = member_client.post("/settings/keys/", {"key-name": "x", "key-expires": yesterday})
    assert response.status_code == 400
    assert "must be in the future" in response.content.decode()
    assert member_client.post("/settings/keys/", {"key-name": " "}).status_code == 400
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("name", ["ci\u202etxt.exe", "a\u2066b", "laptop\nX: y", "a\tb"])
def test_a_key_name_is_one_line_that_reads_as_typed(member_client, name):
    response = member_client.post("/settings/keys/", {"key-name": name})
    assert response.status_code == 400
    assert "one line of text" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoking_on_the_settings_page(member_client, member, make_key):
    make_key(member)
    key = ApiKey.objects.get()
    response = member_client.post(f"/settings/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == member


def test_someone_elses_key_cannot_be_revoked_from_the_settings_page(
    outsider_client, member, make_key
):
    make_key(member)
    key = ApiKey.objects.get()
    assert outsider_client.post(f"/settings/keys/{key.pk}/revoke/").status_code == 404
    assert outsider_client.get(f"/settings/keys/{key.pk}/revoke/").status_code == 405
    key.refresh_from_db()
    assert key.revoked_at is None


def test_team_admins_see_members_keys_without_secrets_and_revoke_them(
    client, admin_member, member, team, make_key
):
    secret = make_key(member, team, name="cron job")
    key = ApiKey.objects.get()
    client.force_login(admin_member)
    page = client.get(f"/teams/{team.pk}/members/").content.decode()
    assert "cron job" in page and key.prefix in page
    assert secret not in page
    response = client.post(f"/teams/{team.pk}/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_by == admin_member
    event = AuditEvent.objects.get(action=AuditAction.API_KEY_REVOKE)
    assert event.team == team and event.actor == admin_member


def test_members_neither_see_nor_revoke_each_others_keys(
    client, member, admin_member, team, make_key
):
    make_key(admin_member, team, name="admin script")
    key = ApiKey.objects.get()
    client.force_login(admin_member)  # the key's name, where it is shown
    assert "admin script" in client.get(f"/teams/{team.pk}/members/").content.decode()
    client.force_login(member)
    assert "admin script" not in client.get(f"/teams/{team.pk}/members/").content.decode()
    assert client.post(f"/teams/{team.pk}/keys/{key.pk}/revoke/").status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None


def test_admins_neither_see_nor_revoke_an_owners_keys(client, owner, admin_member, team, make_key):
    """Admins act on members and admins only: an owner's scripts are not theirs to stop."""
    make_key(owner, team, name="nightly backup job")
    key = ApiKey.objects.get()
    client.force_login(admin_member)
    assert "nightly backup job" not in client.get(f"/teams/{team.pk}/members/").content.decode()
    assert client.post(f"/teams/{team.pk}/keys/{key.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    client.force_login(owner)  # another owner may, as they may remove them
    page = client.get(f"/teams/{team.pk}/members/").content.decode()
    assert "nightly backup job" in page


def test_an_admin_of_another_team_gets_404(client, make_user, member, team, make_key):
    stranger = make_user("sam")
    elsewhere = create_team(stranger, "Elsewhere")
    make_key(member, team)
    key = ApiKey.objects.get()
    client.force_login(stranger)
    assert client.post(f"/teams/{elsewhere.pk}/keys/{key.pk}/revoke/").status_code == 404
    assert client.post(f"/teams/{team.pk}/keys/{key.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def form_once(client) -> str:
    """The `once` value of the key form as the settings page renders it."""
    page = client.get("/settings/").content.decode()
    found = re.search(r'name="key-once" value="([^"]+)"', page)
    assert found, "the key form carries no once field"
    return found.group(1)


def test_sending_the_key_form_again_makes_no_second_key(member_client, member):
    once = form_once(member_client)
    assert once != form_once(member_client)  # each rendering names itself
    blank = member_client.post("/settings/keys/", {"key-name": " ", "key-once": once})
    assert blank.status_code == 400 and f'value="{once}"' in blank.content.decode()
    made = member_client.post("/settings/keys/", {"key-name": "laptop", "key-once": once})
    assert made.status_code == 201
    key = ApiKey.objects.get(user=member)

    again = member_client.post(
        "/settings/keys/", {"key-name": "laptop", "key-once": once}, follow=True
    )
    assert again.redirect_chain == [("/settings/", 302)]
    page = again.content.decode()
    assert f"This form already made the key laptop ({key.prefix}…)" in page
    assert made.context["new_key"] not in page
    assert ApiKey.objects.filter(user=member).count() == 1

    other = member_client.post(
        "/settings/keys/", {"key-name": "phone", "key-once": form_once(member_client)}
    )
    assert other.status_code == 201
    assert ApiKey.objects.filter(user=member).count() == 2

    member_client.post(f"/settings/keys/{key.pk}/revoke/")
    revoked = member_client.post(
        "/settings/keys/", {"key-name": "laptop", "key-once": once}, follow=True
    )
    assert "This form already made a key, since revoked" in revoked.content.decode()
    assert ApiKey.objects.filter(user=member).count() == 2


def test_another_persons_once_value_is_just_a_new_form(member_client, outsider):
    once = form_once(member_client)
    made = member_client.post("/settings/keys/", {"key-name": "a", "key-once": once})
    assert made.status_code == 201
    other = Client()
    other.force_login(outsider)
    assert other.post("/settings/keys/", {"key-name": "b", "key-once": once}).status_code == 201
    assert ApiKey.objects.filter(user=outsider).count() == 1


def test_a_key_of_a_team_one_left_says_where_its_requests_go(member_client, member, team):
    member_client.post("/settings/keys/", {"key-name": "laptop"})
    assert ApiKey.objects.get(user=member).team == team
    page = member_client.get("/settings/").content.decode()
    assert "Acme" in page and "you left it" not in page
    create_team(member, "Second")  # a team to stay in
    member_client.post(f"/teams/{team.pk}/leave/")
    page = member_client.get("/settings/").content.decode()
    assert "<bdi>Acme</bdi> (you left it: requests go to your first team)" in page
