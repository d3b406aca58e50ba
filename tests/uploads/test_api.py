"""POST /api/uploads/ and GET|DELETE /api/uploads/<id>/: what is stored, who may read it."""

import io
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from PIL import Image

from chatapp.chat.models import Conversation, Message
from chatapp.teams.actions import remove_member
from chatapp.teams.models import Membership, Role, Team
from chatapp.uploads.actions import create_upload
from chatapp.uploads.models import Upload
from chatapp.uploads.validation import UploadRefused
from tests.conftest import client_for
from tests.databases import lock_waiters, uses_postgres
from tests.support.polling import wait_for
from tests.uploads import files
from tests.uploads.conftest import stored_files

pytestmark = pytest.mark.django_db


def test_image_upload_answers_201_with_its_size(member_client, member, post_upload):
    response = post_upload(member_client, "shot.png", files.image_bytes(120, 80))
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"],
        "kind": "image",
        "name": "shot.png",
        "content_type": "image/png",
        "bytes": Upload.objects.get().size,
        "width": 120,
        "height": 80,
        "pages": None,
    }
    assert Upload.objects.get().owner == member


def test_upload_counts_against_the_current_team(member_client, member, team, post_upload):
    post_upload(member_client)
    assert Upload.objects.get().team == team


def test_upload_goes_to_the_team_the_form_names(member_client, member, team):
    """A page still showing one team after another tab switched names that team."""
    beta = Team.objects.create(name="Beta")
    Membership.objects.create(team=beta, user=member, role=Role.MEMBER)
    upload = SimpleUploadedFile("photo.png", files.image_bytes(), content_type="image/png")
    response = member_client.post("/api/uploads/", {"file": upload, "team": str(beta.pk)})
    assert response.status_code == 201
    assert Upload.objects.get().team == beta
    assert member_client.get("/api/me/").json()["current_team"]["id"] == team.pk


@pytest.mark.parametrize("value", ["", "x", "0", "-1", "1.5", str(2**63), "١"])
def test_a_bad_team_field_is_400_and_stores_nothing(member_client, value):
    upload = SimpleUploadedFile("photo.png", files.image_bytes(), content_type="image/png")
    response = member_client.post("/api/uploads/", {"file": upload, "team": value})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "team"
    assert not Upload.objects.exists()


def test_a_team_you_are_not_in_is_404_and_stores_nothing(member_client, site_admin):
    elsewhere = Team.objects.create(name="Elsewhere")
    Membership.objects.create(team=elsewhere, user=site_admin, role=Role.OWNER)
    upload = SimpleUploadedFile("photo.png", files.image_bytes(), content_type="image/png")
    response = member_client.post("/api/uploads/", {"file": upload, "team": str(elsewhere.pk)})
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "You are not in that team.",
        "field": "team",
    }
    assert not Upload.objects.exists()


def test_document_upload_answers_with_its_pages(member_client, post_upload):
    pdf = files.pdf_with_text("One", "Two", "Three")
    response = post_upload(member_client, "deck.pdf", pdf, "application/pdf")
    assert response.status_code == 201
    assert response.json()["kind"] == "document"
    assert response.json()["pages"] == 3


def test_a_pdf_whose_text_reads_as_nul_characters_is_stored(member_client, post_upload):
    # A font without a character map: pypdf reads code 0 as a NUL, which PostgreSQL refuses.
    pdf = files.pdf_with_contents(b"BT /F1 12 Tf 72 720 Td (Total\\000: 12) Tj ET")
    response = post_upload(member_client, "report.pdf", pdf, "application/pdf")
    assert response.status_code == 201
    assert Upload.objects.get().text == "[Page 1]\nTotal\ufffd: 12"


def test_a_document_may_be_as_long_as_the_largest_window_the_operator_gave(
    member_client, post_upload, settings
):
    notes = b"many words here " * 40_000  # 640,000 characters: over 128K tokens' worth
    assert post_upload(member_client, "notes.txt", notes).status_code == 400
    settings.LLAMA_MODELS = ["my-local-model"]
    settings.LLAMA_MODEL_CONTEXT = {"my-local-model": 1_000_000}
    assert post_upload(member_client, "notes.txt", notes).status_code == 201


def test_a_photo_with_an_odd_exif_tag_is_stored_upright(member_client, post_upload):
    odd = (0x011A, 2, 4, b"abc\0")  # XResolution, a rational, as ASCII
    response = post_upload(member_client, "photo.jpg", files.jpeg_turned(40, 30, odd))
    assert response.status_code == 201
    assert (response.json()["width"], response.json()["height"]) == (30, 40)


def test_a_document_is_no_longer_than_the_largest_window_of_the_models_offered(
    member_client, post_upload, settings
):
    """Windows of models the site does not offer (the Llama API's, or one the operator named
    but took out of LLAMA_MODELS) cannot read a document: they do not raise the limit."""
    settings.LLAMA_DEFAULT_MODEL = "qwen2.5:32b"
    settings.LLAMA_MODELS = ["qwen2.5:32b", "llama3.1:8b"]
    settings.LLAMA_MODEL_CONTEXT = {"qwen2.5:32b": 32_768, "retired-model": 1_000_000}
    notes = b"many words here " * 10_000  # 160,000 characters: 40,000 tokens' worth
    response = post_upload(member_client, "notes.txt", notes)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "document_too_large"
    assert "(131,072)" in response.json()["error"]["message"]
    assert post_upload(member_client, "notes.txt", notes[:131_072]).status_code == 201


def test_header_content_type_is_not_trusted(member_client, post_upload):
    response = post_upload(member_client, "cat.png", b"plain text", content_type="image/png")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_image"


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("empty.png", b"", "empty_file"),
        ("cat.png", b"not an image at all", "invalid_image"),
        ("cut.png", files.image_bytes(200, 200)[:300], "invalid_image"),
        ("bomb.png", files.png_declaring(60_000, 60_000), "image_too_large"),
        ("poly.png", files.image_bytes() + b"<script>alert(1)</script>", "polyglot_file"),
        ("scan.pdf", files.scanned_pdf(), "pdf_has_no_text"),
        ("tool.exe", b"MZ\x90\x00", "unsupported_type"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(
    member_client, post_upload, uploads_dir, name, data, code
):
    response = post_upload(member_client, name, data)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == "file"
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []


def test_file_over_the_size_cap_is_refused(member_client, post_upload, settings, uploads_dir):
    settings.UPLOAD_MAX_FILE_BYTES = 1000
    response = post_upload(member_client, "notes.txt", b"x" * 1001)
    assert response.json()["error"]["code"] == "file_too_large"
    assert not Upload.objects.exists()


def test_a_file_over_the_size_cap_is_told_its_own_size(member_client, post_upload, settings):
    """Only one byte more than the cap is read, but the refusal gives the file's real size."""
    settings.UPLOAD_MAX_FILE_BYTES = 1024 * 1024
    response = post_upload(member_client, "scan.txt", b"x" * (3 * 1024 * 1024))
    assert response.json()["error"] == {
        "code": "file_too_large",
        "message": "scan.txt is 3.0 MB; files may be at most 1.0 MB.",
        "field": "file",
    }


def test_missing_file_field_is_refused(member_client):
    response = member_client.post("/api/uploads/", {"other": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_file"


def test_a_file_name_not_in_utf8_is_refused_saying_so(member_client, uploads_dir):
    """A part whose header is not UTF-8 (a Latin-1 name sent as it is on disk) cannot be read:
    the refusal says what to send instead of a bare "send the file"."""
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="caf\xe9.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + files.image_bytes() + b"\r\n--B--\r\n"
    )
    response = member_client.post(
        "/api/uploads/", body, content_type="multipart/form-data; boundary=B"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("missing_file", "file")
    assert "UTF-8" in error["message"]
    assert not Upload.objects.exists()


def test_two_files_in_one_request_are_refused(member_client, uploads_dir):
    first, second = io.BytesIO(b"one"), io.BytesIO(b"two")
    first.name, second.name = "a.txt", "b.txt"
    response = member_client.post("/api/uploads/", {"file": [first, second]})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": "Send one file per request: each upload gets its own id.",
        "field": "file",
    }
    assert not Upload.objects.exists() and stored_files(uploads_dir) == []


def test_team_quota_refuses_an_upload_that_would_pass_it(
    member_client, post_upload, settings, uploads_dir
):
    first = post_upload(member_client, "a.png", files.image_bytes(64, 64))
    settings.UPLOAD_TEAM_QUOTA_BYTES = first.json()["bytes"] + 10
    response = post_upload(member_client, "b.png", files.image_bytes(64, 64))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "storage_quota_exceeded"
    assert Upload.objects.count() == 1
    assert len(stored_files(uploads_dir)) == 1


def test_files_never_sent_pile_up_only_to_a_cap(
    member_client, member, owner, team, post_upload, settings, uploads_dir
):
    """The quota counts bytes: without a cap, a script could store a team's gigabyte as
    millions of one-byte files, each a row and a file on disk."""
    settings.UPLOAD_MAX_UNSENT_FILES = 3
    ids = [post_upload(member_client, f"{n}.txt", b"x").json()["id"] for n in range(3)]
    response = post_upload(member_client, "3.txt", b"x")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "too_many_unsent_files",
        "message": "You have 3 files uploaded and not sent yet: send them, or remove some"
        " from the message, before attaching more.",
        "field": "file",
    }
    assert Upload.objects.count() == 3 and len(stored_files(uploads_dir)) == 3
    assert post_upload(client_for(Client(), owner), "mine.txt", b"x").status_code == 201

    conversation = Conversation.objects.create(team=team, owner=member, model="m", title="t")
    question = Message.objects.create(conversation=conversation, role="user", content="see")
    Upload.objects.filter(pk=ids[0]).update(message=question)
    assert post_upload(member_client, "4.txt", b"x").status_code == 201  # one was sent
    assert member_client.delete(f"/api/uploads/{ids[1]}/").status_code == 204
    assert post_upload(member_client, "5.txt", b"x").status_code == 201  # one was removed
    assert post_upload(member_client, "6.txt", b"x").status_code == 400


def test_anonymous_gets_401(client, post_upload):
    assert post_upload(client).status_code == 401
    assert client.get("/api/uploads/1/").status_code == 401


def test_wrong_methods_get_405(member_client, member, make_upload):
    upload = make_upload(member)
    assert member_client.get("/api/uploads/").status_code == 405
    assert member_client.put(f"/api/uploads/{upload.pk}/").status_code == 405


def test_uploader_gets_the_cleaned_image(member_client, member, make_upload):
    upload = make_upload(member, "photo.jpg", files.jpeg_with_gps())
    response = member_client.get(f"/api/uploads/{upload.pk}/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Content-Disposition"].startswith("inline")
    data = b"".join(response.streaming_content)
    assert b"SecretCam" not in data
    assert Image.open(io.BytesIO(data)).size == (40, 30)


def test_document_always_downloads(member_client, member, make_upload):
    upload = make_upload(member, "page.html", b"<script>alert(1)</script>")
    response = member_client.get(f"/api/uploads/{upload.pk}/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"


def attach(upload, owner, team):
    conversation = Conversation.objects.create(team=team, owner=owner, model="m")
    message = Message.objects.create(conversation=conversation, role="user", content="see")
    Upload.objects.filter(pk=upload.pk).update(message=message)
    return conversation


@pytest.mark.parametrize("reader", ["owner", "admin_member", "outsider", "site_admin"])
def test_others_get_404_for_an_unsent_upload(client, member, make_upload, request, reader):
    upload = make_upload(member)
    client.force_login(request.getfixturevalue(reader))
    assert client.get(f"/api/uploads/{upload.pk}/").status_code == 404
    assert client.delete(f"/api/uploads/{upload.pk}/").status_code == 404
    assert Upload.objects.filter(pk=upload.pk).exists()


@pytest.mark.parametrize("reader", ["owner", "admin_member", "outsider"])
def test_others_get_404_for_an_upload_in_a_conversation_they_cannot_read(
    client, member, team, make_upload, request, reader
):
    upload = make_upload(member)
    attach(upload, member, team)
    client.force_login(request.getfixturevalue(reader))
    assert client.get(f"/api/uploads/{upload.pk}/").status_code == 404


def test_conversation_reader_gets_the_upload(client, member, owner, team, make_upload):
    """The conversation's reader is its owner, even when someone else uploaded the file."""
    upload = make_upload(member)
    attach(upload, owner, team)
    client.force_login(owner)
    assert client.get(f"/api/uploads/{upload.pk}/").status_code == 200
    assert client.delete(f"/api/uploads/{upload.pk}/").status_code == 403


def test_missing_id_gets_404(member_client):
    assert member_client.get("/api/uploads/999999/").status_code == 404


def test_a_file_gone_from_storage_is_404_and_says_so(member_client, member, make_upload):
    """A row whose file the storage no longer holds (media not restored with the database, a
    bucket's lifecycle rule): the reader is told, as a copy or an export is, not a 500."""
    upload = make_upload(member, "chart.png")
    upload.file.storage.delete(upload.file.name)
    response = member_client.get(f"/api/uploads/{upload.pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "chart.png is no longer stored" in response.json()["error"]["message"]


def test_uploader_deletes_the_upload_and_its_file(
    member_client, member, make_upload, uploads_dir, django_capture_on_commit_callbacks
):
    upload = make_upload(member)
    assert len(stored_files(uploads_dir)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        response = member_client.delete(f"/api/uploads/{upload.pk}/")
    assert response.status_code == 204
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []
    assert member_client.get(f"/api/uploads/{upload.pk}/").status_code == 404


def test_an_upload_queues_on_the_teams_row_without_holding_up_its_new_rows(
    member_client, post_upload, settings
):
    """Uploads of a team queue on its row for the quota, with a NO KEY lock: rows that refer to
    the team (a send's conversation, rate-limit and usage rows) are written meanwhile, rather
    than wait for the quota's sum and for the file to be stored (on S3, a request away)."""
    settings.UPLOAD_TEAM_QUOTA_BYTES = 10**9
    with CaptureQueriesContext(connection) as queries:
        assert post_upload(member_client, "a.png", files.image_bytes(8, 8)).status_code == 201
    team_reads = [q["sql"] for q in queries.captured_queries if 'FROM "teams_team"' in q["sql"]]
    locks = [sql for sql in team_reads if " FOR " in sql]
    if connection.features.has_select_for_update:
        assert len(locks) == 1 and locks[0].endswith("FOR NO KEY UPDATE")
    else:
        assert locks == []


def test_an_upload_written_after_its_uploader_was_removed_is_refused(
    member_client, member, owner, team, uploads_dir
):
    """An upload that passed the team check as the member was removed stores nothing there."""
    remove_member(Membership.objects.get(user=owner), Membership.objects.get(user=member))
    with pytest.raises(UploadRefused) as refused:
        create_upload(member, team, "photo.png", files.image_bytes())
    assert refused.value.code == "not_found"
    assert not Upload.objects.exists()
    assert stored_files(uploads_dir) == []


@pytest.mark.skipif(not uses_postgres(), reason="SQLite already queues every writer")
@pytest.mark.django_db(transaction=True)
def test_an_upload_during_its_uploaders_removal_waits_and_is_refused(
    member_client, member, owner, team, post_upload
):
    """Two processes: an admin removes the member while the member's file is being stored.
    The upload waits for the removal, then finds the membership gone and keeps nothing."""
    outcome: list[object] = []

    def upload() -> None:
        try:
            response = post_upload(member_client)
            outcome.append((response.status_code, response.json().get("error")))
        finally:
            connection.close()

    uploading = threading.Thread(target=upload)
    with transaction.atomic():
        remove_member(Membership.objects.get(user=owner), Membership.objects.get(user=member))
        uploading.start()
        wait_for(lambda: outcome or lock_waiters() > 0, "the upload to end or wait on a lock")
    uploading.join(30)
    assert outcome == [
        (404, {"code": "not_found", "message": "You are not in that team.", "field": "team"})
    ]
    assert not Upload.objects.exists()
