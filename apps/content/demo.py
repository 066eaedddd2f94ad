"""Demo data: a ``tasks`` collection to try the data API from /api/docs/."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model

from apps.content.selectors.collections import collection_get, collection_snapshot
from apps.content.services.collections import collection_save
from apps.content.services.documents import document_create

DEMO_COLLECTION: dict[str, Any] = {
    "name": "tasks",
    "schema": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "done": {"type": "boolean"},
            "priority": {"type": "integer", "minimum": 1, "maximum": 5},
            "due": {"type": "string", "format": "date"},
        },
        "required": ["title"],
        "additionalProperties": False,
    },
    "indexes": ["priority", "due"],
    "default_acl": {},
    "create_permission": "authenticated",
    "public_read": False,
    "conflict_policy": "last_write_wins",
}

DEMO_TASKS = [
    {"title": "Try GET /api/v1/collections/tasks/documents", "done": False, "priority": 1},
    {"title": 'Filter: where={"data.done": false}', "done": False, "priority": 2, "due": "2030-01-15"},
    {"title": "Sort: order=-data.priority", "done": True, "priority": 3, "due": "2030-02-01"},
]


def seed_demo_collection() -> list[str]:
    """Create the ``tasks`` collection and a few documents readable by every signed-in user.

    Adds nothing when the collection exists already (safe on every start).
    """
    if collection_get(name="tasks") is not None:
        return ["Demo collection: tasks (exists)"]
    collection, _ = collection_save(definition=DEMO_COLLECTION)
    tasks = collection_snapshot(collection)
    owner = get_user_model().objects.filter(email__iexact=settings.DEMO_STAFF_EMAIL).first()
    if owner is None:
        return ["Created the demo collection: tasks (no documents: the staff login is missing)"]
    for data in DEMO_TASKS:
        document_create(collection=tasks, actor=owner, data=data, acl={"authenticated": "read"})
    return [f"Created the demo collection: tasks, with {len(DEMO_TASKS)} documents every user can read"]
