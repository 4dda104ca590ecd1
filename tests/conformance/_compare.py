"""Comparing what two backends answered, with a message that names every difference."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["assert_same", "detection_keys"]


def detection_keys(detections: Iterable[Any]) -> list[tuple[Any, ...]]:
    """What must agree between backends: rule, kind, matched events, group and window."""
    return sorted(
        (d.rule_id, d.kind, tuple(d.event_ids), tuple(sorted((d.group or ()), key=str)),
         str(d.window_start), str(d.window_end))
        for d in detections
    )


def assert_same(left: Sequence[Any], right: Sequence[Any], what: str, names: tuple[str, str] = ("duckdb", "elasticsearch")) -> None:
    """Fail listing the items only one side has (up to 10 each) when the two lists differ."""
    if list(left) == list(right):
        return
    only_left = [x for x in left if x not in right]
    only_right = [x for x in right if x not in left]
    raise AssertionError(
        f"{what} differ: {len(left)} on {names[0]}, {len(right)} on {names[1]}\n"
        f"only on {names[0]}: {only_left[:10]}\nonly on {names[1]}: {only_right[:10]}"
    )
