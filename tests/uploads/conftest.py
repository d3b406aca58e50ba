import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from chatapp.uploads.actions import create_upload
from tests.uploads import files


def stored_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def post_upload():
    def post(client, name="photo.png", data=None, content_type="image/png"):
        data = files.image_bytes() if data is None else data
        upload = SimpleUploadedFile(name, data, content_type=content_type)
        return client.post("/api/uploads/", {"file": upload})

    return post


@pytest.fixture
def make_upload(team):
    """An upload stored through the real write path, in the shared team by default."""

    def make(user, name="photo.png", data=None, in_team=None):
        data = files.image_bytes() if data is None else data
        return create_upload(user, in_team or team, name, data)

    return make
