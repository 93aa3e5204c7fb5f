"""Time in questions: date windows, the reference date ``as_of``, and the words that set them.

A :class:`DayRange` is what retrieval filters on (Chroma ``where`` on each chunk's ``day``
and a mask over the BM25 index). :func:`window_for` turns the user's ``since``/``until``
and the time words of a question ("last week", "in March 2024", "latest") into one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from assistant.corpus import day_number

MAX_LISTED_DAYS = 3660
"""The longest range (ten years) whose Chroma filter lists its days (see :meth:`DayRange.where`)."""


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

    def holds(self, day: int | None) -> bool:
        """True when a chunk of publication day ``day`` (``YYYYMMDD``; None: undated)
        matches :meth:`where`."""
        return day is not None and self.first <= day <= self.last

    def where(self) -> dict[str, object]:
        """The Chroma ``where`` filter that keeps this range's chunks (undated chunks carry
        no ``day`` and never match). Its shape is chosen for speed: Chroma 1.5's lower
        bounds are slow and ``$in`` is not (a 100,000-chunk store, ``python -m
        evals.bench_filters``), so a range with a start lists its days, up to
        :data:`MAX_LISTED_DAYS` of them."""
        if self.start is None:
            return {"day": {"$lte": self.last}}
        if self.end is not None and (self.end - self.start).days < MAX_LISTED_DAYS:
            days = (self.end - self.start).days + 1
            return {"day": {"$in": [day_number(self.start + dt.timedelta(days=i))
                                    for i in range(days)]}}
        return {"$and": [{"day": {"$gte": self.first}}, {"day": {"$lte": self.last}}]}

    def __str__(self) -> str:
        """"4–10 March 2024", "1 March 2024 onwards", "up to 10 March 2024"."""
        if self.start and self.end:
            return span_text(self.start, self.end)
        if self.start:
            return f"{day_text(self.start)} onwards"
        if self.end:
            return f"up to {day_text(self.end)}"
        return "any date"

    def overlap(self, other: DayRange | None) -> DayRange | None:
        """The days in both this range and ``other`` (None: ``other`` is every day);
        None when they share none."""
        if other is None:
            return self
        starts = [d for d in (self.start, other.start) if d is not None]
        ends = [d for d in (self.end, other.end) if d is not None]
        start, end = max(starts, default=None), min(ends, default=None)
        if start is not None and end is not None and start > end:
            return None
        return DayRange(start, end)

    def clipped(self, end: dt.date | None) -> DayRange:
        """This range ending no later than ``end`` (None: unchanged)."""
        if end is None or (self.end is not None and self.end <= end):
            return self
        return DayRange(self.start, end)


@dataclass(frozen=True)
class TimeWords:
    """The time a question names: a window, or a preference for the newest articles."""

    window: DayRange
    phrase: str  # the words that set it, as written ("last week")
    start: int  # where they are in the question
    end: int
    recency: bool = False  # "latest", "most recent": the newest articles, not a period
    stated: str | None = None  # "September 2020": a month an article may name in its text


RECENT_DAYS = 30
"""How far back "latest", "most recent" and "recently" look from ``as_of`` first; with an
``as_of`` given, the articles of these days are also ranked first (:attr:`Scope.prefer`)."""
WEEK_DAYS = 7
""""This week" / "the past week": the seven days that end on ``as_of``."""

_MONTH_NAMES = ("January February March April May June July August September October "
                "November December").split()
_MONTH = "|".join(_MONTH_NAMES)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Longest phrases first: "so far this year" before "this year".
_PATTERN_TEXT = (
    ("so_far_this_year", r"\b(?:so far )?this year(?: so far)?\b|\bso far in (?P<y0>\d{4})\b"),
    ("month_year", rf"\b(?:in |during |since |throughout )?(?:early |late |mid-)?"
                   rf"(?P<month>{_MONTH}) (?:of )?(?P<year>(?:19|20)\d\d)\b"),
    ("in_month", rf"\b(?:in|during|throughout) (?:early |late |mid-)?(?P<month>{_MONTH})\b"),
    ("past_days", r"\b(?:in |over |during )?the (?:past|last) (?P<n>\d+|two|three|four|five|six|"
                  r"seven|ten|fourteen|thirty) (?P<unit>days|weeks)\b"),
    ("last_week", r"\blast week(?:end)?\b"),
    ("this_week", r"\b(?:this|the past|the last) week(?:end)?\b|\bthis past week(?:end)?\b"),
    ("last_month", r"\blast month\b"),
    ("this_month", r"\b(?:this|the past) month\b"),
    ("yesterday", r"\byesterday\b"),
    ("today", r"\btoday\b|\btonight\b|\bthis morning\b"),
    ("weekday", r"\b(?:on|last|this) (?P<weekday>monday|tuesday|wednesday|thursday|friday|"
                r"saturday|sunday)\b"),
    ("recent", r"\b(?:the )?(?:latest|most recent|newest|most recently|recently|so far)\b"),
)
_PATTERNS = [(name, re.compile(p, re.IGNORECASE)) for name, p in _PATTERN_TEXT]
_SMALL = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10,
          "fourteen": 14, "thirty": 30}


def names_month(text: str, month: str) -> bool:
    """True when ``text`` names ``month`` ("September 2020", as ``TimeWords.stated``):
    "September 2020", "September 5, 2020", "5 September 2020", "Sept. 5, 2020"."""
    name, year = month.rsplit(" ", 1)
    pattern = (rf"\b(?:{name}|{name[:3]}t?\.?)(?:\s+\d{{1,2}}(?:st|nd|rd|th)?)?,?\s+"
               rf"{year}\b")
    return re.search(pattern, text, re.IGNORECASE) is not None


def time_words(question: str, as_of: dt.date) -> TimeWords | None:
    """The first time expression of ``question``, resolved against ``as_of`` (None when
    it has none, so that an ordinary question is never filtered)."""
    found: list[tuple[int, int, str, re.Match[str]]] = []
    for name, pattern in _PATTERNS:
        for m in pattern.finditer(question):
            if not _a_name(question, m):
                found.append((m.start(), -(m.end() - m.start()), name, m))
    for start, _, name, m in sorted(found, key=lambda f: (f[0], f[1])):
        window = _resolve(name, m, as_of)
        if window is not None:
            stated = (f"{_MONTH_NAMES[_month_number(m.group('month')) - 1]} {m.group('year')}"
                      if name == "month_year" else None)
            return TimeWords(window, m.group(0), start, m.end(), recency=name == "recent",
                             stated=stated)
    return None


_NAMES_ANYWAY = {m.lower() for m in _MONTH_NAMES} | set(_WEEKDAYS)


def _a_name(question: str, m: re.Match[str]) -> bool:
    """True when the time words of ``m`` are written as (part of) a name: capitalised
    inside a sentence ("Business TODAY", "Last Week Tonight"). Words naming a month or a weekday
    are time however written, any word may be at the start of a sentence, and a question in
    capitals says nothing by them."""
    said = m.group(0).split()
    if (not said[0][:1].isupper() or question.isupper()
            or any(w.lower().rstrip(".") in _NAMES_ANYWAY for w in said)):
        return False
    before = question[:m.start()].rstrip(" \"'“‘(")
    return bool(before) and before[-1] not in ".!?:;"


def _resolve(name: str, m: re.Match[str], as_of: dt.date) -> DayRange | None:
    day = dt.timedelta(days=1)
    if name == "so_far_this_year":
        year = int(m.group("y0")) if m.group("y0") else as_of.year
        return DayRange(dt.date(year, 1, 1), min(as_of, dt.date(year, 12, 31)))
    if name == "month_year":
        return _month(int(m.group("year")), _month_number(m.group("month")))
    if name == "in_month":
        month = _month_number(m.group("month"))
        year = as_of.year if month <= as_of.month else as_of.year - 1
        return _month(year, month).clipped(as_of)
    if name == "past_days":
        n = m.group("n")
        count = int(n) if n.isdigit() else _SMALL[n.lower()]
        days = count * (7 if m.group("unit").lower() == "weeks" else 1)
        return DayRange(as_of - (days - 1) * day, as_of)
    if name == "this_week":
        return DayRange(as_of - (WEEK_DAYS - 1) * day, as_of)
    if name == "last_week":
        monday = as_of - as_of.weekday() * day
        return DayRange(monday - 7 * day, monday - day)
    if name == "this_month":
        return DayRange(as_of.replace(day=1), as_of)
    if name == "last_month":
        first = as_of.replace(day=1)
        before = first - day
        return DayRange(before.replace(day=1), before)
    if name == "yesterday":
        return DayRange(as_of - day, as_of - day)
    if name == "today":
        return DayRange(as_of, as_of)
    if name == "weekday":
        back = (as_of.weekday() - _WEEKDAYS.index(m.group("weekday").lower())) % 7
        when = as_of - back * day
        return DayRange(when, when)
    if name == "recent":
        return DayRange(as_of - (RECENT_DAYS - 1) * day, as_of)
    return None


def _month_number(name: str) -> int:
    return [m.lower() for m in _MONTH_NAMES].index(name.lower()) + 1


def _month(year: int, month: int) -> DayRange:
    first = dt.date(year, month, 1)
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return DayRange(first, following - dt.timedelta(days=1))


def day_text(day: dt.date) -> str:
    """``5 March 2024``."""
    return f"{day.day} {_MONTH_NAMES[day.month - 1]} {day.year}"


def span_text(start: dt.date, end: dt.date) -> str:
    """``4–10 March 2024``, ``28 February – 5 March 2024``, ``5 March 2024``."""
    if start == end:
        return day_text(start)
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}–{day_text(end)}"
    if start.year == end.year:
        return f"{start.day} {_MONTH_NAMES[start.month - 1]} – {day_text(end)}"
    return f"{day_text(start)} – {day_text(end)}"


def parse_day(value: str | dt.date | None, what: str = "date") -> dt.date | None:
    """A user's ``--since``/``--until``/``--as-of`` value (``YYYY-MM-DD``) as a date;
    raises AssistantError with one line when it is not one."""
    from assistant.settings import AssistantError

    if value is None or isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise AssistantError(f"{what} {text!r} is not a date: write it as YYYY-MM-DD"
                             ) from None


def from_day_number(value: int) -> dt.date | None:
    """The date of a ``YYYYMMDD`` integer (None for 0 or nonsense)."""
    try:
        return dt.date(value // 10000, value // 100 % 100, value % 100) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Scope:
    """Which articles a question is answered from, and how to say so.

    ``window`` is what retrieval filters on (None: every article). ``fallback`` is the
    wider range used when nothing inside a window set by the question's own time words
    answers it (a window the user gave with ``since``/``until`` is never widened).

    With an ``as_of`` the user gave, the question is asked on that day, and news asked
    about on a day is mostly the news of the weeks before it: the articles of the last
    ``RECENT_DAYS`` days up to ``as_of`` are then *preferred* — ranked among themselves
    and fused into retrieval beside the whole window's ranking (:meth:`prefer`) — not
    filtered, so an older article that alone answers still does. The newest article's
    date (the default ``as_of``) says nothing of when a question is asked: nothing is
    preferred then.
    """

    window: DayRange | None = None
    fallback: DayRange | None = None
    words: TimeWords | None = None
    as_of: dt.date | None = None
    as_of_given: bool = False  # False: as_of is the newest article's date

    def prefer(self, window: DayRange | None) -> DayRange | None:
        """The days of ``window`` that retrieval ranks first: its part in the last
        ``RECENT_DAYS`` days up to a given ``as_of`` (None: no ``as_of`` was given, the
        window is the period the question's own time words name, or it holds none of
        those days, or nothing else)."""
        if not self.as_of_given or self.as_of is None:
            return None
        if self.words is not None and window == self.words.window:
            return None
        recent = DayRange(self.as_of - dt.timedelta(days=RECENT_DAYS - 1), self.as_of)
        part = recent.overlap(window)
        return None if part is None or part == window else part

    @property
    def stating(self) -> tuple[str, DayRange | None] | None:
        """(the month the question's time words name, the wider range to look in for
        chunks that name it), or None: a month may be reported on after it ended."""
        stated = self.words.stated if self.words else None
        return (stated, self.fallback) if stated else None

    @property
    def widens(self) -> bool:
        """True when an abstention inside ``window`` is retried over ``fallback``."""
        return self.words is not None

    def label(self) -> str | None:
        """The line that tells the reader which articles were used (None: all of them)."""
        if self.window is None:
            return None
        if self.words is None:
            used = f"Articles from {self.window}" if self.window.start else (
                f"Articles published {self.window}")
            prefer = self.prefer(self.window)
            return f"{used}, those from {prefer} first" if prefer else used
        kind = "the newest articles" if self.words.recency else "articles"
        naming = f" or naming {self.words.stated}" if self.words.stated else ""
        return (f"In {kind} from {self.window}{naming} (“{self.words.phrase}”, "
                f"{self._as_of()})")

    def widened_label(self) -> str:
        """The line said when no article of ``window`` answered and ``fallback`` did."""
        where = "all articles" if self.fallback is None else f"articles {self.fallback}"
        words = self.words.phrase if self.words else ""
        return (f"No article from {self.window} (“{words}”, {self._as_of()}) answers this; "
                f"answered from {where}")

    def _as_of(self) -> str:
        if self.as_of is None:
            return "no date"
        if self.as_of_given:
            return f"as of {day_text(self.as_of)}"
        return f"as of {day_text(self.as_of)}, the newest article's date"


def scope_for(question: str, since: dt.date | None = None, until: dt.date | None = None,
              as_of: dt.date | None = None, newest: dt.date | None = None) -> Scope:
    """The scope of ``question``: the user's ``since``/``until`` when given, else the
    window of its time words relative to ``as_of`` (default ``newest``, the newest
    article's date); an ``as_of`` given also leaves out every article published after it."""
    from assistant.settings import AssistantError

    if since and until and since > until:
        raise AssistantError(f"--since {since} is after --until {until}")
    reference = as_of or newest
    base: DayRange | None = DayRange(since, until) if since or until else None
    if as_of is not None:
        base = (base or DayRange()).clipped(as_of)
    if since or until or reference is None:
        return Scope(window=base, as_of=reference, as_of_given=as_of is not None)
    words = time_words(question, reference)
    if words is None:
        return Scope(window=base, as_of=reference, as_of_given=as_of is not None)
    return Scope(window=words.window, fallback=base, words=words, as_of=reference,
                 as_of_given=as_of is not None)
