"""Files the upload tests send, built here: images by Pillow, PDFs written object by object."""

import io
import struct
import zipfile
import zlib

from PIL import Image, ImageCms


def image_bytes(width=64, height=48, fmt="PNG", color=(200, 30, 30), **save) -> bytes:
    output = io.BytesIO()
    mode = "RGB" if fmt == "JPEG" else "RGBA"
    Image.new(mode, (width, height), color).save(output, fmt, **save)
    return output.getvalue()


def display_p3_profile(tail: bytes = b"") -> bytes:
    """An ICC colour profile for Display P3 (the primaries of Apple's, a 2.2 gamma), written
    tag by tag as ICC.1 says, with any bytes given after its tags (its size counts them)."""

    def number(value: float) -> bytes:  # s15Fixed16
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + number(x) + number(y) + number(z)

    name = b"Display P3\0"
    description = b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 79
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"
    tags = [
        (b"desc", description),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
        (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)),
        (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\0\0\0\0No copyright\0\0\0\0"),
    ]
    start = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", start + len(body) + len(tail))
        + b"\0\0\0\0\x02\x10\0\0mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + number(0.9642)
        + number(1.0)
        + number(0.8249)
        + b"\0" * 48
    )
    return header + table + body + tail


def lab_profile() -> bytes:
    """A real ICC profile, for Lab colours: not one an RGB or grey image can be read with."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def jpeg_with_gps(width=40, height=30) -> bytes:
    """A photo whose EXIF holds a camera make and a GPS position."""
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}  # GPSInfo
    return image_bytes(width, height, "JPEG", exif=exif)


def jpeg_turned(width=40, height=30, *odd_tags: tuple[int, int, int, bytes]) -> bytes:
    """A photo stored sideways whose EXIF says to turn it upright (Orientation 6), with any
    other IFD entries given as (tag, type, count, value of at most 4 bytes), written as a
    camera writes them, whatever Pillow would make of them."""
    entries = [(0x0112, 3, 1, struct.pack("<H", 6)), *odd_tags]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
    exif = b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    return image_bytes(width, height, "JPEG", exif=exif)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header that claims a huge canvas, followed by a tiny image stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def zip_bytes() -> bytes:
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w") as archive:
        archive.writestr("payload.txt", "hidden")
    return output.getvalue()


def pdf_with_text(*pages: str) -> bytes:
    """A PDF with one line of Helvetica text per page, which pypdf can read back."""
    streams = []
    for text in pages:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        streams.append(f"BT /F1 18 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1"))
    return pdf_with_contents(*streams)


def pdf_with_contents(*streams: bytes) -> bytes:
    """A PDF whose pages draw with these content streams (font F1 is Helvetica), each
    Flate-compressed as most PDFs' are."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(streams)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(streams)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for index, content in enumerate(streams):
        stream = zlib.compress(content)
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
                f" /Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * index} 0 R >>"
            ).encode()
        )
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream"
        )
    output = io.BytesIO()
    output.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(output.tell())
        output.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = output.tell()
    output.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        output.write(b"%010d 00000 n \n" % offset)
    output.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return output.getvalue()


def scanned_pdf() -> bytes:
    """A PDF whose page is only a picture, as a scanner makes them."""
    output = io.BytesIO()
    Image.new("RGB", (200, 100), (255, 255, 255)).save(output, "PDF")
    return output.getvalue()


def multi_picture_jpeg(width=40, height=30) -> bytes:
    """A JPEG with a second picture after the first (MPF), as phone cameras write them."""
    first = Image.new("RGB", (width, height), (200, 30, 30))
    second = Image.new("RGB", (width, height), (30, 200, 30))
    output = io.BytesIO()
    first.save(output, "MPO", save_all=True, append_images=[second])
    return output.getvalue()
