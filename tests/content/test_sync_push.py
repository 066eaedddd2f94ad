"""Contract section 3, POST sync/push: every row through HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group

from apps.content.models import Change, Document, DocumentVersion, SyncConflict, SyncMutation
from apps.content.services.documents import document_update
from tests.content.sync_support import NOTES_SCHEMA, PUSH, at, mutation, pull_all, push
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def notes(db):
    CollectionFactory(name="notes", schema=NOTES_SCHEMA, indexes=[])
    from apps.content.selectors.collections import collection_get

    return collection_get(name="notes")


def _make(collection_name="notes", **definition):
    from apps.content.selectors.collections import collection_get

    CollectionFactory(name=collection_name, schema=NOTES_SCHEMA, indexes=[], **definition)
    return collection_get(name=collection_name)


def _create(client, data, *, collection="notes", acl=None):
    document_id = uuid.uuid4()
    extra = {"acl": acl} if acl is not None else {}
    result = push(client, mutation("create", document_id, collection=collection, data=data, **extra))[
        "results"
    ][0]
    assert result["status"] == "applied", result
    return str(document_id)


def _server_edit(collection, document_id, user, patch):
    return document_update(collection=collection, document_id=document_id, actor=user, patch=patch)


# --- create, update, delete -------------------------------------------------------------


def test_create_keeps_the_client_chosen_id_and_lands_in_the_change_log(notes, user, auth_client):
    document_id = uuid.uuid4()
    answer = push(
        auth_client,
        mutation("create", document_id, data={"title": "Offline note"}, client_time=at(0), mutation_id="m-1"),
    )

    [result] = answer["results"]
    assert result["mutation_id"] == "m-1"
    assert result["status"] == "applied"
    assert result["conflicts"] == []
    assert result["document"]["id"] == str(document_id)
    assert result["document"]["data"] == {"title": "Offline note"}
    assert result["document"]["version"] == 1 and result["version"] == 1
    assert result["document"]["owner"] == str(user.pk)
    stored = Document.objects.get(pk=document_id)
    assert stored.data == {"title": "Offline note"}
    [change] = Change.objects.filter(document_id=document_id)
    assert (change.op, change.version, change.actor_id) == ("upsert", 1, user.pk)
    assert isinstance(answer["cursor"], str) and answer["seq"] == change.seq


def test_update_on_the_current_version_is_applied(notes, auth_client):
    document_id = _create(auth_client, {"title": "a", "priority": 1})

    [result] = push(
        auth_client, mutation("update", document_id, data={"priority": 5}, base_version=1, client_time=at(1))
    )["results"]

    assert result["status"] == "applied"
    assert result["document"]["data"] == {"title": "a", "priority": 5}
    assert result["version"] == 2


def test_update_is_a_json_merge_patch_null_removes_a_field(notes, auth_client):
    document_id = _create(auth_client, {"title": "a", "priority": 1, "meta": {"color": "red", "size": 2}})

    [result] = push(
        auth_client,
        mutation("update", document_id, data={"priority": None, "meta": {"size": 3}}, base_version=1),
    )["results"]

    assert result["document"]["data"] == {"title": "a", "meta": {"color": "red", "size": 3}}


def test_delete_leaves_a_tombstone_and_a_delete_change(notes, auth_client):
    document_id = _create(auth_client, {"title": "a"})

    [result] = push(auth_client, mutation("delete", document_id, base_version=1))["results"]

    assert result["status"] == "applied"
    assert result["document"] is None and result["version"] == 2
    assert Document.objects.get(pk=document_id).deleted_at is not None
    assert Change.objects.filter(document_id=document_id).latest("seq").op == "delete"
    # Deleting it again (another device) is a no-op, not an error.
    [again] = push(auth_client, mutation("delete", document_id, base_version=1))["results"]
    assert again["status"] == "applied" and again["version"] == 2


def test_create_of_an_existing_id_is_treated_as_an_update(notes, auth_client):
    document_id = _create(auth_client, {"title": "a", "priority": 1})

    [result] = push(
        auth_client,
        mutation("create", document_id, data={"title": "a", "done": True}, client_time=at(5)),
    )["results"]

    assert result["status"] == "merged"
    assert result["document"]["data"] == {"title": "a", "priority": 1, "done": True}
    assert Document.objects.count() == 1


# --- three-way merges ---------------------------------------------------------------------


def test_fields_changed_on_one_side_only_are_all_kept(notes, user, auth_client):
    document_id = _create(auth_client, {"title": "a", "priority": 1, "done": False})
    _server_edit(notes, document_id, user, {"done": True})  # version 2 on the server

    [result] = push(
        auth_client, mutation("update", document_id, data={"title": "b"}, base_version=1, client_time=at(1))
    )["results"]

    assert result["status"] == "merged"
    assert result["conflicts"] == []
    assert result["document"]["data"] == {"title": "b", "priority": 1, "done": True}
    assert result["version"] == 3


def test_last_write_wins_the_later_client_time_beats_the_server_write(notes, user, auth_client):
    document_id = _create(auth_client, {"title": "a"})
    _server_edit(notes, document_id, user, {"title": "server"})  # stamped with the server's clock (now)
    future = (datetime.now(tz=UTC) + timedelta(minutes=5)).isoformat()

    [newer] = push(
        auth_client,
        mutation("update", document_id, data={"title": "client"}, base_version=1, client_time=future),
    )["results"]

    assert newer["status"] == "merged"
    assert newer["conflicts"] == [
        {"field": "title", "server_value": "server", "client_value": "client", "winner": "client"}
    ]
    assert newer["document"]["data"]["title"] == "client"


def test_last_write_wins_an_older_edit_that_arrives_late_loses(notes, user, auth_client):
    document_id = _create(auth_client, {"title": "a", "priority": 1})
    _server_edit(notes, document_id, user, {"title": "server"})

    [late] = push(
        auth_client,
        mutation("update", document_id, data={"title": "old"}, base_version=1, client_time=at(0)),
    )["results"]

    assert late["status"] == "conflict"
    assert late["conflicts"] == [
        {"field": "title", "server_value": "server", "client_value": "old", "winner": "server"}
    ]
    assert late["document"]["data"]["title"] == "server"
    assert late["version"] == 2  # nothing was written


def test_last_write_wins_between_two_devices_orders_by_client_time(notes, user, other_user, client_for):
    alice, bob = client_for(user), client_for(other_user)
    document_id = _create(alice, {"title": "a"}, acl={"users": {str(other_user.pk): "write"}})

    # Bob edited later (t=20) but pushes first; Alice's edit (t=10) arrives late and loses.
    push(bob, mutation("update", document_id, data={"title": "bob"}, base_version=1, client_time=at(20)))
    [result] = push(
        alice, mutation("update", document_id, data={"title": "alice"}, base_version=1, client_time=at(10))
    )["results"]

    assert result["status"] == "conflict"
    assert Document.objects.get(pk=document_id).data["title"] == "bob"


def test_a_future_client_time_is_clamped_so_a_later_server_write_still_wins(notes, user, auth_client):
    document_id = _create(auth_client, {"title": "a"})
    far_future = "2999-01-01T00:00:00Z"
    push(
        auth_client,
        mutation("update", document_id, data={"title": "device"}, base_version=1, client_time=far_future),
    )
    # The device's clock said 2999; it was clamped to the server's now, so a
    # later edit from another device, honestly timed, is newer.
    _server_edit(notes, document_id, user, {"title": "server"})
    honest = (datetime.now(tz=UTC) + timedelta(seconds=2)).isoformat()

    [result] = push(
        auth_client,
        mutation("update", document_id, data={"title": "again"}, base_version=2, client_time=honest),
    )["results"]

    assert result["conflicts"][0]["winner"] == "client"
    assert Document.objects.get(pk=document_id).data["title"] == "again"


def test_a_device_with_a_clock_in_the_far_past_loses_every_conflict(notes, user, auth_client):
    document_id = _create(auth_client, {"title": "a"})
    _server_edit(notes, document_id, user, {"title": "server"})

    [result] = push(
        auth_client,
        mutation(
            "update", document_id, data={"title": "x"}, base_version=1, client_time="0001-01-01T00:00:00Z"
        ),
    )["results"]

    assert result["status"] == "conflict"
    assert result["conflicts"][0]["winner"] == "server"


@pytest.mark.parametrize("bad_time", ["yesterday", "2026-13-45T00:00:00Z", 1700000000, "2026-01-01T00:00:00"])
def test_a_client_time_that_is_not_a_time_is_rejected_as_validation_error(notes, auth_client, bad_time):
    document_id = _create(auth_client, {"title": "a"})

    [result] = push(
        auth_client,
        mutation("update", document_id, data={"title": "b"}, base_version=1, client_time=bad_time),
    )["results"]

    assert result["status"] == "rejected"
    assert result["code"] == "validation_error"
    assert "client_time" in result["errors"]
    assert Document.objects.get(pk=document_id).data == {"title": "a"}


def test_server_wins_keeps_the_server_value_and_applies_the_rest(user, auth_client):
    collection = _make(conflict_policy="server_wins")
    document_id = _create(auth_client, {"title": "a", "priority": 1})
    _server_edit(collection, document_id, user, {"title": "server"})

    [result] = push(
        auth_client,
        mutation(
            "update",
            document_id,
            data={"title": "client", "priority": 9},
            base_version=1,
            client_time="2999-01-01T00:00:00Z",
        ),
    )["results"]

    assert result["status"] == "merged"  # priority was applied
    assert result["conflicts"] == [
        {"field": "title", "server_value": "server", "client_value": "client", "winner": "server"}
    ]
    assert result["document"]["data"] == {"title": "server", "priority": 9}


def test_server_wins_with_nothing_applied_is_a_conflict(user, auth_client):
    collection = _make(conflict_policy="server_wins")
    document_id = _create(auth_client, {"title": "a"})
    _server_edit(collection, document_id, user, {"title": "server"})

    [result] = push(auth_client, mutation("update", document_id, data={"title": "client"}, base_version=1))[
        "results"
    ]

    assert result["status"] == "conflict"
    assert result["document"]["data"] == {"title": "server"}


def test_client_wins_even_with_an_old_client_time(user, auth_client):
    collection = _make(conflict_policy="client_wins")
    document_id = _create(auth_client, {"title": "a"})
    _server_edit(collection, document_id, user, {"title": "server"})

    [result] = push(
        auth_client,
        mutation("update", document_id, data={"title": "client"}, base_version=1, client_time=at(0)),
    )["results"]

    assert result["status"] == "merged"
    assert result["conflicts"][0] == {
        "field": "title",
        "server_value": "server",
        "client_value": "client",
        "winner": "client",
    }
    assert Document.objects.get(pk=document_id).data == {"title": "client"}


def test_nested_fields_merge_field_by_field(notes, user, auth_client):
    document_id = _create(auth_client, {"title": "a", "meta": {"color": "red", "size": 1}})
    _server_edit(notes, document_id, user, {"meta": {"color": "blue"}})

    [result] = push(
        auth_client,
        mutation("update", document_id, data={"meta": {"size": 2}}, base_version=1, client_time=at(1)),
    )["results"]

    assert result["status"] == "merged" and result["conflicts"] == []
    assert result["document"]["data"]["meta"] == {"color": "blue", "size": 2}


def test_a_pruned_base_version_decides_every_differing_field_by_policy(user, auth_client):
    collection = _make(conflict_policy="server_wins")
    document_id = _create(auth_client, {"title": "a", "priority": 1})
    _server_edit(collection, document_id, user, {"done": True})
    DocumentVersion.objects.filter(document_id=document_id).delete()  # the retention job ran

    [result] = push(
        auth_client,
        mutation("update", document_id, data={"title": "b", "priority": 1}, base_version=1),
    )["results"]

    # Without the base, "title" differs on both sides: decided for the server;
    # "priority" is equal: nothing to decide.
    assert result["status"] == "conflict"
    assert [c["field"] for c in result["conflicts"]] == ["title"]
    assert result["document"]["data"] == {"title": "a", "priority": 1, "done": True}


def test_updates_of_one_device_in_one_push_never_conflict_with_each_other(user, auth_client):
    _make(conflict_policy="server_wins")
    document_id = _create(auth_client, {"title": "a"})

    results = push(
        auth_client,
        mutation("update", document_id, data={"title": "b"}, base_version=1, client_time=at(1)),
        mutation("update", document_id, data={"title": "c"}, base_version=1, client_time=at(2)),
        mutation("update", document_id, data={"priority": 3}, base_version=1, client_time=at(3)),
    )["results"]

    assert [r["status"] for r in results] == ["applied", "merged", "merged"]
    assert all(r["conflicts"] == [] for r in results)
    assert Document.objects.get(pk=document_id).data == {"title": "c", "priority": 3}


def test_conflicts_are_recorded_for_staff(notes, user, auth_client):
    document_id = _create(auth_client, {"title": "a"})
    _server_edit(notes, document_id, user, {"title": "server"})

    push(
        auth_client,
        mutation(
            "update", document_id, data={"title": "old"}, base_version=1, client_time=at(0), mutation_id="mx"
        ),
    )

    [record] = SyncConflict.objects.all()
    assert (record.collection, str(record.document_id), record.user_id) == ("notes", document_id, user.pk)
    assert (record.mutation_id, record.field, record.winner) == ("mx", "title", "server")
    assert (record.server_value, record.client_value, record.policy) == ("server", "old", "last_write_wins")
    assert (record.base_version, record.server_version) == (1, 2)


# --- idempotency --------------------------------------------------------------------------


def test_a_replayed_mutation_returns_the_first_result_and_is_not_applied_twice(notes, auth_client):
    document_id = _create(auth_client, {"title": "a", "priority": 1})
    edit = mutation("update", document_id, data={"priority": 2}, base_version=1, mutation_id="same")

    first = push(auth_client, edit)["results"][0]
    second = push(auth_client, edit)["results"][0]

    assert second == first
    assert Document.objects.get(pk=document_id).version == 2
    assert Change.objects.filter(document_id=document_id).count() == 2
    assert SyncMutation.objects.filter(mutation_id="same").count() == 1


def test_a_replayed_rejection_is_replayed_too(notes, auth_client):
    bad = mutation("update", uuid.uuid4(), data={"title": "x"}, base_version=1, mutation_id="gone")

    first = push(auth_client, bad)["results"][0]
    second = push(auth_client, bad)["results"][0]

    assert first["status"] == "rejected" and first["code"] == "not_found"
    assert second == first


def test_another_users_mutation_id_is_a_different_mutation(notes, user, other_user, client_for):
    alice, bob = client_for(user), client_for(other_user)

    a = push(alice, mutation("create", uuid.uuid4(), data={"title": "alice"}, mutation_id="shared-id"))
    b = push(bob, mutation("create", uuid.uuid4(), data={"title": "bob"}, mutation_id="shared-id"))

    assert a["results"][0]["status"] == b["results"][0]["status"] == "applied"
    assert a["results"][0]["document"]["id"] != b["results"][0]["document"]["id"]
    assert Document.objects.count() == 2


# --- rejections -----------------------------------------------------------------------------


def test_update_of_a_deleted_document_is_rejected_as_deleted(notes, auth_client):
    document_id = _create(auth_client, {"title": "a"})
    push(auth_client, mutation("delete", document_id, base_version=1))

    [result] = push(auth_client, mutation("update", document_id, data={"title": "b"}, base_version=1))[
        "results"
    ]

    assert result["status"] == "rejected"
    assert result["code"] == "deleted"
    assert result["document"] is None
    assert Document.objects.get(pk=document_id).deleted_at is not None


def test_resurrect_on_edit_brings_the_document_back_with_the_edit(user, auth_client):
    _make(resurrect_on_edit=True)
    document_id = _create(auth_client, {"title": "a", "priority": 1})
    push(auth_client, mutation("delete", document_id, base_version=1))

    [result] = push(auth_client, mutation("update", document_id, data={"title": "b"}, base_version=1))[
        "results"
    ]

    assert result["status"] == "applied"
    assert result["document"]["data"] == {"title": "b", "priority": 1}
    assert result["version"] == 3
    document = Document.objects.get(pk=document_id)
    assert document.deleted_at is None and document.owner_id == user.pk
    changes, _ = pull_all(auth_client)
    assert [(c["op"], c["version"]) for c in changes] == [("upsert", 3)]


def test_a_document_the_caller_cannot_read_is_not_found_without_leaking_it(
    notes, user, other_user, client_for
):
    document_id = _create(client_for(other_user), {"title": "private"})
    mine = client_for(user)

    results = push(
        mine,
        mutation("update", document_id, data={"title": "x"}, base_version=1),
        mutation("delete", document_id, base_version=1),
        mutation("update", uuid.uuid4(), data={"title": "x"}, base_version=1),
    )["results"]

    assert [(r["status"], r["code"]) for r in results] == [("rejected", "not_found")] * 3
    assert results[0]["detail"] == results[2]["detail"]
    assert all(r["document"] is None for r in results)
    assert Document.objects.get(pk=document_id).data == {"title": "private"}


def test_a_reader_who_may_not_write_is_rejected_with_permission_denied(notes, user, other_user, client_for):
    document_id = _create(client_for(other_user), {"title": "shared"}, acl={"users": {str(user.pk): "read"}})

    results = push(
        client_for(user),
        mutation("update", document_id, data={"title": "x"}, base_version=1),
        mutation("delete", document_id, base_version=1),
    )["results"]

    assert [(r["status"], r["code"]) for r in results] == [("rejected", "permission_denied")] * 2
    # The device gets the server's copy back to undo its local edit.
    assert results[0]["document"]["data"] == {"title": "shared"}
    assert Document.objects.get(pk=document_id).deleted_at is None


def test_create_without_create_permission_is_rejected(user, auth_client):
    _make(create_permission="staff")

    [result] = push(auth_client, mutation("create", uuid.uuid4(), data={"title": "a"}))["results"]

    assert (result["status"], result["code"]) == ("rejected", "permission_denied")
    assert Document.objects.count() == 0


def test_schema_failures_are_rejected_with_the_errors_per_field(notes, auth_client):
    document_id = _create(auth_client, {"title": "a"})

    results = push(
        auth_client,
        mutation("create", uuid.uuid4(), data={"title": 5, "priority": 1000}),
        mutation("update", document_id, data={"done": "yes"}, base_version=1),
    )["results"]

    assert [r["code"] for r in results] == ["validation_error", "validation_error"]
    assert set(results[0]["errors"]) == {"data.title", "data.priority"}
    assert set(results[1]["errors"]) == {"data.done"}
    assert Document.objects.get(pk=document_id).version == 1


def test_one_bad_mutation_never_blocks_the_rest_of_the_batch(notes, auth_client):
    good_id = uuid.uuid4()
    results = push(
        auth_client,
        "not an object",
        {"mutation_id": "m-bad", "op": "explode"},
        mutation("create", uuid.uuid4(), data={"title": 5}),
        mutation("update", "not-a-uuid", data={"title": "x"}, base_version=1),
        mutation("create", uuid.uuid4(), collection="nope", data={"title": "x"}),
        mutation("create", good_id, data={"title": "fine"}, mutation_id="m-good"),
        mutation("update", good_id, data={"title": "x"}, base_version=True),
        mutation("update", good_id, data=["x"], base_version=1),
        mutation("create", uuid.uuid4(), data={"title": "x"}, surprise=1),
    )["results"]

    assert [(r["status"], r.get("code")) for r in results] == [
        ("rejected", "invalid_mutation"),
        ("rejected", "invalid_mutation"),
        ("rejected", "validation_error"),
        ("rejected", "invalid_mutation"),
        ("rejected", "not_found"),
        ("applied", None),
        ("rejected", "invalid_mutation"),
        ("rejected", "invalid_mutation"),
        ("rejected", "invalid_mutation"),
    ]
    assert results[0]["mutation_id"] is None
    assert results[1]["mutation_id"] == "m-bad"
    assert set(results[1]["errors"]) >= {"op", "collection", "id"}
    assert Document.objects.filter(pk=good_id).exists()
    assert Document.objects.count() == 1


def test_an_id_used_in_another_collection_is_rejected(notes, auth_client):
    _make("other")
    document_id = _create(auth_client, {"title": "a"})

    [result] = push(auth_client, mutation("create", document_id, collection="other", data={"title": "b"}))[
        "results"
    ]

    assert (result["status"], result["code"]) == ("rejected", "conflict")


def test_a_base_version_from_the_future_is_rejected(notes, auth_client):
    document_id = _create(auth_client, {"title": "a"})

    [result] = push(auth_client, mutation("update", document_id, data={"title": "b"}, base_version=7))[
        "results"
    ]

    assert (result["status"], result["code"]) == ("rejected", "validation_error")
    assert "base_version" in result["errors"]


# --- request limits -------------------------------------------------------------------------


def test_too_many_mutations_is_400_and_nothing_is_applied(notes, auth_client, settings):
    settings.SYNC_PUSH_MAX_MUTATIONS = 3
    mutations = [mutation("create", uuid.uuid4(), data={"title": str(i)}) for i in range(4)]

    response = auth_client.post(PUSH, {"mutations": mutations}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error" and "mutations" in body["errors"]
    assert Document.objects.count() == 0


def test_a_body_over_the_limit_is_413(notes, auth_client, settings):
    settings.SYNC_PUSH_MAX_BYTES = 2000
    mutations = [mutation("create", uuid.uuid4(), data={"title": "x" * 150}) for _ in range(20)]

    response = auth_client.post(PUSH, {"mutations": mutations}, format="json")

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert response["Content-Type"].startswith("application/problem+json")
    assert Document.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"mutations": "x"},
        {"mutations": {"a": 1}},
        {"mutations": [], "extra": True},
        {"mutations": [], "since": ["x"]},
    ],
)
def test_a_malformed_push_body_is_400(notes, auth_client, body):
    response = auth_client.post(PUSH, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_push_needs_a_signed_in_user(notes, api_client):
    response = api_client.post(PUSH, {"mutations": []}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_a_tampered_since_is_400_invalid_cursor_and_nothing_is_applied(notes, auth_client):
    response = auth_client.post(
        PUSH,
        {"mutations": [mutation("create", uuid.uuid4(), data={"title": "a"})], "since": "abc:def"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"
    assert Document.objects.count() == 0


# --- the answer's cursor ----------------------------------------------------------------------


def test_with_since_the_cursor_skips_the_push_own_writes_only(notes, user, other_user, client_for):
    alice = client_for(user)
    _, cursor = pull_all(alice)

    answer = push(alice, mutation("create", uuid.uuid4(), data={"title": "mine"}), since=cursor)

    changes, _ = pull_all(alice, answer["cursor"])
    assert changes == []  # the device has its own write already

    # When someone else wrote in between, nothing is skipped.
    shared = _create(client_for(other_user), {"title": "theirs"}, acl={"users": {str(user.pk): "read"}})
    _, cursor = pull_all(alice)
    _create(client_for(other_user), {"title": "theirs too"}, acl={"users": {str(user.pk): "read"}})
    answer = push(alice, mutation("create", uuid.uuid4(), data={"title": "mine 2"}), since=cursor)
    changes, _ = pull_all(alice, answer["cursor"])
    assert sorted(c["document"]["data"]["title"] for c in changes) == ["mine 2", "theirs too"]
    assert shared not in {c["id"] for c in changes}


def test_group_roles_grant_write_access_through_sync(notes, user, other_user, client_for):
    editors = Group.objects.create(name="editors")
    user.groups.add(editors)
    document_id = _create(client_for(other_user), {"title": "a"}, acl={"roles": {"editors": "write"}})

    [result] = push(client_for(user), mutation("update", document_id, data={"title": "b"}, base_version=1))[
        "results"
    ]

    assert result["status"] == "applied"


def test_a_push_with_a_new_users_document_is_owned_by_the_pusher(notes, client_for):
    someone = UserFactory()

    [result] = push(client_for(someone), mutation("create", uuid.uuid4(), data={"title": "a"}))["results"]

    assert result["document"]["owner"] == str(someone.pk)


def test_a_push_with_an_idempotency_key_is_replayed_whole(notes, auth_client):
    body = {"mutations": [mutation("create", uuid.uuid4(), data={"title": "a"}, mutation_id="k-1")]}

    first = auth_client.post(PUSH, body, format="json", HTTP_IDEMPOTENCY_KEY="push-1")
    second = auth_client.post(PUSH, body, format="json", HTTP_IDEMPOTENCY_KEY="push-1")

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Document.objects.count() == 1
