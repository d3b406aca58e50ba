from datetime import timedelta

import pytest
from django.utils import timezone

from chatapp.teams import api_keys
from chatapp.teams.api_keys import hash_key, new_secret
from chatapp.teams.models import ApiKey, AuditAction, AuditEvent

pytestmark = pytest.mark.django_db


def create(client, **body):
    return client.post("/api/keys/", body, content_type="application/json")


def test_a_new_key_is_shown_once_and_stored_only_as_its_hash(member_client, member, team):
    response = create(member_client, name="nightly report")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "nightly report"
    assert body["key"].startswith(body["prefix"] + "_")
    stored = ApiKey.objects.get(pk=body["id"])
    assert stored.user == member and stored.team == team
    assert stored.secret_hash == hash_key(body["key"])
    assert body["key"] not in str(ApiKey.objects.filter(pk=body["id"]).values().get())
    event = AuditEvent.objects.get(action=AuditAction.API_KEY_CREATE)
    assert body["key"] not in str(event.details) + event.summary


def test_a_new_key_whose_random_prefix_is_taken_gets_another(member_client, monkeypatch):
    """A prefix is 32 random bits and unique: drawing one already used is rare, not impossible,
    and made a 500."""
    first = create(member_client, name="first").json()
    drawn = [(f"{first['prefix']}_{'x' * 43}", first["prefix"]), new_secret()]
    monkeypatch.setattr(api_keys, "new_secret", lambda: drawn.pop(0))
    response = create(member_client, name="second")
    assert response.status_code == 201
    assert response.json()["prefix"] != first["prefix"]
    assert ApiKey.objects.count() == 2
    assert AuditEvent.objects.filter(action=AuditAction.API_KEY_CREATE).count() == 2


def test_the_list_never_holds_a_secret(member_client):
    secret = create(member_client, name="ci").json()["key"]
    response = member_client.get("/api/keys/")
    assert response.status_code == 200
    (listed,) = response.json()["results"]
    assert listed["name"] == "ci" and listed["last_used_at"] is None
    assert "key" not in listed
    assert secret not in response.content.decode()


def test_an_expiry_date_is_kept_and_a_past_one_refused(member_client):
    day = (timezone.localdate() + timedelta(days=30)).isoformat()
    body = create(member_client, name="temp", expires_at=day).json()
    assert body["expires_at"].startswith(day) and body["expired"] is False
    refused = create(member_client, name="old", expires_at="2001-01-01")
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "expires_at"
    assert create(member_client, name="odd", expires_at="soon").status_code == 400
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [{}, {"name": "   "}, {"name": "x" * 101}, {"name": 5}, {"name": "ci\u202etxt.exe"}],
)
def test_a_bad_name_is_refused_and_nothing_made(member_client, body):
    response = member_client.post("/api/keys/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "name"
    assert not ApiKey.objects.exists()


def test_revoking_hides_the_key_and_audits_it(member_client):
    key_id = create(member_client, name="old").json()["id"]
    assert member_client.delete(f"/api/keys/{key_id}/").status_code == 204
    assert member_client.get("/api/keys/").json()["results"] == []
    assert ApiKey.objects.get(pk=key_id).revoked_at is not None
    assert AuditEvent.objects.filter(action=AuditAction.API_KEY_REVOKE).count() == 1
    assert member_client.delete(f"/api/keys/{key_id}/").status_code == 404


def test_someone_elses_key_is_a_404(client, member, outsider, make_key):
    make_key(member)
    key = ApiKey.objects.get()
    client.force_login(outsider)
    assert client.delete(f"/api/keys/{key.pk}/").status_code == 404
    assert client.get("/api/keys/").json()["results"] == []
    key.refresh_from_db()
    assert key.revoked_at is None


def test_logged_out_and_wrong_method(client):
    assert client.get("/api/keys/").status_code == 401
    assert client.put("/api/keys/", {}, content_type="application/json").status_code == 405


def test_a_key_name_is_stored_composed(member_client):
    """Typed with a combining accent (e + U+0301), as with é: the same name, as shown."""
    assert create(member_client, name="cafe\u0301 report").status_code == 201
    assert ApiKey.objects.get().name == "caf\u00e9 report"
