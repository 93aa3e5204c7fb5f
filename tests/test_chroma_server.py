"""The core path against a real ``chroma run`` server (started by the fixture)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.core import Assistant
from assistant.corpus import read_text

pytestmark = pytest.mark.slow


@pytest.fixture
def chroma_url(tmp_path: Path) -> Iterator[str]:
    """A ``chroma run`` server on 127.0.0.1 and a free port, stopped afterwards."""
    from evals.bench import chroma_server

    with chroma_server(tmp_path / "chroma-server") as (url, _pid):
        yield url


def test_ingest_ask_reingest_on_a_chroma_server(corpus_dir: Path, tmp_path: Path,
                                                chroma_url: str, embed_model) -> None:
    bot = Assistant(corpus=corpus_dir, store=tmp_path / "store", chroma_url=chroma_url)
    bot._embed = embed_model
    first = bot.ingest()
    assert first.new == 1 and first.chunks > 0 and first.chunks_embedded == first.chunks
    # The data lives on the server, not in the local store directory.
    assert not (tmp_path / "store" / "chroma").exists()

    answer = bot.ask("How many children were reunited with their families in the past "
                     "24 hours?")
    assert answer.short_answer == "Eight"
    assert answer.citations
    for c in answer.citations:
        assert read_text(corpus_dir / c.path)[c.start : c.end] == c.quote
    assert "Eight children" in answer.citations[0].quote

    again = bot.ingest()
    assert again.chunks_embedded == 0
    assert again.unchanged == 1 and again.chunks == first.chunks

    # A second client (a new process would be the same) sees the same store.
    other = Assistant(corpus=corpus_dir, store=tmp_path / "store", chroma_url=chroma_url)
    other._embed = embed_model
    assert other.status()["chunks"] == first.chunks


def test_a_rebuild_on_a_chroma_server_switches_generations_for_every_client(
        corpus_dir: Path, tmp_path: Path, chroma_url: str, embed_model) -> None:
    """The new generation's collection is written beside the old one on the server; the
    pointer there moves clients on another machine (another store directory) to it."""
    question = "How many children were reunited with their families in the past 24 hours?"
    bot = Assistant(corpus=corpus_dir, store=tmp_path / "store", chroma_url=chroma_url)
    bot._embed = embed_model
    bot.ingest()
    elsewhere = Assistant(corpus=corpus_dir, store=tmp_path / "elsewhere",
                          chroma_url=chroma_url)
    elsewhere._embed = embed_model
    assert elsewhere.ask(question).short_answer == "Eight"
    assert elsewhere.store.name == "assistant-corpus"

    report = bot.ingest(rebuild=True)
    assert report.new == 1 and bot.store.name == "assistant-corpus-g1"
    names = {c.name for c in bot.store.client.list_collections()}
    # The old generation's collections are gone; the new one's chunks, their sentence
    # vectors and the vocabulary's word vectors are there for every client.
    assert names == {"assistant-corpus-g1", "assistant-corpus-g1-sentences",
                     "assistant-corpus-g1-words", "assistant-corpus-pointer"}
    answer = elsewhere.ask(question)
    assert answer.short_answer == "Eight" and elsewhere.store.name == "assistant-corpus-g1"
    for c in answer.citations:
        assert read_text(corpus_dir / c.path)[c.start : c.end] == c.quote
    assert bot.ingest().unchanged == 1


def test_date_limits_filter_inside_a_chroma_server(tmp_path: Path, chroma_url: str,
                                                  embed_model) -> None:
    import datetime as dt

    from assistant.timeframe import DayRange
    from tests.test_dates import ARTICLES, QUESTION

    corpus = tmp_path / "dated"
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    bot = Assistant(corpus=corpus, store=tmp_path / "store", chroma_url=chroma_url)
    bot._embed = embed_model
    bot.ingest()
    retriever = bot._retriever_for_query()
    vec = embed_model.embed([QUESTION])[0]
    window = DayRange(dt.date(2024, 3, 8), None)
    assert {h.doc_id for h in retriever.retrieve(QUESTION, vec, window)} == {"bridge-late.txt"}
    for first, prefer in (("bridge-late.txt", window),
                          ("bridge-early.txt", DayRange(None, dt.date(2024, 3, 5)))):
        hits = retriever.retrieve(QUESTION, vec, prefer=prefer)  # ranked first, not filtered
        assert hits[0].doc_id == first and len({h.doc_id for h in hits}) >= 3
    answer = bot.ask(QUESTION, until="2024-03-05")
    assert {c.path for c in answer.citations} <= {"bridge-early.txt"} and answer.citations
    assert answer.scope == "Articles published up to 5 March 2024"
    for c in answer.citations:
        assert read_text(corpus / c.path)[c.start : c.end] == c.quote


class Recording:
    """An embedding model that records every batch it is given."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> Any:
        self.calls.append(list(texts))
        return self.model.embed(texts)


def words_of(text: str) -> set[str]:
    """The lower-cased words of ``text``."""
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


def test_a_second_machine_answers_from_the_server_and_follows_its_ingests(
        tmp_path: Path, chroma_url: str, embed_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two store directories (two machines) on one server: the second never ingests; it
    answers as the first does (the sentences' vectors and entities read from the server, no
    recogniser loaded), and after the first ingests a changed file it sees the change
    on its next question, its lexical index updated with the changed chunks only."""
    from assistant import lexical
    from tests.test_lexical import ARTICLES, record_updates

    corpus = tmp_path / "news"
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    first = Assistant(corpus=corpus, store=tmp_path / "machine-a", chroma_url=chroma_url)
    first._embed = embed_model
    first.ingest()
    second = Assistant(corpus=corpus, store=tmp_path / "machine-b", chroma_url=chroma_url)
    second._embed = Recording(embed_model)
    updates = record_updates(monkeypatch, lexical)  # the question path's updates

    def seen(bot: Assistant, question: str) -> tuple:
        a = bot.ask(question)
        return a.text, a.short_answer, [(c.path, c.start, c.end, c.quote) for c in a.citations]

    questions = ["How many damaged boats did officials in Elgin count?",
                 "After how many days of storms did the harbour of Garth reopen?",
                 "Who thanked the volunteers in Corran?"]
    for q in questions:
        assert seen(second, q) == seen(first, q), q
    assert [(u.full, u.chunks) for u in updates] == [(True, 8)]  # from the server, once
    assert not (tmp_path / "machine-b" / "chroma").exists()
    # Sentence and word vectors came from the server: the second machine's model ran on
    # its questions and on question words the corpus does not have, nothing else.
    vocabulary = {w for text in ARTICLES.values() for w in words_of(text)}
    embedded = [t for batch in second._embed.calls for t in batch]
    assert set(questions) <= set(embedded)
    assert all(t in questions or (t.isalpha() and t not in vocabulary) for t in embedded), \
        embedded
    assert not second._tagger.loaded  # the sentences' entities came from the server too

    assert seen(second, questions[1])[1] == "8"
    (corpus / "story-6.txt").write_text(ARTICLES["story-6.txt"].replace(
        "after 8 days", "after 11 days"), encoding="utf-8")
    first.ingest()
    after = seen(second, questions[1])
    assert after[1] == "11" and after == seen(first, questions[1])
    assert after[2] and all(read_text(corpus / path)[start:end] == quote
                            for path, start, end, quote in after[2])
    assert [(u.full, u.added, u.removed) for u in updates[1:]] == [(False, 1, 1)]

    # A third machine's page server prepares at start: its lexical index is built from the
    # server then, and its first question updates nothing.
    third = Assistant(corpus=corpus, store=tmp_path / "machine-c", chroma_url=chroma_url)
    third._embed = embed_model
    third.prepare()
    assert [(u.full, u.chunks) for u in updates[2:]] == [(True, 8)]
    assert seen(third, questions[1]) == after and len(updates) == 3
    assert not third._tagger.loaded


def test_two_machines_ingesting_into_one_server_each_notice_the_others_writes(
        tmp_path: Path, chroma_url: str, embed_model, store_reads: list[int]) -> None:
    """Each machine keeps a record of what its last ingest left on the server and trusts
    it only while the server is still so: after the other machine's ingest it reads the
    server back, finds the change already stored and writes nothing."""
    from tests.test_lexical import ARTICLES

    corpus = tmp_path / "news"
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    reads = store_reads
    a = Assistant(corpus=corpus, store=tmp_path / "machine-a", chroma_url=chroma_url)
    b = Assistant(corpus=corpus, store=tmp_path / "machine-b", chroma_url=chroma_url)
    a._embed = b._embed = embed_model
    assert a.ingest().new == len(ARTICLES)  # (its first: it reads the empty store)
    reads[0] = 0
    got = b.ingest()  # no record of its own yet: the server is read back once
    assert (got.new, got.changed, got.unchanged, got.chunks_embedded) == (
        0, 0, len(ARTICLES), 0)
    assert reads[0] == 1

    (corpus / "story-6.txt").write_text(ARTICLES["story-6.txt"].replace(
        "after 8 days", "after 11 days"), encoding="utf-8")
    got = a.ingest()  # its record still holds: nothing read back
    assert (got.changed, got.chunks_embedded > 0, reads[0]) == (1, True, 1)
    got = b.ingest()  # its record is outdated by a's ingest: read back, nothing to write
    assert (got.changed, got.new, got.chunks_embedded, reads[0]) == (0, 0, 0, 2)
    question = "After how many days of storms did the harbour of Garth reopen?"
    assert a.ask(question).short_answer == b.ask(question).short_answer == "11"
    assert b.status()["articles"] == a.status()["articles"] == len(ARTICLES)


def test_one_machine_at_a_time_ingests_into_a_server_store(
        tmp_path: Path, chroma_url: str, embed_model) -> None:
    """While one machine ingests, another's ingest waits for the server's ingest lease and
    stops with a one-line error naming the holder, having written nothing; a run whose lease
    another machine took over stops before finishing, and the next ingest finishes its work."""
    from assistant.lease import LeaseLost, lease_name
    from assistant.settings import AssistantError
    from tests.test_lexical import ARTICLES

    corpus = tmp_path / "news"
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    a = Assistant(corpus=corpus, store=tmp_path / "machine-a", chroma_url=chroma_url)
    b = Assistant(corpus=corpus, store=tmp_path / "machine-b", chroma_url=chroma_url,
                  lock_timeout=0.5)
    a._embed = b._embed = embed_model
    refused: list[str] = []

    def meanwhile(done: int, total: int) -> None:
        with pytest.raises(AssistantError) as err:
            b.ingest()
        refused.append(str(err.value))

    assert a.ingest(progress=meanwhile).new == len(ARTICLES)
    assert len(refused) == 1 and "another ingest is writing" in refused[0], refused
    assert chroma_url in refused[0] and "\n" not in refused[0]
    assert not (tmp_path / "machine-b" / "files").exists()  # b did not get to its scan
    got = b.ingest()  # a has finished: b's turn, nothing left to write
    assert (got.new, got.changed, got.chunks_embedded) == (0, 0, 0)

    # a's lease is taken over mid-run (another machine judged it dead): a stops.
    (corpus / "story-6.txt").write_text(ARTICLES["story-6.txt"].replace(
        "after 8 days", "after 11 days"), encoding="utf-8")
    client = a.store.client
    name = lease_name(a.store.base)

    def taken_over(done: int, total: int) -> None:
        client.delete_collection(name)
        client.create_collection(name, metadata={"lease_of": a.store.base, "run": "other",
                                                 "host": "elsewhere",
                                                 "pid": 1, "started": 0.0, "renewed": 0.0})

    with pytest.raises(LeaseLost, match="took over this ingest's lease"):
        a.ingest(progress=taken_over)
    assert a.store.fingerprint() == ""  # left unfinished, as a killed run
    client.delete_collection(name)
    got = b.ingest()  # finishes a's work: the change is stored, the index records it
    assert got.chunks_embedded == 0 and b.store.fingerprint()
    question = "After how many days of storms did the harbour of Garth reopen?"
    assert a.ask(question).short_answer == b.ask(question).short_answer == "11"


def test_a_pooled_store_on_a_chroma_server_ranks_by_best_sentence_on_every_machine(
        corpus_dir: Path, tmp_path: Path, chroma_url: str, embed_model) -> None:
    """Pooled chunk vectors on a server: a machine that did not ingest reads the way from
    the collection and ranks candidates by their best sentence, from the sentence vectors
    kept on the server, and answers as the one that ingested."""
    question = "How many children were reunited with their families in the past 24 hours?"
    first = Assistant(corpus=corpus_dir, store=tmp_path / "machine-a", chroma_url=chroma_url,
                      chunk_vectors="pooled")
    first._embed = embed_model
    assert first.ingest().chunks > 0
    # The second machine asks with the default setting: the store's own way wins.
    second = Assistant(corpus=corpus_dir, store=tmp_path / "machine-b", chroma_url=chroma_url)
    second._embed = embed_model
    retriever = second._retriever_for_query()
    assert retriever.rank_by_sentences
    hits = retriever.retrieve(question, embed_model.embed([question])[0])
    assert hits and all("sentence" in h.ranks for h in hits)
    assert all(h.record.vectors is not None for h in hits)
    answers = [bot.ask(question) for bot in (first, second)]
    assert answers[0].short_answer == answers[1].short_answer == "Eight"
    assert [c.quote for c in answers[0].citations] == [c.quote for c in answers[1].citations]
    for c in answers[1].citations:
        assert read_text(corpus_dir / c.path)[c.start : c.end] == c.quote
