"""A user's settings changed in the admin site are in the audit trail, as the site's events."""

import pytest

from chatapp.accounts.models import UserSettings
from chatapp.teams.audit_trail import verify_chain
from chatapp.teams.models import AuditEvent

URL = "/admin/accounts/usersettings/"


def form(**values) -> dict:
    return {"model": "", "temperature": "", "max_tokens": "", "top_p": "", **values}


@pytest.fixture
def staff_client(client, site_admin):
    client.force_login(site_admin)
    return client


@pytest.fixture
def stored(member):
    return UserSettings.objects.create(user=member, model="Llama-3.3-8B-Instruct", temperature=0.7)


def events() -> list[tuple]:
    found = AuditEvent.objects.filter(action="user.settings").order_by("id")
    return [(e.team, e.actor.username, e.summary, e.details) for e in found]


def test_adding_and_changing_settings_are_audited_with_what_changed(staff_client, member, outsider):
    added = form(user=outsider.pk, max_tokens="512")
    assert staff_client.post(f"{URL}add/", added).status_code == 302
    settings = UserSettings.objects.get(user=outsider)
    change = f"{URL}{settings.pk}/change/"
    changed = form(model="Llama-3.3-70B-Instruct", max_tokens="512", top_p="0.5")
    assert staff_client.post(change, changed).status_code == 302
    assert staff_client.post(change, changed).status_code == 302  # nothing changed: no event

    said = "siteadmin changed the settings of eve in the admin site"
    assert events() == [
        (
            None,
            "siteadmin",
            said,
            {"user": "eve", "old": {"max_tokens": None}, "new": {"max_tokens": 512}},
        ),
        (
            None,
            "siteadmin",
            said,
            {
                "user": "eve",
                "old": {"model": "", "top_p": None},
                "new": {"model": "Llama-3.3-70B-Instruct", "top_p": 0.5},
            },
        ),
    ]
    assert verify_chain() == (2, None)


def test_the_user_of_stored_settings_cannot_be_changed(staff_client, stored, outsider):
    moved = form(user=outsider.pk, model="Llama-3.3-8B-Instruct", temperature="0.7")
    assert staff_client.post(f"{URL}{stored.pk}/change/", moved).status_code == 302
    assert UserSettings.objects.get(pk=stored.pk).user.username == "max"


def test_deleting_settings_is_audited_one_by_one_and_in_bulk(staff_client, stored, outsider):
    other = UserSettings.objects.create(user=outsider, top_p=0.4)
    assert staff_client.post(f"{URL}{stored.pk}/delete/", {"post": "yes"}).status_code == 302
    bulk = {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"}
    assert staff_client.post(URL, bulk).status_code == 302

    assert not UserSettings.objects.exists()
    assert [(e[2], e[3]) for e in events()] == [
        (
            "siteadmin cleared the settings of max in the admin site",
            {
                "user": "max",
                "old": {"model": "Llama-3.3-8B-Instruct", "temperature": 0.7},
                "new": {"model": "", "temperature": None},
            },
        ),
        (
            "siteadmin cleared the settings of eve in the admin site",
            {"user": "eve", "old": {"top_p": 0.4}, "new": {"top_p": None}},
        ),
    ]
