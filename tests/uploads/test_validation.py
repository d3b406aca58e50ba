"""What check_file makes of each kind of file: the bytes decide, and every refusal has a code."""

import io

import pytest
from PIL import Image, ImageCms, PngImagePlugin
from pypdf import PdfReader, PdfWriter

from chatapp.uploads import validation
from chatapp.uploads.validation import Limits, UploadRefused, check_file, clean_name
from tests.uploads import files

LIMITS = Limits(max_bytes=2_000_000, max_pixels=10_000_000, max_side=1024, max_text_chars=5_000)


def refused(name: str, data: bytes, limits: Limits = LIMITS) -> str:
    with pytest.raises(UploadRefused) as caught:
        check_file(name, data, limits)
    assert caught.value.message  # every refusal says what to do
    return caught.value.code


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_each_image_format_is_accepted_and_re_encoded(fmt, content_type):
    checked = check_file("picture", files.image_bytes(64, 48, fmt), LIMITS)
    assert (checked.kind, checked.content_type) == ("image", content_type)
    assert (checked.width, checked.height) == (64, 48)
    assert Image.open(io.BytesIO(checked.data)).format == fmt


def test_the_bytes_decide_not_the_name():
    checked = check_file("notes.txt", files.image_bytes(fmt="PNG"), LIMITS)
    assert checked.kind == "image"
    assert checked.content_type == "image/png"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("photo.jpg", "photo.png"),  # a PNG named as a JPEG
        ("Shot.JPEG", "Shot.png"),
        ("notes.txt", "notes.txt.png"),  # a picture named as a document
        ("report.pdf", "report.pdf.png"),
        ("picture", "picture.png"),
        ("diagram.PNG", "diagram.PNG"),
        ("a" * 197 + ".gif", "a" * 196 + ".png"),
    ],
)
def test_an_images_name_ends_as_its_bytes_are(given, kept):
    """Saved or downloaded, the file then opens as what it is."""
    checked = check_file(given, files.image_bytes(fmt="PNG"), LIMITS)
    assert checked.name == kept


@pytest.mark.parametrize("name", ["photo.jpg", "photo.jpeg", "photo.JPE", "photo.jfif"])
def test_a_jpeg_keeps_any_jpeg_ending(name):
    assert check_file(name, files.image_bytes(fmt="JPEG"), LIMITS).name == name


def test_exif_and_gps_are_stripped():
    original = files.jpeg_with_gps()
    assert b"SecretCam" in original and Image.open(io.BytesIO(original)).getexif()
    checked = check_file("photo.jpg", original, LIMITS)
    assert b"SecretCam" not in checked.data
    assert not Image.open(io.BytesIO(checked.data)).getexif()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_an_images_colour_profile_is_kept(fmt):
    """Shown without its profile, a photo in Display P3 looks washed out."""
    profile = files.display_p3_profile()
    checked = check_file("photo", files.image_bytes(fmt=fmt, icc_profile=profile), LIMITS)
    kept = Image.open(io.BytesIO(checked.data)).info.get("icc_profile")
    assert kept == profile
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(kept))).strip() == (
        "Display P3"
    )


def test_a_colour_profile_survives_scaling_down_and_turning_upright():
    profile = files.display_p3_profile()
    sideways = files.jpeg_turned(40, 30)
    turned = Image.open(io.BytesIO(sideways))
    output = io.BytesIO()
    turned.save(output, "JPEG", exif=turned.info["exif"], icc_profile=profile)
    checked = check_file("photo.jpg", output.getvalue(), LIMITS)
    assert (checked.width, checked.height) == (30, 40)
    assert Image.open(io.BytesIO(checked.data)).info.get("icc_profile") == profile
    wide = files.image_bytes(2000, 100, "PNG", icc_profile=profile)
    checked = check_file("wide.png", wide, LIMITS)
    assert checked.width == LIMITS.max_side
    assert Image.open(io.BytesIO(checked.data)).info.get("icc_profile") == profile


@pytest.mark.parametrize(
    "profile",
    [
        files.display_p3_profile(b"\0" * validation.ICC_PROFILE_MAX_BYTES),  # too large to carry
        files.lab_profile(),  # not for RGB pixels
        b"not a colour profile" * 10,
    ],
    ids=["too-large", "lab", "garbage"],
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_colour_profile_that_cannot_serve_the_image_is_dropped(fmt, profile):
    checked = check_file("photo", files.image_bytes(fmt=fmt, icc_profile=profile), LIMITS)
    assert "icc_profile" not in Image.open(io.BytesIO(checked.data)).info


def test_a_colour_profile_holding_a_pdf_header_is_dropped():
    """Behind a large EXIF the header is past where PDF readers look; without the EXIF it
    would come to the front of the cleaned file, making it a PDF too."""
    profile = files.display_p3_profile(b"%PDF-1.7\n")
    original = files.image_bytes(fmt="JPEG", exif=b"Exif\0\0" + b"\0" * 3000, icc_profile=profile)
    assert b"%PDF-" not in original[: validation.PDF_HEADER_WINDOW]
    checked = check_file("photo.jpg", original, LIMITS)
    assert b"%PDF-" not in checked.data
    assert "icc_profile" not in Image.open(io.BytesIO(checked.data)).info


def test_a_photo_is_turned_upright_as_its_exif_said():
    checked = check_file("photo.jpg", files.jpeg_turned(40, 30), LIMITS)
    assert (checked.width, checked.height) == (30, 40)
    assert not Image.open(io.BytesIO(checked.data)).getexif()


def test_a_photo_whose_exif_holds_a_tag_of_the_wrong_type_is_still_taken():
    """XResolution written as text: turning the photo upright once meant writing that EXIF
    out again, which failed (a 500) on what the camera had written."""
    odd = (0x011A, 2, 4, b"abc\0")  # XResolution, a rational, as ASCII
    checked = check_file("photo.jpg", files.jpeg_turned(40, 30, odd), LIMITS)
    assert (checked.width, checked.height) == (30, 40)
    assert not Image.open(io.BytesIO(checked.data)).getexif()


def test_png_text_chunks_are_stripped():
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Private")
    checked = check_file("a.png", files.image_bytes(pnginfo=info), LIMITS)
    assert b"Jane Private" not in checked.data


def test_plain_bytes_appended_to_an_image_are_dropped():
    checked = check_file("a.png", files.image_bytes() + b"trailing secret bytes", LIMITS)
    assert b"trailing secret bytes" not in checked.data


def test_oversized_image_is_scaled_down_to_the_longest_side():
    checked = check_file("wide.png", files.image_bytes(3000, 1000), LIMITS)
    assert (checked.width, checked.height) == (1024, 341)
    assert Image.open(io.BytesIO(checked.data)).size == (1024, 341)


@pytest.mark.parametrize(
    "extra",
    [b"<html><script>alert(1)</script></html>", files.zip_bytes()],
    ids=["html", "zip"],
)
def test_image_carrying_another_file_is_refused(extra):
    assert refused("a.png", files.image_bytes() + extra) == "polyglot_file"


def test_image_that_is_also_a_pdf_is_refused():
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "%PDF-1.4 1 0 obj << >> endobj")
    assert refused("a.png", files.image_bytes(pnginfo=info)) == "polyglot_file"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_refused(fmt):
    data = files.image_bytes(300, 300, fmt, color=(10, 200, 90))
    assert refused(f"cut.{fmt.lower()}", data[: len(data) // 2]) == "invalid_image"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_an_image_cut_short_before_its_header_ends_says_so(fmt):
    data = files.image_bytes(300, 300, fmt)[:12]
    with pytest.raises(UploadRefused) as caught:
        check_file("photo.png", data, LIMITS)
    assert caught.value.code == "invalid_image"
    assert "is damaged or cut short" in caught.value.message


def test_png_declaring_a_huge_canvas_is_refused_before_decoding():
    assert refused("bomb.png", files.png_declaring(100_000, 100_000)) == "image_too_large"


def test_image_over_the_pixel_cap_is_refused():
    small = Limits(max_bytes=2_000_000, max_pixels=1000, max_side=1024, max_text_chars=100)
    assert refused("big.png", files.image_bytes(50, 50), small) == "image_too_large"


# The site's default caps: a 40-megapixel photo, shown at most 2048 pixels wide.
SITE = Limits(max_bytes=10 * 2**20, max_pixels=40_000_000, max_side=2048, max_text_chars=100)


@pytest.mark.parametrize(
    ("fmt", "mode", "size"),
    [("PNG", "RGBA", (4200, 4200)), ("PNG", "RGB", (6000, 3500)), ("WEBP", "RGB", (4000, 3000))],
)
def test_an_image_too_large_to_decode_here_is_refused(fmt, mode, size):
    """Under the pixel cap, but its decoded pixels (four bytes each, and a WebP's several
    copies while it is decoded) would hold hundreds of megabytes."""
    output = io.BytesIO()
    Image.new(mode, size, "white").save(output, fmt)
    with pytest.raises(UploadRefused) as caught:
        check_file(f"big.{fmt.lower()}", output.getvalue(), SITE)
    assert caught.value.code == "image_too_large"
    assert "save it as a JPEG" in caught.value.message


@pytest.mark.parametrize(
    ("fmt", "mode", "size"),
    [("PNG", "RGBA", (3840, 2160)), ("GIF", "P", (6000, 6000)), ("WEBP", "RGB", (2048, 1536))],
)
def test_a_large_image_that_decodes_within_bounds_is_taken(fmt, mode, size):
    output = io.BytesIO()
    Image.new(mode, size).save(output, fmt)
    checked = check_file(f"big.{fmt.lower()}", output.getvalue(), SITE)
    assert max(checked.width, checked.height) == min(2048, max(size))


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_a_large_jpeg_is_decoded_at_a_scale_near_the_shown_size(mode):
    """libjpeg decodes a 40-megapixel photo at half its size (a quarter of the memory), still
    larger than it is shown, so it loses nothing once scaled."""
    output = io.BytesIO()
    Image.new(mode, (7300, 5400)).save(output, "JPEG")
    image = validation._open_image("photo.jpg", output.getvalue(), SITE)
    assert image is not None and image.size == (3650, 2700)
    checked = check_file("photo.jpg", output.getvalue(), SITE)
    assert (checked.width, checked.height) == (2048, 1515)


def test_a_pdf_of_more_pages_than_the_chat_reads_is_refused_before_they_are_listed():
    """Listing 60,000 empty pages (a 9 MB file) took pypdf 8 s and 250 MB."""
    roomy = Limits(max_bytes=10 * 2**20, max_pixels=1000, max_side=64, max_text_chars=10**6)
    data = files.pdf_with_text(*["p"] * (validation.PDF_MAX_PAGES + 1))
    with pytest.raises(UploadRefused) as caught:
        check_file("slides.pdf", data, roomy)
    assert caught.value.code == "document_too_large"
    assert f"more than {validation.PDF_MAX_PAGES:,} pages" in caught.value.message
    assert check_file("slides.pdf", files.pdf_with_text(*["p"] * 300), roomy).pages == 300


def test_text_renamed_to_png_is_refused():
    assert refused("cat.png", b"just some text, not a picture") == "invalid_image"


def test_empty_file_is_refused():
    assert refused("empty.png", b"") == "empty_file"


def test_file_over_the_size_cap_is_refused():
    small = Limits(max_bytes=100, max_pixels=10_000, max_side=64, max_text_chars=100)
    assert refused("notes.txt", b"x" * 101, small) == "file_too_large"


@pytest.mark.parametrize(
    ("size", "said"),
    [
        (10 * 2**20 + 5, "10,485,765 bytes; files may be at most 10,485,760 bytes"),
        (12 * 2**20, "12.0 MB; files may be at most 10.0 MB"),
    ],
)
def test_a_size_refusal_never_reads_as_the_limit_itself(size, said):
    limits = Limits(max_bytes=10 * 2**20, max_pixels=10_000, max_side=64, max_text_chars=100)
    with pytest.raises(UploadRefused) as caught:
        check_file("big.txt", b"x" * size, limits)
    assert caught.value.message == f"big.txt is {said}."


def test_other_image_formats_are_refused():
    assert refused("old.bmp", files.image_bytes(fmt="BMP")) == "unsupported_type"


def test_unknown_kind_of_file_is_refused():
    assert refused("tool.exe", b"MZ\x90\x00 binary") == "unsupported_type"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("notes.md", "text/markdown"), ("data.csv", "text/csv"), ("app.py", "text/plain")],
)
def test_text_documents_keep_their_text(name, content_type):
    data = b"# Title\nfirst,second\nprint('ok')\n"
    checked = check_file(name, data, LIMITS)
    assert (checked.kind, checked.content_type) == ("document", content_type)
    assert checked.text == data.decode()
    assert checked.data == data


@pytest.mark.parametrize("name", [".gitignore", ".env.example", "local.env.example"])
def test_text_files_named_by_the_endings_offered_are_taken(name):
    # The file picker offers these (accepted_suffixes), so the server takes them.
    assert name.rsplit("/", 1)[-1].endswith(tuple(validation.accepted_suffixes()))
    checked = check_file(name, b"node_modules/\nSECRET=changeme\n", LIMITS)
    assert (checked.kind, checked.content_type) == ("document", "text/plain")


@pytest.mark.parametrize("name", ["photo.jpg", "photo.jpeg", "photo.jpe", "photo.jfif"])
def test_each_jpeg_ending_is_offered_and_taken_as_a_jpeg(name):
    assert name.endswith(tuple(validation.accepted_suffixes()))
    checked = check_file(name, files.image_bytes(64, 48, "JPEG"), LIMITS)
    assert (checked.kind, checked.content_type) == ("image", "image/jpeg")


@pytest.mark.parametrize(
    "text",
    [
        b"P1 priorities for the week\nShip the release\n",  # how a PBM image starts
        b"P6 is the plan\n",  # a PPM's
        b"BMW service notes\nOil changed\n",  # a BMP's
    ],
)
def test_a_note_starting_like_another_image_format_is_text(text):
    """Pillow reads dozens of formats, some known by two letters: a text file is read as an
    image only in a format taken here."""
    checked = check_file("notes.txt", text, LIMITS)
    assert (checked.kind, checked.content_type) == ("document", "text/plain")
    assert checked.text.startswith(text.decode().split("\n")[0])


def test_a_png_named_as_text_is_still_taken_as_the_image_it_is():
    checked = check_file("notes.txt", files.image_bytes(64, 48), LIMITS)
    assert (checked.kind, checked.content_type) == ("image", "image/png")


def test_binary_named_as_text_is_refused():
    assert refused("notes.txt", b"\x00\x01\x02binary\xff\xfe") == "unsupported_type"


def test_pdf_text_is_extracted_with_page_numbers():
    checked = check_file("report.pdf", files.pdf_with_text("Revenue grew", "Costs fell"), LIMITS)
    assert (checked.kind, checked.content_type, checked.pages) == (
        "document",
        "application/pdf",
        2,
    )
    assert checked.text == "[Page 1]\nRevenue grew\n\n[Page 2]\nCosts fell"


def test_scanned_pdf_is_refused_clearly():
    code = refused("scan.pdf", files.scanned_pdf())
    assert code == "pdf_has_no_text"


def test_broken_pdf_is_refused():
    assert refused("broken.pdf", b"%PDF-1.4\nnot really a pdf") == "invalid_pdf"


@pytest.mark.parametrize("before", [b"\n", b"\xef\xbb\xbf", b"\r\n\r\n"])
def test_a_pdf_with_bytes_before_its_header_is_read(before):
    """PDF readers look for the header in the first kilobyte; some files start with a blank
    line or a byte order mark, and open everywhere else."""
    checked = check_file("report.pdf", before + files.pdf_with_text("Revenue grew"), LIMITS)
    assert (checked.kind, checked.content_type, checked.pages) == ("document", "application/pdf", 1)
    assert checked.text == "[Page 1]\nRevenue grew"


def test_a_file_named_pdf_that_is_not_one_is_refused_as_a_pdf():
    with pytest.raises(UploadRefused) as caught:
        check_file("report.pdf", b"just some words", LIMITS)
    assert caught.value.code == "invalid_pdf"
    assert caught.value.message == "report.pdf is not a readable PDF: save it again and retry."


def test_text_mentioning_a_pdf_header_stays_text():
    checked = check_file("make_pdf.py", b'HEADER = b"%PDF-1.4"\n', LIMITS)
    assert (checked.kind, checked.content_type) == ("document", "text/plain")


def test_password_protected_pdf_is_refused():
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(files.pdf_with_text("Secret"))))
    writer.encrypt("hunter2")
    output = io.BytesIO()
    writer.write(output)
    assert refused("locked.pdf", output.getvalue()) == "pdf_encrypted"


def test_a_page_with_too_many_operations_is_refused_without_reading_it_all():
    """Four million operators compress to a few kilobytes; reading them all took minutes."""
    bomb = b"BT /F1 12 Tf 10 10 Td " + b"(a) Tj " * 2_000_000 + b"ET"
    data = files.pdf_with_contents(*[bomb] * 20)
    assert len(data) < 500_000
    with pytest.raises(UploadRefused) as caught:
        check_file("bomb.pdf", data, LIMITS)
    assert caught.value.code == "document_too_large"
    assert "too complex to read here" in caught.value.message


def test_a_page_that_unpacks_to_megabytes_of_one_operand_is_refused():
    """Few operations, but one hex string of millions of digits: a 10 KB file that unpacks to
    75 MB took half a minute of CPU to parse before any budget was looked at."""
    page = b"BT /F1 12 Tf 10 10 Td (Revenue grew) Tj ET <" + b"41" * 4_000_000 + b"> xx"
    data = files.pdf_with_contents(page)
    assert len(data) < 20_000
    with pytest.raises(UploadRefused) as caught:
        check_file("bomb.pdf", data, LIMITS)
    assert caught.value.code == "document_too_large"
    assert "too complex to read here" in caught.value.message


def test_a_page_of_text_well_under_the_unpacked_cap_is_read():
    page = b"BT /F1 12 Tf 10 10 Td (Revenue grew) Tj ET <" + b"41" * 500_000 + b"> xx"
    checked = check_file("report.pdf", files.pdf_with_contents(page), LIMITS)
    assert "Revenue grew" in checked.text


def test_a_pdf_stops_being_read_once_its_text_is_too_long():
    pages = ["x" * 900] * 30
    with pytest.raises(UploadRefused) as caught:
        check_file("long.pdf", files.pdf_with_text(*pages), LIMITS)
    assert caught.value.code == "document_too_large"
    assert "holds more than 5,000 characters" in caught.value.message


def test_a_pdf_past_its_cpu_budget_is_refused(monkeypatch):
    monkeypatch.setattr(validation, "PDF_CPU_SECONDS", -1.0)
    assert refused("report.pdf", files.pdf_with_text("Revenue grew")) == "document_too_large"


def test_a_phone_jpeg_with_more_pictures_is_taken_as_its_first():
    checked = check_file("photo.jpg", files.multi_picture_jpeg(40, 30), LIMITS)
    assert (checked.kind, checked.content_type) == ("image", "image/jpeg")
    picture = Image.open(io.BytesIO(checked.data))
    assert picture.format == "JPEG" and picture.size == (40, 30)
    assert picture.getpixel((20, 15))[0] > 150  # the first picture, red


def test_document_longer_than_any_context_is_refused():
    assert refused("huge.txt", b"word " * 2000) == "document_too_large"


@pytest.mark.parametrize(
    ("given", "kept"),
    [("../../etc/notes.txt", "notes.txt"), ('C:\\Users\\me\\a"<b>.md', "ab.md"), ("", "file")],
)
def test_names_lose_paths_and_markup(given, kept):
    assert clean_name(given) == kept


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("invoice\u202efdp.txt", "invoicefdp.txt"),  # would read "invoicetxt.pdf"
        ("report\u2067gpj.\u2069md", "reportgpj.md"),
        ("a\u202a\u202b\u202c\u202d\u2066\u2068b.csv", "ab.csv"),
        ("next\x85line.txt", "nextline.txt"),  # a C1 control: a line break to some readers
    ],
)
def test_names_lose_marks_that_change_how_they_read(given, kept):
    """A file's name is shown to the team's reviewers, and in a share, beside its download:
    a direction override would show a .txt as a .pdf."""
    assert clean_name(given) == kept
