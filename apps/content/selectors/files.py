"""Reads of files: who may see a file, its public description, signed URLs.

Access rule. ``GET files/{id}`` and :func:`file_describe_for_user` answer for
the owner only (and staff holding ``content.bypass_acl``); anyone else gets
404 / ``None``. A file becomes visible to other people only through something
that references it: the documents service renders a document's ``file``
fields with :func:`files_describe_for_user` for every caller who may read the
document, after checking at write time (:func:`file_ids_readable`) that the
writer could read the files it references. The account profile does the same
for avatars. Every URL in a description is signed and expires.

Signed URLs. With S3 storage (``AWS_STORAGE_BUCKET_NAME``) they are S3
presigned GETs; otherwise they point at the local download endpoint with an
HMAC (key derived from ``SECRET_KEY``) over the file id, variant and expiry.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.files.storage import Storage, storages
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from apps.content.models.files import File
from apps.core.exceptions import KeelError, NotFound

VARIANTS = ("original", "small", "medium")
THUMBNAIL_VARIANTS = ("small", "medium")
_SIGNING_SALT = "keel.content.files"


class SignatureInvalid(KeelError):
    status_code = 403
    code = "invalid_signature"
    title = "Invalid signature"
    default_detail = "The link's signature is not valid."


class SignatureExpired(KeelError):
    status_code = 403
    code = "url_expired"
    title = "Link expired"
    default_detail = "The link has expired; ask the API for a new one."


# --- Storage ------------------------------------------------------------------


def file_storage() -> Storage:
    """The storage that holds uploaded files (``STORAGES["default"]``)."""
    return storages["default"]


def file_storage_is_s3(storage: Storage | None = None) -> bool:
    """True when files live in S3: uploads and downloads then go straight to the bucket."""
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # pragma: no cover - django-storages is a runtime dependency
        return False
    return isinstance(storage or file_storage(), S3Storage)


def s3_presign_client(storage: Any) -> Any:
    """A boto3 client of the storage's bucket for presigning, with Signature V4.

    The storage's own client signs with whatever botocore defaults to for the
    endpoint (Signature V2 in some setups, which S3 refuses for new buckets);
    presigned URLs use V4 unless ``AWS_S3_SIGNATURE_VERSION`` says otherwise.
    Created once per storage instance (boto3 clients are thread-safe).
    """
    client = getattr(storage, "_keel_presign_client", None)
    if client is None:
        from botocore.config import Config

        config = storage.client_config.merge(Config(signature_version=storage.signature_version or "s3v4"))
        client = storage._create_session().client(
            "s3",
            region_name=storage.region_name,
            use_ssl=storage.use_ssl,
            endpoint_url=storage.endpoint_url,
            config=config,
            verify=storage.verify,
        )
        storage._keel_presign_client = client
    return client


def s3_object_key(storage: Any, name: str) -> str:
    """The bucket key that ``storage`` uses for ``name`` (its ``location`` prefix included)."""
    from storages.utils import clean_name

    return str(storage._normalize_name(clean_name(name)))


# --- Signing ------------------------------------------------------------------


def url_expiry(*, ttl: int, now: float | None = None) -> int:
    """A Unix expiry about ``ttl`` seconds from now, stable within a short window.

    Rounding to a step keeps a file's URLs (and so its ETag and the app's
    image cache keys) unchanged between calls a few seconds apart, while every
    URL stays valid for at least ``ttl - step`` seconds.
    """
    current = int(now if now is not None else time.time())
    step = max(1, min(60, ttl // 4))
    return (current // step) * step + ttl


def file_signature(*, action: str, file_id: str, variant: str, expires: int) -> str:
    """HMAC-SHA256 (key derived from ``SECRET_KEY``) over what the URL grants."""
    value = f"{action}:{file_id}:{variant}:{expires}"
    return salted_hmac(f"{_SIGNING_SALT}.{action}", value, algorithm="sha256").hexdigest()


def file_signature_verify(*, action: str, file_id: str, variant: str, expires: str, signature: str) -> None:
    """Raise 403 ``invalid_signature`` for a tampered link, 403 ``url_expired`` for an old one."""
    if not expires.isdigit() or len(expires) > 12 or not signature:
        raise SignatureInvalid()
    expected = file_signature(action=action, file_id=file_id, variant=variant, expires=int(expires))
    if not constant_time_compare(expected, signature):
        raise SignatureInvalid()
    if int(expires) < time.time():
        raise SignatureExpired()


def _absolute(path: str, query: dict[str, Any]) -> str:
    return f"{settings.KEEL_PUBLIC_URL}{path}?{urlencode(query)}"


def file_local_upload_url(*, file_id: str, expires: int) -> str:
    signature = file_signature(action="upload", file_id=file_id, variant="original", expires=expires)
    path = reverse("content-file-upload", kwargs={"file_id": file_id})
    return _absolute(path, {"expires": expires, "signature": signature})


def file_local_download_url(*, file_id: str, variant: str, expires: int) -> str:
    signature = file_signature(action="download", file_id=file_id, variant=variant, expires=expires)
    path = reverse("content-file-download", kwargs={"file_id": file_id})
    return _absolute(path, {"variant": variant, "expires": expires, "signature": signature})


def _variant_key_and_type(file: File, variant: str) -> tuple[str, str] | None:
    if variant == "original":
        return (file.stored_key, file.content_type) if file.stored_key else None
    thumb = (file.thumbnails or {}).get(variant)
    if not thumb:
        return None
    return str(thumb["key"]), str(thumb["content_type"])


def file_download_url(
    *, file: File, variant: str = "original", ttl: int | None = None, expires: int | None = None
) -> str | None:
    """A signed, expiring URL for one variant of a ready file (``None`` when there is none)."""
    if file.status != File.Status.READY or file.deleted_at is not None:
        return None
    target = _variant_key_and_type(file, variant)
    if target is None:
        return None
    ttl = ttl or settings.FILE_URL_TTL_SECONDS
    storage = file_storage()
    if file_storage_is_s3(storage):
        key, content_type = target
        params = {
            "Bucket": storage.bucket_name,  # type: ignore[attr-defined]
            "Key": s3_object_key(storage, key),
            "ResponseContentType": content_type,
            "ResponseContentDisposition": file_content_disposition(file=file, variant=variant),
        }
        return str(
            s3_presign_client(storage).generate_presigned_url("get_object", Params=params, ExpiresIn=ttl)
        )
    return file_local_download_url(
        file_id=str(file.pk), variant=variant, expires=expires or url_expiry(ttl=ttl)
    )


def file_content_disposition(*, file: File, variant: str) -> str:
    """Images and PDFs open inline; anything else downloads under its original name."""
    from django.utils.http import content_disposition_header

    if variant == "original":
        inline = file.content_type.startswith("image/") or file.content_type == "application/pdf"
        name = file.filename
    else:
        inline = True
        thumb_type = (file.thumbnails.get(variant) or {}).get("content_type")
        name = f"{file.filename.rsplit('.', 1)[0]}-{variant}.{'png' if thumb_type == 'image/png' else 'jpg'}"
    return content_disposition_header(as_attachment=not inline, filename=name) or "attachment"


# --- Descriptions ---------------------------------------------------------------


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_describe(*, file: File, ttl: int | None = None) -> dict[str, Any]:
    """The contract's file object, with signed URLs (``null`` until the file is ready)."""
    ready = file.status == File.Status.READY
    ttl = ttl or settings.FILE_URL_TTL_SECONDS
    expires = url_expiry(ttl=ttl)
    thumbnail_urls: dict[str, str | None] = {}
    for variant in THUMBNAIL_VARIANTS:
        thumbnail_urls[variant] = (
            file_download_url(file=file, variant=variant, ttl=ttl, expires=expires) if ready else None
        )
    return {
        "id": str(file.pk),
        "filename": file.filename,
        "content_type": file.content_type or file.declared_content_type,
        "size": file.size if file.size is not None else file.declared_size,
        "status": file.status,
        "purpose": file.purpose,
        "url": file_download_url(file=file, ttl=ttl, expires=expires) if ready else None,
        "thumbnails": thumbnail_urls,
        "width": file.width,
        "height": file.height,
        "sha256": file.sha256 or None,
        "rejection_reason": file.rejection_reason or None,
        "rejection_detail": file.rejection_detail or None,
        # Ask for the file again before this to get fresh links.
        "urls_expire_at": _timestamp(datetime.fromtimestamp(expires, tz=UTC)) if ready else None,
        "created_at": _timestamp(file.created_at),
        "updated_at": _timestamp(file.updated_at),
    }


def _valid_ids(file_ids: Iterable[Any]) -> list[uuid.UUID]:
    out: list[uuid.UUID] = []
    for raw in file_ids:
        if isinstance(raw, uuid.UUID):
            out.append(raw)
            continue
        if not isinstance(raw, str) or len(raw) > 64:
            continue
        try:
            out.append(uuid.UUID(raw))
        except ValueError:
            continue
    return out


def _bypasses_acl(user: Any) -> bool:
    # Only staff can hold the bypass; checking is_staff first spares everyone
    # else the permission queries.
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_staff", False):
        return False
    return bool(user.has_perm("content.bypass_acl"))


def files_live() -> QuerySet[File]:
    return File.objects.filter(deleted_at__isnull=True)


def files_owned_by(*, user: Any) -> QuerySet[File]:
    """The user's files that are not deleted (direct access: owner, or staff bypass)."""
    if not getattr(user, "is_authenticated", False):
        return File.objects.none()
    if _bypasses_acl(user):
        return files_live()
    return files_live().filter(owner_id=user.pk)


def file_get_for_user(*, file_id: Any, user: Any) -> File:
    """The file if the caller may access it directly, else 404 (never 403: no existence leaks)."""
    ids = _valid_ids([file_id])
    file = files_owned_by(user=user).filter(pk=ids[0]).first() if ids else None
    if file is None:
        raise NotFound("No such file.")
    return file


def file_describe_for_user(*, file_id: Any, user: Any) -> dict[str, Any] | None:
    """The file object with signed URLs, or ``None`` when the user may not read it directly."""
    ids = _valid_ids([file_id])
    if not ids:
        return None
    file = files_owned_by(user=user).filter(pk=ids[0]).first()
    return file_describe(file=file) if file is not None else None


def file_ids_readable(*, file_ids: Iterable[Any], user: Any) -> set[str]:
    """Which of ``file_ids`` the user may read directly (owns, or staff bypass).

    Writers call this before storing a reference to a file (a document's
    ``file`` field, an avatar): you may only attach files you can read.
    """
    ids = _valid_ids(file_ids)
    if not ids:
        return set()
    return {str(pk) for pk in files_owned_by(user=user).filter(pk__in=ids).values_list("pk", flat=True)}


def files_describe_for_user(*, file_ids: Iterable[Any], user: Any) -> dict[str, dict[str, Any]]:
    """File objects for the ``file`` fields of things the caller may read, in one query.

    For the rendering of a readable parent (a document, a profile): a file is
    described when the caller may read it directly, or when it has been
    referenced (``file_mark_referenced``), which only a writer who could read
    the file can cause. Unknown and deleted ids are left out (render ``null``).
    """
    ids = _valid_ids(file_ids)
    if not ids:
        return {}
    rows = files_live().filter(pk__in=ids)
    direct = _bypasses_acl(user)
    user_pk = getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None
    out: dict[str, dict[str, Any]] = {}
    for file in rows:
        if direct or file.referenced_at is not None or (user_pk is not None and file.owner_id == user_pk):
            out[str(file.pk)] = file_describe(file=file)
    return out


# --- Download endpoint ------------------------------------------------------------


@dataclass(frozen=True)
class FileDownload:
    file: File
    key: str
    content_type: str
    disposition: str
    expires: int


def file_download_resolve(*, file_id: str, variant: str, expires: str, signature: str) -> FileDownload:
    """What a signed local download link points at; 403 for bad links, 404 for gone files."""
    if variant not in VARIANTS:
        raise SignatureInvalid()
    file_signature_verify(
        action="download", file_id=file_id, variant=variant, expires=expires, signature=signature
    )
    ids = _valid_ids([file_id])
    file = files_live().filter(pk=ids[0], status=File.Status.READY).first() if ids else None
    target = _variant_key_and_type(file, variant) if file is not None else None
    if file is None or target is None:
        raise NotFound("No such file.")
    key, content_type = target
    return FileDownload(
        file=file,
        key=key,
        content_type=content_type,
        disposition=file_content_disposition(file=file, variant=variant),
        expires=int(expires),
    )


def file_etag(*, description: dict[str, Any]) -> str:
    """A strong ETag of one file answer (it changes when a signed URL does)."""
    import orjson

    digest = hashlib.sha256(orjson.dumps(description, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'
