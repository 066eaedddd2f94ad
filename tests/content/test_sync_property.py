"""Property: random interleavings of two devices' offline edits converge, and keep what the policy keeps.

Through HTTP. Each example: Alice creates a note shared with Bob; both
devices pull it; then for one or two rounds each device edits offline (plain
fields and the ``text_crdt`` body), the two push in a random order, and both
pull. After every round:

- both devices hold exactly the server's document (data, version, Yjs state);
- every plain field has the value the collection's policy says survives:
  ``last_write_wins`` the edit with the latest client time,
  ``client_wins`` the last edit to arrive, ``server_wins`` the first device to
  push keeps its edits of the fields it changed;
- the body keeps every character either device inserted (no insert is lost).

Edited values are unique, so a field is never changed back to an earlier
value (that case, A-B-A, counts as "unchanged" in any three-way merge).
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.content.sync.merge import get_path
from tests.content.sync_support import NOTES_SCHEMA, Device, at, mutation, push, ydoc, yupdate
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "priority": ("priority",),
    "color": ("meta", "color"),
    "size": ("meta", "size"),
}
INITIAL = {"title": "t", "priority": 0, "meta": {"color": "c", "size": 0}, "body": "base text"}

edit_strategy = st.tuples(
    st.sampled_from([0, 1]),  # which device
    st.sampled_from([*FIELDS, "body"]),  # what it edits
    st.integers(min_value=0, max_value=10_000),  # where an insert goes in the body
)
round_strategy = st.tuples(st.lists(edit_strategy, max_size=5), st.permutations([0, 1]))
rounds_strategy = st.lists(round_strategy, min_size=1, max_size=2)


@dataclass
class Edit:
    device: int
    field: str
    value: Any
    time: int


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    patch: dict[str, Any] = {path[-1]: value}
    for part in reversed(path[:-1]):
        patch = {part: patch}
    return patch


def _expected(policy: str, before: dict[str, Any], edits: list[Edit], order: list[int]) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    for name, path in FIELDS.items():
        mine = [e for e in edits if e.field == name]
        if not mine:
            expected[name] = get_path(before, path)
        elif policy == "last_write_wins":
            expected[name] = max(mine, key=lambda e: e.time).value
        elif policy == "client_wins":
            arrival = sorted(mine, key=lambda e: (order.index(e.device), e.time))
            expected[name] = arrival[-1].value
        else:
            first_device = next(d for d in order if any(e.device == d for e in mine))
            expected[name] = [e for e in mine if e.device == first_device][-1].value
    return expected


def _run(
    policy: str, rounds: list[tuple[list[tuple[int, str, int]], list[int]]], client_for: Callable
) -> None:
    alice_user, bob_user = UserFactory(), UserFactory()
    collection = f"notes_{policy.replace('_', '-')}"
    alice_client, bob_client = client_for(alice_user), client_for(bob_user)
    doc, text = ydoc()
    text.insert(0, INITIAL["body"])
    document_id = str(uuid.uuid4())
    created = push(
        alice_client,
        mutation(
            "create",
            document_id,
            collection=collection,
            data={**INITIAL, "body": yupdate(doc)},
            acl={"users": {str(bob_user.pk): "write"}},
            client_time=at(0),
        ),
    )["results"][0]
    assert created["status"] == "applied", created
    devices = [Device(alice_client, collections=collection), Device(bob_client, collections=collection)]
    for device in devices:
        device.sync_down()
    clock = itertools.count(1)
    values = itertools.count(1)

    for planned, order in rounds:
        before = devices[0].documents[document_id]["data"]
        text_before = before["body"]
        local = {}
        for index, device in enumerate(devices):
            state = device.documents[document_id]["crdt"]["body"]["state"]
            local[index] = ydoc(state)
        edits: list[Edit] = []
        inserted: list[str] = []
        for device_index, field, where in planned:
            device = devices[device_index]
            time = next(clock)
            base_version = device.documents[document_id]["version"]
            if field == "body":
                ydocument, ytext = local[device_index]
                token = f"<{device_index}.{next(values)}>"
                position = where % (len(str(ytext)) + 1)
                state_vector = ydocument.get_state()
                ytext.insert(position, token)
                inserted.append(token)
                data = {"body": yupdate(ydocument, state_vector)}
            else:
                number = next(values)
                value: Any = f"{device_index}-{number}" if field in ("title", "color") else number
                edits.append(Edit(device_index, field, value, time))
                data = _nested(FIELDS[field], value)
            device.pending.append(
                mutation(
                    "update",
                    document_id,
                    collection=collection,
                    data=data,
                    base_version=base_version,
                    client_time=at(time),
                )
            )
        for device_index in order:
            for result in devices[device_index].sync_up():
                assert result["status"] in ("applied", "merged", "conflict"), result
        for device in devices:
            device.sync_down()

        server = alice_client.get(f"/api/v1/collections/{collection}/documents/{document_id}").json()
        copies = [device.documents[document_id] for device in devices]
        # Convergence: both devices hold the server's document, Yjs state included.
        assert copies[0] == copies[1]
        assert copies[0]["data"] == server["data"] and copies[0]["version"] == server["version"]
        _, merged_text = ydoc(copies[0]["crdt"]["body"]["state"])
        assert str(merged_text) == server["data"]["body"]
        # What the policy keeps, field by field.
        expected = _expected(policy, before, edits, list(order))
        for name, path in FIELDS.items():
            assert get_path(server["data"], path) == expected[name], (name, policy, edits, list(order))
        # No inserted character is lost.
        assert Counter(server["data"]["body"]) == Counter(text_before) + Counter("".join(inserted))


@pytest.fixture
def policy_collections(db):
    for policy in ("last_write_wins", "server_wins", "client_wins"):
        CollectionFactory(
            name=f"notes_{policy.replace('_', '-')}",
            schema=NOTES_SCHEMA,
            indexes=[],
            conflict_policy=policy,
        )


_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(rounds=rounds_strategy)
def test_last_write_wins_converges_and_the_latest_edit_survives(policy_collections, client_for, rounds):
    _run("last_write_wins", rounds, client_for)


@_SETTINGS
@given(rounds=rounds_strategy)
def test_client_wins_converges_and_the_last_arrival_survives(policy_collections, client_for, rounds):
    _run("client_wins", rounds, client_for)


@_SETTINGS
@given(rounds=rounds_strategy)
def test_server_wins_converges_and_the_first_writer_keeps_its_fields(policy_collections, client_for, rounds):
    _run("server_wins", rounds, client_for)
