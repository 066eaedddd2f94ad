"""What the busiest document requests cost in queries, and that the cheaper paths answer the same."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.content.models import Document
from apps.content.selectors.collections import collection_get
from apps.content.services.documents import document_create
from apps.core.exceptions import Conflict
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}


def _documents(name):
    return f"/api/v1/collections/{name}/documents"


def _sql(queries):
    return [query["sql"] for query in queries.captured_queries]


def test_creating_in_an_authenticated_collection_reads_no_roles_and_opens_one_savepoint(client_for):
    CollectionFactory(name="notes", schema=SCHEMA, indexes=[], create_permission="authenticated")
    user = UserFactory()
    client = client_for(user)
    client.get(_documents("notes"))  # the collection definition is cached

    with CaptureQueriesContext(connection) as queries:
        response = client.post(_documents("notes"), {"data": {"title": "a"}}, format="json")

    assert response.status_code == 201
    assert Document.objects.filter(pk=response.json()["id"], owner=user).exists()
    statements = _sql(queries)
    assert not [sql for sql in statements if "auth_group" in sql]
    # The service's own transaction (a savepoint inside the test's); none around the insert.
    assert len([sql for sql in statements if sql.startswith("SAVEPOINT")]) == 1


def test_a_role_rule_still_reads_the_callers_roles(client_for):
    CollectionFactory(name="reports", schema=SCHEMA, indexes=[], create_permission="role:analysts")
    member, outsider = UserFactory(), UserFactory()
    member.groups.add(Group.objects.create(name="analysts"))

    allowed = client_for(member).post(_documents("reports"), {"data": {"title": "a"}}, format="json")
    refused = client_for(outsider).post(_documents("reports"), {"data": {"title": "b"}}, format="json")

    assert allowed.status_code == 201
    assert refused.status_code == 403
    assert Document.objects.filter(collection__name="reports").count() == 1


def test_a_client_chosen_id_in_use_is_still_a_conflict_and_keeps_the_transaction_usable():
    CollectionFactory(name="notes", schema=SCHEMA, indexes=[])
    notes = collection_get(name="notes")
    user = UserFactory()
    first = document_create(collection=notes, actor=user, data={"title": "a"})

    with pytest.raises(Conflict):
        document_create(collection=notes, actor=user, data={"title": "b"}, document_id=first.pk)

    # The failed insert was inside its own savepoint: the connection still works.
    assert Document.objects.get(pk=first.pk).data == {"title": "a"}


def test_get_by_id_and_a_page_cost_one_query_each_after_authentication(client_for, django_assert_num_queries):
    CollectionFactory(name="notes", schema=SCHEMA, indexes=[])
    user = UserFactory()
    client = client_for(user)
    created = client.post(_documents("notes"), {"data": {"title": "a"}}, format="json").json()
    client.get(_documents("notes"))  # the collection definition is cached

    with django_assert_num_queries(2):  # the user with its session, the document
        assert client.get(f"{_documents('notes')}/{created['id']}").status_code == 200
    with django_assert_num_queries(2):  # the user with its session, the page
        assert client.get(_documents("notes")).json()["results"][0]["id"] == created["id"]


def test_get_by_id_reads_exactly_what_the_readable_queryset_reads():
    from apps.content.selectors.acl import principals_for_reading, principals_for_user
    from apps.content.selectors.documents import document_get_readable, documents_readable
    from apps.content.services.documents import document_delete

    CollectionFactory(name="notes", schema=SCHEMA, indexes=[])
    CollectionFactory(name="other", schema=SCHEMA, indexes=[])
    notes, other = collection_get(name="notes"), collection_get(name="other")
    owner, reader, member, stranger = UserFactory(), UserFactory(), UserFactory(), UserFactory()
    member.groups.add(Group.objects.create(name="editors"))
    staff = UserFactory(is_staff=True, is_superuser=True)
    docs = [
        document_create(collection=notes, actor=owner, data={"title": "private"}),
        document_create(
            collection=notes, actor=owner, data={"title": "shared"}, acl={"users": {str(reader.pk): "read"}}
        ),
        document_create(
            collection=notes, actor=owner, data={"title": "role"}, acl={"roles": {"editors": "read"}}
        ),
        document_create(collection=notes, actor=owner, data={"title": "all"}, acl={"authenticated": "read"}),
        document_create(collection=notes, actor=owner, data={"title": "gone"}, acl={"authenticated": "read"}),
    ]
    document_delete(collection=notes, document_id=docs[-1].pk, actor=owner)
    elsewhere = document_create(collection=other, actor=owner, data={"title": "x"})

    for user in (owner, reader, member, stranger, staff):
        for principals in (principals_for_reading(user=user), principals_for_user(user=user)):
            for doc in [*docs, elsewhere]:
                expected = (
                    documents_readable(collection=notes, principals=principals).filter(pk=doc.pk).first()
                )
                found = document_get_readable(collection=notes, document_id=doc.pk, principals=principals)
                assert (found.pk if found else None) == (expected.pk if expected else None)
                if found is not None:
                    assert (found.data, found.acl, found.version, found.created_at) == (
                        expected.data,
                        expected.acl,
                        expected.version,
                        expected.created_at,
                    )
    anonymous = document_get_readable(collection=notes, document_id=docs[3].pk, principals=["public"])
    assert anonymous is None
    assert document_get_readable(collection=notes, document_id="not-a-uuid", principals=["public"]) is None
