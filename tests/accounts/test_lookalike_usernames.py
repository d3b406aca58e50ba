"""Usernames that could pass for another's ("аlice" with a Cyrillic а beside "alice") are
refused for new names wherever a name is given: signup, /admin/, createsuperuser, a first
company sign-in. Names already held keep working."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from chatapp.accounts.usernames import LOOKS_TAKEN, MIXED_SCRIPTS
from tests.accounts.test_user_admin_audit import change_form
from tests.conftest import PASSWORD

User = get_user_model()
CYRILLIC_A, CYRILLIC_O, CYRILLIC_E = "\u0430", "\u043e", "\u0435"


@pytest.fixture(autouse=True)
def open_signup(settings):
    settings.SIGNUP_POLICY = "open"


def signup(client: Client, username: str):
    data = {"username": username, "password1": PASSWORD, "password2": PASSWORD}
    return client.post("/accounts/signup/", data)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        (f"{CYRILLIC_A}lice", MIXED_SCRIPTS),  # a Cyrillic а among Latin letters
        ("ALICE", "A user with that username already exists."),
        ("a1ice", LOOKS_TAKEN),
        (f"{CYRILLIC_A}l{CYRILLIC_O}", None),  # "аlо": mixed, whoever holds "alo"
        ("\uff41lice", "A user with that username already exists."),  # full-width: NFKC
    ],
)
def test_a_signup_with_a_name_that_could_pass_for_another_is_refused(
    client, make_user, name, error
):
    make_user("alice")
    response = signup(client, name)
    assert response.status_code == 200
    page = response.content.decode()
    assert (error or MIXED_SCRIPTS).replace("'", "&#x27;") in page
    assert User.objects.count() == 1


def test_a_whole_name_in_look_alike_letters_of_one_script_is_refused(client, make_user):
    make_user("exo")
    cyrillic = "\u0435\u0445\u043e"  # е х о, every one Cyrillic
    assert LOOKS_TAKEN.replace("'", "&#x27;") in signup(client, cyrillic).content.decode()
    assert not User.objects.filter(username=cyrillic).exists()


@pytest.mark.parametrize(
    ("held", "name"),
    [
        ("\u03bd\u03b9\u03ba\u03bf\u03c2", "\u039d\u0399\u039a\u039f\u03a3"),  # νικος, ΝΙΚΟΣ
        ("\u0432\u0435\u0440\u0430", "\u0412\u0415\u0420\u0410"),  # вера, ВЕРА
        ("\u0415\u043b\u0435\u043d\u0430", "\u0435\u043b\u0435\u043d\u0430"),  # Елена, елена
    ],
)
def test_a_greek_or_cyrillic_name_in_other_letter_case_is_refused(client, make_user, held, name):
    """The same name in capitals: whatever the database's own case folding (SQLite's covers
    only ASCII), its capitals drawn like other Latin letters than its small letters (Ν like N,
    ν like v) do not make it another name."""
    make_user(held)
    response = signup(client, name)
    assert response.status_code == 200
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "name",
    [
        "alicia",
        "max_\u0645\u062d\u0645\u062f",
        "\u7530\u4e2d\u305f\u308d\u3046",
        "\u0395\u03bb\u03ad\u03bd\u03b7",
    ],
)
def test_names_in_one_script_or_a_usual_mix_are_welcome(client, make_user, name):
    make_user("alice")
    assert signup(client, name).status_code == 302
    assert User.objects.filter(username=name).exists()


def test_the_admin_refuses_a_look_alike_name_but_an_account_keeps_the_one_it_has(
    client, site_admin, make_user
):
    make_user("alice")
    # Made before names were judged (its address in Latin letters: a Cyrillic one is no address).
    held = User.objects.create_user(f"{CYRILLIC_A}lice", email="other@example.com")
    client.force_login(site_admin)
    url = f"/admin/auth/user/{held.pk}/change/"
    assert client.post(url, {**change_form(held), "first_name": "Al"}).status_code == 302
    held.refresh_from_db()
    assert held.first_name == "Al"
    bob = make_user("bob")
    form = {**change_form(bob), "username": "a1ice"}
    response = client.post(f"/admin/auth/user/{bob.pk}/change/", form)
    assert response.status_code == 200
    assert LOOKS_TAKEN.replace("'", "&#x27;") in response.content.decode()
    bob.refresh_from_db()
    assert bob.username == "bob"
    form = {"username": f"b{CYRILLIC_O}b", "password1": PASSWORD, "password2": PASSWORD}
    added = client.post("/admin/auth/user/add/", form)
    assert added.status_code == 200 and MIXED_SCRIPTS in added.content.decode()
    assert not User.objects.filter(username=form["username"]).exists()


def test_createsuperuser_refuses_a_look_alike_name(make_user):
    make_user("root")
    with pytest.raises(CommandError, match="looks like another account"):
        call_command("createsuperuser", username="r00t", email="", interactive=False)
    with pytest.raises(CommandError, match="mixes letters of different scripts"):
        call_command("createsuperuser", username=f"adm{CYRILLIC_E}n", email="", interactive=False)
    assert User.objects.count() == 1
