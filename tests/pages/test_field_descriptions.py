"""Help text and errors are tied to their fields: every aria-describedby names an element of the
page that holds the words, on every server-rendered form, blank and after a failed submit."""

from html.parser import HTMLParser

import pytest
from django.test import Client

from chatapp.chat.models import Conversation

pytestmark = pytest.mark.django_db


class Described(HTMLParser):
    """Collects each element's text by id, and each aria-describedby with its field."""

    def __init__(self):
        super().__init__()
        self.texts: dict[str, list[str]] = {}
        self.open_ids: list[tuple[str, str | None]] = []
        self.references: list[tuple[str, str]] = []
        self.holding_fields: set[str] = set()  # ids of elements with a form field inside

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.texts.setdefault(attributes["id"], [])
        for target in (attributes.get("aria-describedby") or "").split():
            self.references.append((attributes.get("name") or attributes.get("id", tag), target))
        if tag in {"input", "select", "textarea"}:
            self.holding_fields.update(element_id for _, element_id in self.open_ids if element_id)
        if tag not in {"input", "br", "img", "meta", "link", "hr", "source"}:
            self.open_ids.append((tag, attributes.get("id")))

    def handle_endtag(self, tag):
        while self.open_ids:
            opened, _ = self.open_ids.pop()
            if opened == tag:
                break

    def handle_data(self, data):
        for _, element_id in self.open_ids:
            if element_id:
                self.texts[element_id].append(data)


def descriptions(html: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    parser = Described()
    parser.feed(html)
    texts = {key: " ".join("".join(parts).split()) for key, parts in parser.texts.items()}
    return texts, parser.references


def broken_references(response) -> list[str]:
    assert response.status_code in (200, 400, 403), response.status_code
    texts, references = descriptions(response.content.decode())
    return [
        f"{field} -> #{target}"
        for field, target in references
        if not texts.get(target)  # missing, or holding no words
    ]


def described_fields(response) -> set[str]:
    _, references = descriptions(response.content.decode())
    return {field for field, _ in references}


def unnamed_notes(response) -> list[str]:
    """The ids of help texts and errors on the page that no field's aria-describedby names."""
    parser = Described()
    parser.feed(response.content.decode())
    named = {target for _, target in parser.references}
    notes = {
        key
        for key in parser.texts
        if key.endswith(("_helptext", "_error")) and key not in parser.holding_fields
    }
    return sorted(notes - named)


def test_signup_help_and_errors_are_tied_to_their_fields(client, settings):
    settings.SIGNUP_POLICY = "open"
    page = client.get("/accounts/signup/")
    assert broken_references(page) == []
    assert {"password1", "password2"} <= described_fields(page)
    failed = client.post("/accounts/signup/", {"username": "", "password1": "1", "password2": "2"})
    assert broken_references(failed) == []
    texts, references = descriptions(failed.content.decode())
    username_notes = " ".join(texts[target] for field, target in references if field == "username")
    assert "This field is required" in username_notes


def test_password_change_help_is_tied_to_its_fields(member_client):
    page = member_client.get("/accounts/password/")
    assert broken_references(page) == []
    assert "new_password1" in described_fields(page)
    failed = member_client.post("/accounts/password/", {"old_password": "wrong"})
    assert broken_references(failed) == []
    assert "old_password" in described_fields(failed)


def test_settings_help_and_errors_are_tied_to_their_fields(member_client):
    page = member_client.get("/settings/")
    assert broken_references(page) == []
    assert {"temperature", "max_tokens", "top_p"} <= described_fields(page)
    failed = member_client.post("/settings/", {"top_p": "3", "temperature": "x"})
    assert broken_references(failed) == []
    assert unnamed_notes(failed) == []


@pytest.mark.parametrize("section", ["", "members/", "prompts/", "policy/", "provider/"])
def test_team_forms_tie_help_and_errors_to_their_fields(owner_client, team, section):
    url = f"/teams/{team.pk}/{section}"
    page = owner_client.get(url)
    assert broken_references(page) == []
    assert unnamed_notes(page) == []
    if section in {"policy/", "provider/"}:
        failed = owner_client.post(url, {"default_temperature": "9", "base_url": "ftp://x"})
        assert broken_references(failed) == []
        assert unnamed_notes(failed) == []


def test_team_invitation_and_prompt_errors_are_tied_to_their_fields(owner_client, team):
    invite = owner_client.post(f"/teams/{team.pk}/invitations/", {"email": "not-an-address"})
    assert broken_references(invite) == []
    assert "email" in described_fields(invite)
    prompt = owner_client.post(f"/teams/{team.pk}/prompts/", {"name": "", "content": ""})
    assert broken_references(prompt) == []
    assert "name" in described_fields(prompt)


def test_the_policy_page_describes_its_fields(owner_client, team):
    page = owner_client.get(f"/teams/{team.pk}/policy/")
    fields = described_fields(page)
    texts, references = descriptions(page.content.decode())
    assert fields, "the policy form's help text is tied to no field"
    assert all(texts[target] for _, target in references)


def test_the_admin_access_reason_is_tied_to_its_help(site_admin, team, member):
    conversation = Conversation.objects.create(team=team, owner=member, model="m", title="t")
    client = Client()
    client.force_login(site_admin)
    url = f"/site/conversations/{conversation.pk}/access/"
    page = client.get(url)
    assert broken_references(page) == []
    failed = client.post(url, {"reason": ""})
    assert broken_references(failed) == []
    assert described_fields(failed)


def test_choice_groups_on_the_policy_page_are_described_by_their_help_and_errors(
    owner_client, team
):
    url = f"/teams/{team.pk}/policy/"
    page = owner_client.get(url)
    assert unnamed_notes(page) == []
    assert "id_safety_input_helptext" in descriptions(page.content.decode())[0]
    failed = owner_client.post(url, {"safety_input": "sometimes", "allowed_models": ["none"]})
    assert "id_safety_input_error" in descriptions(failed.content.decode())[0]
    assert unnamed_notes(failed) == []


def test_the_share_forms_choice_groups_are_described_by_their_errors(member_client, member, team):
    conversation = Conversation.objects.create(team=team, owner=member, model="m", title="t")
    url = f"/c/{conversation.pk}/share/"
    failed = member_client.post(url, {"audience": "members"})
    assert "id_members_error" in descriptions(failed.content.decode())[0]
    assert unnamed_notes(failed) == []
    assert broken_references(failed) == []
