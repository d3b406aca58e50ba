"""What an uploaded file really is, decided by its bytes: a clean image, a document's text, or
a refusal with a stable code and a message the user can act on.

Images are decoded and encoded again, so nothing but pixels and their colour profile
survives: no EXIF or GPS, no comments, nothing appended after the image. Documents keep their
bytes (for download) and give their text to the model.
"""

import io
import math
import re
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError
from pypdf import Configuration, PdfReader, apply_configuration
from pypdf.errors import LimitReachedError
from pypdf.generic import DictionaryObject

from chatapp.core.text import NOT_ONE_LINE, storable

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# How the bytes of a PNG, a JPEG and a GIF start, however little of them arrived.
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
# Pillow's name for a JPEG that carries more pictures after the first (MPF), as many phone
# cameras write their photos: taken as a JPEG of its first picture.
IMAGE_ALIASES = {"MPO": "JPEG"}
ACCEPTED_FORMATS = tuple(IMAGE_TYPES)  # Pillow opens an MPO as a JPEG
# How to turn a photo upright, by its EXIF Orientation (2 to 8; 1 is upright already).
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# A colour profile (ICC) is kept, so a photo in Display P3 or Adobe RGB shows in its own
# colours; a camera's or screen's is a few kilobytes, and a larger one (a printer's lookup
# tables) is dropped rather than sent to the model with every image.
ICC_PROFILE_MAX_BYTES = 128 * 1024
# The pixel modes a grey profile describes; every other mode saved here is RGB.
GREY_MODES = {"1", "L", "LA", "I", "I;16"}
IMAGE_ENDINGS = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "WEBP": (".webp",),
    "GIF": (".gif",),
}
# What decoding and scaling one image may hold in memory: its pixels, at the bytes Pillow
# keeps for each (four for RGB and RGBA, one for grey or a palette), twice (the decoded
# image and its scaled copy; a WebP's decoder keeps four copies). A 4K screenshot needs
# some 66 MB; a 40-megapixel RGBA PNG of a few kilobytes would need 320 MB. JPEGs are
# decoded at a reduced scale first (`_draft`), so a photo under the pixel cap always fits.
IMAGE_DECODING_BYTES = 128 * 1024 * 1024
DECODING_COPIES = {"WEBP": 4}
NARROW_MODES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}
IMAGE_SUFFIXES = {ending for endings in IMAGE_ENDINGS.values() for ending in endings}
PDF_TYPE = "application/pdf"
TEXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv"}
TEXT_SUFFIXES = {
    *TEXT_TYPES,
    *(
        ".txt .text .log .tsv .json .jsonl .yaml .yml .toml .ini .cfg .conf .xml .html .htm .css"
        " .py .pyi .js .mjs .ts .tsx .jsx .java .kt .scala .c .h .cc .cpp .hpp .cs .go .rs .rb"
        " .php .swift .m .r .jl .lua .pl .sh .bash .zsh .ps1 .sql .proto .graphql .tex .rst"
        " .env.example .dockerfile .gitignore .vue .svelte .dart .ex .exs .erl .hs .clj .el"
    ).split(),
}
TEXT_NAMES = {"dockerfile", "makefile", "readme", "license", "changelog"}
# What a file of another kind that also passes as an image carries (a polyglot): a PDF header
# where readers look for one, markup a browser would run, an archive directory.
PDF_HEADER_WINDOW = 1024
MARKUP = re.compile(rb"<\s*(?:script|html|svg|iframe|object|embed|body)[\s/>]|<\?php", re.I)
NAME_LENGTH = 200
# Paths and markup, and what does not read as one line as typed: control characters and the
# marks that reverse the text around them ("a\u202efdp.txt" shows as "atxt.pdf").
UNSAFE_NAME_CHARACTERS = re.compile(rf"{NOT_ONE_LINE.pattern}|[/\\\"<>]")
# What reading a PDF's text may cost, so that a few kilobytes cannot hold a server thread for
# minutes: operands and operators in one page's content (pypdf's parsing budget; a dense page
# of text has some 5,000, and parsing 200,000 takes about a second here), and CPU seconds for
# the whole document, checked at every operator (a document of the longest text any model
# takes, set as Word or LaTeX set it, needs a few).
PDF_PAGE_OPERATIONS = 200_000
PDF_CPU_SECONDS = 10.0
# The most a compressed stream may unpack to. Parsing one stream cannot be stopped halfway,
# and a few kilobytes unpack to pypdf's own cap of 75 MB, half a minute of parsing (hex
# strings, the slowest, take about 2 s for 4 MB here); a dense page of text is some 100 KB.
PDF_STREAM_BYTES = 4_000_000
# The most pages a PDF may have: pypdf lists them all before the first is read, some 0.1 ms
# and 4 KB each (60,000 empty pages fit in 9 MB), and a slide deck of a few hundred pages is
# the longest a model's context takes.
PDF_MAX_PAGES = 2_000
PDF_READING = Configuration().with_overwrites(
    stream_parsing_work_maximum_count=PDF_PAGE_OPERATIONS,
    zlib_maximum_output_length=PDF_STREAM_BYTES,
    lzw_maximum_output_length=PDF_STREAM_BYTES,
    run_length_maximum_output_length=PDF_STREAM_BYTES,
    brotli_maximum_output_length=PDF_STREAM_BYTES,
    array_based_stream_maximum_output_length=PDF_STREAM_BYTES,
)
IMAGE_KINDS = "a PNG, JPEG, WebP or GIF image"
DOCUMENT_KINDS = "a text, Markdown, CSV, source code or PDF file"


def accepted_suffixes() -> list[str]:
    """The file name endings a file picker offers (files are still judged by their bytes)."""
    return sorted({*IMAGE_SUFFIXES, ".pdf", *TEXT_SUFFIXES})


class UploadRefused(Exception):
    """A file the chat does not take; `code` is stable, `message` says what to do instead."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    max_side: int
    max_text_chars: int


@dataclass(frozen=True)
class CheckedFile:
    kind: str  # "image" or "document"
    name: str
    content_type: str
    data: bytes  # what is stored: the re-encoded image, or the document as uploaded
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    text: str = ""  # a document's text, with page markers for PDFs


def check_file(name: str, data: bytes, limits: Limits) -> CheckedFile:
    name = clean_name(name)
    _check_size(name, data, limits)
    # A file named as text is an image only in a format taken here: a note starting "P1 ..." or
    # "BMW ..." is no broken PPM or BMP.
    named_as_text = _named_as_text(name)
    image = _open_image(name, data, limits, ACCEPTED_FORMATS if named_as_text else None)
    if image is not None:
        return _clean_image(name, data, image, limits)
    suffix = PurePath(name).suffix.lower()
    # A file named .pdf is the PDF reader's to judge: readers find the header anywhere in the
    # first kilobyte (after a blank line or a byte order mark), and one that is no PDF is
    # refused as such.
    if data.startswith(b"%PDF-") or suffix == ".pdf":
        return _pdf(name, data, limits)
    if data.startswith(IMAGE_SIGNATURES):  # the start of an image Pillow could not open
        raise _damaged(name)
    if suffix in IMAGE_SUFFIXES:
        raise UploadRefused(
            "invalid_image", f"{name} is named like an image but its bytes are not {IMAGE_KINDS}."
        )
    if named_as_text:
        return _text(name, data, limits)
    raise UploadRefused(
        "unsupported_type", f"{name} cannot be attached: attach {IMAGE_KINDS}, or {DOCUMENT_KINDS}."
    )


def check_image(name: str, data: bytes, limits: Limits) -> CheckedFile:
    """An image's bytes, cleaned as an uploaded image is; anything else is refused."""
    _check_size(name, data, limits)
    image = _open_image(name, data, limits)
    if image is None:
        if data.startswith(IMAGE_SIGNATURES):
            raise _damaged(name)
        raise UploadRefused("invalid_image", f"{name} is not {IMAGE_KINDS}.")
    return _clean_image(name, data, image, limits)


def _check_size(name: str, data: bytes, limits: Limits) -> None:
    if not data:
        raise UploadRefused("empty_file", f"{name} is empty: choose a file with something in it.")
    check_size(name, len(data), limits)


def check_size(name: str, size: int, limits: Limits) -> None:
    """UploadRefused for a file of `size` bytes over the cap (known before it is read)."""
    if size > limits.max_bytes:
        raise UploadRefused("file_too_large", f"{name} is {_sizes(size, limits.max_bytes)}.")


def clean_name(name: str) -> str:
    """The base name, without path or control characters, short enough to show."""
    base = PurePath((name or "").replace("\\", "/")).name
    base = UNSAFE_NAME_CHARACTERS.sub("", base).strip() or "file"
    if len(base) > NAME_LENGTH:
        suffix = PurePath(base).suffix[:20]
        base = base[: NAME_LENGTH - len(suffix)] + suffix
    return base


# --- images ----------------------------------------------------------------------------


def _named_as_text(name: str) -> bool:
    # By the name's ending, not PurePath's suffix: a dot file (.gitignore) has none, and
    # .env.example has two.
    return name.lower().endswith(tuple(TEXT_SUFFIXES)) or PurePath(name).stem.lower() in TEXT_NAMES


def _open_image(
    name: str, data: bytes, limits: Limits, formats: tuple[str, ...] | None = None
) -> Image.Image | None:
    """The image the bytes hold (header read only, nothing decoded yet), or None; only in
    `formats` when given (else in any Pillow reads, to name one not taken)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(name, limits) from None
    except UnidentifiedImageError:
        return None
    except (OSError, ValueError, SyntaxError):  # Pillow's plugins raise these for broken headers
        raise _damaged(name) from None
    if _format(image) not in IMAGE_TYPES:
        raise UploadRefused(
            "unsupported_type",
            f"{name} is a {image.format} image: save it as PNG or JPEG and attach that.",
        )
    if image.width * image.height > limits.max_pixels:
        raise _too_many_pixels(name, limits)
    if _format(image) == "JPEG":
        _draft(image, limits.max_side)
    copies = DECODING_COPIES.get(_format(image), 2)
    if image.width * image.height * NARROW_MODES.get(image.mode, 4) * copies > IMAGE_DECODING_BYTES:
        raise UploadRefused(
            "image_too_large",
            f"{name} is {image.width:,}×{image.height:,} pixels, more than the chat can decode"
            " in its format: scale it down, or save it as a JPEG, and retry.",
        )
    return image


def _draft(image: Image.Image, max_side: int) -> None:
    """Have libjpeg decode the photo at 1/2, 1/4 or 1/8 of its size, the smallest of them no
    smaller than it is shown: a quarter of the memory and time or less, nothing lost."""
    scale = max_side / max(image.size)
    if scale < 1:
        image.draft(image.mode, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def _format(image: Image.Image) -> str:
    return IMAGE_ALIASES.get(str(image.format), str(image.format))


def _clean_image(name: str, data: bytes, image: Image.Image, limits: Limits) -> CheckedFile:
    _refuse_polyglot(name, data)
    image_format = _format(image)  # one of IMAGE_TYPES: _open_image checked it
    try:
        image.load()  # decodes every byte: a truncated or corrupt image fails here
        image = _upright(image)  # keep the photo upright once EXIF is gone
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise _damaged(name) from None
    if max(image.size) > limits.max_side:
        image.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    profile = image.info.get("icc_profile")
    output = io.BytesIO()
    if image_format == "JPEG":
        if image.mode != "RGB":
            image = image.convert("RGB")
        icc = _colour_profile(profile, image.mode)
        image.save(output, "JPEG", quality=90, optimize=True, icc_profile=icc)
    elif image_format == "WEBP":
        image.save(output, "WEBP", quality=90, icc_profile=_colour_profile(profile, image.mode))
    elif image_format == "GIF":
        image.save(output, "GIF")  # the first frame: the model reads one picture
    else:
        if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
            image = image.convert("RGBA")
        icc = _colour_profile(profile, image.mode)
        image.save(output, "PNG", optimize=True, icc_profile=icc)
    return CheckedFile(
        kind="image",
        name=_image_name(name, image_format),
        content_type=IMAGE_TYPES[image_format],
        data=output.getvalue(),
        width=image.width,
        height=image.height,
    )


def _colour_profile(profile, mode: str) -> bytes | None:
    """The image's ICC profile, kept when it is one the pixels saved in `mode` are read with
    (an RGB one for RGB, a grey one for grey), no larger than ICC_PROFILE_MAX_BYTES, and
    holding no PDF header: without the EXIF before it, it may come to the file's front."""
    if not isinstance(profile, bytes) or not 0 < len(profile) <= ICC_PROFILE_MAX_BYTES:
        return None
    if b"%PDF-" in profile:
        return None
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(profile)).profile.xcolor_space
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    return profile if space == ("GRAY" if mode in GREY_MODES else "RGB ") else None


def _image_name(name: str, image_format: str) -> str:
    """The name ending as the image's type does, so that the file saved from the chat opens
    as what it is: another image type's ending is replaced, any other ending kept before it."""
    endings = IMAGE_ENDINGS[image_format]
    suffix = PurePath(name).suffix.lower()
    if suffix in endings:
        return name
    stem = PurePath(name).stem if suffix in IMAGE_SUFFIXES else name
    return stem[: NAME_LENGTH - len(endings[0])] + endings[0]


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation says. Not ImageOps.exif_transpose: it writes
    the EXIF out again, which fails on many a tag a camera got wrong, and none of it is kept."""
    orientation = image.getexif().get(ExifTags.Base.Orientation)
    method = ORIENTATIONS.get(orientation) if isinstance(orientation, int) else None
    return image if method is None else image.transpose(method)


def _refuse_polyglot(name: str, data: bytes) -> None:
    is_pdf = b"%PDF-" in data[:PDF_HEADER_WINDOW]
    if is_pdf or MARKUP.search(data) or zipfile.is_zipfile(io.BytesIO(data)):
        raise UploadRefused(
            "polyglot_file",
            f"{name} is an image with another kind of file (a PDF, an archive or web page)"
            " inside it: save the picture again as a plain image and attach that.",
        )


def _too_many_pixels(name: str, limits: Limits) -> UploadRefused:
    return UploadRefused(
        "image_too_large",
        f"{name} declares more than {limits.max_pixels:,} pixels: scale it down and retry.",
    )


def _damaged(name: str) -> UploadRefused:
    return UploadRefused(
        "invalid_image",
        f"{name} is damaged or cut short and cannot be read: save it again and retry.",
    )


# --- documents -------------------------------------------------------------------------


def _text(name: str, data: bytes, limits: Limits) -> CheckedFile:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise UploadRefused(
            "unsupported_type",
            f"{name} is not UTF-8 text: attach {DOCUMENT_KINDS} saved as UTF-8.",
        )
    if not text.strip():
        raise UploadRefused("empty_file", f"{name} has no text in it.")
    _check_length(name, text, limits)
    content_type = TEXT_TYPES.get(PurePath(name).suffix.lower(), "text/plain")
    return CheckedFile(kind="document", name=name, content_type=content_type, data=data, text=text)


def _pdf(name: str, data: bytes, limits: Limits) -> CheckedFile:
    try:
        with apply_configuration(PDF_READING):
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise UploadRefused(
                    "pdf_encrypted",
                    f"{name} is protected by a password: save an unprotected copy and attach that.",
                )
            pages = _pdf_pages(name, reader, limits)
    except UploadRefused:
        raise
    except LimitReachedError:
        raise _too_complex(name) from None
    except Exception:  # pypdf raises many types for a broken file; all mean the same here
        raise UploadRefused(
            "invalid_pdf", f"{name} is not a readable PDF: save it again and retry."
        ) from None
    if not any(pages):
        raise UploadRefused(
            "pdf_has_no_text",
            f"{name} has no text layer (it looks like a scan): run it through OCR, or attach"
            " the pages as images.",
        )
    text = "\n\n".join(f"[Page {number}]\n{page}" for number, page in enumerate(pages, 1))
    _check_length(name, text, limits)
    return CheckedFile(
        kind="document", name=name, content_type=PDF_TYPE, data=data, pages=len(pages), text=text
    )


def _pdf_pages(name: str, reader: PdfReader, limits: Limits) -> list[str]:
    """Each page's text, read within the budgets above (PDF_READING applied); stops once it is
    more than any model takes."""
    deadline = time.thread_time() + PDF_CPU_SECONDS

    def within_budget(*_operation) -> None:
        if time.thread_time() > deadline:
            raise _too_complex(name)

    _check_page_count(name, reader)
    pages: list[str] = []
    length = 0
    for page in reader.pages:
        within_budget()
        text = page.extract_text(visitor_operand_before=within_budget)
        # A font without a character map reads its code 0 as NUL: storable() replaces it.
        pages.append(storable(text or "").strip())
        length += len(pages[-1])
        if length > limits.max_text_chars:
            raise UploadRefused(
                "document_too_large",
                f"{name} holds more than {limits.max_text_chars:,} characters of text, more"
                " than any model here can read at once: attach the part you need.",
            )
    return pages


def _check_page_count(name: str, reader: PdfReader) -> None:
    """Count the pages by walking the page tree (its /Count may lie) until there are more
    than PDF_MAX_PAGES, or more nodes than a tree of that many pages has (a cycle)."""
    pending = [reader.root_object["/Pages"]]
    pages = nodes = 0
    while pending:
        node = pending.pop().get_object()
        if not isinstance(node, DictionaryObject):  # refused as not readable, by _pdf
            raise ValueError("A page tree node is not a dictionary")
        nodes += 1
        kids = node.get("/Kids")
        if kids is None:
            pages += 1
        else:
            pending.extend(kids)
        if pages + len(pending) > PDF_MAX_PAGES:
            raise UploadRefused(
                "document_too_large",
                f"{name} has more than {PDF_MAX_PAGES:,} pages, more than the chat reads:"
                " attach the part you need.",
            )
        if nodes > 2 * PDF_MAX_PAGES:
            raise _too_complex(name)


def _too_complex(name: str) -> UploadRefused:
    return UploadRefused(
        "document_too_large",
        f"{name} is too complex to read here: its pages hold more drawing and text operations"
        " than the chat reads. Attach the part you need, or save its text as a .txt file.",
    )


def _check_length(name: str, text: str, limits: Limits) -> None:
    if len(text) > limits.max_text_chars:
        raise UploadRefused(
            "document_too_large",
            f"{name} holds {len(text):,} characters of text, more than any model here can read"
            f" at once ({limits.max_text_chars:,}): attach the part you need.",
        )


def _sizes(size: int, limit: int) -> str:
    """ "12.5 MB; files may be at most 10.0 MB", in bytes where the rounded sizes would read
    the same."""
    if _size(size) == _size(limit):
        return f"{size:,} bytes; files may be at most {limit:,} bytes"
    return f"{_size(size)}; files may be at most {_size(limit)}"


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB"
    return f"{max(1, count // 1024)} KB"
