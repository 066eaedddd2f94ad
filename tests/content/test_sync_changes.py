"""Contract section 3, GET sync/changes: snapshot, feed, cursors, visibility, cost."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Group
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.content.models import Document
from apps.content.selectors.collections import collection_get
from apps.content.selectors.sync import CURSOR_SALT
from apps.content.services.collections import collection_save
from apps.content.services.documents import document_create, document_delete, document_update
from tests.content.sync_support import CHANGES, NOTES_SCHEMA, Device, pull, pull_all
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def notes(db):
    CollectionFactory(name="notes", schema=NOTES_SCHEMA, indexes=[])
    return collection_get(name="notes")


@pytest.fixture
def tasks_collection(db):
    CollectionFactory(name="todo", schema=NOTES_SCHEMA, indexes=[])
    return collection_get(name="todo")


def _doc(collection, owner, title, acl=None):
    return document_create(collection=collection, actor=owner, data={"title": title}, acl=acl)


def _ids(changes, op=None):
    return [c["id"] for c in changes if op is None or c["op"] == op]


# --- snapshot -----------------------------------------------------------------------------


def test_without_a_cursor_a_snapshot_of_everything_readable_comes_in_pages(
    notes, tasks_collection, user, other_user, auth_client
):
    mine = [_doc(notes, user, f"n{i}") for i in range(3)] + [_doc(tasks_collection, user, "t")]
    shared = _doc(notes, other_user, "shared", acl={"users": {str(user.pk): "read"}})
    _doc(notes, other_user, "private")
    deleted = _doc(notes, user, "gone")
    document_delete(collection=notes, document_id=deleted.pk, actor=user)

    first = pull(auth_client, limit=2)
    assert first["has_more"] is True and len(first["changes"]) == 2
    changes, cursor = pull_all(auth_client, first["cursor"], limit=2)
    changes = first["changes"] + changes

    assert sorted(_ids(changes)) == sorted(str(d.pk) for d in [*mine, shared])
    assert {c["op"] for c in changes} == {"upsert"}
    one = next(c for c in changes if c["id"] == str(shared.pk))
    assert one["collection"] == "notes" and one["version"] == 1
    assert one["document"]["data"] == {"title": "shared"} and one["document"]["owner"] == str(other_user.pk)
    after = pull(auth_client, cursor)
    assert (after["changes"], after["has_more"], after["cursor"]) == ([], False, cursor)


def test_writes_during_a_snapshot_are_delivered_so_the_device_ends_equal_to_the_server(
    notes, user, auth_client
):
    documents = [_doc(notes, user, f"d{i}") for i in range(6)]
    device = Device(auth_client, limit=2)
    page = pull(auth_client, limit=2)
    device.cursor = page["cursor"]
    for change in page["changes"]:
        device.documents[change["id"]] = change["document"]
    delivered = set(_ids(page["changes"]))
    later = [d for d in documents if str(d.pk) not in delivered]

    # While the device pages through the snapshot: an edit of a delivered
    # document, a delete of one not delivered yet, and a new document.
    edited = next(d for d in documents if str(d.pk) in delivered)
    document_update(collection=notes, document_id=edited.pk, actor=user, patch={"title": "edited"})
    document_delete(collection=notes, document_id=later[0].pk, actor=user)
    created = _doc(notes, user, "new")
    device.sync_down()

    server = {str(d.pk): d.data for d in Document.objects.filter(deleted_at__isnull=True)}
    assert {k: v["data"] for k, v in device.documents.items()} == server
    assert device.documents[str(edited.pk)]["data"] == {"title": "edited"}
    assert str(created.pk) in device.documents and str(later[0].pk) not in device.documents


# --- feed -------------------------------------------------------------------------------------


def test_after_a_cursor_only_changes_come_with_the_current_document_once(notes, user, auth_client):
    a, b = _doc(notes, user, "a"), _doc(notes, user, "b")
    _, cursor = pull_all(auth_client)

    document_update(collection=notes, document_id=a.pk, actor=user, patch={"title": "a2"})
    document_update(collection=notes, document_id=a.pk, actor=user, patch={"done": True})
    document_delete(collection=notes, document_id=b.pk, actor=user)
    c = _doc(notes, user, "c")
    page = pull(auth_client, cursor)

    assert page["has_more"] is False
    assert [(x["id"], x["op"], x["version"]) for x in page["changes"]] == [
        (str(a.pk), "upsert", 3),
        (str(b.pk), "delete", 2),
        (str(c.pk), "upsert", 1),
    ]
    assert page["changes"][0]["document"]["data"] == {"title": "a2", "done": True}
    assert page["changes"][1]["document"] is None


def test_the_feed_pages_with_has_more_and_never_repeats_or_skips(notes, user, auth_client):
    _, cursor = pull_all(auth_client)
    made = [_doc(notes, user, str(i)) for i in range(7)]

    seen = []
    while True:
        page = pull(auth_client, cursor, limit=3)
        seen += _ids(page["changes"])
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    assert seen == [str(d.pk) for d in made]


def test_changes_of_documents_the_caller_never_could_read_do_not_appear(notes, user, other_user, auth_client):
    _, cursor = pull_all(auth_client)
    private = _doc(notes, other_user, "private")
    document_update(collection=notes, document_id=private.pk, actor=other_user, patch={"title": "x"})
    document_delete(collection=notes, document_id=private.pk, actor=other_user)

    assert pull(auth_client, cursor)["changes"] == []


def test_a_document_that_becomes_unreadable_comes_as_delete_and_back_as_upsert(
    notes, user, other_user, auth_client
):
    shared = _doc(notes, other_user, "shared", acl={"users": {str(user.pk): "read"}})
    _, cursor = pull_all(auth_client)

    document_update(collection=notes, document_id=shared.pk, actor=other_user, acl={})
    document_update(collection=notes, document_id=shared.pk, actor=other_user, patch={"title": "secret"})
    changes, cursor = pull_all(auth_client, cursor)
    assert [(c["id"], c["op"], c["document"]) for c in changes] == [(str(shared.pk), "delete", None)]

    document_update(collection=notes, document_id=shared.pk, actor=other_user, acl={"authenticated": "read"})
    changes, _ = pull_all(auth_client, cursor)
    assert [(c["op"], c["document"]["data"]) for c in changes] == [("upsert", {"title": "secret"})]


def test_an_upsert_whose_document_became_unreadable_later_never_shows_its_new_data(
    notes, user, other_user, auth_client
):
    shared = _doc(notes, other_user, "shared", acl={"users": {str(user.pk): "read"}})
    _, cursor = pull_all(auth_client)
    document_update(collection=notes, document_id=shared.pk, actor=other_user, patch={"title": "v2"})
    document_update(collection=notes, document_id=shared.pk, actor=other_user, acl={})
    document_update(collection=notes, document_id=shared.pk, actor=other_user, patch={"title": "secret"})

    first = pull(auth_client, cursor, limit=1)  # only the v2 change fits: the document is unreadable now
    assert [(c["op"], c["document"]) for c in first["changes"]] == [("delete", None)]
    assert "secret" not in str(first)


def test_removing_a_role_deletes_its_documents_on_the_device_without_any_document_change(
    notes, user, other_user, auth_client
):
    editors = Group.objects.create(name="editors")
    user.groups.add(editors)
    by_role = _doc(notes, other_user, "team", acl={"roles": {"editors": "read"}})
    own = _doc(notes, user, "mine")
    device = Device(auth_client)
    device.sync_down()
    assert set(device.documents) == {str(by_role.pk), str(own.pk)}

    user.groups.remove(editors)
    changes = device.sync_down()

    assert [(c["id"], c["op"]) for c in changes] == [(str(by_role.pk), "delete")]
    assert set(device.documents) == {str(own.pk)}
    assert device.sync_down() == []


def test_a_granted_role_brings_its_documents_without_any_document_change(
    notes, user, other_user, auth_client
):
    by_role = _doc(notes, other_user, "team", acl={"roles": {"editors": "read"}})
    device = Device(auth_client)
    device.sync_down()
    assert device.documents == {}

    user.groups.add(Group.objects.create(name="editors"))
    changes = device.sync_down()

    assert [(c["id"], c["op"]) for c in changes] == [(str(by_role.pk), "upsert")]
    assert device.documents[str(by_role.pk)]["data"] == {"title": "team"}


def test_a_role_sweep_pages_and_then_continues_with_the_feed(notes, user, other_user, auth_client):
    team = [_doc(notes, other_user, f"t{i}", acl={"roles": {"editors": "read"}}) for i in range(5)]
    device = Device(auth_client, limit=2)
    device.sync_down()
    user.groups.add(Group.objects.create(name="editors"))
    later = _doc(notes, user, "later")

    device.sync_down()

    assert set(device.documents) == {str(d.pk) for d in [*team, later]}


def test_public_read_switched_off_removes_the_documents_from_other_devices(user, other_user, auth_client):
    collection_save(definition={"name": "news", "schema": {}, "public_read": True})
    news = collection_get(name="news")
    item = document_create(collection=news, actor=other_user, data={"x": 1})
    device = Device(auth_client)
    device.sync_down()
    assert str(item.pk) in device.documents

    collection_save(definition={"name": "news", "schema": {}, "public_read": False})
    changes = device.sync_down()

    assert [(c["id"], c["op"]) for c in changes] == [(str(item.pk), "delete")]


# --- collections, limits, cursors --------------------------------------------------------------


def test_collections_filter_and_the_cursor_follows_one_set(notes, tasks_collection, user, auth_client):
    n, t = _doc(notes, user, "n"), _doc(tasks_collection, user, "t")

    changes, cursor = pull_all(auth_client, collections="notes")
    assert _ids(changes) == [str(n.pk)]

    _doc(tasks_collection, user, "t2")
    n2 = _doc(notes, user, "n2")
    assert _ids(pull(auth_client, cursor)["changes"]) == [str(n2.pk)]  # collections taken from the cursor
    assert _ids(pull(auth_client, cursor, collections="notes")["changes"]) == [str(n2.pk)]
    response = auth_client.get(CHANGES, {"since": cursor, "collections": "notes,todo"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_cursor"
    assert str(t.pk) not in _ids(changes)


def test_unknown_collections_are_simply_empty(notes, user, auth_client):
    _doc(notes, user, "n")

    assert pull(auth_client, collections="nothing-here")["changes"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "-3"},
        {"limit": "many"},
        {"collections": "Bad Name"},
        {"collections": "a,../b"},
    ],
)
def test_bad_parameters_are_400_validation_error(notes, auth_client, params):
    response = auth_client.get(CHANGES, params)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_limit_is_capped_at_1000(notes, user, auth_client):
    page = pull(auth_client, limit="5000")

    assert page["has_more"] is False


def test_a_tampered_cursor_is_400_invalid_cursor(notes, user, auth_client):
    _doc(notes, user, "n")
    _, cursor = pull_all(auth_client)
    payload = signing.loads(cursor, salt=CURSOR_SALT)
    payload["s"] = 0
    forged_unsigned = signing.dumps(payload, salt="another-salt", compress=True)
    value, signature = cursor.rsplit(":", 1)

    for bad in [
        cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB"),
        forged_unsigned,
        "x",
        "abc:def",
        value,
    ]:
        response = auth_client.get(CHANGES, {"since": bad})
        assert response.status_code == 400, bad
        body = response.json()
        assert body["code"] == "invalid_cursor"
        assert response["Content-Type"].startswith("application/problem+json")


def test_another_users_cursor_is_refused(notes, user, other_user, client_for):
    _, cursor = pull_all(client_for(user))

    response = client_for(other_user).get(CHANGES, {"since": cursor})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


def test_changes_need_a_signed_in_user(notes, api_client):
    response = api_client.get(CHANGES)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_staff_with_bypass_see_every_document(notes, user, other_user, client_for):
    from django.contrib.auth.models import Permission

    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="bypass_acl"))
    private = _doc(notes, other_user, "private")

    changes, _ = pull_all(client_for(staff))

    assert _ids(changes) == [str(private.pk)]


# --- cost ------------------------------------------------------------------------------------


def _queries_for_page(client, cursor, limit):
    with CaptureQueriesContext(connection) as captured:
        page = pull(client, cursor, limit=limit)
    return len(captured), page


def test_a_page_costs_a_constant_number_of_queries_whatever_its_size(notes, user, other_user, auth_client):
    _, start = pull_all(auth_client)
    for i in range(40):
        owner = user if i % 2 == 0 else other_user
        doc = _doc(
            notes, owner, f"d{i}", acl={"users": {str(user.pk): "write"}} if owner == other_user else None
        )
        document_update(collection=notes, document_id=doc.pk, actor=owner, patch={"priority": i})
    # Unreadable writes in between cost nothing per row on the caller's side.
    for i in range(30):
        _doc(notes, other_user, f"private {i}")
    pull(auth_client, start, limit=1)  # warm the collection cache

    small, small_page = _queries_for_page(auth_client, start, 5)
    large, large_page = _queries_for_page(auth_client, start, 60)
    full, full_page = _queries_for_page(auth_client, start, 1000)

    # Two changes of one document in a page are one entry: at most ``limit`` entries.
    assert 0 < len(small_page["changes"]) <= 5 and len(large_page["changes"]) > 25
    assert len(full_page["changes"]) == 40
    assert small == large == full
    assert full <= 8


def test_a_snapshot_page_costs_a_constant_number_of_queries(notes, user, auth_client):
    for i in range(30):
        _doc(notes, user, f"d{i}")
    pull(auth_client, limit=1)

    small, small_page = _queries_for_page(auth_client, None, 3)
    large, large_page = _queries_for_page(auth_client, None, 25)
    last, last_page = _queries_for_page(auth_client, None, 1000)

    assert len(small_page["changes"]) == 3 and len(large_page["changes"]) == 25
    assert small == large
    # The page that finishes the snapshot also reads the feed: one query more.
    assert len(last_page["changes"]) == 30 and last == small + 1


def test_text_crdt_documents_carry_their_yjs_state(notes, user, auth_client):
    doc = document_create(collection=notes, actor=user, data={"title": "t", "body": "hello"})

    changes, _ = pull_all(auth_client)

    [change] = changes
    assert change["id"] == str(doc.pk)
    assert change["document"]["data"]["body"] == "hello"
    crdt = change["document"]["crdt"]["body"]
    from tests.content.sync_support import ydoc

    _, text = ydoc(crdt["state"])
    assert str(text) == "hello"
    assert isinstance(crdt["state_vector"], str) and crdt["state_vector"]


def test_the_id_in_a_change_is_a_uuid_string(notes, user, auth_client):
    _doc(notes, user, "n")

    [change] = pull_all(auth_client)[0]

    assert str(uuid.UUID(change["id"])) == change["id"]
