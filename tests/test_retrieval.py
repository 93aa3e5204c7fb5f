"""Hybrid retrieval: the BM25 index against llama-index's BM25Retriever, and fusion."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.core import Assistant
from tests.conftest import ROOT

QUERIES = [
    "How many children were reunited with their families?",
    "Who wrote the letter to Putin?",
    "flooding evacuation mayor",
    "Which company announced layoffs?",
    "what did the court decide",
]


@pytest.fixture(scope="module")
def heldout_bot(tmp_path_factory: pytest.TempPathFactory, embed_model) -> Assistant:
    """The seven articles of the real and held-out corpora, ingested."""
    base = tmp_path_factory.mktemp("retrieval")
    corpus = base / "corpus"
    shutil.copytree(ROOT / "evals" / "heldout" / "corpus", corpus)
    shutil.copy(next((ROOT / "corpus").glob("*.txt")), corpus)
    bot = Assistant(corpus=corpus, store=base / "store")
    bot._embed = embed_model
    bot.ingest()
    return bot


def test_bm25_ranks_and_scores_as_llama_index_bm25_retriever(heldout_bot: Assistant) -> None:
    """The index is built with bm25s directly (no copy of the nodes); it must give the
    ranking and scores of llama-index's BM25Retriever over the same nodes."""
    import Stemmer
    from llama_index.core.schema import QueryBundle
    from llama_index.retrievers.bm25 import BM25Retriever

    from assistant.layout import make_node, node_meta
    from assistant.lexical import update_bm25

    store = heldout_bot.store
    ours = update_bm25(store, store.fingerprint())
    assert ours is not None
    nodes = [make_node(cid, text, node_meta(meta)) for cid, text, meta in store.iter_chunks()]
    assert len(nodes) > 20
    reference = BM25Retriever.from_defaults(
        nodes=nodes, stemmer=Stemmer.Stemmer("english"), language="en",
        similarity_top_k=10)
    for query in QUERIES:
        want = [(n.node.node_id, n.score) for n in reference.retrieve(QueryBundle(query))]
        got = ours.search(query, 10)
        assert [i for i, _ in got] == [i for i, _ in want], query
        assert [round(v, 4) for _, v in got] == [round(float(v), 4) for _, v in want], query


def test_persisted_index_is_read_back_without_rebuilding(heldout_bot: Assistant,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    import assistant.lexical as lexical

    store = heldout_bot.store
    built = lexical.update_bm25(store, store.fingerprint())

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the persisted index should have been used")

    monkeypatch.setattr(lexical, "update_bm25", no_rebuild)
    loaded = lexical.load_bm25(store, store.fingerprint())
    assert loaded.ids == built.ids
    assert loaded.search(QUERIES[0], 5) == built.search(QUERIES[0], 5)


def test_a_read_only_store_directory_still_answers(heldout_bot: Assistant, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """When the index cannot be persisted, the one just built is used from memory."""
    import assistant.lexical as lexical

    store = heldout_bot.store
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(lexical, "bm25_dir", lambda s: tmp_path / "a-file" / "bm25" / "x")
    index = lexical.load_bm25(store, store.fingerprint())
    assert index.search(QUERIES[0], 3)


def test_prepare_loads_what_the_first_question_needs(heldout_bot: Assistant, embed_model,
                                                     tmp_path: Path) -> None:
    """A page server prepares at start: after it, the first question neither builds the
    retriever nor loads a model."""
    bot = Assistant(corpus=heldout_bot.settings.corpus, store=heldout_bot.settings.store)
    bot._embed = embed_model
    bot.prepare()
    retriever, answerer = bot._retriever, bot._extractive
    assert retriever is not None and answerer is not None
    # The store's chunks carry their entities: no recogniser to load, now or later.
    assert not bot._tagger.loaded
    answer = bot.ask(QUERIES[0])
    assert answer.citations and answer.short_answer
    assert bot._retriever is retriever and bot._extractive is answerer
    assert not bot._tagger.loaded

    from assistant.settings import AssistantError

    (tmp_path / "corpus").mkdir()
    empty = Assistant(corpus=tmp_path / "corpus", store=tmp_path / "store")
    empty._embed = embed_model
    with pytest.raises(AssistantError, match="empty"):
        empty.prepare()
