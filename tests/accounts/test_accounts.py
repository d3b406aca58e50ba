import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from chatapp.teams.actions import ensure_personal_team
from chatapp.teams.models import AuditEvent, Membership, Role, Team
from chatapp.teams.services import current_team
from tests.conftest import PASSWORD, client_for

User = get_user_model()
GOOD = {"username": "ada", "email": "ada@example.com", "password1": PASSWORD, "password2": PASSWORD}


@pytest.fixture(autouse=True)
def open_signup(settings):
    """The signup form itself; tests/accounts/test_signup_policy.py covers who may use it."""
    settings.SIGNUP_POLICY = "open"


def test_signup_page_renders(client, db):
    response = client.get("/accounts/signup/")
    assert response.status_code == 200
    assert b'name="password1"' in response.content


def test_signup_creates_account_logs_in_and_redirects(client, db):
    response = client.post("/accounts/signup/", GOOD)
    assert response.status_code == 302
    assert response["Location"] == "/"
    user = User.objects.get(username="ada")
    assert user.check_password(PASSWORD)
    assert client.get("/").status_code == 200


def test_signup_follows_a_safe_next_only(client, db):
    response = client.post("/accounts/signup/?next=/settings/", GOOD)
    assert response["Location"] == "/settings/"
    client.logout()
    other = dict(GOOD, username="bob", email="bob@example.com")
    response = client.post("/accounts/signup/?next=https://evil.example/", other)
    assert response["Location"] == "/"
    # Signed in, the sign-up page sends one on to a next that is an address, and only then.
    assert client.get("/accounts/signup/?next=/settings/")["Location"] == "/settings/"
    for target in ("abc", "0", "settings"):
        assert client.get(f"/accounts/signup/?next={target}")["Location"] == "/"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"password2": "something-else-entirely"}, b"didn\xe2\x80\x99t match"),
        ({"password1": "123", "password2": "123"}, b"too short"),
        ({"password1": "password", "password2": "password"}, b"too common"),
        ({"username": ""}, b"This field is required"),
        ({"email": "not-an-email"}, b"valid email"),
    ],
)
def test_signup_rejects_bad_input_and_creates_nothing(client, db, changes, error):
    response = client.post("/accounts/signup/", dict(GOOD, **changes))
    assert response.status_code == 200
    assert error in response.content
    assert not User.objects.exists()


def test_signup_rejects_a_taken_username_or_email(client, make_user):
    make_user("ada")
    response = client.post("/accounts/signup/", dict(GOOD, email="new@example.com"))
    assert b"already exists" in response.content
    response = client.post("/accounts/signup/", dict(GOOD, username="other"))
    assert b"already exists" in response.content
    assert User.objects.count() == 1


def test_first_account_becomes_site_admin_and_later_ones_do_not(client, db):
    client.post("/accounts/signup/", GOOD)
    client.logout()
    client.post("/accounts/signup/", dict(GOOD, username="bob", email="bob@example.com"))
    first, second = User.objects.order_by("pk")
    assert first.is_superuser and first.is_staff
    assert not second.is_superuser and not second.is_staff


def test_createsuperuser_still_works_after_the_first_account(make_user):
    make_user("first")
    call_command("createsuperuser", username="root", email="root@example.com", interactive=False)
    assert User.objects.get(username="root").is_superuser


def test_login_with_good_credentials_redirects_to_next(client, make_user):
    make_user("ada")
    response = client.post(
        "/accounts/login/?next=/settings/",
        {"username": "ada", "password": PASSWORD, "next": "/settings/"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/settings/"


def test_a_signed_in_person_sent_to_the_login_page_goes_on_to_next(client, member):
    client.force_login(member)
    assert client.get("/accounts/login/?next=/settings/")["Location"] == "/settings/"
    # The login page itself as next would loop: the default page instead, not a 500.
    response = client.get("/accounts/login/?next=/accounts/login/")
    assert response.status_code == 302 and response["Location"] == "/"


def test_login_with_a_wrong_password_says_so(client, make_user):
    make_user("ada")
    response = client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session
    # There is no reset by email: the page says who sets a new password (audited there).
    assert b"Forgot your password? A site admin can set a new one for you." in response.content


def test_logout_needs_post_and_ends_the_session(client, make_user):
    client.force_login(make_user("ada"))
    assert client.get("/accounts/logout/").status_code == 405
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_anonymous_home_redirects_to_login(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


def test_personal_team_is_created_once_with_the_user_as_owner(make_user):
    user = make_user("ada")
    assert not Team.objects.exists()
    team = ensure_personal_team(user)
    assert ensure_personal_team(user) == team
    assert team.is_personal
    assert Membership.objects.get(team=team, user=user).role == Role.OWNER


def test_current_team_prefers_an_existing_team_over_a_personal_one(rf, member, team):
    request = rf.get("/")
    request.user = member
    request.session = {}
    assert current_team(request) == team
    assert request.session["current_team_id"] == team.pk
    assert not Team.objects.filter(personal_owner=member).exists()


def test_current_team_ignores_a_team_the_user_left(rf, member, team, make_user):
    request = rf.get("/")
    request.user = member
    request.session = {"current_team_id": 999_999}
    assert current_team(request) == team


def test_the_password_change_page_is_linked_from_settings_and_works(member_client, member):
    assert b'href="/accounts/password/"' in member_client.get("/settings/").content
    assert member_client.get("/accounts/password/").status_code == 200
    new = "a-brand-new-passphrase-42"
    data = {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    response = member_client.post("/accounts/password/", data)
    assert response.status_code == 302
    assert member_client.get(response["Location"]).status_code == 200
    member.refresh_from_db()
    assert member.check_password(new)
    (event,) = AuditEvent.objects.filter(action="user.password")
    assert (event.team, event.actor, event.summary) == (None, member, "max changed their password")
    assert event.details == {"user": "max", "how": "change"}
    assert new not in str(event.details) and PASSWORD not in str(event.details)


def test_a_site_admin_changing_their_password_in_the_admin_site_is_audited_too(client, make_user):
    ada = make_user("ada")
    User.objects.filter(pk=ada.pk).update(is_staff=True, is_superuser=True)
    client.force_login(ada)
    new = "a-brand-new-passphrase-42"
    data = {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    response = client.post("/admin/password_change/", data)
    assert response.status_code == 302
    assert response["Location"] == "/admin/password_change/done/"
    (event,) = AuditEvent.objects.filter(action="user.password")
    assert (event.actor, event.summary) == (ada, "ada changed their password")


def test_an_account_without_a_password_is_not_offered_a_password_change(member_client, member):
    member.set_unusable_password()  # as for accounts made by single sign-on
    member.save()
    member_client.force_login(member)
    assert b'href="/accounts/password/"' not in member_client.get("/settings/").content
    page = member_client.get("/accounts/password/").content.decode()
    assert "has no password here" in page and 'name="old_password"' not in page


def test_a_bad_password_change_says_why_and_keeps_the_old_password(member_client, member):
    data = {"old_password": PASSWORD, "new_password1": "short", "new_password2": "other"}
    response = member_client.post("/accounts/password/", data)
    assert response.status_code == 200
    assert b"field-error" in response.content
    member.refresh_from_db()
    assert member.check_password(PASSWORD)
    assert not AuditEvent.objects.filter(action="user.password").exists()


def test_the_password_change_page_needs_a_login(client, db):
    response = client.get("/accounts/password/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/"])
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_the_sign_in_pages_answer_other_methods_with_405(client, db, path, method):
    assert getattr(client, method)(path).status_code == 405
    assert not User.objects.exists()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_the_password_change_page_answers_other_methods_with_405(member_client, method):
    assert getattr(member_client, method)("/accounts/password/").status_code == 405


def test_a_deactivated_accounts_sessions_stay_ended_when_it_is_reactivated(client, member):
    """Deactivation ends the account's sessions (docs/identity.md): giving the account access
    again later (a lost laptop found, a leaver rehired) signs in only who signs in anew."""
    laptop = client_for(client, member)
    assert laptop.get("/settings/").status_code == 200
    member.is_active = False
    member.save()
    assert laptop.get("/settings/").status_code == 302
    member.is_active = True
    member.save()
    assert laptop.get("/settings/").status_code == 302  # that session ended for good
    assert laptop.get("/api/me/").status_code == 401
    fresh = Client()
    assert (
        fresh.post("/accounts/login/", {"username": "max", "password": PASSWORD}).status_code == 302
    )
    assert fresh.get("/settings/").status_code == 200
