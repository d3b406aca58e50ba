"""The S3 backend end to end: django-storages and boto3 against moto's in-process S3."""

import boto3
import pytest
from moto import mock_aws
from storages.backends.s3 import S3Storage

from chatapp.uploads.models import Upload
from tests.uploads import files

BUCKET = "chat-files"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        storage = S3Storage(bucket_name=BUCKET, default_acl="private", file_overwrite=False)
        monkeypatch.setattr(Upload._meta.get_field("file"), "storage", storage)
        yield client


def keys(client) -> list[str]:
    return [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.mark.django_db(transaction=True)
def test_upload_is_stored_served_and_deleted_in_the_bucket(s3, member_client, member, make_upload):
    upload = make_upload(member, "photo.jpg", files.jpeg_with_gps())
    assert keys(s3) == [upload.file.name]
    response = member_client.get(f"/api/uploads/{upload.pk}/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"\xff\xd8")
    assert member_client.delete(f"/api/uploads/{upload.pk}/").status_code == 204
    assert keys(s3) == []
