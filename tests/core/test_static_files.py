"""Static files go out compressed in every mode, and answer 304 to the ETag they went out with;
the vendored libraries are the minified builds.

(Collected files, with hashed names, are compressed by the manifest storage:
tests/deploy/test_server.py::test_collected_static_files_are_served_compressed.)"""

import gzip
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HIGHLIGHT = "/static/vendor/highlight/highlight.min.js"
PURIFY = ROOT / "static" / "vendor" / "dompurify" / "purify.es.min.js"


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_static_files_from_the_source_tree_are_gzipped_for_clients_that_take_it(client):
    response = client.get(HIGHLIGHT, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response["Vary"]
    unpacked = gzip.decompress(body(response))
    assert unpacked == (ROOT / "static" / HIGHLIGHT.removeprefix("/static/")).read_bytes()


def test_clients_that_take_no_gzip_get_the_plain_file(client):
    response = client.get(HIGHLIGHT)
    assert response.status_code == 200
    assert not response.has_header("Content-Encoding")


def test_pages_are_never_compressed(client):
    """Pages carry CSRF tokens: compressing them would open them to BREACH."""
    response = client.get("/accounts/login/", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert not response.has_header("Content-Encoding")


def test_dompurify_is_the_minified_build_and_the_one_the_chat_imports():
    source = PURIFY.read_text()
    assert source.startswith("/*! @license DOMPurify")
    assert len(source.splitlines()) < 5 and len(source) < 40_000  # the readable build is 80 KB
    markdown = (ROOT / "static" / "js" / "chat" / "markdown.js").read_text()
    assert '"../../vendor/dompurify/purify.es.min.js"' in markdown


def test_a_gzipped_file_asked_for_again_with_its_etag_answers_304(client):
    """The page reloads of `make run` (DEBUG: every file revalidated) cost a 304, not the file."""
    first = client.get(HIGHLIGHT, HTTP_ACCEPT_ENCODING="gzip")
    assert first["Content-Encoding"] == "gzip"
    again = client.get(HIGHLIGHT, HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert body(again) == b""


def test_a_changed_file_is_sent_again_in_full(client):
    first = client.get(HIGHLIGHT, HTTP_ACCEPT_ENCODING="gzip")
    stale = first["ETag"].replace('"', '"0', 1)
    again = client.get(HIGHLIGHT, HTTP_ACCEPT_ENCODING="gzip", HTTP_IF_NONE_MATCH=stale)
    assert again.status_code == 200
    assert gzip.decompress(body(again)) == gzip.decompress(body(first))
