"""System prompt pages: create, edit (versions kept), default, lock, order, delete; the admin."""

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chatapp.chat.models import Conversation
from chatapp.teams import actions, views
from chatapp.teams.admin import SystemPromptAdmin
from chatapp.teams.models import (
    AuditEvent,
    JsonSchema,
    ResponseFormat,
    SystemPrompt,
    SystemPromptVersion,
    Team,
)
from tests.databases import uses_postgres

GOOD = {"name": "Reviewer", "content": "Review code carefully."}


def prompts_url(team) -> str:
    return reverse("teams:prompts", args=[team.pk])


def edit_url(prompt) -> str:
    return reverse("teams:prompt_edit", args=[prompt.team_id, prompt.pk])


@pytest.fixture
def prompt(team):
    return SystemPrompt.objects.create(team=team, name="Helper", content="Be helpful.")


def test_owner_adds_a_prompt_at_the_end(owner_client, team, owner, prompt):
    response = owner_client.post(prompts_url(team), {**GOOD, "locked": "on"})
    assert response.status_code == 302
    new = SystemPrompt.objects.get(name="Reviewer")
    assert (new.content, new.locked, new.is_default, new.version) == (
        GOOD["content"],
        True,
        False,
        1,
    )
    assert new.position > prompt.position
    assert AuditEvent.objects.get(action="prompt.create").details["name"] == "Reviewer"


def test_admin_adds_a_prompt(admin_client, team, admin_member):
    assert admin_client.post(prompts_url(team), GOOD).status_code == 302
    assert SystemPrompt.objects.filter(team=team, name="Reviewer").exists()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": "", "content": "x"}, b"This field is required"),
        ({"name": "x", "content": ""}, b"This field is required"),
        ({"name": "x" * 101, "content": "x"}, b"at most 100 characters"),
        ({"name": "x", "content": "x" * 20_001}, b"at most 20000 characters"),
        ({"name": "Helper", "content": "x"}, b"already exists"),
        ({"name": "gro\u202epuor", "content": "x"}, b"one line of text"),
        ({"name": "a\nb", "content": "x"}, b"one line of text"),
    ],
)
def test_bad_prompts_are_form_errors(owner_client, team, owner, prompt, data, error):
    response = owner_client.post(prompts_url(team), data)
    assert response.status_code == 400
    assert error in response.content
    assert SystemPrompt.objects.count() == 1
    assert not AuditEvent.objects.exists()


def test_members_see_prompts_but_no_controls(member_client, team, member, prompt):
    response = member_client.get(prompts_url(team))
    assert b"Be helpful." in response.content
    assert b"Add prompt" not in response.content and b"Delete" not in response.content
    assert member_client.get(edit_url(prompt)).status_code == 403


def test_editing_keeps_the_previous_text_and_bumps_the_version(owner_client, owner, prompt):
    data = {"name": "Helper", "content": "Be very helpful."}
    assert owner_client.post(edit_url(prompt), data).status_code == 302
    assert owner_client.post(edit_url(prompt), {**data, "content": "Be terse."}).status_code == 302
    prompt.refresh_from_db()
    assert (prompt.content, prompt.version) == ("Be terse.", 3)
    versions = list(prompt.versions.values_list("version", "content", "edited_by"))
    assert versions == [(2, "Be very helpful.", owner.pk), (1, "Be helpful.", owner.pk)]
    page = owner_client.get(edit_url(prompt))
    assert b"Be very helpful." in page.content and b"Version 1" in page.content


def add_versions(prompt, count: int) -> None:
    SystemPromptVersion.objects.bulk_create(
        SystemPromptVersion(prompt=prompt, version=n, name="Helper", content=f"Text {n}.")
        for n in range(1, count + 1)
    )
    prompt.version = count + 1
    prompt.save(update_fields=["version"])


def test_the_edit_page_shows_a_page_of_earlier_versions_newest_first(owner_client, prompt):
    """A prompt edited for years has hundreds of versions of up to 20,000 characters each: the
    page reads one page of them, the older ones a link away."""
    per_page = views.PROMPT_VERSIONS_PER_PAGE
    add_versions(prompt, per_page + 3)
    first = owner_client.get(edit_url(prompt))
    shown = [v.version for v in first.context["versions"]]
    assert shown == list(range(per_page + 3, 3, -1))
    assert b"Text 3." not in first.content
    older = owner_client.get(edit_url(prompt), {"page": 2})
    assert [v.version for v in older.context["versions"]] == [3, 2, 1]
    assert b"Text 1." in older.content and b"Older" not in older.content


def test_the_edit_page_reads_as_many_rows_whatever_the_versions(owner_client, team, prompt):
    other = SystemPrompt.objects.create(team=team, name="Other", content="Be other.")
    add_versions(prompt, 2)
    add_versions(other, 3 * views.PROMPT_VERSIONS_PER_PAGE)
    owner_client.get(edit_url(prompt))  # the session and caches settle
    rows = []
    for edited in (prompt, other):
        with CaptureQueriesContext(connection) as queries:
            page = owner_client.get(edit_url(edited))
        rows.append((len(queries), len(page.context["versions"])))
    assert rows == [(rows[0][0], 2), (rows[0][0], views.PROMPT_VERSIONS_PER_PAGE)]


def test_changing_only_flags_keeps_the_version(owner_client, prompt):
    owner_client.post(
        edit_url(prompt), {"name": "Helper", "content": "Be helpful.", "locked": "on"}
    )
    prompt.refresh_from_db()
    assert prompt.locked and prompt.version == 1
    assert not SystemPromptVersion.objects.exists()


def test_a_bad_edit_changes_nothing(owner_client, prompt):
    response = owner_client.post(edit_url(prompt), {"name": "Helper", "content": ""})
    assert response.status_code == 400
    prompt.refresh_from_db()
    assert (prompt.content, prompt.version) == ("Be helpful.", 1)
    assert not SystemPromptVersion.objects.exists()


def test_a_save_from_a_page_read_before_another_admins_change_saves_nothing(
    owner_client, admin_member, team, prompt
):
    """Another admin locked the prompt while this edit page was open: saving the page (its
    Locked box unticked, as it was read) must not silently unlock it. Nothing is saved, the
    page says so and keeps the text typed; saving again, once seen, goes through."""
    page = owner_client.get(edit_url(prompt))
    seen = {name: page.context["form"][name].value() for name in page.context["form"].fields}
    actions.save_prompt(
        admin_member, team, prompt, name="Helper", content="Be helpful.", locked=True
    )
    typed = {**{k: v for k, v in seen.items() if v not in (None, False)}, "content": "Be brief."}
    response = owner_client.post(edit_url(prompt), typed)
    assert response.status_code == 400
    assert b"changed meanwhile" in response.content and b"Be brief." in response.content
    prompt.refresh_from_db()
    assert (prompt.locked, prompt.content) == (True, "Be helpful.")
    again = {name: response.context["form"][name].value() for name in ("seen",)}
    assert owner_client.post(edit_url(prompt), {**typed, **again}).status_code == 302
    prompt.refresh_from_db()
    assert prompt.content == "Be brief."


def test_a_conversation_keeps_the_text_it_started_with(owner_client, team, owner, prompt):
    convo = Conversation.objects.create(
        team=team,
        owner=owner,
        model="Llama-3.3-8B-Instruct",
        system_prompt=prompt,
        system_prompt_text=prompt.content,
        system_prompt_locked=prompt.locked,
    )
    owner_client.post(edit_url(prompt), {"name": "Helper", "content": "Something else."})
    convo.refresh_from_db()
    assert convo.system_prompt_text == "Be helpful."


def test_one_default_at_a_time(owner_client, team, prompt):
    owner_client.post(
        edit_url(prompt), {"name": "Helper", "content": "Be helpful.", "is_default": "on"}
    )
    owner_client.post(prompts_url(team), {**GOOD, "is_default": "on"})
    defaults = list(SystemPrompt.objects.filter(is_default=True).values_list("name", flat=True))
    assert defaults == ["Reviewer"]


@pytest.mark.skipif(not uses_postgres(), reason="two connections at once need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_admins_making_two_prompts_default_at_once_leave_one_default(owner, team):
    prompts = [
        SystemPrompt.objects.create(team=team, name=f"Prompt {n}", content="Be brief.")
        for n in range(2)
    ]
    errors = []

    def make_default(prompt):
        try:
            barrier.wait()
            actions.save_prompt(
                owner, team, prompt, name=prompt.name, content=prompt.content, is_default=True
            )
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    for _ in range(5):  # the two saves overlap in some of the rounds at least
        SystemPrompt.objects.update(is_default=False)
        barrier = threading.Barrier(2)
        admins = [threading.Thread(target=make_default, args=(p,)) for p in prompts]
        for admin in admins:
            admin.start()
        for admin in admins:
            admin.join()
        assert errors == []
        assert SystemPrompt.objects.filter(is_default=True).count() == 1


def test_prompts_are_reordered(owner_client, team, prompt):
    second = SystemPrompt.objects.create(team=team, name="Second", content="2", position=1)
    move = reverse("teams:prompt_move", args=[team.pk, second.pk])
    assert owner_client.post(move, {"direction": "up"}).status_code == 302
    assert list(SystemPrompt.objects.for_team(team).values_list("name", flat=True)) == [
        "Second",
        "Helper",
    ]
    assert owner_client.post(move, {"direction": "sideways"}).status_code == 400
    assert list(SystemPrompt.objects.for_team(team))[0] == second


@pytest.mark.parametrize("moved", ["abc-up", "\u0663-up", "1-sideways", "-up", "99-down", "1"])
def test_a_moved_prompt_named_wrongly_in_the_address_focuses_nothing(
    owner_client, team, prompt, moved
):
    page = owner_client.get(reverse("teams:prompts", args=[team.pk]), {"moved": moved})
    assert page.status_code == 200
    assert b"autofocus" not in page.content


def test_deleting_a_prompt(owner_client, team, prompt):
    url = reverse("teams:prompt_delete", args=[team.pk, prompt.pk])
    assert owner_client.post(url).status_code == 302
    assert not SystemPrompt.objects.exists()
    assert AuditEvent.objects.get(action="prompt.delete").details["name"] == "Helper"


def test_site_admin_edits_in_the_admin_keep_versions(client, site_admin, team, prompt):
    client.force_login(site_admin)
    url = f"/admin/teams/systemprompt/{prompt.pk}/change/"
    assert client.get(url).status_code == 200
    data = {
        "team": team.pk,
        "name": "Helper",
        "content": "Admin text.",
        "position": 0,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    response = client.post(url, data)
    assert response.status_code == 302, response.content[:2000]
    prompt.refresh_from_db()
    assert (prompt.content, prompt.version) == ("Admin text.", 2)
    assert prompt.versions.get().content == "Be helpful."
    assert AuditEvent.objects.get(action="prompt.update").actor == site_admin


def test_the_admin_reads_a_prompts_versions_at_once(client, site_admin, owner, prompt):
    client.force_login(site_admin)
    url = f"/admin/teams/systemprompt/{prompt.pk}/change/"

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    SystemPromptVersion.objects.create(prompt=prompt, version=1, name="H", edited_by=owner)
    queries()  # the first view of a session reads more than the page
    one = queries()
    for version in range(2, 8):
        SystemPromptVersion.objects.create(prompt=prompt, version=version, edited_by=site_admin)
    assert queries() == one


def test_a_prompt_stays_in_its_team_in_the_admin(client, site_admin, team, prompt):
    """Its versions, audit and the chats started from it belong to its team."""
    client.force_login(site_admin)
    other = Team.objects.create(name="Other")
    data = {
        "team": other.pk,
        "name": "Helper",
        "content": "Moved?",
        "position": 0,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    response = client.post(f"/admin/teams/systemprompt/{prompt.pk}/change/", data)
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert (prompt.team, prompt.content) == (team, "Moved?")
    assert AuditEvent.objects.get(action="prompt.update").team == team


def test_a_name_the_team_has_is_a_form_error_in_the_admin(client, site_admin, team, prompt):
    SystemPrompt.objects.create(team=team, name="Reviewer", content="Review.", position=1)
    client.force_login(site_admin)
    data = {
        "name": "Reviewer",
        "content": "Renamed?",
        "position": 0,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    response = client.post(f"/admin/teams/systemprompt/{prompt.pk}/change/", data)
    assert response.status_code == 200
    assert "A prompt named &#x27;Reviewer&#x27; already exists in this team." in (
        response.content.decode()
    )
    prompt.refresh_from_db()
    assert (prompt.name, prompt.content, prompt.version) == ("Helper", "Be helpful.", 1)
    assert not AuditEvent.objects.exists()


def test_site_admin_adds_a_prompt_in_the_admin(client, site_admin, team):
    client.force_login(site_admin)
    data = {
        "team": team.pk,
        "name": "From admin",
        "content": "Hi.",
        "position": 3,
        "is_default": "on",
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    response = client.post("/admin/teams/systemprompt/add/", data)
    assert response.status_code == 302, response.content[:2000]
    prompt = SystemPrompt.objects.get(name="From admin")
    assert prompt.is_default and prompt.position == 3


def test_a_prompt_name_in_the_admin_is_one_line_that_reads_as_typed(client, site_admin, team):
    client.force_login(site_admin)
    data = {
        "team": team.pk,
        "name": "gro\u202epuor",
        "content": "Hi.",
        "position": 3,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    response = client.post("/admin/teams/systemprompt/add/", data)
    assert response.status_code == 200 and b"one line of text" in response.content
    assert not SystemPrompt.objects.exists()


def test_a_new_default_in_the_admin_takes_over_from_the_old_one(client, site_admin, team, prompt):
    """As on the team's Prompts page: the default moves, rather than the constraint refusing."""
    SystemPrompt.objects.filter(pk=prompt.pk).update(is_default=True)
    client.force_login(site_admin)
    data = {
        "team": team.pk,
        "name": "New default",
        "content": "Hi.",
        "position": 1,
        "is_default": "on",
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    response = client.post("/admin/teams/systemprompt/add/", data)
    assert response.status_code == 302, response.content[:2000]
    defaults = SystemPrompt.objects.filter(team=team, is_default=True)
    assert list(defaults.values_list("name", flat=True)) == ["New default"]
    assert AuditEvent.objects.get(action="prompt.create").details["is_default"] is True


def test_an_edit_of_a_prompt_deleted_meanwhile_says_so(
    owner_client, team, prompt, deleted_once_read
):
    deleted_once_read(views, "_prompt_target")
    response = owner_client.post(edit_url(prompt), {"name": "Helper", "content": "Kept typing."})
    assert response.status_code == 400
    assert b"This prompt was deleted meanwhile" in response.content
    assert b"Kept typing." in response.content  # the text typed, to copy
    assert not SystemPrompt.objects.exists()
    assert not AuditEvent.objects.exists()


def test_moving_a_prompt_deleted_meanwhile_says_so(owner_client, team, prompt, deleted_once_read):
    deleted_once_read(views, "_prompt_target")
    move = reverse("teams:prompt_move", args=[team.pk, prompt.pk])
    response = owner_client.post(move, {"direction": "down"}, follow=True)
    assert response.status_code == 200
    assert b"The prompt Helper was deleted meanwhile" in response.content
    assert not AuditEvent.objects.exists()


def test_an_admin_site_edit_of_a_prompt_deleted_meanwhile_says_so(
    client, site_admin, team, prompt, deleted_once_read
):
    deleted_once_read(SystemPromptAdmin, "get_object")
    client.force_login(site_admin)
    url = f"/admin/teams/systemprompt/{prompt.pk}/change/"
    data = {
        "name": "Helper",
        "content": "Admin text.",
        "position": 0,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    response = client.post(url, data)
    assert response.status_code == 302
    assert "This prompt was deleted meanwhile" in client.get(url).content.decode()
    # Nothing was saved (the deletion here rolled back with the admin's own transaction).
    assert not SystemPromptVersion.objects.exists()
    assert not AuditEvent.objects.exists()


def test_a_prompt_two_admins_delete_at_once_is_deleted_once(team, owner, admin_member, prompt):
    """Both pages read it; the second deletion finds it gone and writes no second deletion
    (of a prompt the other admin deleted) in the audit trail."""
    shown = SystemPrompt.objects.get(pk=prompt.pk)  # as the second admin's page read it
    actions.delete_prompt(owner, prompt)
    actions.delete_prompt(admin_member, shown)
    assert not SystemPrompt.objects.exists()
    deleted = AuditEvent.objects.filter(action="prompt.delete")
    assert list(deleted.values_list("actor", flat=True)) == [owner.pk]


def test_prompts_deleted_together_in_the_admin_are_each_audited(client, site_admin, team, prompt):
    other = SystemPrompt.objects.create(team=team, name="Other", content="2", position=1)
    client.force_login(site_admin)
    bulk = {"action": "delete_selected", "_selected_action": [prompt.pk, other.pk], "post": "yes"}
    assert client.post("/admin/teams/systemprompt/", bulk).status_code == 302
    assert not SystemPrompt.objects.exists()
    deleted = AuditEvent.objects.filter(action="prompt.delete", actor=site_admin)
    assert sorted(deleted.values_list("details__name", flat=True)) == ["Helper", "Other"]


@pytest.mark.django_db(transaction=True)  # the schema's foreign key is checked at commit
def test_a_prompt_saved_with_a_schema_deleted_meanwhile_says_so(owner, team, prompt):
    """The page listed the schema; another admin deleted it before the save: the save is
    refused as about a deleted schema, not as a name the team has, and nothing changes."""
    schema = JsonSchema.objects.create(team=team, name="ticket", schema={"type": "object"})
    actions.delete_json_schema(owner, JsonSchema.objects.get(pk=schema.pk))
    with pytest.raises(actions.Gone) as refused:
        actions.save_prompt(
            owner,
            team,
            prompt,
            name=prompt.name,
            content=prompt.content,
            response_format=ResponseFormat.JSON_SCHEMA,
            json_schema=schema,
        )
    assert "JSON schema ticket was deleted meanwhile" in refused.value.message
    stored = SystemPrompt.objects.get(pk=prompt.pk)
    assert (stored.response_format, stored.json_schema_id) == (ResponseFormat.TEXT, None)


CAFE, CAFE_DECOMPOSED = "Caf\u00e9", "Cafe\u0301"  # é as one character, and e + U+0301


def test_a_name_spelled_with_a_combining_accent_is_the_same_name(owner_client, team, owner):
    """Café with é and Café with e and a combining accent look alike: one name, so the second
    is refused as taken, and names are stored composed (NFC)."""
    assert (
        owner_client.post(prompts_url(team), {**GOOD, "name": CAFE_DECOMPOSED}).status_code == 302
    )
    assert SystemPrompt.objects.get().name == CAFE
    response = owner_client.post(prompts_url(team), {**GOOD, "name": CAFE})
    assert response.status_code == 400
    assert b"already exists" in response.content
    assert SystemPrompt.objects.count() == 1


def test_a_name_is_as_long_as_it_is_once_composed(owner_client, team, owner):
    """100 letters typed with combining accents are 100 characters, not 200."""
    response = owner_client.post(prompts_url(team), {**GOOD, "name": "e\u0301" * 100})
    assert response.status_code == 302
    assert SystemPrompt.objects.get().name == "\u00e9" * 100


def test_the_admin_refuses_a_lookalike_prompt_name(client, site_admin, team, prompt):
    SystemPrompt.objects.create(team=team, name=CAFE, content="x")
    client.force_login(site_admin)
    url = f"/admin/teams/systemprompt/{prompt.pk}/change/"
    data = {
        "team": team.pk,
        "name": CAFE_DECOMPOSED,
        "content": "Admin text.",
        "position": 0,
        "versions-TOTAL_FORMS": 0,
        "versions-INITIAL_FORMS": 0,
    }
    response = client.post(url, data)
    assert response.status_code == 200
    assert b"already exists in this team" in response.content
    assert SystemPrompt.objects.get(pk=prompt.pk).name == "Helper"
