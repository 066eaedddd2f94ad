"""Keel's side of the HTTP benchmark: collection, user, tokens and documents.

Run by ``bench/http/run.py`` with the benchmark's environment (production
settings, the ``keel_bench`` database); prints one JSON object on stdout.

    keel_seed.py seed --rows 10000   collection, user and documents (idempotent)
    keel_seed.py token               a fresh access token (a new session of the bench user)
    keel_seed.py cleanup             delete the documents the create case added

Everything goes through Keel's services, as the API would write it (change
log, history, principals), except that the documents are created in batches
of one transaction each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

import django  # noqa: E402

django.setup()

from bench_rows import CREATED_CATEGORY, rows  # noqa: E402
from django.db import transaction  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.accounts.services.sessions import session_start  # noqa: E402
from apps.content.models import Document  # noqa: E402
from apps.content.selectors.acl import principals_for_user  # noqa: E402
from apps.content.selectors.collections import collection_get, collection_snapshot  # noqa: E402
from apps.content.services.collections import collection_indexes_sync, collection_save  # noqa: E402
from apps.content.services.documents import document_create  # noqa: E402

COLLECTION = "bench_items"
EMAIL = "bench-reader@keel.test"
PASSWORD = "bench-reader-password-not-secret"  # a throwaway benchmark account

DEFINITION: dict[str, Any] = {
    "name": COLLECTION,
    "schema": {
        "type": "object",
        "properties": {
            "category": {"type": "string", "maxLength": 32},
            "score": {"type": "integer"},
            "title": {"type": "string", "maxLength": 200},
            "done": {"type": "boolean"},
        },
        "required": ["category", "score", "title"],
        "additionalProperties": False,
    },
    # The list case filters on category and orders by score: one composite index.
    "indexes": ["category", ["category", "score"]],
    "default_acl": {},
    "create_permission": "authenticated",
}


def _user() -> User:
    user = User.objects.filter(email=EMAIL).first()
    if user is None:
        user = User.objects.create_user(EMAIL, PASSWORD, email_verified=True)
    return user


def _token(user: User) -> dict[str, str]:
    issued = session_start(
        user=user,
        device={"device_id": "bench-http", "name": "wrk", "platform": "web"},
        ip="127.0.0.1",
        user_agent="bench/http",
        trust_device=True,
    )
    return {"access": issued.access, "session_id": issued.session_id, "user_id": str(user.pk)}


def seed(count: int) -> dict[str, Any]:
    collection_model, _ = collection_save(definition=DEFINITION)
    states = collection_indexes_sync(collection_id=collection_model.pk)
    collection = collection_get(name=COLLECTION) or collection_snapshot(collection_model)
    user = _user()
    principals = principals_for_user(user=user)
    live = Document.objects.filter(collection_id=collection.id, deleted_at__isnull=True)
    existing = live.exclude(data__category=CREATED_CATEGORY).count()
    wanted = rows(count)
    for start in range(existing, count, 500):
        with transaction.atomic():
            for data in wanted[start : start + 500]:
                document_create(collection=collection, actor=user, data=data, principals=principals)
    target = (
        live.filter(data__category="c3").order_by("created_at", "id").values_list("pk", flat=True).first()
    )
    return {
        "collection": COLLECTION,
        "documents": live.exclude(data__category=CREATED_CATEGORY).count(),
        "indexes": {str(state.path): state.status for state in states},
        "document_id": str(target),
        **_token(user),
    }


def cleanup() -> dict[str, Any]:
    collection = collection_get(name=COLLECTION)
    if collection is None:
        return {"deleted": 0}
    deleted, _ = Document.objects.filter(
        collection_id=collection.id, data__category=CREATED_CATEGORY
    ).delete()
    return {"deleted": deleted}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["seed", "token", "cleanup"])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    if args.command == "seed":
        result = seed(args.rows)
    elif args.command == "token":
        result = _token(_user())
    else:
        result = cleanup()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
