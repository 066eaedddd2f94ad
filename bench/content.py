"""Benchmark of the documents API on PostgreSQL (run by hand, not in CI).

A collection of N documents (100,000 by default) of which the caller may read
about 1 %; the measured request is a filtered, ordered page of 20:

    GET /api/v1/collections/bench_tasks/documents
        ?where={"data.status": "open", "data.priority": {"$gte": 2}}&order=-data.priority&limit=20

It prints the server time of that request (in-process through the whole
Django stack: authentication, query, rendering; no network), the same for GET
by id, the query counts, and ``EXPLAIN (ANALYZE, BUFFERS)`` of the page's SQL.

Use a database of its own; the script migrates it and (re)creates its data:

    createdb -h 127.0.0.1 -U postgres keel_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/keel_bench .venv/bin/python bench/content.py
    (options: --documents 20000 --runs 300 --keep)
"""

from __future__ import annotations

import argparse
import json
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
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from apps.accounts.services.tokens import tokens_issue_for_user  # noqa: E402
from apps.content.models import Collection, CollectionIndex, Document  # noqa: E402
from apps.content.selectors.acl import acl_principals, principals_for_reading  # noqa: E402
from apps.content.selectors.collections import collection_get  # noqa: E402
from apps.content.selectors.documents import document_list_page, documents_render  # noqa: E402
from apps.content.selectors.query import document_query_parse  # noqa: E402
from apps.content.services.collections import collection_indexes_sync, collection_save  # noqa: E402

NAME = "bench_tasks"
DEFINITION = {
    "name": NAME,
    "schema": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "status": {"type": "string", "enum": ["open", "doing", "done"]},
            "priority": {"type": "integer", "minimum": 0, "maximum": 4},
            "due": {"type": "string", "format": "date-time"},
        },
        "required": ["title", "status"],
    },
    "indexes": ["priority", "status"],
}
WHERE = {"data.status": "open", "data.priority": {"$gte": 2}}
ORDER = "-data.priority"


def _populate(total: int, caller: object, owners: list[object]) -> int:
    """Insert documents directly (the services would add a change row each)."""
    collection = Collection.objects.get(name=NAME)
    Document.objects.filter(collection=collection).delete()
    rng = random.Random(42)
    readable = 0
    batch: list[Document] = []
    for i in range(total):
        roll = rng.random()
        if roll < 0.005:
            owner, acl = caller, {}
        elif roll < 0.01:
            owner, acl = rng.choice(owners), {"users": {str(caller.pk): "read"}}  # type: ignore[attr-defined]
        else:
            owner = rng.choice(owners)
            acl = {"roles": {"team-a": "read"}} if rng.random() < 0.3 else {}
        if owner is caller or "users" in acl:
            readable += 1
        read, write = acl_principals(acl=acl, owner_id=owner.pk, public_read=False)  # type: ignore[attr-defined]
        batch.append(
            Document(
                id=uuid.uuid4(),
                collection=collection,
                owner_id=owner.pk,  # type: ignore[attr-defined]
                data={
                    "title": f"task {i}",
                    "status": rng.choice(["open", "doing", "done"]),
                    "priority": rng.randint(0, 4),
                    "due": f"2030-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T09:00:00.000000Z",
                },
                acl=acl,
                read_principals=read,
                write_principals=write,
            )
        )
        if len(batch) == 5000:
            Document.objects.bulk_create(batch)
            batch = []
    if batch:
        Document.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE content_document")
    return readable


def _timed(client: Client, url: str, params: dict[str, str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, params)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:500]
    return samples


def _summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"median {statistics.median(ordered):.2f} ms, p95 {p95:.2f} ms, min {ordered[0]:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="Reuse the documents of a previous run.")
    args = parser.parse_args()
    if not settings.DATABASE_IS_POSTGRES:
        sys.exit("bench/content.py needs PostgreSQL: set DATABASE_URL to a database of its own.")

    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    caller = users.filter(email="bench-caller@example.com").first() or users.create_user(
        email="bench-caller@example.com", password=None
    )
    owners = list(users.filter(email__startswith="bench-owner-"))
    for i in range(len(owners), 99):
        owners.append(users.create_user(email=f"bench-owner-{i}@example.com", password=None))
    collection, _ = collection_save(definition=DEFINITION)
    states = collection_indexes_sync(collection_id=collection.pk)
    count = Document.objects.filter(collection=collection).count()
    if not args.keep or count != args.documents:
        started = time.perf_counter()
        readable = _populate(args.documents, caller, owners)
        print(f"Inserted {args.documents} documents in {time.perf_counter() - started:.1f} s")
    else:
        readable = Document.objects.filter(
            collection=collection, read_principals__overlap=[f"user:{caller.pk}"]
        ).count()
    tasks = collection_get(name=NAME)
    assert tasks is not None

    client = Client()
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {tokens_issue_for_user(user=caller).access}"
    url = f"/api/v1/collections/{NAME}/documents"
    params = {"where": json.dumps(WHERE), "order": ORDER, "limit": "20"}
    _timed(client, url, params, 20)  # warm caches and connections
    page_samples = _timed(client, url, params, args.runs)
    with CaptureQueriesContext(connection) as captured:
        body = client.get(url, params).json()
    page_queries = len(captured.captured_queries)
    page_sql = next(q["sql"] for q in captured.captured_queries if "content_document" in q["sql"])
    selector_samples = []
    for _ in range(args.runs):
        started = time.perf_counter()
        principals = principals_for_reading(user=caller)
        query = document_query_parse(collection=tasks, params=params)
        page = document_list_page(collection=tasks, principals=principals, query=query, cursor=None, limit=20)
        documents_render(collection=tasks, documents=page.documents, principals=principals, user=caller)
        selector_samples.append((time.perf_counter() - started) * 1000)
    first_id = body["results"][0]["id"]
    detail_samples = _timed(client, f"{url}/{first_id}", {}, args.runs)
    with CaptureQueriesContext(connection) as captured:
        client.get(f"{url}/{first_id}")
    detail_queries = len(captured.captured_queries)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {page_sql}")  # SQL captured from our own request
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(",")[0]

    print(f"\n{version}; {args.documents} documents, {readable} readable by the caller")
    print(f"Index states: {', '.join(f'{s.path}={s.status}' for s in states)}")
    print(f"Page of 20 ({len(body['results'])} returned), {args.runs} runs: {_summary(page_samples)}")
    print(f"  queries per request: {page_queries}")
    print(f"  of which the content app (parse, query with roles, render): {_summary(selector_samples)}")
    print(f"GET by id, {args.runs} runs: {_summary(detail_samples)}; queries: {detail_queries}")
    print("\nEXPLAIN (ANALYZE, BUFFERS) of the page query:\n")
    print(plan)
    if not CollectionIndex.objects.filter(collection=collection, status="ready").exists():
        print("\nWARNING: the expression indexes are not ready.")


if __name__ == "__main__":
    main()
