"""What a chat request carries besides text: images (data URLs or http(s) URLs) and documents
(context blocks).

The simulator reads them as the real API would (an image that does not decode is a 400) and
says what it received in its answer, so a test can tell the bytes arrived. An image given by
its URL is named, not fetched: the simulator stays offline.
"""

import base64
import binascii
import io
import re
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

DATA_URL = re.compile(r"data:(image/[\w.+-]+);base64,(.*)", re.S)
WEB_URL = re.compile(r"https?://\S+")
DOCUMENT = re.compile(r'<document name="([^"]*)"(?: pages="(\d+)")?>')


class ContentError(ValueError):
    """A content part the API would refuse."""


@dataclass
class Received:
    images: list[str] = field(default_factory=list)  # "64×48", or the URL it was given by
    documents: list[str] = field(default_factory=list)  # "name (1 page)", "name (N pages)"

    def summary(self) -> str | None:
        if not self.images and not self.documents:
            return None
        said = []
        if self.images:
            said.append(f"{_count(len(self.images), 'image')} ({', '.join(self.images)})")
        if self.documents:
            said.append(f"{_count(len(self.documents), 'document')}: {', '.join(self.documents)}")
        return "Received " + " and ".join(said)


def received(messages: list[dict]) -> Received:
    """Every image and document block in the request; ContentError for a broken image."""
    found = Received()
    for message in messages:
        content = message.get("content")
        calls = message.get("tool_calls")
        if calls is not None and not (
            isinstance(calls, list) and all(isinstance(call, dict) for call in calls)
        ):
            raise ContentError("tool_calls must be a list of objects.")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ContentError("content must be a string or a list of content parts.")
        for part in content:
            if not isinstance(part, dict):
                raise ContentError("Each content part must be an object with a type.")
            if part.get("type") == "image_url":
                found.images.append(_image_label(part))
            elif part.get("type") == "text":
                if not isinstance(part.get("text"), str):
                    raise ContentError("A text part's text must be a string.")
                for name, pages in DOCUMENT.findall(part["text"]):
                    unit = "page" if pages == "1" else "pages"
                    found.documents.append(f"{name} ({pages} {unit})" if pages else name)
            else:
                raise ContentError(f"Unsupported content part type {part.get('type')!r}.")
    return found


def question_text(message: dict) -> str:
    """A user message's own words: its text parts that are not document blocks."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    texts = [
        p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text"
    ]
    return "\n".join(t for t in texts if not DOCUMENT.match(t))


def _image_label(part: dict) -> str:
    """The image's size ("64×48"), or the http(s) URL it is given by."""
    url = (
        (part.get("image_url") or {}).get("url")
        if isinstance(part.get("image_url"), dict)
        else None
    )
    if not isinstance(url, str):
        raise ContentError("image_url.url must be an http(s) URL or a data:image/...;base64 URL.")
    if WEB_URL.fullmatch(url):
        return url
    match = DATA_URL.fullmatch(url)
    if match is None:
        raise ContentError("image_url.url must be an http(s) URL or a data:image/...;base64 URL.")
    try:
        data = base64.b64decode(match.group(2), validate=True)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return f"{width}×{height}"
    except (binascii.Error, UnidentifiedImageError, OSError):
        raise ContentError("image_url: the data is not a readable image.") from None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
