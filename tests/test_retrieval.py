"""Hybrid retrieval: the BM25 index against llama-index's BM25Retriever, and fusion."""

from __future__ import annotations

import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
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


@pytest.fixture(scope="module")
def pooled_bot(heldout_bot: Assistant, tmp_path_factory: pytest.TempPathFactory,
               embed_model) -> Assistant:
    """The same articles in a store whose chunk vectors are pooled from their sentences."""
    bot = Assistant(corpus=heldout_bot.settings.corpus,
                    store=tmp_path_factory.mktemp("pooled") / "store", chunk_vectors="pooled")
    bot._embed = embed_model
    bot.ingest()
    return bot


def test_a_pooled_store_ranks_candidates_by_their_best_sentence(pooled_bot: Assistant,
                                                                embed_model) -> None:
    """In a pooled store the dense side of the fusion orders every candidate (found by
    either retriever) by the question's similarity to the chunk's closest sentence,
    embedded here anew; a chunk's score is its reciprocal ranks by BM25 and by that
    sentence, not by the chunk vector's order."""
    from assistant.retrieval import RRF_K

    retriever = pooled_bot._retriever_for_query()
    assert retriever.rank_by_sentences
    for query in QUERIES:
        vector = embed_model.embed([query])[0]
        hits = retriever._fused(query, vector, None, {})
        best = {}
        for cid, h in hits.items():
            texts = [h.text[s - h.start : e - h.start] for s, e in h.record.sentences]
            best[cid] = float(np.max(embed_model.embed(texts) @ vector))
        order = sorted(hits, key=lambda c: hits[c].ranks["sentence"])
        assert len(order) == len(hits)  # every candidate has its sentence rank
        for higher, lower in pairwise(order):
            assert best[higher] >= best[lower] - 0.01  # stored vectors are float16
        for h in hits.values():
            expected = sum(1.0 / (RRF_K + r + 1) for k, r in h.ranks.items() if k != "dense")
            assert h.score == pytest.approx(expected)
        # What retrieve returns carries the sentence vectors the ranking read.
        top = retriever.retrieve(query, vector)
        assert top and all(h.record.vectors is not None for h in top)


def test_an_embedded_store_ranks_candidates_by_their_chunk_vector(heldout_bot: Assistant,
                                                                  embed_model) -> None:
    """Chunk vectors the model made from the chunk's text are fused as Chroma ranks them."""
    from assistant.retrieval import RRF_K

    retriever = heldout_bot._retriever_for_query()
    assert not retriever.rank_by_sentences
    vector = embed_model.embed([QUERIES[0]])[0]
    hits = retriever._fused(QUERIES[0], vector, None, {})
    assert any("dense" in h.ranks for h in hits.values())
    for h in hits.values():
        assert "sentence" not in h.ranks
        assert h.score == pytest.approx(sum(1.0 / (RRF_K + r + 1) for r in h.ranks.values()))


def test_a_chunk_without_sentence_vectors_is_ranked_by_its_chunk_vector() -> None:
    """A sentence record lost (a damaged store) does not drop a chunk Chroma found: it
    counts with its chunk vector's similarity; a chunk only BM25 found gets no rank."""
    from assistant.layout import ChunkRecord, SentenceData
    from assistant.retrieval import RRF_K, Hit, HybridRetriever

    spans = ((0, 10), (11, 20))
    vectors = np.eye(4, dtype=np.float32)[:2]

    class Store:
        def sentence_vectors(self, ids: list[str]) -> dict[str, str]:
            return {"a": SentenceData.of(spans, vectors).encoded}

    def hit(cid: str) -> Hit:
        return Hit(cid, "x" * 20, ChunkRecord(doc_id=cid, path=f"{cid}.txt", start=0, end=20,
                                               sentences=spans))

    retriever = HybridRetriever.__new__(HybridRetriever)
    retriever.store = Store()
    hits = {"a": hit("a"), "b": hit("b"), "c": hit("c")}
    stored: dict[str, str] = {}
    # "a" has sentence vectors (best cosine 0.5); Chroma found "a" and "b", BM25 alone "c".
    retriever._rank_by_sentences(hits, np.array([0.5, 0.0, 0.0, 0.0]), stored,
                                 {"a": 0.1, "b": 0.9})
    assert hits["b"].ranks["sentence"] == 0 and hits["a"].ranks["sentence"] == 1
    assert "sentence" not in hits["c"].ranks and hits["c"].score == 0
    assert hits["b"].score == pytest.approx(1.0 / (RRF_K + 1))
    assert set(stored) == {"a"}
