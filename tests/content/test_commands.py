"""load_collections / dump_collections: same format, updates in place, never loses documents."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from apps.content.models import Collection, Document
from apps.content.selectors.collections import collection_get
from apps.content.services.documents import document_create

pytestmark = pytest.mark.django_db

DEFINITIONS = [
    {
        "name": "projects",
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        "indexes": ["name"],
        "default_acl": {"authenticated": "read"},
        "create_permission": "staff",
        "public_read": False,
        "conflict_policy": "server_wins",
    },
    {
        "name": "tasks",
        "schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "project": {"type": "ref", "collection": "projects"},
                "body": {"type": "text_crdt"},
                "cover": {"type": "file"},
            },
        },
        "indexes": [],
        "default_acl": {},
        "create_permission": "authenticated",
        "public_read": True,
        "conflict_policy": "last_write_wins",
    },
]


def _write(tmp_path, definitions, name="collections.json"):
    path = tmp_path / name
    path.write_text(json.dumps(definitions))
    return str(path)


def test_load_then_dump_round_trips(tmp_path, django_capture_on_commit_callbacks):
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_collections", _write(tmp_path, DEFINITIONS), stdout=out)
    assert "created   projects" in out.getvalue() and "created   tasks" in out.getvalue()

    dumped = io.StringIO()
    call_command("dump_collections", stdout=dumped)
    loaded = json.loads(dumped.getvalue())
    assert [item["name"] for item in loaded] == ["projects", "tasks"]
    for item, definition in zip(loaded, DEFINITIONS, strict=True):
        assert {key: item[key] for key in definition} == definition
        assert item["acl_writable_by_writers"] is False  # defaults are written out too

    target = tmp_path / "out.json"
    call_command("dump_collections", "--output", str(target), stderr=io.StringIO())
    again = io.StringIO()
    call_command("load_collections", str(target), stdout=again)
    assert again.getvalue().split() == ["unchanged", "projects", "unchanged", "tasks"]


def test_reloading_updates_in_place_and_keeps_documents(tmp_path, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_collections", _write(tmp_path, DEFINITIONS), stdout=io.StringIO())
    tasks = collection_get(name="tasks")
    doc = document_create(collection=tasks, actor=user, data={"title": "keep me"})
    before = Collection.objects.get(name="tasks").pk

    changed = [DEFINITIONS[1] | {"public_read": False, "indexes": ["title"]}]  # projects left out
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_collections", _write(tmp_path, changed, "v2.json"), stdout=out)

    assert out.getvalue().split() == ["updated", "tasks"]
    assert Collection.objects.get(name="tasks").pk == before
    assert Collection.objects.filter(name="projects").exists()
    assert Document.objects.get(pk=doc.pk).data == {"title": "keep me"}
    assert collection_get(name="tasks").public_read is False


def test_an_invalid_file_changes_nothing(tmp_path):
    broken = [DEFINITIONS[0], {**DEFINITIONS[1], "indexes": ["nope"]}]
    with pytest.raises(CommandError) as caught:
        call_command("load_collections", _write(tmp_path, broken), stdout=io.StringIO())
    assert "tasks: indexes" in str(caught.value)
    assert Collection.objects.count() == 0

    for content, message in (("{not json", "not valid JSON"), ('{"name": "x"}', "JSON list")):
        path = tmp_path / "bad.json"
        path.write_text(content)
        with pytest.raises(CommandError, match=message):
            call_command("load_collections", str(path))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("load_collections", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError, match="defined twice"):
        call_command("load_collections", _write(tmp_path, [DEFINITIONS[0], DEFINITIONS[0]]))


def test_dry_run_validates_only(tmp_path):
    out = io.StringIO()
    call_command("load_collections", _write(tmp_path, DEFINITIONS), "--dry-run", stdout=out)
    assert "2 definition(s) are valid" in out.getvalue()
    assert Collection.objects.count() == 0
