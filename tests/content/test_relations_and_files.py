"""ref fields with include (batched, ACL-filtered), file fields rendered with signed URLs, query counts."""

from __future__ import annotations

import pytest

from apps.content.models import File
from apps.content.selectors.collections import collection_get
from apps.content.services.files import file_create
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

TASKS = "/api/v1/collections/tasks/documents"


@pytest.fixture
def linked(db):
    CollectionFactory(
        name="projects",
        schema={"type": "object", "properties": {"name": {"type": "string"}, "logo": {"type": "file"}}},
        indexes=[],
    )
    CollectionFactory(
        name="tasks",
        schema={
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "project": {"type": "ref", "collection": "projects"},
                "reviewer": {"type": "ref", "collection": "projects"},
                "attachment": {"type": "file"},
                "gallery": {"type": "array", "items": {"type": "file"}},
            },
        },
        indexes=[],
    )
    return collection_get(name="projects"), collection_get(name="tasks")


def test_include_expands_readable_refs_and_nulls_the_rest(linked, user, other_user, client_for, make_doc):
    projects, tasks = linked
    mine = make_doc(projects, user, {"name": "Mine"}, acl={"users": {str(other_user.pk): "read"}})
    private = make_doc(projects, user, {"name": "Private"})
    shared = {"users": {str(other_user.pk): "read"}}
    make_doc(tasks, user, {"title": "a", "project": str(mine.pk)}, acl=shared)
    make_doc(tasks, user, {"title": "b", "project": str(private.pk)}, acl=shared)
    make_doc(tasks, user, {"title": "c", "project": "00000000-0000-0000-0000-000000000000"}, acl=shared)
    make_doc(tasks, user, {"title": "d"}, acl=shared)

    response = client_for(other_user).get(TASKS, {"include": "project", "order": "data.title"})

    results = response.json()["results"]
    assert results[0]["data"]["project"]["id"] == str(mine.pk)
    assert results[0]["data"]["project"]["data"] == {"name": "Mine"}
    assert results[0]["data"]["project"]["collection"] == "projects"
    assert results[1]["data"]["project"] is None  # exists, but not readable by the caller
    assert results[2]["data"]["project"] is None  # does not exist
    assert "project" not in results[3]["data"]
    owner_view = client_for(user).get(TASKS, {"include": "data.project", "order": "data.title"}).json()
    assert owner_view["results"][1]["data"]["project"]["data"] == {"name": "Private"}
    plain = client_for(user).get(TASKS, {"order": "data.title"}).json()["results"]
    assert plain[0]["data"]["project"] == str(mine.pk)


def test_include_on_a_single_document_and_its_etag(linked, user, auth_client, make_doc):
    projects, tasks = linked
    project = make_doc(projects, user, {"name": "P"})
    task = make_doc(tasks, user, {"title": "t", "project": str(project.pk)})
    url = f"{TASKS}/{task.pk}"

    response = auth_client.get(url, {"include": "project"})
    assert response.json()["data"]["project"]["data"] == {"name": "P"}
    etag = response["ETag"]
    assert auth_client.get(url, {"include": "project"}, HTTP_IF_NONE_MATCH=etag).status_code == 304
    auth_client.patch(
        f"/api/v1/collections/projects/documents/{project.pk}", {"data": {"name": "Q"}}, format="json"
    )
    changed = auth_client.get(url, {"include": "project"}, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed.json()["data"]["project"]["data"] == {"name": "Q"}
    bad = auth_client.get(url, {"include": "title"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_query"


def test_list_query_count_is_constant_with_and_without_include(
    linked, user, auth_client, make_doc, django_assert_max_num_queries, django_assert_num_queries
):
    projects, tasks = linked
    project = make_doc(projects, user, {"name": "P"})
    for i in range(3):
        make_doc(tasks, user, {"title": f"t{i}", "project": str(project.pk), "reviewer": str(project.pk)})
    auth_client.get(TASKS)  # warm the definition cache

    def count(params):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            assert auth_client.get(TASKS, params).status_code == 200
        return len(captured.captured_queries)

    small_plain = count({})
    small_include = count({"include": "project,reviewer"})
    for i in range(20):
        make_doc(tasks, user, {"title": f"u{i}", "project": str(project.pk), "reviewer": str(project.pk)})
    assert count({"limit": 50}) == small_plain
    assert count({"limit": 50, "include": "project,reviewer"}) == small_include == small_plain + 2
    assert count({"include_count": "true"}) == small_plain + 1
    # The user, the page (the caller's roles are a sub-select of it), one query per included field.
    assert small_plain == 2
    with django_assert_max_num_queries(3):
        auth_client.get(TASKS, {"limit": 100, "include": "project"})


def test_detail_query_count_is_constant(linked, user, auth_client, make_doc, django_assert_max_num_queries):
    projects, tasks = linked
    project = make_doc(projects, user, {"name": "P"})
    task = make_doc(tasks, user, {"title": "t", "project": str(project.pk)})
    auth_client.get(f"{TASKS}/{task.pk}")
    with django_assert_max_num_queries(2):
        assert auth_client.get(f"{TASKS}/{task.pk}").status_code == 200
    with django_assert_max_num_queries(3):
        assert auth_client.get(f"{TASKS}/{task.pk}", {"include": "project"}).status_code == 200


def _file(owner, name="a.png"):
    return file_create(owner=owner, filename=name, content_type="image/png", size=10).file


def test_file_fields_render_as_file_objects_and_are_marked_referenced(
    linked, user, other_user, client_for, django_assert_max_num_queries
):
    _, tasks = linked
    one, two, three = _file(user), _file(user, "b.png"), _file(user, "c.png")
    shared = {"users": {str(other_user.pk): "read"}}
    response = client_for(user).post(
        TASKS,
        {
            "data": {"title": "t", "attachment": str(one.pk), "gallery": [str(two.pk), str(three.pk)]},
            "acl": shared,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["data"]["attachment"]["id"] == str(one.pk)
    assert "url" in body["data"]["attachment"]
    assert [f["id"] for f in body["data"]["gallery"]] == [str(two.pk), str(three.pk)]
    assert File.objects.filter(referenced_at__isnull=False).count() == 3

    # A reader of the document sees the files it references.
    seen = client_for(other_user).get(f"{TASKS}/{body['id']}").json()
    assert seen["data"]["attachment"]["id"] == str(one.pk)
    # Writing the rendered object back keeps the reference.
    again = client_for(user).put(f"{TASKS}/{body['id']}", {"data": seen["data"]}, format="json")
    assert again.status_code == 200, again.json()
    from apps.content.models import Document

    assert Document.objects.get(pk=body["id"]).data["attachment"] == str(one.pk)
    reader = client_for(other_user)
    reader.get(TASKS)
    with django_assert_max_num_queries(3):  # user, page, files (one batch)
        assert reader.get(TASKS).status_code == 200


def test_a_file_the_writer_cannot_read_is_rejected(linked, user, other_user, client_for):
    theirs = _file(other_user)
    response = client_for(user).post(
        TASKS, {"data": {"title": "t", "attachment": str(theirs.pk)}}, format="json"
    )
    assert response.status_code == 400
    assert "Unknown file" in response.json()["errors"]["data"][0]
    assert File.objects.get(pk=theirs.pk).referenced_at is None
