"""ModelRows: instances from hand-written SQL equal the ORM's, converters included."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from apps.core.db.rows import ModelRows
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_rows_convert_like_the_orm_and_return_the_extra_columns():
    user = UserFactory(display_name="Ada")
    user.phone = "+4915112345678"  # stored encrypted
    user.save()
    model = get_user_model()
    rows = ModelRows(model)
    quote = connection.ops.quote_name
    sql = (
        f"SELECT {rows.columns(connection, 'u')}, 1 + 1 FROM {quote(model._meta.db_table)} u "
        f"WHERE u.{quote('id')} = %s"
    )

    ((loaded, extra),) = rows.fetch(sql, [model._meta.pk.get_db_prep_value(user.pk, connection)])

    from_orm = model.objects.get(pk=user.pk)
    assert extra == (2,)
    assert loaded.pk == from_orm.pk and isinstance(loaded.pk, type(from_orm.pk))
    assert loaded.phone == "+4915112345678"
    for field in model._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(from_orm, field.attname), field.name
    assert loaded._state.adding is False and loaded._state.db == "default"


def test_no_rows_is_an_empty_list():
    model = get_user_model()
    rows = ModelRows(model, fields=["id", "email"])
    quote = connection.ops.quote_name
    sql = f"SELECT {rows.columns(connection, 'u')} FROM {quote(model._meta.db_table)} u WHERE 1 = 0"
    assert rows.fetch(sql, []) == []


def test_a_subset_of_fields_in_any_order_loads_each_value_into_its_field():
    user = UserFactory(display_name="Grace")
    model = get_user_model()
    rows = ModelRows(model, fields=["display_name", "email", "id"])
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    sql = f"SELECT {rows.columns(connection, 'u')} FROM {table} u WHERE u.{quote('id')} = %s"

    ((loaded, extra),) = rows.fetch(sql, [model._meta.pk.get_db_prep_value(user.pk, connection)])

    assert extra == ()
    assert (loaded.pk, loaded.email, loaded.display_name) == (user.pk, user.email, "Grace")
    assert loaded.get_deferred_fields() >= {"password", "is_active"}
