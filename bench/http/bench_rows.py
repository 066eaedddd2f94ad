"""The rows both servers hold: the same 10,000 on each side, in the same order."""

from __future__ import annotations

import random
from typing import Any

CATEGORIES = [f"c{i}" for i in range(10)]
# What the create case writes: outside the list case's c0..c9, and deleted after the run.
CREATED_CATEGORY = "new"
CREATED_ROW: dict[str, Any] = {
    "category": CREATED_CATEGORY,
    "score": 42,
    "title": "Created by the benchmark",
    "done": False,
}


def rows(count: int) -> list[dict[str, Any]]:
    """``count`` rows: category ``c0``..``c9`` in turn, a random score, a title, a flag."""
    rng = random.Random(20261121)  # reproducible data, not security
    return [
        {
            "category": CATEGORIES[i % len(CATEGORIES)],
            "score": rng.randrange(1_000_000),
            "title": f"Benchmark item {i:05d}: a short line of text",
            "done": i % 3 == 0,
        }
        for i in range(count)
    ]
