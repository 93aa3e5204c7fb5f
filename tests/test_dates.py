"""Dates as data: each chunk's publication day filters retrieval inside Chroma and the BM25
index, time words in a question set a window, and citations carry the article's date and
source. The corpus is a few short dated articles written for these tests."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.core import Assistant
from assistant.corpus import read_text
from assistant.timeframe import DayRange
from tests.conftest import corpus_bot

QUESTION = "How much will the Harbour Bridge repairs cost?"
ARTICLES = {
    "bridge-early.txt": "Harbour Bridge repairs priced\nPublished: 2024-03-04\n\n"
    "The Harbour Bridge repairs will cost 12 million dollars, the city council said on "
    "Monday. Work on the deck is to start in April.\n\nSource: Valley Herald\n",
    "bridge-late.txt": "Bridge repair bill rises\nPublished: 2024-03-11\n\n"
    "The Harbour Bridge repairs will now cost 19 million dollars, the city council said "
    "on Monday. Rust found under the deck raised the price.\n\nSource: Coast Times\n",
    "bridge-undated.txt": "An engineer on the bridge\n\n"
    "The Harbour Bridge repairs will cost 30 million dollars, a retired engineer claimed "
    "in a letter to the council.\n",
    "mayor.txt": "Valley election\nPublished: February 2, 2024\n\n"
    "Maria Lopez won the valley mayoral election with 54 percent of the vote. She promised "
    "to fix the roads.\n",
}


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory, embed_model) -> Assistant:
    return corpus_bot(tmp_path_factory.mktemp("dated"), ARTICLES, embed_model)


def _cited(answer) -> set[str]:
    return {c.path for c in answer.citations}


def _check_quotes(bot: Assistant, answer) -> None:
    for c in answer.citations:
        assert read_text(bot.settings.corpus / c.path)[c.start : c.end] == c.quote


def test_retrieval_filters_inside_the_window_in_chroma_and_bm25(dated: Assistant) -> None:
    retriever = dated._retriever_for_query()
    vec = dated.embed_model.embed([QUESTION])[0]
    window = DayRange(dt.date(2024, 3, 8), dt.date(2024, 3, 31))
    hits = retriever.retrieve(QUESTION, vec, window)
    assert hits and {h.doc_id for h in hits} == {"bridge-late.txt"}
    assert {"bm25", "dense"} <= set(hits[0].ranks)  # both retrievers ran on the window
    assert retriever.bm25.search(QUESTION, 10, window)[0][0].startswith("bridge-late.txt")
    everything = retriever.retrieve(QUESTION, vec)
    assert "bridge-undated.txt" in {h.doc_id for h in everything}
    assert retriever.newest == dt.date(2024, 3, 11)
    assert retriever.retrieve(QUESTION, vec, DayRange(dt.date(2020, 1, 1),
                                                      dt.date(2020, 1, 2))) == []


def test_preferred_days_rank_first_without_leaving_others_out(dated: Assistant) -> None:
    retriever = dated._retriever_for_query()
    vec = dated.embed_model.embed([QUESTION])[0]
    late = retriever.retrieve(QUESTION, vec, prefer=DayRange(dt.date(2024, 3, 8),
                                                             dt.date(2024, 3, 11)))
    early = retriever.retrieve(QUESTION, vec, prefer=DayRange(dt.date(2024, 3, 1),
                                                              dt.date(2024, 3, 5)))
    assert late[0].doc_id == "bridge-late.txt" and early[0].doc_id == "bridge-early.txt"
    for hits in (late, early):  # preferred, not filtered: the other articles still come
        assert {"bridge-early.txt", "bridge-late.txt", "bridge-undated.txt"} <= {
            h.doc_id for h in hits}


def test_as_of_prefers_the_month_before_it_and_still_answers_from_older(
        dated: Assistant) -> None:
    answer = dated.ask("Who won the valley mayoral election?", as_of="2024-03-11")
    assert not answer.abstained and _cited(answer) == {"mayor.txt"}  # 2 February
    assert answer.scope == ("Articles published up to 11 March 2024, those from "
                            "11 February – 11 March 2024 first")
    _check_quotes(dated, answer)


def test_since_and_until_choose_the_articles_of_the_range(dated: Assistant) -> None:
    late = dated.ask(QUESTION, since="2024-03-08")
    assert _cited(late) == {"bridge-late.txt"} and "19 million" in late.text
    assert late.scope == "Articles from 8 March 2024 onwards"
    early = dated.ask(QUESTION, until=dt.date(2024, 3, 5))
    assert _cited(early) <= {"bridge-early.txt"} and "12 million" in early.text
    assert early.scope == "Articles published up to 5 March 2024"
    for answer in (late, early):
        _check_quotes(dated, answer)
    nothing = dated.ask(QUESTION, since="2024-01-01", until="2024-01-31")
    assert nothing.abstained  # a range the user gave is never widened


def test_time_words_set_a_window_from_as_of(dated: Assistant) -> None:
    answer = dated.ask("How much will the Harbour Bridge repairs cost this week?",
                       as_of="2024-03-06")
    assert _cited(answer) == {"bridge-early.txt"}
    assert answer.scope == ("In articles from 29 February – 6 March 2024 (“this week”, "
                            "as of 6 March 2024)")
    newest = dated.ask("How much will the Harbour Bridge repairs cost this week?")
    assert _cited(newest) == {"bridge-late.txt"}
    assert "as of 11 March 2024, the newest article's date" in (newest.scope or "")


def test_as_of_leaves_out_later_articles(dated: Assistant) -> None:
    answer = dated.ask(QUESTION, as_of="2024-03-05")
    assert "bridge-late.txt" not in _cited(answer)
    assert all("bridge-late" not in p.path for p in answer.passages)


def test_nothing_in_the_window_widens_and_says_so(dated: Assistant) -> None:
    answer = dated.ask("Who won the valley mayoral election this week?")
    assert not answer.abstained and _cited(answer) == {"mayor.txt"}
    assert answer.scope == ("No article from 5–11 March 2024 (“this week”, as of 11 March "
                            "2024, the newest article's date) answers this; answered from "
                            "all articles")


def test_undated_articles_count_only_without_a_filter(dated: Assistant) -> None:
    retriever = dated._retriever_for_query()
    vec = dated.embed_model.embed([QUESTION])[0]
    window = DayRange(None, dt.date(2030, 1, 1))
    assert "bridge-undated.txt" not in {h.doc_id for h in retriever.retrieve(QUESTION, vec,
                                                                             window)}


def _spy_on_chroma_queries(retriever, monkeypatch: pytest.MonkeyPatch) -> list:
    """The ``where`` of every Chroma query ``retriever`` makes from now on."""
    collection_class = type(retriever.store.chunks)
    real = collection_class.query
    wheres: list = []

    def query(self, *args, **kwargs):
        wheres.append(kwargs.get("where"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(collection_class, "query", query)
    return wheres


def test_a_window_up_to_a_day_asks_chroma_unfiltered_first(
        tmp_path: Path, embed_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything up to an ``as_of`` is most of a store, which Chroma filters slowly: when
    the nearest chunks are all inside the window, they are the answer with no filter."""
    dated_only = {k: v for k, v in ARTICLES.items() if k != "bridge-undated.txt"}
    bot = corpus_bot(tmp_path, dated_only, embed_model)
    retriever = bot._retriever_for_query()
    vec = bot.embed_model.embed([QUESTION])[0]
    wheres = _spy_on_chroma_queries(retriever, monkeypatch)
    fast = retriever.retrieve(QUESTION, vec, DayRange(None, dt.date(2024, 3, 31)))
    assert wheres == [None]  # one query, unfiltered
    # The same chunks and scores as a filtered query over the same articles.
    filtered = retriever.retrieve(QUESTION, vec, DayRange(dt.date(1990, 1, 1),
                                                          dt.date(2024, 3, 31)))
    assert wheres[1] is not None
    assert [(h.id, h.score) for h in fast] == [(h.id, h.score) for h in filtered]
    assert {h.doc_id for h in fast} == set(dated_only)


def test_a_window_up_to_a_day_filters_when_a_nearest_chunk_is_outside_it(
        dated: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    retriever = dated._retriever_for_query()
    vec = dated.embed_model.embed([QUESTION])[0]
    wheres = _spy_on_chroma_queries(retriever, monkeypatch)
    hits = retriever.retrieve(QUESTION, vec, DayRange(None, dt.date(2024, 3, 5)))
    # The later and the undated article are among the nearest: the filter runs.
    assert wheres == [None, {"day": {"$lte": 20240305}}]
    assert {h.doc_id for h in hits} == {"bridge-early.txt", "mayor.txt"}


def test_citations_carry_headline_source_and_date(dated: Assistant) -> None:
    answer = dated.ask(QUESTION, since="2024-03-08")
    c = answer.citations[0]
    assert (c.title, c.source, c.published) == ("Bridge repair bill rises", "Coast Times",
                                                "2024-03-11")
    data = answer.to_dict()
    assert data["citations"][0]["source"] == "Coast Times"
    assert data["scope"] == "Articles from 8 March 2024 onwards"


def test_cli_date_flags(dated: Assistant) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "--corpus",
                               str(dated.settings.corpus), "--store", str(dated.settings.store),
                               *args], capture_output=True, text=True, timeout=120)

    got = run("--since", "2024-03-08", "--json", QUESTION)
    assert got.returncode == 0, got.stderr
    data = json.loads(got.stdout)
    assert {c["path"] for c in data["citations"]} == {"bridge-late.txt"}
    assert data["scope"] == "Articles from 8 March 2024 onwards"
    text = run("--as-of", "2024-03-06", "How much will the Harbour Bridge repairs cost this "
               "week?")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith("In articles from 29 February – 6 March")
    assert "· Harbour Bridge repairs priced · Valley Herald · 2024-03-04:" in text.stdout
    bad = run("--until", "March 5", QUESTION)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "assistant: error: --until 'March 5' is not a date: write it as YYYY-MM-DD"]
    backwards = run("--since", "2024-03-08", "--until", "2024-03-01", QUESTION)
    assert backwards.returncode == 2 and "is after" in backwards.stderr


FERRY = {
    "ferry-inquiry.txt": "Ferry inquiry reports\nPublished: 2024-06-20\n\n"
    "The inquiry found that the harbour ferry carried 412 passengers when it ran aground in "
    "February 2024, twice its licensed load. The operator has since sold the vessel.\n",
    "ferry-service.txt": "Ferry service resumes\nPublished: 2024-02-14\n\n"
    "Early reports said the harbour ferry carried 230 passengers when it ran aground on "
    "Monday.\n",
    "lanterns.txt": "Lantern festival\nPublished: 2024-02-10\n\n"
    "The lantern festival drew 9,000 visitors to the old port, organisers said.\n",
}


@pytest.mark.parametrize("named", ["in February 2024", "on February 3, 2024"])
def test_a_month_the_question_names_admits_later_articles_that_name_it(
        tmp_path, embed_model, named: str) -> None:
    articles = dict(FERRY)
    articles["ferry-inquiry.txt"] = articles["ferry-inquiry.txt"].replace(
        "in February 2024", named)
    bot = corpus_bot(tmp_path, articles, embed_model)
    answer = bot.ask("How many passengers did the harbour ferry carry when it ran aground "
                     "in February 2024?", as_of="2024-06-30")
    assert not answer.abstained
    assert answer.short_answer == "412"
    assert {c.path for c in answer.citations if c.role == "answer"} == {"ferry-inquiry.txt"}
    assert (answer.scope or "").startswith(
        "In articles from 1–29 February 2024 or naming February 2024")
    _check_quotes(bot, answer)
