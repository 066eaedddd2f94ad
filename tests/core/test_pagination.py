"""Cursor pagination: results/next/previous, limit 20 by default and at most 100."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import User

pytestmark = [pytest.mark.urls("tests.core.urls"), pytest.mark.django_db]
LIST = "/api/v1/test/users"


def make_users(count: int, *, same_instant: bool = False) -> list[str]:
    """``count`` users, newest first as the list orders them; returns their ids."""
    start = timezone.now() - timedelta(days=1)
    users = [
        User(
            email=f"page{index}@example.com",
            created_at=start if same_instant else start + timedelta(seconds=index),
        )
        for index in range(count)
    ]
    User.objects.bulk_create(users)
    ordered = User.objects.order_by("-created_at", "-id").values_list("id", flat=True)
    return [str(pk) for pk in ordered]


def walk(client, url: str, direction: str) -> list[list[str]]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        pages.append([item["id"] for item in body["results"]])
        url = body[direction]
        assert len(pages) < 100, "pagination does not end"
    return pages


def test_a_page_has_results_next_and_previous_with_20_by_default(api_client):
    ids = make_users(25)

    body = api_client.get(LIST).json()

    assert set(body) == {"results", "next", "previous"}
    assert [item["id"] for item in body["results"]] == ids[:20]
    assert body["previous"] is None
    assert body["next"].startswith("http://testserver/api/v1/test/users?cursor=")
    second = api_client.get(body["next"]).json()
    assert [item["id"] for item in second["results"]] == ids[20:]
    assert second["next"] is None
    assert second["previous"] is not None


def test_limit_is_capped_at_100(api_client):
    make_users(105)

    body = api_client.get(LIST, {"limit": 500}).json()

    assert len(body["results"]) == 100
    assert body["next"] is not None


def test_limit_within_range_is_used_and_kept_in_the_links(api_client):
    make_users(7)

    body = api_client.get(LIST, {"limit": 3}).json()

    assert len(body["results"]) == 3
    assert "limit=3" in body["next"]


@pytest.mark.parametrize("limit", ["abc", "0", "-5", "1.5"])
def test_an_invalid_limit_is_400_validation_error(api_client, limit):
    response = api_client.get(LIST, {"limit": limit})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_error"
    assert list(body["errors"]) == ["limit"]


def test_a_forged_cursor_is_400_validation_error(api_client):
    response = api_client.get(LIST, {"cursor": "not-a-cursor!"})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert list(body["errors"]) == ["cursor"]


@pytest.mark.parametrize("same_instant", [False, True], ids=["distinct-times", "identical-times"])
def test_paging_forward_and_back_never_skips_or_repeats(api_client, same_instant):
    ids = make_users(47, same_instant=same_instant)

    forward = walk(api_client, f"{LIST}?limit=10", "next")

    assert [len(page) for page in forward] == [10, 10, 10, 10, 7]
    seen = [pk for page in forward for pk in page]
    assert seen == ids  # every row once, in order

    last_page = api_client.get(f"{LIST}?limit=10").json()
    url = last_page["next"]
    while True:
        body = api_client.get(url).json()
        if body["next"] is None:
            break
        url = body["next"]
    backward = walk(api_client, body["previous"], "previous")
    assert [pk for page in reversed(backward) for pk in page] == ids[:40]


def test_rows_added_at_the_top_while_paging_do_not_shift_later_pages(api_client):
    ids = make_users(30)
    first = api_client.get(LIST, {"limit": 10}).json()

    User.objects.create_user(email="newcomer@example.com")  # newest: sorts before page one
    second = api_client.get(first["next"]).json()

    assert [item["id"] for item in second["results"]] == ids[10:20]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"p": ["not a time", "not a uuid"]}',
        b'{"p": ["2026-01-01T00:00:00+00:00"]}',
        b'{"p": [null, null]}',
        b'["p"]',
    ],
)
def test_a_well_encoded_cursor_with_a_bad_position_is_400_not_500(api_client, payload):
    import base64

    make_users(3)
    token = base64.urlsafe_b64encode(payload).decode().rstrip("=")

    response = api_client.get(LIST, {"cursor": token})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["cursor"]


def test_walking_back_to_the_start_ends_with_no_previous_link(api_client):
    ids = make_users(12)
    second = api_client.get(api_client.get(LIST, {"limit": 5}).json()["next"]).json()

    back = api_client.get(second["previous"]).json()

    assert [item["id"] for item in back["results"]] == ids[:5]
    assert back["previous"] is None
    assert [item["id"] for item in api_client.get(back["next"]).json()["results"]] == ids[5:10]
