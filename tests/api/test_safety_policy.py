"""The safety fields of `PATCH /api/teams/<id>/policy/` and the policy page."""

import json

import pytest

from chatapp.teams.models import AuditEvent, TeamPolicy


def policy_url(team) -> str:
    return f"/api/teams/{team.pk}/policy/"


def patch(client, team, body) -> object:
    return client.patch(policy_url(team), json.dumps(body), content_type="application/json")


def test_owner_turns_screening_on_and_it_is_audited(owner_client, team):
    body = {
        "safety_input": "block",
        "safety_output": "flag",
        "safety_categories": ["S10", "S1"],
        "safety_on_error": "fail_closed",
    }
    response = patch(owner_client, team, body)

    assert response.status_code == 200
    assert {name: response.json()[name] for name in body} == {
        **body,
        "safety_categories": ["S1", "S10"],
    }
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.safety_input, stored.safety_output) == ("block", "flag")
    assert stored.safety_categories == ["S1", "S10"]
    assert stored.safety_on_error == "fail_closed"
    changes = AuditEvent.objects.get(action="policy.update").details["changes"]
    assert changes["safety_input"] == ["off", "block"]


def test_null_puts_a_safety_field_back_to_its_default(owner_client, team):
    TeamPolicy.objects.create(team=team, safety_input="block", safety_on_error="fail_closed")
    response = patch(owner_client, team, {"safety_input": None, "safety_on_error": None})

    assert response.status_code == 200
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.safety_input, stored.safety_on_error) == ("off", "fail_open")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"safety_input": "maybe"}, "safety_input"),
        ({"safety_output": True}, "safety_output"),
        ({"safety_categories": ["S15"]}, "safety_categories"),
        ({"safety_categories": "S1"}, "safety_categories"),
        ({"safety_on_error": "ignore"}, "safety_on_error"),
    ],
)
def test_bad_safety_values_are_400_and_change_nothing(owner_client, team, body, field):
    TeamPolicy.objects.create(team=team, safety_input="flag")
    response = patch(owner_client, team, body)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert TeamPolicy.objects.get(team=team).safety_input == "flag"
    assert not AuditEvent.objects.filter(action="policy.update").exists()


def test_members_cannot_change_safety(member_client, team):
    response = patch(member_client, team, {"safety_input": "off"})

    assert response.status_code == 403
    assert not TeamPolicy.objects.filter(team=team).exists()


def test_outsiders_get_404(outsider_client, team):
    assert patch(outsider_client, team, {"safety_input": "block"}).status_code == 404


def test_the_policy_page_saves_safety(owner_client, team):
    page = owner_client.get(f"/teams/{team.pk}/policy/")
    assert b"S11 Suicide &amp; Self-Harm" in page.content

    response = owner_client.post(
        f"/teams/{team.pk}/policy/",
        {"safety_input": "flag", "safety_output": "block", "safety_categories": ["S2"]},
    )

    assert response.status_code == 302
    stored = TeamPolicy.objects.get(team=team)
    assert (stored.safety_input, stored.safety_output) == ("flag", "block")
    assert stored.safety_categories == ["S2"]
    assert stored.safety_on_error == "fail_open"


def test_data_filter_fields_round_trip(owner_client, team):
    body = {
        "data_email": "redact",
        "data_card": "block",
        "data_patterns": [{"name": "PROJECT", "pattern": r"PRJ-\d{4}", "action": "redact"}],
    }
    response = patch(owner_client, team, body)

    assert response.status_code == 200
    assert {name: response.json()[name] for name in body} == body
    assert response.json()["data_phone"] == "off"
    stored = TeamPolicy.objects.get(team=team)
    assert stored.data_patterns == body["data_patterns"]


@pytest.mark.parametrize(
    "pattern",
    [
        {"name": "PROJECT", "pattern": "(", "action": "redact"},
        {"name": "PROJECT", "pattern": "a*", "action": "redact"},
        {"name": "project", "pattern": "x", "action": "redact"},
        {"name": "PROJECT", "pattern": "x", "action": "drop"},
    ],
)
def test_invalid_patterns_are_refused_when_saved(owner_client, team, pattern):
    response = patch(owner_client, team, {"data_patterns": [pattern]})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "data_patterns"
    assert not TeamPolicy.objects.filter(team=team).exclude(data_patterns=[]).exists()


def test_the_policy_page_saves_patterns_as_lines(owner_client, team):
    response = owner_client.post(
        f"/teams/{team.pk}/policy/",
        {"data_email": "redact", "data_patterns": "PROJECT redact PRJ-\\d{4}\nBAD block ("},
    )
    assert response.status_code == 400
    assert b"not a valid regular expression" in response.content

    response = owner_client.post(
        f"/teams/{team.pk}/policy/",
        {"data_email": "redact", "data_patterns": "PROJECT redact PRJ-\\d{4}"},
    )
    assert response.status_code == 302
    stored = TeamPolicy.objects.get(team=team)
    assert stored.data_patterns == [
        {"name": "PROJECT", "pattern": "PRJ-\\d{4}", "action": "redact"}
    ]
    page = owner_client.get(f"/teams/{team.pk}/policy/").content.decode()
    assert "PROJECT redact PRJ-\\d{4}" in page


def test_a_pattern_matching_single_bytes_is_refused_by_the_api_and_the_page(owner_client, team):
    pattern = {"name": "CODE", "pattern": "ID-\\C+", "action": "redact"}
    response = patch(owner_client, team, {"data_patterns": [pattern]})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "data_patterns" and "\\C (any single byte)" in error["message"]
    response = owner_client.post(
        f"/teams/{team.pk}/policy/", {"data_patterns": "CODE redact ID-\\C+"}
    )
    assert response.status_code == 400
    assert b"any single byte" in response.content
    assert not TeamPolicy.objects.filter(team=team).exclude(data_patterns=[]).exists()


@pytest.mark.parametrize("pattern", ["PRJ-\\d+\nLEAK redact secret", "PRJ-\\d+\u2028", " PRJ-\\d+"])
def test_a_pattern_the_page_could_not_keep_as_one_line_is_refused(owner_client, team, pattern):
    """The page keeps patterns one per line, trimmed: such a pattern was saved as others."""
    body = {"data_patterns": [{"name": "PROJECT", "pattern": pattern, "action": "block"}]}
    response = patch(owner_client, team, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "data_patterns"  # the body's field, as the page's form names it
    assert error["message"].startswith("data_patterns[0].pattern: ")
    assert "line break" in error["message"]
    assert not TeamPolicy.objects.filter(team=team).exclude(data_patterns=[]).exists()
