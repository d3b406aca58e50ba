"""One e-mail address, one account, in any letter case: the database holds to it (a unique
index on the upper-cased address, blank ones aside), so two signups or sign-ins at the same
moment cannot both take it; the migration that adds it settles the duplicates already there."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from chatapp.accounts import admin, forms
from tests.accounts.test_user_admin_audit import change_form
from tests.conftest import PASSWORD

User = get_user_model()
BEFORE, ADDED = ("accounts", "0003_pending_signup"), ("accounts", "0004_user_email_unique")


def test_two_accounts_never_hold_one_address_in_any_letter_case(db):
    User.objects.create_user("sam", email="Sam@Example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("samuel", email="sam@example.COM")
    User.objects.create_user("nobody", email="")
    User.objects.create_user("no_one", email="")  # blank addresses are no one's
    assert User.objects.filter(email="").count() == 2


def test_a_signup_whose_address_is_taken_as_it_saves_is_refused_and_saves_nothing(
    client, settings, make_user, monkeypatch
):
    """Another signup (or a sign-in) takes the address after this form checked it, before
    it saved: the answer says so, as when it was taken before; not a server error."""
    settings.SIGNUP_POLICY = "open"
    make_user("first")  # not the site's first account
    checked = forms.SignupForm.clean_email

    def checked_then_taken(form):
        email = checked(form)
        User.objects.create_user("quicker", email=email.upper())
        return email

    monkeypatch.setattr(forms.SignupForm, "clean_email", checked_then_taken)
    data = {"username": "ada", "email": "ada@example.com", "password1": PASSWORD}
    response = client.post("/accounts/signup/", {**data, "password2": PASSWORD})
    assert response.status_code == 200
    assert "An account with this email already exists." in response.content.decode()
    assert not User.objects.filter(username="ada").exists()
    assert not User.objects.filter(username="quicker").exists()  # the request's own rollback


def test_an_address_taken_as_the_admin_saves_it_is_a_form_error_not_a_500(
    client, site_admin, member, monkeypatch
):
    """A site admin gives someone an address another account takes after the form checked
    it, before it saved: the change form says so, as when it was taken before."""
    client.force_login(site_admin)
    checked = admin.AccountChangeForm.clean_email
    races = [True]  # the other account is made once, in the transaction the save rolls back

    def checked_then_taken(form):
        email = checked(form)
        if races and races.pop():
            User.objects.create_user("quicker", email=email.upper())
        return email

    monkeypatch.setattr(admin.AccountChangeForm, "clean_email", checked_then_taken)
    form = {**change_form(member), "email": "ada@example.com"}
    response = client.post(f"/admin/auth/user/{member.pk}/change/", form)
    assert response.status_code == 200
    assert "Another account already has this email." in response.content.decode()
    member.refresh_from_db()
    assert member.email == "max@example.com"
    assert not User.objects.filter(username="quicker").exists()  # the admin's own rollback


def test_createsuperuser_with_a_taken_address_says_so_and_creates_nothing(make_user):
    make_user("first")
    with pytest.raises(CommandError, match="Another account already has the email address"):
        call_command(
            "createsuperuser", username="root", email="FIRST@example.com", interactive=False
        )
    assert not User.objects.filter(username="root").exists()


def test_createsuperuser_asks_again_for_an_address_that_is_taken(make_user, monkeypatch, capsys):
    make_user("first")
    answers = iter(["first@EXAMPLE.com", "root@example.com"])
    monkeypatch.setattr("builtins.input", lambda message="": next(answers))
    monkeypatch.setattr("getpass.getpass", lambda prompt="": PASSWORD)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    call_command("createsuperuser", username="root", interactive=True)
    assert "Another account already has this email address." in capsys.readouterr().err
    assert User.objects.get(username="root").email == "root@example.com"


@pytest.mark.django_db(transaction=True)
def test_createsuperuser_whose_address_is_taken_while_the_password_is_typed_says_so(
    monkeypatch,
):
    User.objects.create_user("first", email="first@example.com")
    answers = iter(["root@example.com"])
    monkeypatch.setattr("builtins.input", lambda message="": next(answers))

    def password_while_another_signs_up(prompt=""):
        if not User.objects.filter(username="quicker").exists():
            User.objects.create_user("quicker", email="ROOT@example.com")
        return PASSWORD

    monkeypatch.setattr("getpass.getpass", password_while_another_signs_up)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    with pytest.raises(CommandError, match="took the email address root@example.com meanwhile"):
        call_command("createsuperuser", username="root", interactive=True)
    assert not User.objects.filter(username="root").exists()


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_an_address_on_one_account_and_clears_it_on_the_others(db):
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    # As that release knew it: a column added since is not in the table yet.
    PendingSignupThen = executor.loader.project_state([BEFORE]).apps.get_model(
        "accounts", "PendingSignup"
    )
    try:
        old = User.objects.create_user("old", email="Sam@Example.com")
        pending = User.objects.create_user("pending", email="sam@example.com", is_active=False)
        newer = User.objects.create_user("newer", email="SAM@example.com")
        waiting = User.objects.create_user("waiting", email="lee@example.com", is_active=False)
        PendingSignupThen.objects.create(user_id=pending.pk)
        PendingSignupThen.objects.create(user_id=waiting.pk)
        later = User.objects.create_user("later", email="lee@example.com")
        User.objects.create_user("blank1", email="")
        User.objects.create_user("blank2", email="")
        MigrationExecutor(connection).migrate([ADDED])
    finally:
        latest = MigrationExecutor(connection)
        latest.migrate(latest.loader.graph.leaf_nodes())
    emails = dict(User.objects.values_list("username", "email"))
    # The oldest account keeps it; an unconfirmed signup gives way to a confirmed account.
    assert emails["old"] == "Sam@example.com" and emails["pending"] == emails["newer"] == ""
    assert emails["later"] == "lee@example.com" and emails["waiting"] == ""
    assert emails["blank1"] == emails["blank2"] == ""
    del old, pending, newer, waiting, later
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("again", email="sam@EXAMPLE.com")
