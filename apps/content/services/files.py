"""Writes of files: create with a signed upload, receive, process, delete, clean up.

The life of a file: ``file_create`` checks the declared type and size against
the purpose's limits and hands out a signed, expiring upload (an S3 presigned
POST when files live in S3, otherwise a signed PUT to the local upload
endpoint, :func:`file_upload_receive`). ``file_complete`` queues
``file_process`` (on commit), which trusts nothing the client said: it
checks the real size and the real type by magic numbers, re-encodes images
without their metadata (EXIF with GPS, XMP, comments; orientation applied),
makes ``small``/``medium`` thumbnails and marks the file ``ready`` or
``rejected`` with a reason. Files nobody references (a document's ``file``
field, an avatar: see :func:`file_mark_referenced`) are deleted by
:func:`files_cleanup_unreferenced` after ``FILE_UNREFERENCED_TTL_HOURS``.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import tempfile
import unicodedata
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.base import File as DjangoFile
from django.core.files.storage import Storage
from django.db import transaction
from django.utils import timezone

from apps.content.models.files import File
from apps.content.selectors.files import (
    _valid_ids,
    file_describe,
    file_get_for_user,
    file_local_upload_url,
    file_signature_verify,
    file_storage,
    file_storage_is_s3,
    s3_object_key,
    s3_presign_client,
    url_expiry,
)
from apps.core.exceptions import Conflict, KeelError, NotFound, PayloadTooLarge, ValidationFailed

logger = structlog.get_logger(__name__)

_CHUNK = 1024 * 1024
_HEAD_BYTES = 4096
_REQUEUE_AFTER = timedelta(minutes=2)


# --- Errors -------------------------------------------------------------------


class FileTypeNotAllowed(KeelError):
    status_code = 400
    code = "file_type_not_allowed"
    title = "File type not allowed"
    default_detail = "This type of file is not allowed here."


class FileTooLarge(KeelError):
    status_code = 400
    code = "file_too_large"
    title = "File too large"
    default_detail = "The file is larger than allowed."


class UploadTooLarge(PayloadTooLarge):
    code = "file_too_large"
    title = "File too large"
    default_detail = "The upload is larger than the declared size or the limit."


class UploadLengthRequired(KeelError):
    status_code = 411
    code = "length_required"
    title = "Length required"
    default_detail = "Send the upload with a Content-Length header."


class UploadClosed(Conflict):
    code = "upload_closed"
    title = "Upload closed"
    default_detail = "This file was already completed; create a new file to upload again."


class UploadMissing(Conflict):
    code = "upload_missing"
    title = "Nothing uploaded"
    default_detail = "No bytes have been uploaded for this file yet; upload first, then complete."


class FileRejected(Exception):
    """Processing found the bytes unacceptable (not a transient error)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


# --- Purposes, types, names ---------------------------------------------------

_CONTENT_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/heif": "image/heic",
    "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heic",
}
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/heic"})


def content_type_normalize(value: str | None) -> str:
    """``Image/JPG; charset=x`` -> ``image/jpeg``: lower case, no parameters, one name per type."""
    base = (value or "").split(";", 1)[0].strip().lower()
    return _CONTENT_TYPE_ALIASES.get(base, base)


@dataclass(frozen=True)
class PurposePolicy:
    name: str
    max_size: int
    allowed_types: frozenset[str]


def file_purpose_policy(*, purpose: str) -> PurposePolicy:
    """The limits of one purpose from ``FILE_PURPOSES``; 400 for an unknown purpose."""
    config: Any = settings.FILE_PURPOSES.get(purpose)
    if not isinstance(config, dict):
        known = ", ".join(sorted(settings.FILE_PURPOSES))
        raise ValidationFailed(errors={"purpose": [f"Unknown purpose. Use one of: {known}."]})
    allowed = frozenset(content_type_normalize(t) for t in config.get("allowed_types", []))
    return PurposePolicy(name=purpose, max_size=int(config["max_size"]), allowed_types=allowed)


_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def filename_sanitize(value: str) -> str:
    """The name shown back to clients: no directories, no control characters, at most 255."""
    name = unicodedata.normalize("NFC", value).replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL_CHARS.sub("", name).strip().strip(".") or "file"
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 255 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 16 else name[:255]
    return name


def storage_name_for(filename: str) -> str:
    """A storage-safe version of the name (ASCII letters, digits, ``._-``; 100 characters)."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    safe = _UNSAFE_KEY_CHARS.sub("_", ascii_name).strip("._") or "file"
    if len(safe) > 100:
        stem, dot, ext = safe.rpartition(".")
        safe = (stem[: 99 - len(ext)] + "." + ext) if dot and len(ext) <= 16 else safe[:100]
    return safe


# --- Magic numbers ---------------------------------------------------------------

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"PK\x07\x08", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"\x7fELF", "application/x-executable"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x1a\x45\xdf\xa3", "video/webm"),
    (b"OggS", "application/ogg"),
    (b"\xca\xfe\xba\xbe", "application/java-vm"),
)
_RIFF_TYPES = {b"WEBP": "image/webp", b"AVI ": "video/x-msvideo", b"WAVE": "audio/wav"}
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_MP4_BRANDS = frozenset(
    {
        b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"mp41", b"mp42",
        b"mp71", b"avc1", b"dash", b"mmp4", b"MSNV", b"M4V ", b"f4v ", b"NDSC", b"NDSH",
    }
)  # fmt: skip
_ISO_OTHER_BRANDS = {b"qt  ": "video/quicktime", b"M4A ": "audio/mp4", b"3gp4": "video/3gpp"}


def _iso_bmff_type(head: bytes) -> str | None:
    """The type of an ISO base media file (MP4, HEIC, AVIF, MOV) from its ``ftyp`` box."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    end = min(max(box_size, 16), len(head))
    brands = {major} | {head[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "image/avif"
    if major in _HEIC_BRANDS or (major in _HEIF_BRANDS and brands & (_HEIC_BRANDS | _HEIF_BRANDS)):
        return "image/heic"
    if major in _MP4_BRANDS:
        return "video/mp4"
    if major in _ISO_OTHER_BRANDS:
        return _ISO_OTHER_BRANDS[major]
    if brands & _MP4_BRANDS:
        return "video/mp4"
    return "application/octet-stream"


def content_type_detect(head: bytes) -> str | None:
    """The type that the first bytes of a file prove, or ``None`` when no signature matches."""
    for signature, content_type in _SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[0:4] == b"RIFF" and head[8:12] in _RIFF_TYPES:
        return _RIFF_TYPES[head[8:12]]
    return _iso_bmff_type(head)


_TEXT_CONTROL_ALLOWED = frozenset(b"\t\n\r\x0b\x0c")
_TEXT_REJECT = bytes(b for b in range(0x20) if b not in _TEXT_CONTROL_ALLOWED) + b"\x7f"


class _TextCheck:
    """Streaming check that bytes are UTF-8 text without binary control characters."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.ok = True

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        if not self.ok:
            return
        if chunk.translate(None, _TEXT_REJECT) != chunk:
            self.ok = False
            return
        try:
            self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError:
            self.ok = False


# --- Storage helpers ---------------------------------------------------------------


def _storage_write(storage: Storage, key: str, content: Any, content_type: str) -> None:
    """Write ``content`` at exactly ``key``, replacing what is there."""
    if not file_storage_is_s3(storage) and storage.exists(key):
        # Local storages pick another name instead of overwriting.
        storage.delete(key)
    content.content_type = content_type  # S3Storage sends it as the object's Content-Type
    saved = storage.save(key, content)
    if saved != key:
        storage.delete(saved)
        raise OSError(f"storage wrote {saved!r} instead of {key!r}; retrying")


def _storage_delete(storage: Storage, key: str) -> None:
    if not key:
        return
    try:
        storage.delete(key)
    except FileNotFoundError:
        return


def _file_keys(file: File) -> list[str]:
    keys = [file.upload_key, file.stored_key]
    keys += [str(thumb.get("key", "")) for thumb in (file.thumbnails or {}).values() if thumb]
    return sorted({key for key in keys if key})


def file_objects_delete(*, keys: Iterable[str]) -> int:
    """Delete stored objects; missing ones are fine, storage errors propagate (for a retry)."""
    storage = file_storage()
    deleted = 0
    for key in keys:
        _storage_delete(storage, key)
        deleted += 1
    return deleted


def _storage_delete_after_commit(keys: Iterable[str]) -> None:
    """Queue the deletion of stored objects for when the transaction commits.

    A job with retries does it, so a storage hiccup does not leave objects
    behind; ``robust`` keeps a broker outage from failing a request that has
    already committed (the objects of a deleted file are deleted again when
    its tombstone is purged).
    """
    wanted = sorted({key for key in keys if key})
    if not wanted:
        return

    def queue() -> None:
        from apps.content.tasks_files import file_objects_delete

        file_objects_delete.delay(wanted)

    transaction.on_commit(queue, robust=True)


def _process_after_commit(file_id: str) -> None:
    def queue() -> None:
        from apps.content.tasks_files import file_process

        file_process.delay(file_id)

    transaction.on_commit(queue, robust=True)


# --- Create, upload, complete ----------------------------------------------------


@dataclass(frozen=True)
class FileCreated:
    file: File
    upload: dict[str, Any]
    expires_at: datetime


def _upload_limit(file: File, policy: PurposePolicy) -> int:
    return min(file.declared_size, policy.max_size)


def file_upload_target(*, file: File) -> tuple[dict[str, Any], datetime]:
    """Where and how the client sends the bytes of ``file``, and until when it may."""
    policy = file_purpose_policy(purpose=file.purpose)
    ttl = settings.FILE_UPLOAD_TTL_SECONDS
    storage = file_storage()
    if file_storage_is_s3(storage):
        expires_at = timezone.now() + timedelta(seconds=ttl)
        post = s3_presign_client(storage).generate_presigned_post(
            Bucket=storage.bucket_name,  # type: ignore[attr-defined]
            Key=s3_object_key(storage, file.upload_key),
            Fields={"Content-Type": file.declared_content_type},
            Conditions=[
                {"Content-Type": file.declared_content_type},
                ["content-length-range", 0, _upload_limit(file, policy)],
            ],
            ExpiresIn=ttl,
        )
        return {"method": "POST", "url": post["url"], "fields": post["fields"]}, expires_at
    expires = url_expiry(ttl=ttl)
    upload = {
        "method": "PUT",
        "url": file_local_upload_url(file_id=str(file.pk), expires=expires),
        "headers": {"Content-Type": file.declared_content_type},
    }
    return upload, datetime.fromtimestamp(expires, tz=UTC)


def file_create(
    *, owner: Any, filename: str, content_type: str, size: int, purpose: str | None = None
) -> FileCreated:
    """Register a file the owner is about to upload; 400 when type or size breaks the limits.

    The size limit is inclusive: a file of exactly ``max_size`` bytes is allowed.
    """
    purpose = purpose or settings.FILE_DEFAULT_PURPOSE
    policy = file_purpose_policy(purpose=purpose)
    declared_type = content_type_normalize(content_type)
    if declared_type not in policy.allowed_types:
        allowed = ", ".join(sorted(policy.allowed_types))
        raise FileTypeNotAllowed(
            f"Files of type {declared_type or 'unknown'} are not allowed for {purpose}; allowed: {allowed}.",
            extra={"allowed_types": sorted(policy.allowed_types)},
        )
    if size > policy.max_size:
        raise FileTooLarge(
            f"The file is {size} bytes; files for {purpose} may have at most {policy.max_size} bytes.",
            extra={"max_size": policy.max_size},
        )
    display_name = filename_sanitize(filename)
    prefix = uuid.uuid4().hex
    file = File.objects.create(
        owner=owner,
        purpose=purpose,
        filename=display_name,
        declared_content_type=declared_type,
        declared_size=size,
        storage_prefix=prefix,
        upload_key=f"uploads/{prefix}/{storage_name_for(display_name)}",
    )
    upload, expires_at = file_upload_target(file=file)
    logger.info("file_created", file_id=str(file.pk), purpose=purpose, declared_size=size)
    return FileCreated(file=file, upload=upload, expires_at=expires_at)


def _live_file_or_404(file_id: str) -> File:
    ids = _valid_ids([file_id])
    file = File.objects.filter(pk=ids[0], deleted_at__isnull=True).first() if ids else None
    if file is None:
        raise NotFound("No such file.")
    return file


def file_upload_receive(
    *,
    file_id: str,
    expires: str,
    signature: str,
    content_type: str | None,
    content_length: str | None,
    stream: Any,
) -> File:
    """The signed local upload: the signature is the capability (no bearer token).

    Refuses a tampered or expired link (403), a Content-Type other than the
    declared one (400), and any body larger than the declared size or the
    purpose's limit (413), counted while streaming. Uploading again before
    ``complete`` replaces the bytes, so a retried upload is harmless.
    """
    file_signature_verify(
        action="upload", file_id=file_id, variant="original", expires=expires, signature=signature
    )
    file = _live_file_or_404(file_id)
    if file.completed_at is not None:
        raise UploadClosed()
    if content_type_normalize(content_type) != file.declared_content_type:
        raise FileTypeNotAllowed(
            f"Send the upload with Content-Type: {file.declared_content_type}, as declared."
        )
    limit = _upload_limit(file, file_purpose_policy(purpose=file.purpose))
    if content_length is None or content_length == "":
        raise UploadLengthRequired()
    if not content_length.isdigit():
        raise ValidationFailed(errors={"Content-Length": ["Must be a number of bytes."]})
    declared_length = int(content_length)
    if declared_length > limit:
        raise UploadTooLarge(f"The upload may have at most {limit} bytes.", extra={"max_size": limit})
    received = 0
    with tempfile.SpooledTemporaryFile(max_size=_CHUNK) as buffer:
        while True:
            chunk = stream.read(64 * 1024)
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                raise UploadTooLarge(f"The upload may have at most {limit} bytes.", extra={"max_size": limit})
            buffer.write(chunk)
        if received != declared_length:
            raise ValidationFailed(
                errors={"body": [f"Received {received} bytes, but Content-Length said {declared_length}."]}
            )
        buffer.seek(0)
        with transaction.atomic():
            file = File.objects.select_for_update().get(pk=file.pk)
            if file.deleted_at is not None:
                raise NotFound("No such file.")
            if file.completed_at is not None:
                raise UploadClosed()
            _storage_write(file_storage(), file.upload_key, DjangoFile(buffer), file.declared_content_type)
            file.uploaded_at = timezone.now()
            file.save(update_fields=["uploaded_at", "updated_at"])
    logger.info("file_uploaded", file_id=str(file.pk), size=received)
    return file


def file_complete(*, file_id: str, user: Any) -> File:
    """The client says the upload is done: queue processing (on commit).

    Completing again is answered with the file as it is; it queues the job
    again only when the file has been waiting longer than
    ``_REQUEUE_AFTER`` (the first job may never have been queued), which is
    harmless because processing is idempotent. 404 for a file that is not
    the caller's; 409 ``upload_missing`` when no bytes have arrived (the
    client can still upload and complete again).
    """
    file = file_get_for_user(file_id=file_id, user=user)
    if file.owner_id != user.pk:
        raise NotFound("No such file.")
    with transaction.atomic():
        file = File.objects.select_for_update().get(pk=file.pk)
        if file.deleted_at is not None:
            raise NotFound("No such file.")
        if file.completed_at is not None:
            waiting = (
                file.status == File.Status.PENDING and file.completed_at < timezone.now() - _REQUEUE_AFTER
            )
            if waiting:
                _process_after_commit(str(file.pk))
            return file
        if not file_storage().exists(file.upload_key):
            raise UploadMissing()
        file.completed_at = timezone.now()
        file.save(update_fields=["completed_at", "updated_at"])
        _process_after_commit(str(file.pk))
    return file


# --- Processing ----------------------------------------------------------------------


@dataclass
class _Rendition:
    data: bytes
    content_type: str
    width: int
    height: int


@dataclass
class _ProcessedImage:
    original: _Rendition
    thumbnails: dict[str, _Rendition] = field(default_factory=dict)


_PIL_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "image/heic": "HEIF",
}
_MAX_FRAMES = 1000


def _pil() -> Any:
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    Image.MAX_IMAGE_PIXELS = settings.FILE_IMAGE_MAX_PIXELS
    return Image


def _fresh_copy(frame: Any) -> Any:
    """The pixels of ``frame`` in a new image that carries no metadata at all."""
    from PIL import Image

    clean = Image.frombytes(frame.mode, frame.size, frame.tobytes())
    if frame.mode in ("P", "PA"):
        palette = frame.getpalette()
        if palette:
            clean.putpalette(palette)
    if "transparency" in frame.info:
        # Which colour is transparent is part of the picture, not metadata.
        clean.info["transparency"] = frame.info["transparency"]
    return clean


def _has_alpha(image: Any) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def _encode_original(frames: list[Any], source: Any, pil_format: str) -> bytes:
    out = io.BytesIO()
    first = frames[0]
    params: dict[str, Any] = {}
    icc = source.info.get("icc_profile")
    if icc and pil_format in ("JPEG", "PNG", "WEBP"):
        params["icc_profile"] = icc
    if "transparency" in source.info and first.mode in ("P", "L", "RGB") and pil_format in ("PNG", "GIF"):
        params["transparency"] = source.info["transparency"]
    if pil_format == "JPEG":
        if first.mode not in ("RGB", "L", "CMYK"):
            frames = [first.convert("RGB")]
        params.update(quality=90, optimize=True)
    elif pil_format == "WEBP":
        params.update(quality=90)
    elif pil_format == "HEIF":
        if first.mode not in ("RGB", "RGBA", "L"):
            frames = [first.convert("RGBA" if _has_alpha(first) else "RGB")]
        params.update(quality=90, exif=None, xmp=None)
    if len(frames) > 1:
        params.update(
            save_all=True,
            append_images=frames[1:],
            duration=[frame.info.get("duration", 100) for frame in frames],
            loop=source.info.get("loop", 0),
        )
    frames[0].save(out, format=pil_format, **params)
    return out.getvalue()


def _thumbnail(image: Any, longest_side: int) -> _Rendition:
    from PIL import Image

    thumb = image.copy()
    thumb.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if _has_alpha(image):
        thumb = thumb.convert("RGBA")
        thumb.save(out, format="PNG", optimize=True)
        content_type = "image/png"
    else:
        thumb = thumb.convert("RGB")
        thumb.save(out, format="JPEG", quality=85, optimize=True, progressive=True)
        content_type = "image/jpeg"
    return _Rendition(data=out.getvalue(), content_type=content_type, width=thumb.width, height=thumb.height)


def image_sanitize(*, data: bytes, content_type: str) -> _ProcessedImage:
    """Re-encode an image without metadata (orientation applied) and make its thumbnails.

    Raises :class:`FileRejected` for bytes that are not a decodable image of
    ``content_type`` or that decode to too many pixels.
    """
    image_module = _pil()
    from PIL import ImageOps, ImageSequence

    pil_format = _PIL_FORMATS[content_type]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image_module.DecompressionBombWarning)
            with image_module.open(io.BytesIO(data)) as source:
                opened_format = "HEIF" if source.format in ("HEIF", "HEIC") else source.format
                if opened_format != pil_format:
                    raise FileRejected("content_type_mismatch", "The image data is not of the declared type.")
                frame_count = getattr(source, "n_frames", 1)
                if frame_count > _MAX_FRAMES:
                    raise FileRejected("image_too_large", "The animation has too many frames.")
                if frame_count > 1 and pil_format in ("GIF", "WEBP"):
                    frames = []
                    for frame in ImageSequence.Iterator(source):
                        clean = _fresh_copy(frame)
                        clean.info["duration"] = frame.info.get("duration", 100)
                        frames.append(clean)
                else:
                    source.load()
                    upright = ImageOps.exif_transpose(source) or source
                    frames = [_fresh_copy(upright)]
                original = _Rendition(
                    data=_encode_original(frames, source, pil_format),
                    content_type=content_type,
                    width=frames[0].width,
                    height=frames[0].height,
                )
                thumbnails = {
                    variant: _thumbnail(frames[0], side)
                    for variant, side in settings.FILE_THUMBNAIL_SIZES.items()
                }
    except FileRejected:
        raise
    except (image_module.DecompressionBombError, image_module.DecompressionBombWarning):
        raise FileRejected("image_too_large", "The image has too many pixels.") from None
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, IndexError, TypeError) as exc:
        # Pillow reports undecodable or truncated data with these; none is transient.
        raise FileRejected("image_unreadable", "The image could not be decoded.") from exc
    return _ProcessedImage(original=original, thumbnails=thumbnails)


def _scan(storage: Storage, key: str, *, check_text: bool) -> tuple[str, bool]:
    """SHA-256 of a stored object and whether it is UTF-8 text, in one streaming pass."""
    digest = hashlib.sha256()
    text = _TextCheck()
    with storage.open(key, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
            if check_text:
                text.feed(chunk)
    if check_text:
        text.feed(b"", final=True)
    return digest.hexdigest(), check_text and text.ok


def _file_reject(*, file_pk: Any, reason: str, detail: str) -> File | None:
    with transaction.atomic():
        file = File.objects.select_for_update().filter(pk=file_pk).first()
        if file is None or file.deleted_at is not None or file.status != File.Status.PENDING:
            return file
        file.status = File.Status.REJECTED
        file.rejection_reason = reason
        file.rejection_detail = detail[:255]
        file.processed_at = timezone.now()
        file.save(
            update_fields=["status", "rejection_reason", "rejection_detail", "processed_at", "updated_at"]
        )
        # Rejected bytes are never served; do not keep them.
        keys = [file.upload_key]
        _storage_delete_after_commit(keys)
    logger.info("file_rejected", file_id=str(file_pk), reason=reason)
    return file


def file_reject(*, file_id: str, reason: str, detail: str) -> File | None:
    """Mark a pending file ``rejected`` (processing gave up on it); no-op otherwise."""
    ids = _valid_ids([file_id])
    return _file_reject(file_pk=ids[0], reason=reason, detail=detail) if ids else None


def _inspect(file: File, storage: Storage, policy: PurposePolicy) -> tuple[int, str]:
    """The real size and type of the uploaded bytes; :class:`FileRejected` when unacceptable."""
    if not storage.exists(file.upload_key):
        raise FileRejected("upload_missing", "No bytes were uploaded.")
    size = int(storage.size(file.upload_key))
    if size > policy.max_size:
        raise FileRejected(
            "file_too_large", f"The file has {size} bytes; the limit for {policy.name} is {policy.max_size}."
        )
    if size > file.declared_size:
        raise FileRejected("file_too_large", f"The file has {size} bytes, more than the declared size.")
    if size == 0:
        raise FileRejected("file_empty", "The file is empty.")
    with storage.open(file.upload_key, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    detected = content_type_detect(head) or "text/plain"  # confirmed (or not) by the full scan
    return size, detected


def file_process(*, file_id: str) -> File | None:
    """Check and transform the uploaded bytes; ``pending`` -> ``ready`` | ``rejected``.

    Safe to run twice: a file that is no longer pending is left alone, and
    every output is written at a fixed key before the row changes (under its
    row lock), so a run that died half-way is simply repeated. Storage errors
    propagate so that the task retries them.
    """
    file = File.objects.filter(pk=file_id).first()
    if file is None or file.deleted_at is not None or file.status != File.Status.PENDING:
        return file
    if file.completed_at is None:
        return file
    storage = file_storage()
    try:
        policy = file_purpose_policy(purpose=file.purpose)
    except ValidationFailed:
        return _file_reject(
            file_pk=file.pk, reason="purpose_unknown", detail="The purpose is not configured."
        )
    try:
        size, detected = _inspect(file, storage, policy)
        sha256, is_text = _scan(storage, file.upload_key, check_text=detected == "text/plain")
        if detected == "text/plain" and not is_text:
            detected = "application/octet-stream"
        if detected not in policy.allowed_types:
            raise FileRejected(
                "file_type_not_allowed", f"The content is {detected}, which is not allowed for {policy.name}."
            )
        if detected != file.declared_content_type:
            raise FileRejected(
                "content_type_mismatch",
                f"The content is {detected}, but it was declared as {file.declared_content_type}.",
            )
        processed = None
        if detected in IMAGE_TYPES:
            with storage.open(file.upload_key, "rb") as handle:
                processed = image_sanitize(data=handle.read(), content_type=detected)
    except FileRejected as rejected:
        return _file_reject(file_pk=file.pk, reason=rejected.reason, detail=rejected.detail)

    stored_key = file.upload_key
    thumbnails: dict[str, dict[str, Any]] = {}
    width = height = None
    if processed is not None:
        base = f"uploads/{file.storage_prefix}"
        stored_key = f"{base}/clean/{file.upload_key.rsplit('/', 1)[-1]}"
        _storage_write(storage, stored_key, ContentFile(processed.original.data), detected)
        size = len(processed.original.data)
        sha256 = hashlib.sha256(processed.original.data).hexdigest()
        width, height = processed.original.width, processed.original.height
        for variant, rendition in processed.thumbnails.items():
            ext = "png" if rendition.content_type == "image/png" else "jpg"
            key = f"{base}/thumbs/{variant}.{ext}"
            _storage_write(storage, key, ContentFile(rendition.data), rendition.content_type)
            thumbnails[variant] = {
                "key": key,
                "content_type": rendition.content_type,
                "width": rendition.width,
                "height": rendition.height,
                "size": len(rendition.data),
            }

    with transaction.atomic():
        current = File.objects.select_for_update().filter(pk=file.pk).first()
        if current is None or current.deleted_at is not None or current.status != File.Status.PENDING:
            # Deleted (or finished by another run) meanwhile: drop what this run wrote.
            outputs = [stored_key, *(t["key"] for t in thumbnails.values())]
            if current is not None and current.status == File.Status.READY:
                outputs = []
            leftovers = [key for key in outputs if key and key != file.upload_key]
            _storage_delete_after_commit(leftovers)
            return current
        current.status = File.Status.READY
        current.content_type = detected
        current.size = size
        current.sha256 = sha256
        current.stored_key = stored_key
        current.thumbnails = thumbnails
        current.width = width
        current.height = height
        current.processed_at = timezone.now()
        current.save(
            update_fields=[
                "status",
                "content_type",
                "size",
                "sha256",
                "stored_key",
                "thumbnails",
                "width",
                "height",
                "processed_at",
                "updated_at",
            ]
        )
        if stored_key != current.upload_key:
            # The upload still carries the metadata that was stripped.
            raw = [current.upload_key]
            _storage_delete_after_commit(raw)
    logger.info("file_ready", file_id=str(current.pk), content_type=detected, size=size)
    return current


# --- Delete, references, cleanup ----------------------------------------------------------


def file_delete(*, file_id: str, user: Any) -> None:
    """Delete the caller's file and its stored objects; deleting again is a no-op (204).

    404 for a file that is not the caller's. The row stays as a tombstone
    until the cleanup job purges it.
    """
    ids = _valid_ids([file_id])
    if not ids or not getattr(user, "is_authenticated", False):
        raise NotFound("No such file.")
    with transaction.atomic():
        file = File.objects.select_for_update().filter(pk=ids[0], owner_id=user.pk).first()
        if file is None:
            raise NotFound("No such file.")
        if file.deleted_at is not None:
            return
        file.deleted_at = timezone.now()
        file.save(update_fields=["deleted_at", "updated_at"])
        keys = _file_keys(file)
        _storage_delete_after_commit(keys)
    logger.info("file_deleted", file_id=str(file.pk))


def file_mark_referenced(*, file_ids: Iterable[Any]) -> int:
    """Record that something (a document's ``file`` field, an avatar) points at these files.

    Referenced files are kept by the cleanup job, and are rendered for every
    reader of what references them (see ``files_describe_for_user``). Check
    with ``file_ids_readable`` that the writer may read the files first.
    Unknown or malformed ids are ignored; returns how many files were newly marked.
    """
    ids = _valid_ids(file_ids)
    if not ids:
        return 0
    return File.objects.filter(pk__in=ids, deleted_at__isnull=True, referenced_at__isnull=True).update(
        referenced_at=timezone.now()
    )


def _files_purge(files: Iterable[File]) -> int:
    """Delete the stored objects, then the rows (storage errors propagate for a retry)."""
    storage = file_storage()
    purged = 0
    for file in files:
        for key in _file_keys(file):
            _storage_delete(storage, key)
        File.objects.filter(pk=file.pk).delete()
        purged += 1
    return purged


def files_delete_now(*, file_ids: Iterable[Any]) -> int:
    """Staff: delete these files and their stored objects at once, without a tombstone."""
    ids = _valid_ids(file_ids)
    return _files_purge(list(File.objects.filter(pk__in=ids))) if ids else 0


def files_process_again(*, file_ids: Iterable[Any]) -> int:
    """Staff: queue processing again for completed files still pending (e.g. after an outage)."""
    ids = [
        str(pk)
        for pk in File.objects.filter(
            pk__in=_valid_ids(file_ids),
            status=File.Status.PENDING,
            completed_at__isnull=False,
            deleted_at__isnull=True,
        ).values_list("pk", flat=True)
    ]

    for file_id in ids:
        _process_after_commit(file_id)
    return len(ids)


def files_cleanup_unreferenced(*, batch_size: int = 200) -> int:
    """Delete files older than ``FILE_UNREFERENCED_TTL_HOURS`` that nothing ever referenced.

    Each batch is first tombstoned under row locks (skipping rows another
    transaction holds, e.g. one marking them referenced), so a file cannot be
    referenced and deleted at once. Old tombstones of deleted files are
    purged too. Returns the number of files removed.
    """
    now = timezone.now()
    cutoff = now - timedelta(hours=settings.FILE_UNREFERENCED_TTL_HOURS)
    removed = 0
    while True:
        with transaction.atomic():
            batch = list(
                File.objects.select_for_update(skip_locked=True)
                .filter(referenced_at__isnull=True, deleted_at__isnull=True, created_at__lt=cutoff)
                .order_by("created_at")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not batch:
                break
            File.objects.filter(pk__in=batch, referenced_at__isnull=True).update(deleted_at=now)
        removed += _files_purge(File.objects.filter(pk__in=batch, deleted_at__isnull=False))
    while True:
        tombstones = list(File.objects.filter(deleted_at__lt=cutoff).order_by("deleted_at")[:batch_size])
        if not tombstones:
            break
        removed += _files_purge(tombstones)
    if removed:
        logger.info("files_cleaned_up", removed=removed)
    return removed


# --- Privacy ------------------------------------------------------------------------------


def files_export_for_user(*, user: Any) -> dict[str, Any]:
    """The user's files for a data export: metadata and signed (longer-lived) links."""
    files = File.objects.filter(owner_id=user.pk, deleted_at__isnull=True).order_by("created_at", "pk")
    ttl = settings.FILE_EXPORT_URL_TTL_SECONDS
    return {"files": [file_describe(file=file, ttl=ttl) for file in files]}


def files_erase_for_user(*, user: Any) -> None:
    """Delete every file of the user (idempotent); the stored objects go once this commits."""
    files = list(File.objects.filter(owner_id=user.pk))
    keys = [key for file in files for key in _file_keys(file)]
    File.objects.filter(pk__in=[file.pk for file in files]).delete()
    _storage_delete_after_commit(keys)
