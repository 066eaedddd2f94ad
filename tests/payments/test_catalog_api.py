"""GET /api/v1/payments/products: the public catalog (contract section 6)."""

from __future__ import annotations

import pytest

from apps.payments.services import product_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/payments/products"


def _product(name: str = "Pro", *, sort_order: int = 0, active: bool = True, prices=None, entitlements=None):
    return product_create(
        name=name,
        description=f"{name} plan",
        entitlements=entitlements if entitlements is not None else ["premium"],
        sort_order=sort_order,
        active=active,
        prices=prices
        if prices is not None
        else [
            {"amount": 4999, "currency": "EUR", "interval": "year"},
            {"amount": 499, "currency": "EUR", "interval": "month"},
        ],
    )


def test_lists_products_with_prices_in_minor_units_without_signing_in(api_client):
    product = _product()
    monthly = product.prices.get(interval="month")
    yearly = product.prices.get(interval="year")

    response = api_client.get(URL)

    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "id": str(product.id),
                "name": "Pro",
                "description": "Pro plan",
                "prices": [
                    {"id": str(monthly.id), "amount": 499, "currency": "EUR", "interval": "month"},
                    {"id": str(yearly.id), "amount": 4999, "currency": "EUR", "interval": "year"},
                ],
                "entitlements": ["premium"],
            }
        ],
        "next": None,
        "previous": None,
    }


def test_a_one_time_price_has_a_null_interval(api_client):
    _product(
        prices=[{"amount": 1999, "currency": "JPY", "interval": None}], entitlements=["lifetime", "premium"]
    )

    body = api_client.get(URL).json()

    assert body["results"][0]["prices"][0]["interval"] is None
    assert body["results"][0]["prices"][0]["currency"] == "JPY"
    assert body["results"][0]["entitlements"] == ["lifetime", "premium"]


def test_inactive_products_and_prices_are_not_listed(api_client):
    shown = _product("Shown")
    _product("Hidden", active=False)
    shown.prices.filter(interval="year").update(active=False)

    results = api_client.get(URL).json()["results"]

    assert [p["name"] for p in results] == ["Shown"]
    assert [p["interval"] for p in results[0]["prices"]] == ["month"]


def test_signed_in_callers_see_the_same_catalog(auth_client, api_client):
    _product()

    signed_in = auth_client.get(URL)

    assert signed_in.status_code == 200
    assert signed_in.json() == api_client.get(URL).json()


def test_the_trailing_slash_form_answers_too(api_client):
    _product()

    response = api_client.get(URL + "/")

    assert response.status_code == 200
    assert [p["name"] for p in response.json()["results"]] == ["Pro"]


def test_pages_follow_sort_order_and_walk_back(api_client):
    for i in range(5):
        _product(f"P{i}", sort_order=10 - i)  # created in the reverse of their listing order

    first = api_client.get(URL, {"limit": 2}).json()
    second = api_client.get(first["next"]).json()
    third = api_client.get(second["next"]).json()
    back = api_client.get(second["previous"]).json()

    assert [p["name"] for p in first["results"]] == ["P4", "P3"]
    assert [p["name"] for p in second["results"]] == ["P2", "P1"]
    assert [p["name"] for p in third["results"]] == ["P0"]
    assert third["next"] is None and first["previous"] is None
    assert back["results"] == first["results"]


def test_a_bad_limit_or_cursor_is_a_validation_problem(api_client):
    bad_limit = api_client.get(URL, {"limit": "0"})
    bad_cursor = api_client.get(URL, {"cursor": "not-ours"})

    for response in (bad_limit, bad_cursor):
        assert response.status_code == 400
        assert response["Content-Type"].startswith("application/problem+json")
        assert response.json()["code"] == "validation_error"


def test_two_queries_whatever_the_number_of_products_and_prices(api_client, django_assert_num_queries):
    for i in range(12):
        _product(
            f"P{i}",
            prices=[{"amount": 100 * n, "currency": "USD", "interval": "month"} for n in range(1, 5)],
        )

    with django_assert_num_queries(2):
        response = api_client.get(URL, {"limit": 10})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 10
    assert all(len(p["prices"]) == 4 for p in response.json()["results"])


def test_schema_documents_the_catalog(api_client):
    import yaml

    schema = yaml.safe_load(api_client.get("/api/schema/").content)

    operation = schema["paths"]["/api/v1/payments/products"]["get"]
    assert operation["operationId"] == "payments_products_list"
    assert {} in operation["security"]  # readable without signing in
    product = schema["components"]["schemas"]["Product"]
    assert set(product["properties"]) == {"id", "name", "description", "prices", "entitlements"}
    price = schema["components"]["schemas"]["Price"]
    assert set(price["properties"]) == {"id", "amount", "currency", "interval"}
    assert price["properties"]["interval"]["nullable"] is True
