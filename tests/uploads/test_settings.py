"""Where uploads are stored: the local media root by default, an S3 bucket when configured."""

import ast
import os

from tests.deploy.files import load_settings

BASE = {k: v for k, v in os.environ.items() if not k.startswith(("UPLOAD", "MEDIA_ROOT"))}


def storages(**env) -> dict:
    result = load_settings({**BASE, **env}, "STORAGES")
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout)["uploads"]


def test_files_go_under_the_media_root_by_default(tmp_path):
    uploads = storages(MEDIA_ROOT=str(tmp_path / "files"))
    assert uploads["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert uploads["OPTIONS"]["location"] == str(tmp_path / "files")
    assert uploads["OPTIONS"]["file_permissions_mode"] == 0o600


def test_an_s3_bucket_is_used_when_configured():
    uploads = storages(
        UPLOADS_S3_BUCKET="chat-files",
        UPLOADS_S3_ENDPOINT_URL="https://minio.internal:9000",
        UPLOADS_S3_ACCESS_KEY_ID="id",
        UPLOADS_S3_SECRET_ACCESS_KEY="secret",
    )
    assert uploads["BACKEND"] == "storages.backends.s3.S3Storage"
    options = uploads["OPTIONS"]
    assert options["bucket_name"] == "chat-files"
    assert options["endpoint_url"] == "https://minio.internal:9000"
    assert (options["default_acl"], options["querystring_auth"]) == ("private", True)


def test_operators_name_the_models_that_see_images():
    result = load_settings(
        {**BASE, "LLAMA_IMAGE_MODELS": "llava:13b, Llama-4-Scout"}, "LLAMA_IMAGE_MODELS"
    )
    assert result.returncode == 0, result.stderr
    assert ast.literal_eval(result.stdout) == ["llava:13b", "Llama-4-Scout"]
