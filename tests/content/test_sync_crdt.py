"""Collaborative text (``text_crdt``) through HTTP: Yjs updates merged on the server, nothing lost."""

from __future__ import annotations

import base64
import uuid

import pytest

from apps.content.models import Document, DocumentCrdtState
from tests.content.sync_support import NOTES_SCHEMA, Device, mutation, push, ydoc, yupdate
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

DOCS = "/api/v1/collections/notes/documents"
TEXT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture
def notes(db):
    CollectionFactory(name="notes", schema=NOTES_SCHEMA, indexes=[])


def _edit(device: Device, document_id: str, change) -> dict:
    """Edit the device's copy of the text offline; queue the edit as a Yjs update."""
    local = device.documents[document_id]
    doc, text = ydoc(local["crdt"]["body"]["state"])
    before = doc.get_state()
    change(text)
    device.pending.append(
        mutation("update", document_id, data={"body": yupdate(doc, before)}, base_version=local["version"])
    )
    return local


def _delete_word(text, word: str) -> None:
    start = str(text).index(word)
    del text[start : start + len(word)]


@pytest.mark.parametrize("first", ["alice", "bob"])
def test_two_users_editing_one_note_offline_keep_both_edits_in_either_order(
    notes, user, other_user, client_for, first
):
    created = client_for(user).post(
        DOCS,
        {"data": {"title": "n", "body": TEXT}, "acl": {"users": {str(other_user.pk): "write"}}},
        format="json",
    )
    assert created.status_code == 201
    document_id = created.json()["id"]
    alice, bob = Device(client_for(user)), Device(client_for(other_user))
    alice.sync_down()
    bob.sync_down()

    # Offline: Alice inserts at the start and deletes a word, Bob inserts at the end.
    _edit(alice, document_id, lambda t: t.insert(0, "Look: "))
    _edit(alice, document_id, lambda t: _delete_word(t, "brown "))
    _edit(bob, document_id, lambda t: t.insert(len(str(t)), "!!"))

    order = [alice, bob] if first == "alice" else [bob, alice]
    for device in order:
        results = device.sync_up()
        assert {r["status"] for r in results} <= {"applied", "merged"}
        assert all(r["conflicts"] == [] for r in results)
    alice.sync_down()
    bob.sync_down()

    expected = "Look: The quick fox jumps over the lazy dog!!"
    assert Document.objects.get(pk=document_id).data["body"] == expected
    for device in (alice, bob):
        local = device.documents[document_id]
        assert local["data"]["body"] == expected
        _, text = ydoc(local["crdt"]["body"]["state"])
        assert str(text) == expected
    assert alice.documents[document_id] == bob.documents[document_id]
    # The plain API shows the text as a string.
    shown = client_for(other_user).get(f"{DOCS}/{document_id}").json()
    assert shown["data"]["body"] == expected


def test_a_plain_string_written_through_the_api_merges_with_an_offline_yjs_edit(notes, user, auth_client):
    document_id = auth_client.post(
        DOCS, {"data": {"title": "n", "body": "hello world"}}, format="json"
    ).json()["id"]
    device = Device(auth_client)
    device.sync_down()
    _edit(device, document_id, lambda t: t.insert(len(str(t)), "!"))

    patched = auth_client.patch(
        f"{DOCS}/{document_id}", {"data": {"body": "hello brave world"}}, format="json"
    )
    assert patched.status_code == 200
    [result] = device.sync_up()

    assert result["status"] == "merged" and result["conflicts"] == []
    assert result["document"]["data"]["body"] == "hello brave world!"


def test_create_through_sync_takes_a_yjs_update_and_returns_text_state_and_state_vector(notes, auth_client):
    doc, text = ydoc()
    text.insert(0, "draft")
    document_id = uuid.uuid4()

    [result] = push(auth_client, mutation("create", document_id, data={"title": "t", "body": yupdate(doc)}))[
        "results"
    ]

    assert result["status"] == "applied"
    assert result["document"]["data"] == {"title": "t", "body": "draft"}
    state = result["document"]["crdt"]["body"]
    server_doc, server_text = ydoc(state["state"])
    assert str(server_text) == "draft"
    assert base64.b64decode(state["state_vector"]) == server_doc.get_state()
    stored = DocumentCrdtState.objects.get(document_id=document_id, field="/body")
    assert stored.state == state["state"]


def test_an_edit_on_an_old_version_merges_text_without_a_conflict(notes, user, auth_client):
    document_id = auth_client.post(DOCS, {"data": {"title": "a", "body": "one"}}, format="json").json()["id"]
    device = Device(auth_client)
    device.sync_down()
    auth_client.patch(f"{DOCS}/{document_id}", {"data": {"title": "b"}}, format="json")
    _edit(device, document_id, lambda t: t.insert(3, " two"))

    [result] = device.sync_up()

    assert result["status"] == "merged"
    assert result["document"]["data"] == {"title": "b", "body": "one two"}


@pytest.mark.parametrize("value", ["not base64 at all!", base64.b64encode(b"\xff\xfe garbage").decode()])
def test_a_text_crdt_value_that_is_not_a_yjs_update_is_rejected(notes, auth_client, value):
    document_id = auth_client.post(DOCS, {"data": {"title": "a", "body": "keep"}}, format="json").json()["id"]

    [result] = push(auth_client, mutation("update", document_id, data={"body": value}, base_version=1))[
        "results"
    ]

    assert (result["status"], result["code"]) == ("rejected", "validation_error")
    assert "data.body" in result["errors"]
    assert Document.objects.get(pk=document_id).data["body"] == "keep"


def test_a_nested_text_crdt_field_merges_without_touching_its_siblings(user, auth_client):
    CollectionFactory(
        name="cards",
        schema={
            "type": "object",
            "properties": {
                "meta": {
                    "type": "object",
                    "properties": {"color": {"type": "string"}, "notes": {"type": "text_crdt"}},
                }
            },
        },
        indexes=[],
    )
    created = auth_client.post(
        "/api/v1/collections/cards/documents",
        {"data": {"meta": {"color": "red", "notes": "ab"}}},
        format="json",
    ).json()
    device = Device(auth_client)
    device.sync_down()
    local = device.documents[created["id"]]
    doc, text = ydoc(local["crdt"]["meta.notes"]["state"])
    before = doc.get_state()
    text.insert(1, "X")

    [result] = push(
        auth_client,
        mutation(
            "update",
            created["id"],
            collection="cards",
            data={"meta": {"notes": yupdate(doc, before)}},
            base_version=1,
        ),
    )["results"]

    assert result["status"] == "applied"
    assert result["document"]["data"] == {"meta": {"color": "red", "notes": "aXb"}}
