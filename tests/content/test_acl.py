"""ACLs: enforced in the query, 404 for unreadable, 403 for readable but not writable."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from apps.content.models import Change, Document
from apps.content.selectors.acl import principals_for_user
from apps.content.selectors.collections import collection_get
from apps.content.selectors.documents import documents_readable
from apps.content.services.collections import collection_save
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/collections/tasks/documents"


def _ids(response):
    return {item["id"] for item in response.json()["results"]}


def test_shared_reader_reads_but_cannot_write(tasks, user, other_user, client_for, make_doc):
    doc = make_doc(tasks, user, {"title": "a"}, acl={"users": {str(other_user.pk): "read"}})
    reader = client_for(other_user)
    url = f"{BASE}/{doc.pk}"

    assert reader.get(url).status_code == 200
    assert _ids(reader.get(BASE)) == {str(doc.pk)}
    for method in ("patch", "put"):
        response = getattr(reader, method)(url, {"data": {"title": "hacked"}}, format="json")
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
    assert reader.delete(url).status_code == 403
    doc.refresh_from_db()
    assert doc.data == {"title": "a"} and doc.version == 1 and doc.deleted_at is None


def test_stranger_gets_404_for_every_method(tasks, user, other_user, client_for, make_doc):
    doc = make_doc(tasks, user, {"title": "a"})
    stranger = client_for(other_user)
    url = f"{BASE}/{doc.pk}"

    missing = stranger.get(f"{BASE}/00000000-0000-0000-0000-000000000000").json()
    for method in ("get", "patch", "put", "delete"):
        response = getattr(stranger, method)(url, {"data": {"title": "x"}}, format="json")
        assert response.status_code == 404
        assert response.json()["code"] == missing["code"] == "not_found"
    assert _ids(stranger.get(BASE)) == set()
    assert stranger.get(BASE, {"include_count": "true"}).json()["count"] == 0
    assert Document.objects.get(pk=doc.pk).version == 1


def test_writer_edits_data_but_only_the_owner_changes_the_acl(tasks, user, other_user, client_for, make_doc):
    doc = make_doc(tasks, user, {"title": "a"}, acl={"users": {str(other_user.pk): "write"}})
    writer = client_for(other_user)
    url = f"{BASE}/{doc.pk}"

    assert writer.patch(url, {"data": {"done": True}}, format="json").status_code == 200
    same_acl = {"users": {str(other_user.pk): "write"}}
    assert writer.put(url, {"data": {"title": "b"}, "acl": same_acl}, format="json").status_code == 200
    widened = writer.patch(url, {"acl": {"public": "read", **same_acl}}, format="json")
    assert widened.status_code == 403
    doc.refresh_from_db()
    assert doc.acl == same_acl and "public" not in doc.read_principals

    owner = client_for(user)
    response = owner.patch(url, {"acl": {"authenticated": "read"}}, format="json")
    assert response.status_code == 200
    # The ACL is replaced, not merged: the writer lost write access and can still read.
    assert response.json()["acl"] == {"authenticated": "read"}
    assert writer.patch(url, {"data": {"done": False}}, format="json").status_code == 403
    assert writer.get(url).status_code == 200


def test_writers_may_change_the_acl_when_the_collection_allows_it(user, other_user, client_for):
    CollectionFactory(name="boards", schema={}, indexes=[], acl_writable_by_writers=True)
    boards = collection_get(name="boards")
    from apps.content.services.documents import document_create

    doc = document_create(
        collection=boards, actor=user, data={}, acl={"users": {str(other_user.pk): "write"}}
    )
    response = client_for(other_user).patch(
        f"/api/v1/collections/boards/documents/{doc.pk}",
        {"acl": {"users": {str(other_user.pk): "write"}, "authenticated": "read"}},
        format="json",
    )
    assert response.status_code == 200
    assert "authenticated" in Document.objects.get(pk=doc.pk).read_principals


def test_roles_are_django_groups(tasks, user, other_user, client_for, make_doc):
    editors = Group.objects.create(name="editors")
    viewers = Group.objects.create(name="viewers")
    editor, viewer = UserFactory(), UserFactory()
    editor.groups.add(editors)
    viewer.groups.add(viewers)
    doc = make_doc(tasks, user, {"title": "a"}, acl={"roles": {"editors": "write", "viewers": "read"}})
    url = f"{BASE}/{doc.pk}"

    assert client_for(editor).patch(url, {"data": {"done": True}}, format="json").status_code == 200
    assert client_for(viewer).get(url).status_code == 200
    assert _ids(client_for(viewer).get(BASE)) == {str(doc.pk)}
    assert _ids(client_for(other_user).get(BASE)) == set()
    assert client_for(viewer).patch(url, {"data": {"done": False}}, format="json").status_code == 403
    assert client_for(other_user).get(url).status_code == 404
    viewer.groups.remove(viewers)
    assert client_for(viewer).get(url).status_code == 404  # roles are read at each request


def test_role_create_permission(user, client_for):
    CollectionFactory(name="reports", schema={}, indexes=[], create_permission="role:analysts")
    url = "/api/v1/collections/reports/documents"
    assert client_for(user).post(url, {"data": {}}, format="json").status_code == 403
    user.groups.add(Group.objects.create(name="analysts"))
    assert client_for(user).post(url, {"data": {}}, format="json").status_code == 201


def test_public_and_authenticated_acls(tasks, user, api_client, client_for, other_user, make_doc):
    public = make_doc(tasks, user, {"title": "public"}, acl={"public": "read"})
    members = make_doc(tasks, user, {"title": "members"}, acl={"authenticated": "read"})
    make_doc(tasks, user, {"title": "private"})

    assert _ids(api_client.get(BASE)) == {str(public.pk)}
    assert api_client.get(f"{BASE}/{public.pk}").status_code == 200
    assert api_client.get(f"{BASE}/{members.pk}").status_code == 404
    assert api_client.patch(f"{BASE}/{public.pk}", {"data": {}}, format="json").status_code == 401
    assert _ids(client_for(other_user).get(BASE)) == {str(public.pk), str(members.pk)}


def test_public_read_collection_is_readable_by_anyone_and_flipping_it_rebuilds_access(
    user, api_client, make_doc
):
    CollectionFactory(name="news", schema={}, indexes=[], public_read=True)
    news = collection_get(name="news")
    doc = make_doc(news, user, {"headline": "hi"})
    url = "/api/v1/collections/news/documents"

    assert _ids(api_client.get(url)) == {str(doc.pk)}
    before = Change.objects.count()

    definition = {**news.as_definition(), "public_read": False}
    collection_save(definition=definition)

    assert api_client.get(f"{url}/{doc.pk}").status_code == 404
    assert "public" not in Document.objects.get(pk=doc.pk).read_principals
    change = Change.objects.order_by("-seq").first()
    assert Change.objects.count() == before + 1
    assert change.op == "upsert" and change.version == 1 and "public" not in change.read_principals


def test_staff_with_bypass_permission_sees_and_edits_everything(tasks, user, client_for, make_doc):
    doc = make_doc(tasks, user, {"title": "a"})
    staff_without = UserFactory(is_staff=True)
    staff_with = UserFactory(is_staff=True)
    staff_with.user_permissions.add(Permission.objects.get(codename="bypass_acl"))
    url = f"{BASE}/{doc.pk}"

    assert client_for(staff_without).get(url).status_code == 404
    admin = client_for(staff_with)
    assert admin.get(url).status_code == 200
    assert str(doc.pk) in _ids(admin.get(BASE))
    assert admin.patch(url, {"acl": {"public": "read"}}, format="json").status_code == 200
    non_staff = UserFactory()
    non_staff.user_permissions.add(Permission.objects.get(codename="bypass_acl"))
    assert "*" not in principals_for_user(user=non_staff)


def test_invalid_acl_is_a_validation_error(tasks, auth_client):
    cases = [
        ({"public": "write"}, "acl.public"),
        ({"users": {"not-a-user-id": "read"}}, "acl.users"),
        ({"roles": {"editors": "admin"}}, "acl.roles.editors"),
        ({"everyone": "read"}, "acl"),
        ("public", "acl"),
        (None, "acl"),
    ]
    for acl, key in cases:
        response = auth_client.post(BASE, {"data": {"title": "x"}, "acl": acl}, format="json")
        assert response.status_code == 400, acl
        assert key in response.json()["errors"], (acl, response.json())
    assert Document.objects.count() == 0


def test_readable_queryset_filters_in_sql(tasks, user, other_user, make_doc):
    make_doc(tasks, user, {"title": "a"})
    shared = make_doc(tasks, user, {"title": "b"}, acl={"users": {str(other_user.pk): "read"}})
    queryset = documents_readable(collection=tasks, principals=principals_for_user(user=other_user))
    sql = str(queryset.query)
    assert "read_principals" in sql
    assert list(queryset.values_list("pk", flat=True)) == [shared.pk]
