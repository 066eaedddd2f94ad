"""Field-level three-way merge of a client's JSON merge patch into a document.

Inputs are the document's ``data`` at the version the client started from
(``base``), the server's current ``data``, and the client's patch (RFC 7396:
only changed fields; ``null`` deletes). Fields are addressed by path; nested
objects are merged field by field, anything else is one value.

- changed only by the client: applied;
- changed only on the server: kept (the patch does not mention them);
- changed on both sides to different values: a conflict, decided by the
  collection's policy, and reported with both values and the winner.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apps.content.sync.clock import HLC

Path = tuple[str, ...]
_MISSING: Any = object()

POLICIES = ("last_write_wins", "server_wins", "client_wins")


@dataclass
class FieldConflict:
    field: str
    server_value: Any
    client_value: Any
    winner: str  # "server" | "client"

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "server_value": self.server_value,
            "client_value": self.client_value,
            "winner": self.winner,
        }


@dataclass
class MergeResult:
    data: dict[str, Any]
    applied_paths: list[Path] = field(default_factory=list)
    conflicts: list[FieldConflict] = field(default_factory=list)

    @property
    def client_applied(self) -> bool:
        return bool(self.applied_paths)


def dotted(path: Path) -> str:
    return ".".join(path)


def get_path(data: Any, path: Path) -> Any:
    current = data
    for part in path:
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def set_path(data: dict[str, Any], path: Path, value: Any) -> None:
    """Set (or, for ``None``, delete as in a merge patch) the value at ``path``."""
    current = data
    for part in path[:-1]:
        nxt = current.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            current[part] = nxt
        current = nxt
    if value is None:
        current.pop(path[-1], None)
    else:
        current[path[-1]] = copy.deepcopy(value)


def patch_leaves(patch: dict[str, Any], prefix: Path = ()) -> list[tuple[Path, Any]]:
    """The paths a merge patch sets. A nested object is descended into."""
    leaves: list[tuple[Path, Any]] = []
    for key, value in patch.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            leaves.extend(patch_leaves(value, path))
        else:
            leaves.append((path, value))
    return leaves


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch, returning a new object."""
    result = copy.deepcopy(target)
    for path, value in patch_leaves(patch):
        if value == {}:
            # An empty object replaces whatever was there with an empty object.
            set_path(result, path, {})
        else:
            set_path(result, path, value)
    return result


def _normalise(value: Any) -> Any:
    return None if value is _MISSING else value


def changed_paths(before: dict[str, Any], after: dict[str, Any], prefix: Path = ()) -> list[Path]:
    """Leaf paths whose value differs between two objects (used to stamp field clocks)."""
    out: list[Path] = []
    for key in set(before) | set(after):
        path = (*prefix, key)
        a, b = before.get(key, _MISSING), after.get(key, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(changed_paths(a, b, path))
        elif (a is _MISSING and isinstance(b, dict)) or (b is _MISSING and isinstance(a, dict)):
            # An object that appears or disappears: its leaves changed (the
            # object itself when it is empty).
            inner = changed_paths(a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}, path)
            out.extend(inner or [path])
        elif a != b:
            out.append(path)
    return out


def three_way_merge(
    *,
    base: dict[str, Any] | None,
    server: dict[str, Any],
    patch: dict[str, Any],
    policy: str,
    client_clock: HLC,
    server_clock_for: Callable[[Path], HLC],
) -> MergeResult:
    """Merge ``patch`` (made against ``base``) into ``server``.

    ``base`` is ``None`` when the starting version is no longer held; every
    field where client and server disagree is then treated as changed on both
    sides and decided by the policy. ``server_clock_for(path)`` gives the
    clock of the server's last write of that field (for last-write-wins).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown conflict policy {policy!r}")
    merged = copy.deepcopy(server)
    result = MergeResult(data=merged)
    for path, client_value in patch_leaves(patch):
        server_value = _normalise(get_path(server, path))
        base_value = None if base is None else _normalise(get_path(base, path))
        wanted = None if client_value is None else client_value
        server_changed = base is None or server_value != base_value
        if not server_changed or server_value == wanted:
            set_path(merged, path, {} if client_value == {} else client_value)
            result.applied_paths.append(path)
            continue
        if policy == "client_wins":
            client_wins = True
        elif policy == "server_wins":
            client_wins = False
        else:
            client_wins = client_clock > server_clock_for(path)
        result.conflicts.append(
            FieldConflict(
                field=dotted(path),
                server_value=server_value,
                client_value=wanted,
                winner="client" if client_wins else "server",
            )
        )
        if client_wins:
            set_path(merged, path, client_value)
            result.applied_paths.append(path)
    return result
