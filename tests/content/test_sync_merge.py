"""The pure sync layer: clocks, three-way merge, CRDT text."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from apps.content.sync.clock import HLC, hlc_for_client_time, hlc_next
from apps.content.sync.crdt import (
    InvalidCrdtUpdate,
    crdt_apply_update,
    crdt_set_text,
    crdt_text_of,
)
from apps.content.sync.merge import apply_merge_patch, changed_paths, three_way_merge


def _clock(ms: int, node: str = "s") -> HLC:
    return HLC(ms, 0, node)


def test_hlc_encoding_sorts_like_the_tuple():
    a, b, c = HLC(5, 0, "a"), HLC(5, 1, "a"), HLC(40, 0, "a")
    assert sorted([c.encode(), b.encode(), a.encode()]) == [a.encode(), b.encode(), c.encode()]
    assert HLC.decode(b.encode()) == b


def test_client_time_in_the_future_is_clamped_to_server_now():
    now = 1_700_000_000_000
    future = datetime.fromtimestamp(now / 1000, tz=UTC) + timedelta(days=365)
    assert hlc_for_client_time(future, node="d", server_now_ms=now).wall_ms == now


def test_client_time_in_the_past_is_kept_so_the_older_edit_loses():
    now = 1_700_000_000_000
    past = datetime.fromtimestamp(now / 1000, tz=UTC) - timedelta(hours=1)
    assert hlc_for_client_time(past, node="d", server_now_ms=now).wall_ms == now - 3_600_000


def test_hlc_next_is_monotonic_even_when_the_wall_clock_stands_still():
    first = hlc_next(None, node="s", server_now_ms=10)
    second = hlc_next(first, node="s", server_now_ms=10)
    third = hlc_next(second, node="s", server_now_ms=9)
    assert first < second < third


def test_merge_keeps_fields_changed_on_only_one_side():
    base = {"title": "a", "done": False, "priority": 1}
    server = {"title": "a", "done": True, "priority": 1}
    result = three_way_merge(
        base=base,
        server=server,
        patch={"title": "b"},
        policy="last_write_wins",
        client_clock=_clock(1),
        server_clock_for=lambda _p: _clock(2),
    )
    assert result.data == {"title": "b", "done": True, "priority": 1}
    assert result.conflicts == []
    assert result.client_applied


@pytest.mark.parametrize(
    ("policy", "client_ms", "server_ms", "winner", "title"),
    [
        ("last_write_wins", 10, 5, "client", "client"),
        ("last_write_wins", 5, 10, "server", "server"),
        ("server_wins", 10, 5, "server", "server"),
        ("client_wins", 5, 10, "client", "client"),
    ],
)
def test_a_field_changed_on_both_sides_is_decided_by_the_policy(policy, client_ms, server_ms, winner, title):
    result = three_way_merge(
        base={"title": "base"},
        server={"title": "server"},
        patch={"title": "client"},
        policy=policy,
        client_clock=_clock(client_ms, "c"),
        server_clock_for=lambda _p: _clock(server_ms),
    )
    assert result.data["title"] == title
    assert [c.as_dict() for c in result.conflicts] == [
        {"field": "title", "server_value": "server", "client_value": "client", "winner": winner}
    ]
    assert result.client_applied is (winner == "client")


def test_nested_objects_merge_field_by_field():
    result = three_way_merge(
        base={"meta": {"color": "red", "size": 1}},
        server={"meta": {"color": "red", "size": 2}},
        patch={"meta": {"color": "blue"}},
        policy="server_wins",
        client_clock=_clock(1),
        server_clock_for=lambda _p: _clock(2),
    )
    assert result.data == {"meta": {"color": "blue", "size": 2}}
    assert result.conflicts == []


def test_null_in_the_patch_deletes_the_field():
    assert apply_merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"a": None, "b": {"c": None}}) == {
        "b": {"d": 3}
    }


def test_unknown_base_treats_every_disagreement_as_a_conflict():
    result = three_way_merge(
        base=None,
        server={"title": "server", "n": 1},
        patch={"title": "client", "n": 1},
        policy="server_wins",
        client_clock=_clock(1),
        server_clock_for=lambda _p: _clock(2),
    )
    assert result.data == {"title": "server", "n": 1}
    assert [c.field for c in result.conflicts] == ["title"]


def test_changed_paths_lists_leaves_that_differ():
    before = {"a": 1, "b": {"c": 1, "d": 1}, "gone": 1}
    after = {"a": 1, "b": {"c": 2, "d": 1}, "new": 1}
    assert sorted(changed_paths(before, after)) == [("b", "c"), ("gone",), ("new",)]


def test_changed_paths_of_an_object_that_appears_or_disappears_are_its_leaves():
    assert sorted(changed_paths({}, {"meta": {"color": "red", "size": {"w": 1}}})) == [
        ("meta", "color"),
        ("meta", "size", "w"),
    ]
    assert changed_paths({"meta": {"color": "red"}}, {}) == [("meta", "color")]
    assert changed_paths({}, {"meta": {}}) == [("meta",)]
    assert changed_paths({"meta": {"color": "red"}}, {"meta": 5}) == [("meta",)]


# --- Property: last-write-wins converges whatever the order of arrival --------

FIELDS = ["title", "done", "priority", "notes"]
edit = st.fixed_dictionaries({}, optional={f: st.integers(0, 5) for f in FIELDS})


@settings(max_examples=200, deadline=None)
@given(
    a_edit=edit,
    b_edit=edit,
    a_ms=st.integers(1, 1000),
    b_ms=st.integers(1, 1000),
)
def test_lww_converges_and_keeps_the_latest_edit_of_every_field(a_edit, b_edit, a_ms, b_ms):
    base = {f: -1 for f in FIELDS}
    clocks = {"a": HLC(a_ms, 0, "a"), "b": HLC(b_ms, 0, "b")}
    edits = {"a": a_edit, "b": b_edit}

    def run(order: list[str]) -> dict[str, Any]:
        server = dict(base)
        field_clock: dict[str, HLC] = {f: HLC(0, 0, "s") for f in FIELDS}
        for device in order:
            result = three_way_merge(
                base=base,
                server=server,
                patch=edits[device],
                policy="last_write_wins",
                client_clock=clocks[device],
                server_clock_for=lambda p: field_clock[p[0]],
            )
            for path in result.applied_paths:
                field_clock[path[0]] = clocks[device]
            server = result.data
        return server

    forward, backward = run(["a", "b"]), run(["b", "a"])
    assert forward == backward
    for f in FIELDS:
        candidates = [(clocks[d], edits[d][f]) for d in ("a", "b") if f in edits[d]]
        expected = max(candidates)[1] if candidates else -1
        assert forward[f] == expected


# --- CRDT text ---------------------------------------------------------------


def _client_from(state_b64: str) -> tuple[Doc, Text, bytes]:
    doc: Doc = Doc()
    text = doc.get("text", type=Text)
    doc.apply_update(base64.b64decode(state_b64))
    return doc, text, doc.get_state()


def _update_since(doc: Doc, vector: bytes) -> str:
    return base64.b64encode(doc.get_update(vector)).decode()


def test_offline_text_edits_from_two_devices_both_survive_in_either_order():
    start = crdt_set_text(None, "the quick brown fox")
    d1, t1, v1 = _client_from(start.state)
    d2, t2, v2 = _client_from(start.state)
    t1.insert(0, "START ")
    t2 += " END"
    del t2[4:10]  # deletes "quick "
    u1, u2 = _update_since(d1, v1), _update_since(d2, v2)

    one_then_two = crdt_apply_update(crdt_apply_update(start.state, u1).state, u2)
    two_then_one = crdt_apply_update(crdt_apply_update(start.state, u2).state, u1)

    assert one_then_two.text == two_then_one.text == "START the brown fox END"


def test_a_plain_string_write_becomes_edits_that_merge_with_concurrent_ones():
    start = crdt_set_text(None, "hello world")
    d1, t1, v1 = _client_from(start.state)
    t1.insert(0, ">> ")
    concurrent = _update_since(d1, v1)

    rewritten = crdt_set_text(start.state, "hello brave world")
    merged = crdt_apply_update(rewritten.state, concurrent)

    assert merged.text == ">> hello brave world"
    assert crdt_text_of(merged.state) == merged.text


@pytest.mark.parametrize("bad", ["not base64!!", base64.b64encode(b"\xff\x00garbage").decode()])
def test_invalid_updates_are_refused(bad):
    with pytest.raises(InvalidCrdtUpdate):
        crdt_apply_update(None, bad)
