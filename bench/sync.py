"""Benchmark of offline sync on PostgreSQL (run by hand, not in CI).

A device comes back after being offline while 10,000 changes it may read
were made across 3 collections holding 100,000 documents (plus 2,000 changes
of documents it may not read, interleaved), and catches up with

    GET /api/v1/sync/changes?since=<cursor>&limit=500

until ``has_more`` is false. Then it pushes 500 offline edits, 10 % of them
on fields that someone else changed meanwhile (three-way merges with
conflicts decided by last-write-wins):

    POST /api/v1/sync/push

Printed: the server time of every page (in-process through the whole Django
stack: authentication, queries, rendering; no network) and its query count,
the total catch-up time, and the push's time and query count.

Use a database of its own; the script migrates it and (re)creates its data:

    createdb -h 127.0.0.1 -U postgres keel_sync_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/keel_sync_bench .venv/bin/python bench/sync.py
    (options: --documents 100000 --changes 10000 --page 500 --push 500)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from apps.accounts.services.tokens import tokens_issue_for_user  # noqa: E402
from apps.content.models import Change, Collection, Document, DocumentVersion  # noqa: E402
from apps.content.selectors.acl import BYPASS, acl_principals, principals_for_user  # noqa: E402
from apps.content.selectors.changes import change_latest_seq  # noqa: E402
from apps.content.selectors.collections import collection_get  # noqa: E402
from apps.content.selectors.sync import SyncCursor, sync_cursor_encode  # noqa: E402
from apps.content.services.collections import collection_save  # noqa: E402
from apps.content.services.documents import document_update  # noqa: E402

NAMES = ["bench_sync_tasks", "bench_sync_notes", "bench_sync_events"]
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 1000000},
        "notes": {"type": "string"},
    },
}
TEAM = "bench-sync-team"
SYNC_TABLES = [
    "content_syncconflict",
    "content_syncmutation",
    "content_documentcrdtstate",
    "content_documentclock",
    "content_documentversion",
    "content_change",
    "content_document",
]


def _reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(SYNC_TABLES)} RESTART IDENTITY CASCADE")


def _populate(total: int, owners: list[object]) -> dict[str, list[uuid.UUID]]:
    """Insert documents with their create changes and first versions (as the services would)."""
    rng = random.Random(7)
    collections = {c.name: c for c in Collection.objects.filter(name__in=NAMES)}
    readable: list[uuid.UUID] = []
    private: list[uuid.UUID] = []
    documents: list[Document] = []
    for i in range(total):
        owner = rng.choice(owners)
        acl = {"roles": {TEAM: "write"}} if rng.random() < 0.6 else {}
        read, write = acl_principals(acl=acl, owner_id=owner.pk, public_read=False)  # type: ignore[attr-defined]
        document = Document(
            id=uuid.uuid4(),
            collection=collections[NAMES[i % 3]],
            owner_id=owner.pk,  # type: ignore[attr-defined]
            data={
                "title": f"item {i}",
                "priority": rng.randint(0, 1000),
                "notes": "x" * rng.randint(20, 200),
            },
            acl=acl,
            read_principals=read,
            write_principals=write,
        )
        documents.append(document)
        if acl:
            readable.append(document.pk)
        else:
            private.append(document.pk)
        if len(documents) == 5000:
            _insert(documents)
            documents = []
    if documents:
        _insert(documents)
    with connection.cursor() as cursor:
        for table in SYNC_TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")
    return {"readable": readable, "private": private}


def _insert(documents: list[Document]) -> None:
    Document.objects.bulk_create(documents)
    Change.objects.bulk_create(
        Change(
            collection=d.collection.name,
            document_id=d.pk,
            op="upsert",
            version=1,
            actor_id=d.owner_id,
            read_principals=d.read_principals,
        )
        for d in documents
    )
    DocumentVersion.objects.bulk_create(
        DocumentVersion(document_id=d.pk, version=1, data=d.data) for d in documents
    )


def _summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return (
        f"median {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms, "
        f"min {ordered[0]:.1f} ms, max {ordered[-1]:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=10_000, help="Changes the device may read.")
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--push", type=int, default=500)
    args = parser.parse_args()
    if not settings.DATABASE_IS_POSTGRES:
        sys.exit("bench/sync.py needs PostgreSQL: set DATABASE_URL to a database of its own.")

    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    caller = users.filter(email="bench-sync-caller@example.com").first() or users.create_user(
        email="bench-sync-caller@example.com", password=None
    )
    team, _ = Group.objects.get_or_create(name=TEAM)
    caller.groups.add(team)
    owners = list(users.filter(email__startswith="bench-sync-owner-"))
    for i in range(len(owners), 20):
        owners.append(users.create_user(email=f"bench-sync-owner-{i}@example.com", password=None))
    for name in NAMES:
        collection_save(definition={"name": name, "schema": SCHEMA, "indexes": []})
    _reset()

    started = time.perf_counter()
    ids = _populate(args.documents, owners)
    print(f"Inserted {args.documents} documents in {time.perf_counter() - started:.1f} s")

    # The device's cursor: where it stopped before going offline.
    principals = principals_for_user(user=caller)
    offline_at = SyncCursor(
        user_id=str(caller.pk),
        seq=change_latest_seq(),
        collections=None,
        readers_low=frozenset(principals),
        readers_high=frozenset(principals),
    )
    rng = random.Random(11)
    readable = rng.sample(ids["readable"], args.changes + args.push)
    changed, pushed = readable[: args.changes], readable[args.changes :]
    noise = rng.sample(ids["private"], args.changes // 5)
    definitions = {name: collection_get(name=name) for name in NAMES}
    by_id = dict(
        Document.objects.filter(pk__in=[*changed, *noise, *pushed]).values_list("pk", "collection__name")
    )
    staff = [*principals_for_user(user=owners[0]), BYPASS]
    writes = [("read", pk) for pk in changed] + [("noise", pk) for pk in noise]
    rng.shuffle(writes)
    started = time.perf_counter()
    for n, (_kind, pk) in enumerate(writes):
        document_update(
            collection=definitions[by_id[pk]],  # type: ignore[arg-type]
            document_id=pk,
            actor=owners[n % len(owners)],
            patch={"priority": n},
            principals=staff,
        )
    print(
        f"Made {len(changed)} readable and {len(noise)} unreadable changes through the document "
        f"service in {time.perf_counter() - started:.1f} s"
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE content_change")

    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {tokens_issue_for_user(user=caller).access}"
    client.get("/api/v1/sync/changes", {"limit": "1"})  # warm connections and caches
    cursor = sync_cursor_encode(offline_at)
    samples: list[float] = []
    queries: list[int] = []
    feed_sql = ""
    received = 0
    while True:
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            response = client.get("/api/v1/sync/changes", {"since": cursor, "limit": str(args.page)})
            samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.content[:500]
        queries.append(len(captured.captured_queries))
        if not feed_sql:
            feed_sql = next(
                q["sql"] for q in captured.captured_queries if 'FROM "content_change"' in q["sql"]
            )
        body = response.json()
        received += len(body["changes"])
        cursor = body["cursor"]
        if not body["has_more"]:
            break
    assert received == len(changed), (received, len(changed))

    # The push: 10 % of the edits touch a field someone else changed meanwhile.
    conflicting = set(pushed[: args.push // 10])
    versions = dict(Document.objects.filter(pk__in=pushed).values_list("pk", "version"))
    for pk in conflicting:
        document_update(
            collection=definitions[by_id[pk]],  # type: ignore[arg-type]
            document_id=pk,
            actor=owners[0],
            patch={"title": "changed on the server"},
            principals=staff,
        )
    mutations = [
        {
            "mutation_id": str(uuid.uuid4()),
            "collection": by_id[pk],
            "id": str(pk),
            "op": "update",
            "base_version": versions[pk],
            "data": {"title": f"offline edit {i}"} if pk in conflicting else {"priority": i},
            "client_time": "2026-01-01T00:00:00Z",
        }
        for i, pk in enumerate(pushed)
    ]
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        response = client.post("/api/v1/sync/push", {"mutations": mutations}, content_type="application/json")
        push_ms = (time.perf_counter() - began) * 1000
    assert response.status_code == 200, response.content[:500]
    statuses: dict[str, int] = {}
    for result in response.json()["results"]:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1

    with connection.cursor() as db:
        db.execute(f"EXPLAIN (ANALYZE, BUFFERS) {feed_sql}")  # SQL captured from our own request
        plan = "\n".join(row[0] for row in db.fetchall())
        db.execute("SELECT version()")
        version = db.fetchone()[0].split(",")[0]
    print(f"\n{version}; {args.documents} documents in 3 collections, {len(ids['readable'])} readable")
    print(
        f"Catch-up of {received} changes in {len(samples)} pages of {args.page}: "
        f"total {sum(samples):.0f} ms; per page {_summary(samples)}"
    )
    print(f"  queries per page: {sorted(set(queries))}")
    print(
        f"Push of {len(mutations)} mutations ({len(conflicting)} conflicting): {push_ms:.0f} ms "
        f"({push_ms / len(mutations):.2f} ms per mutation), {len(captured.captured_queries)} queries; "
        f"results {statuses}"
    )
    print("\nEXPLAIN (ANALYZE, BUFFERS) of the first page's change-log query:\n")
    print(plan)


if __name__ == "__main__":
    main()
