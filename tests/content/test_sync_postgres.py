"""PostgreSQL only: the feed never skips a change committed later; racing pushes apply a mutation once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections, transaction

from apps.content.models import Change, Document, SyncMutation
from apps.content.selectors.collections import collection_get
from apps.content.services.collections import collection_save
from apps.content.services.documents import CHANGE_LOG_LOCK_ID, document_create
from tests.content.sync_support import NOTES_SCHEMA, mutation, pull, push
from tests.factories import UserFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _notes():
    collection_save(definition={"name": "notes", "schema": NOTES_SCHEMA, "indexes": []})
    return collection_get(name="notes")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _waiting_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return int(cursor.fetchone()[0])


def _thread(target: Callable[[], Any], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_cursor_never_skips_a_change_that_commits_after_it_was_issued(client_for):
    notes = _notes()
    writer_a, writer_b, reader = UserFactory(), UserFactory(), UserFactory()
    shared = {"authenticated": "read"}
    device = client_for(reader)
    start = pull(device)["cursor"]
    a_written, release_a = threading.Event(), threading.Event()
    b_written, release_b = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with transaction.atomic():
            document_create(collection=notes, actor=writer_a, data={"title": "A"}, acl=shared)
            a_written.set()
            assert release_a.wait(10)

    def second() -> None:
        with transaction.atomic():
            document_create(collection=notes, actor=writer_b, data={"title": "B"}, acl=shared)
            b_written.set()
            assert release_b.wait(10)

    a = _thread(first, errors)
    assert a_written.wait(10)
    b = _thread(second, errors)
    # B cannot take a sequence number while A's transaction is open.
    _wait_for(lambda: _waiting_locks() == 1, "the second writer to wait for the change-log lock")
    assert not b_written.is_set()
    assert pull(device, start)["changes"] == []

    release_a.set()
    a.join(10)
    assert b_written.wait(10)
    middle = pull(device, start)
    # B has its sequence number but has not committed: a reader now sees A only.
    assert [c["document"]["data"]["title"] for c in middle["changes"]] == ["A"]

    release_b.set()
    b.join(10)
    assert not errors
    after = pull(device, middle["cursor"])
    assert [c["document"]["data"]["title"] for c in after["changes"]] == ["B"]
    seq_a, seq_b = (
        Change.objects.get(actor=writer_a).seq,
        Change.objects.get(actor=writer_b).seq,
    )
    assert seq_a < seq_b


def test_two_racing_pushes_of_one_mutation_apply_it_once(client_for):
    notes = _notes()
    user = UserFactory()
    document = document_create(collection=notes, actor=user, data={"title": "a", "priority": 1})
    edit = mutation("update", document.pk, data={"priority": 2}, base_version=1, mutation_id="race-1")
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    hold = threading.Event()

    def hold_the_change_log() -> None:
        # Both pushes get as far as the change-log lock (the first) or the
        # receipt's unique index (the second) and wait there.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHANGE_LOG_LOCK_ID])
            assert hold.wait(10)

    holder = _thread(hold_the_change_log, errors)
    _wait_for(lambda: _has_advisory_holder(), "the change-log lock to be held")
    pushers = [_thread(lambda: answers.append(push(client_for(user), edit)), errors) for _ in range(2)]
    _wait_for(lambda: _waiting_locks() >= 2, "both pushes to wait")

    hold.set()
    for thread in [holder, *pushers]:
        thread.join(15)
    assert not errors

    first, second = (answer["results"][0] for answer in answers)
    assert first == second
    assert first["status"] == "applied" and first["version"] == 2
    document.refresh_from_db()
    assert (document.version, document.data["priority"]) == (2, 2)
    assert Change.objects.filter(document_id=document.pk).count() == 2
    assert SyncMutation.objects.filter(user=user, mutation_id="race-1").count() == 1


def test_two_devices_creating_the_same_id_at_once_end_with_one_document(client_for):
    _notes()
    user = UserFactory()
    document_id = uuid.uuid4()
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def create(title: str) -> None:
        start.wait(10)
        answers.append(push(client_for(user), mutation("create", document_id, data={"title": title})))

    threads = [_thread(lambda t=t: create(t), errors) for t in ("one", "two")]
    for thread in threads:
        thread.join(15)
    assert not errors

    statuses = sorted(answer["results"][0]["status"] for answer in answers)
    assert statuses[0] == "applied" and statuses[1] in ("merged", "conflict")
    assert Document.objects.filter(pk=document_id).count() == 1


def _has_advisory_holder() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        return int(cursor.fetchone()[0]) >= 1
