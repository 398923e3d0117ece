"""Counters keyed by a label, with a bounded number of labels.

Why: counts by cause (a failure's kind, what asked for a dial) are what an
operator reads first, but a label that varies without limit (an error text
with a new detail each time) must not grow a dict for ever. Past ``limit``
distinct labels the rest count under one more, "other".
"""

from __future__ import annotations

__all__ = ["OTHER", "count_bounded"]

#: The label that counts whatever came past the bound.
OTHER = "other"


def count_bounded(counts: dict[str, int], label: str, limit: int) -> None:
    """Add one to ``counts[label]``, or to ``counts["other"]`` once ``limit``
    other labels are held."""
    if label not in counts and len(counts) >= limit:
        label = OTHER
    counts[label] = counts.get(label, 0) + 1
