"""What processing makes of real bytes: formats, metadata, thumbnails, hostile images."""

from __future__ import annotations

import io

import pillow_heif
import pytest
from django.test import override_settings
from PIL import Image, ImageSequence

from apps.content.services.files import (
    content_type_detect,
    content_type_normalize,
    filename_sanitize,
    storage_name_for,
)
from tests.content.test_files_api import (
    GPS_IFD,
    PDF_BYTES,
    ZIP_BYTES,
    body_of,
    download,
    jpeg_with_gps,
    png_with_alpha,
    upload_file,
)


def _exif_with_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "ACME"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0)})
    return exif


def heic_with_gps(size: tuple[int, int] = (640, 480)) -> bytes:
    pillow_heif.register_heif_opener()
    image = Image.new("RGB", size, (10, 160, 90))
    out = io.BytesIO()
    image.save(out, format="HEIF", exif=_exif_with_gps().tobytes(), quality=60)
    return out.getvalue()


def webp_with_gps(size: tuple[int, int] = (500, 500)) -> bytes:
    image = Image.new("RGB", size, (90, 90, 200))
    out = io.BytesIO()
    image.save(out, format="WEBP", exif=_exif_with_gps())
    return out.getvalue()


def animated_gif(frames: int = 3) -> bytes:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    images = [Image.new("RGB", (120, 80), colors[n % len(colors)]) for n in range(frames)]
    out = io.BytesIO()
    images[0].save(
        out, format="GIF", save_all=True, append_images=images[1:], duration=120, loop=0, comment=b"secret"
    )
    return out.getvalue()


def minimal_mp4() -> bytes:
    ftyp = (24).to_bytes(4, "big") + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2"
    mdat = (16).to_bytes(4, "big") + b"mdat" + b"\x00" * 8
    return ftyp + mdat


# --- Detection by magic numbers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (jpeg_with_gps((20, 20), 1), "image/jpeg"),
        (png_with_alpha((10, 10)), "image/png"),
        (animated_gif(2), "image/gif"),
        (webp_with_gps((10, 10)), "image/webp"),
        (heic_with_gps((64, 64)), "image/heic"),
        (PDF_BYTES, "application/pdf"),
        (ZIP_BYTES, "application/zip"),
        (minimal_mp4(), "video/mp4"),
        ((20).to_bytes(4, "big") + b"ftypqt  " + b"\x00" * 8, "video/quicktime"),
        ((20).to_bytes(4, "big") + b"ftypavif" + b"\x00" * 4 + b"mif1", "image/avif"),
        (b"\x7fELF\x02\x01\x01", "application/x-executable"),
        (b"hello world", None),
    ],
    ids=["jpeg", "png", "gif", "webp", "heic", "pdf", "zip", "mp4", "mov", "avif", "elf", "text"],
)
def test_content_type_is_detected_from_the_bytes(data, expected):
    assert content_type_detect(data[:4096]) == expected


def test_declared_types_are_normalised():
    assert content_type_normalize("Image/JPG; charset=binary") == "image/jpeg"
    assert content_type_normalize("image/heif") == "image/heic"
    assert content_type_normalize(None) == ""


def test_filenames_are_sanitised():
    assert filename_sanitize("../../etc/passwd") == "passwd"
    assert filename_sanitize("C:\\Users\\me\\photo.jpg") == "photo.jpg"
    assert filename_sanitize("bad\x00name\n.txt") == "badname.txt"
    assert filename_sanitize("..") == "file"
    assert len(filename_sanitize("a" * 400 + ".jpeg")) == 255
    assert filename_sanitize("a" * 400 + ".jpeg").endswith(".jpeg")
    assert storage_name_for("Grüße & <Küsse>.jpg") == "Grue_Kusse_.jpg"
    assert storage_name_for("../x/y.jpg") == "x_y.jpg"
    assert storage_name_for("日本.png") == "png"


# --- Formats through the whole flow ---------------------------------------------------------


@pytest.mark.django_db
def test_heic_is_stripped_and_gets_jpeg_thumbnails(auth_client, django_capture_on_commit_callbacks):
    original = heic_with_gps()
    pillow_heif.register_heif_opener()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)

    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        original,
        filename="IMG_0001.HEIC",
        content_type="image/heic",
    )

    assert body["status"] == "ready", body
    assert body["content_type"] == "image/heic"
    stored = Image.open(io.BytesIO(body_of(download(body["url"]))))
    assert stored.size == (640, 480)
    assert not stored.getexif().get_ifd(GPS_IFD)
    assert not stored.info.get("exif")
    small = Image.open(io.BytesIO(body_of(download(body["thumbnails"]["small"]))))
    assert small.format == "JPEG" and small.size == (256, 192)


@pytest.mark.django_db
def test_webp_metadata_is_stripped(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        webp_with_gps(),
        filename="a.webp",
        content_type="image/webp",
    )

    assert body["status"] == "ready"
    data = body_of(download(body["url"]))
    stored = Image.open(io.BytesIO(data))
    assert stored.format == "WEBP"
    assert not stored.info.get("exif") and b"ACME" not in data


@pytest.mark.django_db
def test_animated_gif_keeps_its_frames_and_loses_comments(auth_client, django_capture_on_commit_callbacks):
    original = animated_gif(3)
    assert Image.open(io.BytesIO(original)).n_frames == 3

    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        original,
        filename="a.gif",
        content_type="image/gif",
    )

    assert body["status"] == "ready"
    data = body_of(download(body["url"]))
    stored = Image.open(io.BytesIO(data))
    assert stored.format == "GIF"
    assert len(list(ImageSequence.Iterator(stored))) == 3
    assert b"secret" not in data
    assert Image.open(io.BytesIO(body_of(download(body["thumbnails"]["small"])))).size == (120, 80)


@pytest.mark.django_db
def test_mp4_is_accepted_by_its_ftyp_box(auth_client, django_capture_on_commit_callbacks):
    data = minimal_mp4()

    body = upload_file(
        auth_client, django_capture_on_commit_callbacks, data, filename="clip.mp4", content_type="video/mp4"
    )

    assert body["status"] == "ready"
    assert body["thumbnails"] == {"small": None, "medium": None}
    assert body_of(download(body["url"])) == data


@pytest.mark.django_db
def test_png_declared_as_jpeg_is_rejected(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client, django_capture_on_commit_callbacks, png_with_alpha((20, 20)), filename="a.jpg"
    )

    assert body["status"] == "rejected"
    assert body["rejection_reason"] == "content_type_mismatch"


@pytest.mark.django_db
def test_decompression_bomb_is_rejected(auth_client, django_capture_on_commit_callbacks):
    image = Image.new("L", (4000, 4000))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)  # a few KB that decode to 16 megapixels

    with override_settings(FILE_IMAGE_MAX_PIXELS=1_000_000):
        body = upload_file(
            auth_client,
            django_capture_on_commit_callbacks,
            out.getvalue(),
            filename="b.png",
            content_type="image/png",
        )

    assert body["status"] == "rejected"
    assert body["rejection_reason"] == "image_too_large"


@pytest.mark.django_db
def test_avatar_must_really_be_an_image(auth_client, django_capture_on_commit_callbacks):
    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        PDF_BYTES,
        filename="me.png",
        content_type="image/png",
        purpose="avatar",
    )

    assert body["status"] == "rejected"
    assert body["rejection_reason"] == "file_type_not_allowed"


@pytest.mark.django_db
def test_palette_png_keeps_its_transparent_colour(auth_client, django_capture_on_commit_callbacks):
    image = Image.new("P", (400, 200), 0)
    image.putpalette([255, 255, 255, 200, 30, 30] + [0, 0, 0] * 254)
    image.paste(1, (0, 0, 200, 200))
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=0)

    body = upload_file(
        auth_client,
        django_capture_on_commit_callbacks,
        out.getvalue(),
        filename="p.png",
        content_type="image/png",
    )

    assert body["status"] == "ready"
    stored = Image.open(io.BytesIO(body_of(download(body["url"]))))
    assert stored.info.get("transparency") == 0
    small = Image.open(io.BytesIO(body_of(download(body["thumbnails"]["small"]))))
    assert small.format == "PNG" and small.mode == "RGBA"
    assert small.getpixel((250, 50))[3] == 0  # the transparent half stays transparent
    assert small.getpixel((10, 50))[3] == 255
