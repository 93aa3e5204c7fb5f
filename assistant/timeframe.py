"""Time in questions: date windows, the reference date ``as_of``, and the words that set them.

A :class:`DayRange` is what retrieval filters on (Chroma ``where`` on each chunk's ``day``
and a mask over the BM25 index). :func:`window_for` turns the user's ``since``/``until``
and the time words of a question ("last week", "in March 2024", "latest") into one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from assistant.corpus import day_number


@dataclass(frozen=True)
class DayRange:
    """Articles published from ``start`` to ``end`` (both included; None: open)."""

    start: dt.date | None = None
    end: dt.date | None = None

    @property
    def first(self) -> int:
        """``start`` as ``YYYYMMDD`` (1 when open: undated chunks carry 0 and fall out)."""
        return day_number(self.start) if self.start else 1

    @property
    def last(self) -> int:
        """``end`` as ``YYYYMMDD`` (99991231 when open)."""
        return day_number(self.end) if self.end else 99991231

    def where(self) -> dict[str, object]:
        """The Chroma ``where`` filter that keeps this range's chunks."""
        return {"$and": [{"day": {"$gte": self.first}}, {"day": {"$lte": self.last}}]}
