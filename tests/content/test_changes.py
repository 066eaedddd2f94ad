"""The change log: one row per committed document write, in the same transaction."""

from __future__ import annotations

import pytest
from django.db import transaction

from apps.content.models import Change, Document
from apps.content.selectors.acl import principals_for_user
from apps.content.selectors.changes import (
    change_latest_seq,
    changes_after,
    document_readable_by,
)
from apps.content.services.documents import document_create, document_delete, document_update
from apps.core.exceptions import PreconditionFailed, ValidationFailed

pytestmark = pytest.mark.django_db


def test_every_write_appends_one_change_with_version_actor_and_readers(tasks, user, other_user):
    doc = document_create(collection=tasks, actor=user, data={"title": "a"})
    document_update(collection=tasks, document_id=doc.pk, actor=user, patch={"done": True})
    document_update(
        collection=tasks,
        document_id=doc.pk,
        actor=user,
        acl={"users": {str(other_user.pk): "read"}},
    )
    document_delete(collection=tasks, document_id=doc.pk, actor=user)

    changes = changes_after(seq=0, limit=100, collections=["tasks"])
    assert [(c.op, c.version) for c in changes] == [
        ("upsert", 1),
        ("upsert", 2),
        ("upsert", 3),
        ("delete", 4),
    ]
    assert all(c.document_id == doc.pk and c.actor_id == user.pk for c in changes)
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert changes[0].read_principals == [f"user:{user.pk}"]
    assert changes[2].read_principals == sorted([f"user:{user.pk}", f"user:{other_user.pk}"])
    other = principals_for_user(user=other_user)
    assert not document_readable_by(principals=other, read_principals=changes[1].read_principals)
    assert document_readable_by(principals=other, read_principals=changes[2].read_principals)
    assert change_latest_seq() == changes[-1].seq


def test_changes_after_pages_and_filters_by_collection(tasks, user):
    from apps.content.selectors.collections import collection_get
    from tests.factories import CollectionFactory

    CollectionFactory(name="notes", schema={}, indexes=[])
    notes = collection_get(name="notes")
    first = document_create(collection=tasks, actor=user, data={"title": "a"})
    document_create(collection=notes, actor=user, data={"x": 1})
    document_create(collection=tasks, actor=user, data={"title": "b"})

    all_changes = changes_after(seq=0, limit=10)
    assert len(all_changes) == 3
    page = changes_after(seq=all_changes[0].seq, limit=1)
    assert [c.seq for c in page] == [all_changes[1].seq]
    only_tasks = changes_after(seq=0, limit=10, collections=["tasks"])
    assert [c.collection for c in only_tasks] == ["tasks", "tasks"]
    assert only_tasks[0].document_id == first.pk
    assert changes_after(seq=0, limit=10, collections=[]) == []


def test_a_failing_write_leaves_no_change_and_no_document(tasks, user):
    with pytest.raises(ValidationFailed):
        document_create(collection=tasks, actor=user, data={"title": 5})
    assert Change.objects.count() == 0
    assert Document.objects.count() == 0

    doc = document_create(collection=tasks, actor=user, data={"title": "a"})

    def stale(_document: Document) -> None:
        raise PreconditionFailed()

    with pytest.raises(PreconditionFailed):
        document_update(
            collection=tasks, document_id=doc.pk, actor=user, patch={"title": "b"}, precondition=stale
        )
    with pytest.raises(ValidationFailed):
        document_update(collection=tasks, document_id=doc.pk, actor=user, patch={"priority": "high"})
    assert Change.objects.count() == 1
    doc.refresh_from_db()
    assert doc.version == 1 and doc.data == {"title": "a"}


def test_the_change_rolls_back_with_the_transaction_that_wrote_it(tasks, user):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        document_create(collection=tasks, actor=user, data={"title": "a"})
        assert Change.objects.count() == 1
        raise Abort
    assert Change.objects.count() == 0
    assert Document.objects.count() == 0
