"""OpenAPI generation hooks."""

from __future__ import annotations

from typing import Any


def drop_trailing_slash_twins(endpoints: list[tuple[Any, ...]], **_: Any) -> list[tuple[Any, ...]]:
    """Document each route once, as the contract writes it (without the slash).

    ``api_path`` registers every route twice so both spellings work; the
    schema would otherwise list each operation twice under numbered ids.
    """
    paths = {endpoint[0] for endpoint in endpoints}
    return [
        endpoint
        for endpoint in endpoints
        if not (endpoint[0].endswith("/") and endpoint[0].rstrip("/") in paths)
    ]
