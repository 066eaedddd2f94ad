"""Helpers of the offline sync tests: a device that pushes and pulls through HTTP."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pycrdt import Doc, Text
from rest_framework.test import APIClient

CHANGES = "/api/v1/sync/changes"
PUSH = "/api/v1/sync/push"

NOTES_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 200},
        "done": {"type": "boolean"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 100},
        "meta": {"type": "object", "properties": {"color": {"type": "string"}, "size": {"type": "integer"}}},
        "body": {"type": "text_crdt"},
    },
}

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> str:
    """An ISO-8601 client time, ``seconds`` after a fixed moment in the past."""
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def mutation(
    op: str,
    document_id: Any,
    *,
    collection: str = "notes",
    data: Any = None,
    base_version: int | None = None,
    client_time: str | None = None,
    mutation_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mutation_id": mutation_id or str(uuid.uuid4()),
        "collection": collection,
        "id": str(document_id),
        "op": op,
        "base_version": base_version,
    }
    if data is not None:
        body["data"] = data
    if client_time is not None:
        body["client_time"] = client_time
    body.update(extra)
    return body


def push(client: APIClient, *mutations: dict[str, Any], since: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"mutations": list(mutations)}
    if since is not None:
        body["since"] = since
    response = client.post(PUSH, body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def pull(client: APIClient, since: str | None = None, **params: Any) -> dict[str, Any]:
    query = dict(params)
    if since is not None:
        query["since"] = since
    response = client.get(CHANGES, query)
    assert response.status_code == 200, response.content
    return response.json()


def pull_all(client: APIClient, since: str | None = None, **params: Any) -> tuple[list[dict[str, Any]], str]:
    changes: list[dict[str, Any]] = []
    cursor = since
    for _ in range(1000):
        page = pull(client, cursor, **params)
        changes += page["changes"]
        cursor = page["cursor"]
        if not page["has_more"]:
            return changes, cursor
    raise AssertionError("sync/changes never ended")


# --- Yjs on the device --------------------------------------------------------------


def ydoc(state_b64: str | None = None) -> tuple[Doc, Text]:
    doc: Doc = Doc()
    text = doc.get("text", type=Text)
    if state_b64:
        doc.apply_update(base64.b64decode(state_b64))
    return doc, text


def yupdate(doc: Doc, since_state_vector: bytes | None = None) -> str:
    """The device's edits as one base64 Yjs update (all of them, or those after a state vector)."""
    update = doc.get_update(since_state_vector) if since_state_vector is not None else doc.get_update()
    return base64.b64encode(update).decode()


class Device:
    """A client's local store: documents by id, its cursor, and pending mutations."""

    def __init__(self, client: APIClient, **params: Any) -> None:
        self.client = client
        self.params = params
        self.cursor: str | None = None
        self.documents: dict[str, dict[str, Any]] = {}
        self.pending: list[dict[str, Any]] = []

    def sync_down(self) -> list[dict[str, Any]]:
        changes, self.cursor = pull_all(self.client, self.cursor, **self.params)
        for change in changes:
            if change["op"] == "delete":
                self.documents.pop(change["id"], None)
            else:
                current = self.documents.get(change["id"])
                if current is None or current["version"] <= change["version"]:
                    self.documents[change["id"]] = change["document"]
        return changes

    def sync_up(self) -> list[dict[str, Any]]:
        if not self.pending:
            return []
        answer = push(self.client, *self.pending, since=self.cursor)
        self.pending = []
        for result in answer["results"]:
            if result["document"] is not None:
                self.documents[result["document"]["id"]] = result["document"]
        self.cursor = answer["cursor"]
        return answer["results"]
