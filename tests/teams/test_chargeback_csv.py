"""The monthly chargeback CSV: usage by person, model and API key, for owners and admins."""

import codecs
import csv
import io
from datetime import date

import pytest

from chatapp.teams import actions
from chatapp.teams.models import TeamUsage

pytestmark = pytest.mark.django_db
MODEL = "Llama-3.3-70B-Instruct"
OTHER = "Llama-4-Scout-17B-16E-Instruct-FP8"


def rows_of(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_usage_by_person_model_and_key(client, owner, member, team):
    key, _ = actions.create_api_key(member, team, "=cmd|nightly")
    actions.record_usage(team, member, MODEL, 10, 5)
    actions.record_usage(team, member, MODEL, 1, 1)
    actions.record_usage(team, member, MODEL, 100, 50, api_key=key)
    actions.record_usage(team, owner, OTHER, 7, 3)
    client.force_login(owner)
    response = client.get(f"/teams/{team.pk}/usage/chargeback.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = rows_of(response)
    summary = [(r["person"], r["model"], r["key"], r["requests"], r["total_tokens"]) for r in rows]
    assert summary == [
        ("max", MODEL, "chat page", "2", "17"),
        ("max", MODEL, "'=cmd|nightly", "1", "150"),  # a formula-looking name stays text
        ("olivia", OTHER, "chat page", "1", "10"),
    ]
    assert rows[1]["key_prefix"] == key.prefix


def test_cells_are_quoted_so_a_semicolon_cannot_start_a_new_cell(client, owner, team):
    # A spreadsheet whose list separator is ";" splits unquoted text there: "Acme;=1+2" would
    # be two cells, the second a formula. Every cell is quoted, as OWASP advises.
    team.name = "Acme;=1+2"
    team.save()
    key, _ = actions.create_api_key(owner, team, "nightly;@SUM(1)")
    actions.record_usage(team, owner, MODEL, 10, 5, api_key=key)
    client.force_login(owner)
    text = client.get(f"/teams/{team.pk}/usage/chargeback.csv").content.decode()
    assert '"Acme;=1+2"' in text and '"nightly;@SUM(1)"' in text
    assert text.splitlines()[1].endswith('"1","10","5","15"')


def test_names_in_any_script_open_as_written_in_a_spreadsheet(client, owner, team):
    """Excel reads a CSV without a byte order mark in the computer's legacy code page, so
    "Équipe" would open as "Ã‰quipe": the file starts with UTF-8's."""
    team.name = "Équipe 日本 👩\u200d💻"
    team.save()
    key, _ = actions.create_api_key(owner, team, "clé nocturne")
    actions.record_usage(team, owner, MODEL, 10, 5, api_key=key)
    client.force_login(owner)
    content = client.get(f"/teams/{team.pk}/usage/chargeback.csv").content
    assert content.startswith(codecs.BOM_UTF8)
    assert content.count(codecs.BOM_UTF8) == 1
    (row,) = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    assert (row["month"][:2], row["team"], row["key"]) == ("20", team.name, "clé nocturne")


def test_another_month_and_its_link_on_the_usage_page(client, admin_member, member, team):
    TeamUsage.objects.create(
        team=team, user=member, model=MODEL, day=date(2026, 1, 5), prompt_tokens=3, requests=1
    )
    client.force_login(admin_member)
    rows = rows_of(client.get(f"/teams/{team.pk}/usage/chargeback.csv?month=2026-01"))
    assert [(r["month"], r["person"], r["total_tokens"]) for r in rows] == [("2026-01", "max", "3")]
    page = client.get(f"/teams/{team.pk}/usage/?month=2026-01").content.decode()
    assert f"/teams/{team.pk}/usage/chargeback.csv?month=2026-01" in page


def test_members_get_403_and_outsiders_404(client, member, outsider, team):
    client.force_login(member)
    assert client.get(f"/teams/{team.pk}/usage/chargeback.csv").status_code == 403
    client.force_login(outsider)
    assert client.get(f"/teams/{team.pk}/usage/chargeback.csv").status_code == 404
