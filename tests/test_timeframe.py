"""Time words in questions, user date limits, and the lines that say which articles were used."""

from __future__ import annotations

import datetime as dt

import pytest

from assistant.corpus import parse_date
from assistant.settings import AssistantError
from assistant.timeframe import (
    DayRange,
    names_month,
    parse_day,
    scope_for,
    span_text,
    time_words,
)

AS_OF = dt.date(2024, 3, 13)  # a Wednesday
D = dt.date


@pytest.mark.parametrize(("question", "start", "end"), [
    ("What happened last week?", D(2024, 3, 4), D(2024, 3, 10)),  # Monday to Sunday before
    ("Who resigned this week?", D(2024, 3, 7), D(2024, 3, 13)),
    ("What closed over the past week?", D(2024, 3, 7), D(2024, 3, 13)),
    ("What did the council decide this month?", D(2024, 3, 1), D(2024, 3, 13)),
    ("What did the council decide last month?", D(2024, 2, 1), D(2024, 2, 29)),
    ("Who won the vote in March 2024?", D(2024, 3, 1), D(2024, 3, 31)),
    ("Who won the vote in March?", D(2024, 3, 1), D(2024, 3, 13)),  # not after as_of
    ("Who won the vote in November?", D(2023, 11, 1), D(2023, 11, 30)),  # the last November
    ("What was announced yesterday?", D(2024, 3, 12), D(2024, 3, 12)),
    ("What was announced today?", D(2024, 3, 13), D(2024, 3, 13)),
    ("How many have died so far this year?", D(2024, 1, 1), D(2024, 3, 13)),
    ("What happened on Monday?", D(2024, 3, 11), D(2024, 3, 11)),
    ("What fell in the past 10 days?", D(2024, 3, 4), D(2024, 3, 13)),
    ("What fell over the past two weeks?", D(2024, 2, 29), D(2024, 3, 13)),
])
def test_each_time_expression_becomes_its_window(question: str, start: dt.date,
                                                 end: dt.date) -> None:
    words = time_words(question, AS_OF)
    assert words is not None and not words.recency
    assert (words.window.start, words.window.end) == (start, end)
    assert words.phrase.lower() in question.lower()


@pytest.mark.parametrize("question", ["What is the latest death toll?",
                                      "Who is the most recent winner?",
                                      "Which team recently signed the striker?"])
def test_latest_and_most_recent_prefer_the_newest_articles(question: str) -> None:
    words = time_words(question, AS_OF)
    assert words is not None and words.recency
    assert words.window.end == AS_OF and words.window.start is not None
    assert words.window.start < AS_OF


@pytest.mark.parametrize("question", ["Who won the election?",
                                      "How many people died in 2023?",  # a year is a topic
                                      "What did the Weekly Standard report?",
                                      "Which film won the most awards last year?"])
def test_a_question_without_time_words_is_not_filtered(question: str) -> None:
    assert time_words(question, AS_OF) is None
    assert scope_for(question, newest=AS_OF).window is None
    assert scope_for(question, newest=AS_OF).label() is None


@pytest.mark.parametrize("question", ["Which paper did Business TODAY quote?",
                                      "Who hosts Last Week Tonight?",
                                      "Who presents This Morning on ITV?"])
def test_time_words_written_as_a_name_are_not_time(question: str) -> None:
    assert time_words(question, AS_OF) is None
    assert scope_for(question, newest=AS_OF).window is None


@pytest.mark.parametrize("question", ["Today, who leads the polls?",
                                      "Last week, who won the final?",
                                      "Who won? Yesterday the vote closed.",
                                      "WHO WON THE VOTE TODAY?",
                                      "Who won the vote in March 2024?",
                                      "What happened On Monday?"])
def test_capitalised_time_words_opening_a_sentence_are_time(question: str) -> None:
    assert time_words(question, AS_OF) is not None


def test_a_month_and_year_may_be_named_by_later_articles() -> None:
    words = time_words("How many ships sank in september 2020?", AS_OF)
    assert words is not None and words.stated == "September 2020"
    assert words.window == DayRange(D(2020, 9, 1), D(2020, 9, 30))
    label = scope_for("How many ships sank in September 2020?", newest=AS_OF).label()
    assert label is not None and label.startswith(
        "In articles from 1–30 September 2020 or naming September 2020 (")
    for plain in ("Who won the vote in November?", "What happened last week?"):
        found = time_words(plain, AS_OF)
        assert found is not None and found.stated is None


@pytest.mark.parametrize("text", [
    "The ship sank in September 2020.", "It sank on September 5, 2020, off the coast.",
    "It sank on 5 September 2020.", "It sank on Sept. 5, 2020.", "on sep 30th 2020",
    "It sank in SEPTEMBER 2020."])
def test_a_month_is_named_with_or_without_its_day(text: str) -> None:
    assert names_month(text, "September 2020")


@pytest.mark.parametrize("text", [
    "It sank in September 2021.", "It sank in October 2020.", "September 12020",
    "It sank on September 5 and was raised in 2020.", "In September, 2,020 people left."])
def test_another_month_or_a_stray_year_is_not_the_month(text: str) -> None:
    assert not names_month(text, "September 2020")


def test_time_words_count_from_as_of_else_from_the_newest_article() -> None:
    given = scope_for("What happened yesterday?", as_of=D(2024, 1, 5), newest=AS_OF)
    assert given.window == DayRange(D(2024, 1, 4), D(2024, 1, 4))
    assert given.label() == "In articles from 4 January 2024 (“yesterday”, as of 5 January 2024)"
    default = scope_for("What happened yesterday?", newest=AS_OF)
    assert default.window == DayRange(D(2024, 3, 12), D(2024, 3, 12))
    assert "as of 13 March 2024, the newest article's date" in (default.label() or "")
    assert default.widens  # nothing there answers: all articles are tried, and it says so
    assert default.widened_label().startswith("No article from 12 March 2024 (“yesterday”")


def test_user_limits_are_never_widened_and_as_of_cuts_later_articles() -> None:
    scope = scope_for("What happened last week?", since=D(2024, 1, 1), newest=AS_OF)
    assert scope.window == DayRange(D(2024, 1, 1), None) and not scope.widens
    assert scope.label() == "Articles from 1 January 2024 onwards"
    cut = scope_for("Who won?", as_of=D(2024, 2, 1), newest=AS_OF)
    assert cut.window == DayRange(None, D(2024, 2, 1))
    assert cut.label() == ("Articles published up to 1 February 2024, those from "
                           "3 January – 1 February 2024 first")
    words = scope_for("Who won last week?", as_of=D(2024, 2, 1), newest=AS_OF)
    assert words.fallback == DayRange(None, D(2024, 2, 1))  # widened, never past as_of
    with pytest.raises(AssistantError, match="is after"):
        scope_for("Who won?", since=D(2024, 3, 1), until=D(2024, 2, 1))


def test_day_range_filters_and_texts() -> None:
    r = DayRange(D(2024, 3, 4), D(2024, 3, 10))
    assert (r.first, r.last) == (20240304, 20240310)
    # Chroma's filter lists a range's days ($in: its lower bounds are slow), ten years at
    # most; a range with no start needs an upper bound alone.
    assert r.where() == {"day": {"$in": [20240304, 20240305, 20240306, 20240307, 20240308,
                                         20240309, 20240310]}}
    assert DayRange(None, D(2024, 3, 10)).where() == {"day": {"$lte": 20240310}}
    assert DayRange(D(2000, 1, 1), D(2024, 1, 1)).where() == {
        "$and": [{"day": {"$gte": 20000101}}, {"day": {"$lte": 20240101}}]}
    assert DayRange(D(2024, 3, 4), None).where() == {
        "$and": [{"day": {"$gte": 20240304}}, {"day": {"$lte": 99991231}}]}
    assert len(DayRange(D(2023, 2, 27), D(2024, 3, 1)).where()["day"]["$in"]) == 369
    assert DayRange(None, D(2024, 1, 1)).first == 1  # undated chunks (day 0) fall out
    assert str(r) == "4–10 March 2024"
    assert span_text(D(2024, 2, 28), D(2024, 3, 5)) == "28 February – 5 March 2024"
    assert span_text(D(2023, 12, 30), D(2024, 1, 2)) == "30 December 2023 – 2 January 2024"


def test_user_dates_are_iso_and_a_bad_one_is_one_line() -> None:
    assert parse_day("2024-03-05") == D(2024, 3, 5)
    assert parse_day(None) is None and parse_day("") is None
    with pytest.raises(AssistantError, match=r"--since '5/3/24' is not a date: write it as "
                                             r"YYYY-MM-DD"):
        parse_day("5/3/24", "--since")


@pytest.mark.parametrize(("header", "day"), [
    ("2024-03-05", D(2024, 3, 5)), ("2024-03-05T10:00:00Z", D(2024, 3, 5)),
    ("2024/03/05", D(2024, 3, 5)), ("March 5, 2024", D(2024, 3, 5)),
    ("Tue, Mar 5 2024", D(2024, 3, 5)), ("5 March 2024", D(2024, 3, 5)),
    ("5th Sept. 2023", D(2023, 9, 5)), ("yesterday", None), ("2024-13-01", None),
    ("", None), ("Spring 2024", None),
])
def test_header_dates_are_read_or_left_alone(header: str, day: dt.date | None) -> None:
    assert parse_date(header) == day


def test_a_given_as_of_prefers_the_weeks_before_it_and_the_newest_date_does_not() -> None:
    given = scope_for("Who won?", as_of=D(2024, 2, 1), newest=AS_OF)
    assert given.prefer(given.window) == DayRange(D(2024, 1, 3), D(2024, 2, 1))
    assert given.prefer(DayRange(D(2024, 1, 20), None)) == DayRange(D(2024, 1, 20),
                                                                    D(2024, 2, 1))
    assert given.prefer(DayRange(D(2023, 1, 1), D(2023, 12, 31))) is None  # none of its days
    default = scope_for("Who won?", newest=AS_OF)  # a corpus's newest date: no preference
    assert default.prefer(default.window) is None and default.label() is None
    words = scope_for("Who won in March 2023?", as_of=D(2024, 2, 1), newest=AS_OF)
    assert words.prefer(words.window) is None  # the question named its own period
    assert words.prefer(words.fallback) == DayRange(D(2024, 1, 3), D(2024, 2, 1))
    recent = scope_for("Who won most recently?", as_of=D(2024, 2, 1), newest=AS_OF)
    assert recent.prefer(recent.window) is None  # its window is those very days


def test_day_ranges_overlap() -> None:
    march = DayRange(D(2024, 3, 1), D(2024, 3, 31))
    assert march.overlap(None) == march
    assert march.overlap(DayRange(None, D(2024, 3, 10))) == DayRange(D(2024, 3, 1),
                                                                     D(2024, 3, 10))
    assert march.overlap(DayRange(D(2024, 3, 20), None)) == DayRange(D(2024, 3, 20),
                                                                     D(2024, 3, 31))
    assert march.overlap(DayRange(D(2024, 4, 1), None)) is None
    assert DayRange().overlap(DayRange()) == DayRange()
