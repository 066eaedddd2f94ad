"""``Idempotency-Key`` for every unsafe method of every authenticated API view.

How it works (see docs/decisions.md): the first request with a key inserts an
:class:`IdempotencyRecord` and runs the view inside one transaction, then
stores the response in that record before committing. A concurrent request
with the same key blocks on the unique index until the first commits, then
replays the stored answer; if it waits longer than
``IDEMPOTENCY_LOCK_TIMEOUT_MS`` it gets ``409 idempotency_in_progress``. A
5xx rolls everything back, so a retry runs the work again. Keys are scoped
per user and expire after ``IDEMPOTENCY_KEY_TTL``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.http import HttpResponse
from django.utils import timezone

from apps.core.exceptions import (
    IdempotencyConflict,
    IdempotencyInProgress,
    ValidationFailed,
)
from apps.core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
_REPLAYED_HEADERS = ("Content-Type", "ETag", "Location", "Retry-After")
_NOT_STORED_CODES = frozenset({"idempotency_conflict", "idempotency_in_progress", "throttled"})


class IdempotentReplay(Exception):
    """Raised inside ``initial`` to answer with a stored response."""

    def __init__(self, record: IdempotencyRecord) -> None:
        self.record = record
        super().__init__("replay")


def fingerprint_request(*, method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(method.encode())
    digest.update(b"\0")
    digest.update(path.encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def replay_response(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(bytes(record.response_body), status=record.status_code or 200)
    for name, value in record.response_headers.items():
        response[name] = value
    response["Idempotent-Replayed"] = "true"
    return response


def _expiry_cutoff() -> datetime:
    return timezone.now() - settings.IDEMPOTENCY_KEY_TTL


def idempotency_keys_purge_expired() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=_expiry_cutoff()).delete()
    return deleted


class IdempotencyGuard:
    """One request's use of a key: begin (lock or replay), then finish (store or undo)."""

    def __init__(self, *, scope: str, key: str, method: str, path: str, body: bytes) -> None:
        if not _KEY_PATTERN.match(key):
            raise ValidationFailed(
                errors={HEADER: ["Must be 1 to 255 printable ASCII characters, such as a UUID."]}
            )
        self.scope = scope
        self.key = key
        self.method = method
        self.path = path
        self.fingerprint = fingerprint_request(method=method, path=path, body=body)
        self.record: IdempotencyRecord | None = None
        self._atomic: Any = None

    def begin(self) -> None:
        """Open the transaction and claim the key, or raise replay/conflict/in-progress.

        Expects no transaction to be open on the connection for this request.
        """
        IdempotencyRecord.objects.filter(
            scope=self.scope, key=self.key, created_at__lt=_expiry_cutoff()
        ).delete()
        existing = self._find()
        if existing is not None:
            self._raise_for_existing(existing)
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        try:
            self._claim()
        except BaseException:
            self._exit(rollback=True)
            raise

    def _find(self) -> IdempotencyRecord | None:
        return IdempotencyRecord.objects.filter(scope=self.scope, key=self.key).first()

    def _raise_for_existing(self, existing: IdempotencyRecord) -> None:
        if existing.fingerprint != self.fingerprint:
            raise IdempotencyConflict()
        if existing.status_code is None:
            raise IdempotencyInProgress()
        raise IdempotentReplay(existing)

    def _claim(self) -> None:
        timeout_ms = int(getattr(settings, "IDEMPOTENCY_LOCK_TIMEOUT_MS", 10_000))
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    # Bound the wait on a concurrent holder of the same key.
                    with connection.cursor() as cursor:
                        cursor.execute(f"SET LOCAL lock_timeout = {timeout_ms}")
                self.record = IdempotencyRecord.objects.create(
                    scope=self.scope,
                    key=self.key,
                    fingerprint=self.fingerprint,
                    method=self.method,
                    path=self.path[:512],
                )
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = 0")
        except IntegrityError:
            # The concurrent request committed first: answer as it did.
            existing = self._find()
            if existing is None:
                raise IdempotencyInProgress() from None
            self._raise_for_existing(existing)
        except DatabaseError as exc:
            if "lock" in str(exc).lower():
                raise IdempotencyInProgress() from exc
            raise

    def finish(self, response: HttpResponse) -> HttpResponse:
        """Store the response and commit, or roll back on a server error."""
        if self._atomic is None:
            return response
        try:
            if self.record is None:
                self._exit(rollback=False)
                return response
            code = getattr(response, "data", None)
            error_code = code.get("code") if isinstance(code, dict) else None
            if response.status_code >= 500 or error_code in _NOT_STORED_CODES:
                self._exit(rollback=True)
                return response
            if getattr(response, "streaming", False):
                self.record.delete()
                self._exit(rollback=False)
                return response
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            self.record.status_code = response.status_code
            self.record.response_body = response.content
            self.record.response_headers = {
                name: response[name] for name in _REPLAYED_HEADERS if response.has_header(name)
            }
            self.record.save(update_fields=["status_code", "response_body", "response_headers"])
        except BaseException:
            self._exit(rollback=True)
            raise
        self._exit(rollback=False)
        return response

    def abort(self) -> None:
        if self._atomic is not None:
            self._exit(rollback=True)

    def _exit(self, *, rollback: bool) -> None:
        atomic, self._atomic = self._atomic, None
        if atomic is None:
            return
        if rollback:
            transaction.set_rollback(True)
        atomic.__exit__(None, None, None)
