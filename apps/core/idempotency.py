"""``Idempotency-Key`` for every unsafe method of every authenticated API view.

How it works (see docs/decisions.md): the first request with a key inserts an
:class:`IdempotencyRecord` and runs the view inside one transaction, then
stores the response in that record before committing. The record therefore
exists exactly when the work was committed. A concurrent request with the
same key blocks on the unique index until the first commits, then replays the
stored answer; if it waits longer than ``IDEMPOTENCY_LOCK_TIMEOUT_MS`` it gets
``409 idempotency_in_progress`` and nothing is stored for it. A 5xx rolls
everything back, so a retry runs the work again. Keys are scoped per user and
expire after ``IDEMPOTENCY_KEY_TTL``.

Transaction discipline: :meth:`IdempotencyGuard.begin` opens the atomic block
(or raises with none open), and exactly one of :meth:`~IdempotencyGuard.finish`
or :meth:`~IdempotencyGuard.abort` closes it. ``apps.core.api.views`` calls
``finish`` from ``finalize_response`` and ``abort`` from ``dispatch`` when
anything escapes, so no request leaves its connection inside the block.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.transaction import TransactionManagementError
from django.http import HttpResponse, HttpResponseBase
from django.utils import timezone

from apps.core.exceptions import (
    IdempotencyConflict,
    IdempotencyInProgress,
    ValidationFailed,
)
from apps.core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
_REPLAYED_HEADERS = ("Content-Type", "ETag", "Location", "Retry-After")
# Answers about the key itself (or a refusal that did no work) are not the
# request's answer: storing them would replay a transient refusal forever.
_NOT_STORED_CODES = frozenset({"idempotency_conflict", "idempotency_in_progress", "throttled"})
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired


class IdempotentReplay(Exception):
    """Raised inside ``initial`` to answer with a stored response."""

    def __init__(self, record: IdempotencyRecord) -> None:
        self.record = record
        super().__init__("replay")


def fingerprint_request(*, method: str, path: str, body: bytes, query: str = "") -> str:
    """SHA-256 of what makes two requests "the same": method, path, query and body.

    The path is compared without its trailing slash (both forms reach the same
    view) and the query with its parameters sorted.
    """
    digest = hashlib.sha256()
    digest.update(method.upper().encode())
    digest.update(b"\0")
    digest.update((path.rstrip("/") or "/").encode())
    digest.update(b"\0")
    digest.update(urlencode(sorted(parse_qsl(query, keep_blank_values=True))).encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def replay_response(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(bytes(record.response_body), status=record.status_code or 200)
    if "Content-Type" not in record.response_headers:
        del response["Content-Type"]  # an empty answer (204) had none
    for name, value in record.response_headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def _expiry_cutoff() -> datetime:
    return timezone.now() - settings.IDEMPOTENCY_KEY_TTL


def idempotency_keys_purge_expired() -> int:
    """Delete the records older than ``IDEMPOTENCY_KEY_TTL``; returns how many went."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=_expiry_cutoff()).delete()
    return deleted


def _is_lock_timeout(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate is not None:
        return bool(sqlstate == _LOCK_NOT_AVAILABLE)
    # SQLite: another writer held the database for longer than its busy timeout.
    return "database is locked" in str(exc).lower()


def _problem_code(response: HttpResponseBase) -> str | None:
    data = getattr(response, "data", None)
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


class IdempotencyGuard:
    """One request's use of a key: begin (lock or replay), then finish (store) or abort."""

    def __init__(self, *, scope: str, key: str, method: str, path: str, body: bytes, query: str = "") -> None:
        if not _KEY_PATTERN.fullmatch(key):
            raise ValidationFailed(
                errors={HEADER: ["Must be 1 to 255 printable ASCII characters, such as a UUID."]}
            )
        self.scope = scope
        self.key = key
        self.method = method
        self.path = path
        self.fingerprint = fingerprint_request(method=method, path=path, body=body, query=query)
        self.record: IdempotencyRecord | None = None
        self._atomic: Any = None

    @property
    def is_open(self) -> bool:
        return self._atomic is not None

    def begin(self) -> None:
        """Open the transaction and claim the key, or raise replay/conflict/in-progress.

        Expects no transaction of this request to be open on the connection:
        the work must commit or roll back together with the record. On return
        the atomic block is open; on any exception it is closed again.
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
        connection = transaction.get_connection()
        is_postgres = connection.vendor == "postgresql"
        timeout_ms = int(getattr(settings, "IDEMPOTENCY_LOCK_TIMEOUT_MS", 10_000))
        try:
            # A savepoint: a failed insert must not doom the outer block.
            with transaction.atomic():
                previous_timeout = None
                if is_postgres:
                    # Bound the wait on a concurrent holder of the same key;
                    # set_config(..., true) is SET LOCAL and takes parameters.
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                            [f"{max(1, timeout_ms)}ms"],
                        )
                        previous_timeout = cursor.fetchone()[0]
                self.record = IdempotencyRecord.objects.create(
                    scope=self.scope,
                    key=self.key,
                    fingerprint=self.fingerprint,
                    method=self.method,
                    path=self.path[:512],
                )
                if is_postgres:
                    # The view's own locks wait as they would without a key.
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous_timeout])
        except IntegrityError:
            # The concurrent request committed first: answer as it did.
            existing = self._find()
            if existing is None:
                raise IdempotencyInProgress() from None
            self._raise_for_existing(existing)
        except DatabaseError as exc:
            if _is_lock_timeout(exc):
                raise IdempotencyInProgress() from exc
            raise

    def finish(self, response: HttpResponseBase) -> HttpResponseBase:
        """Store the response and commit, or roll back on a server error.

        The response is rendered here, inside the transaction: if rendering
        fails, the work is rolled back with it and the client's 500 is honest.
        If the view left the transaction unusable (a database error it caught
        without a savepoint of its own), nothing it did can commit: an error
        answer still goes out, unstored, and a success answer becomes a 500.
        """
        if self._atomic is None:
            return response
        is_error = response.status_code >= 400
        try:
            record = self.record
            if record is None:
                self._exit(rollback=False)
                return response
            if response.status_code >= 500 or _problem_code(response) in _NOT_STORED_CODES:
                self._exit(rollback=True)
                return response
            if transaction.get_connection().needs_rollback:
                self._exit(rollback=True)
                if is_error:
                    return response
                raise TransactionManagementError(
                    "The view answered with success but its transaction was marked for rollback."
                )
            if getattr(response, "streaming", False):
                # A stream cannot be stored; the work stands but is not replayable.
                record.delete()
                self._exit(rollback=False)
                return response
            render = getattr(response, "render", None)
            if callable(render) and not getattr(response, "is_rendered", True):
                render()
            record.status_code = response.status_code
            record.response_body = response.content  # type: ignore[attr-defined]
            record.response_headers = {
                name: response[name] for name in _REPLAYED_HEADERS if response.has_header(name)
            }
            record.save(update_fields=["status_code", "response_body", "response_headers"])
        except DatabaseError:
            self._exit(rollback=True)
            if is_error:
                return response
            raise
        except BaseException:
            self._exit(rollback=True)
            raise
        self._exit(rollback=False)
        return response

    def abort(self) -> None:
        """Roll back whatever the request did, if the block is still open."""
        if self._atomic is not None:
            self._exit(rollback=True)

    def _exit(self, *, rollback: bool) -> None:
        atomic, self._atomic = self._atomic, None
        if atomic is None:
            return
        if rollback:
            transaction.set_rollback(True)
        atomic.__exit__(None, None, None)
