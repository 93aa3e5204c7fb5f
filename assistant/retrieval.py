"""Hybrid retrieval: BM25 (bm25s, tokenised as llama-index's BM25Retriever does) and dense
(Chroma), fused by reciprocal rank. The BM25 index is persisted next to the store.

In a store whose chunk vectors are pooled from its sentence vectors (``chunk_vectors =
"pooled"``), Chroma's nearest chunks are only candidates: every candidate of either retriever
is ranked by its *best sentence* (the highest similarity between the question and one of the
chunk's sentence vectors, kept beside the chunk for the answer layer), and that ranking is
the one fused with BM25's. A pooled vector is the mean of the chunk's sentences and dilutes
the one sentence a question is about; a chunk vector the model made from the chunk's text
and headline ranks better as it is (both measured: README, "Ranking candidates by their best
sentence").

The question path reads the persisted bm25s index and the chunk collection (in llama-index's
node format) without importing llama-index: that import alone costs seconds of an
``assistant ask`` cold start. It scores exactly as ``BM25Retriever.retrieve`` and
``ChromaVectorStore.query`` do (tests/test_retrieval.py checks the former against
llama-index itself).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.layout import ChunkRecord, SentenceData, node_meta
from assistant.lexical import load_bm25
from assistant.settings import AssistantError
from assistant.store import IngestRunning, Store
from assistant.timeframe import DayRange, from_day_number

if TYPE_CHECKING:
    from chromadb.api.types import QueryResult

    from assistant.embedding import TextEncoder

log = logging.getLogger(__name__)
RRF_K = 60


@dataclass
class Hit:
    """A retrieved chunk with the evidence of each retriever."""

    id: str
    text: str
    record: ChunkRecord
    score: float = 0.0
    bm25: float = 0.0
    dense: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        """The article the chunk belongs to."""
        return self.record.doc_id

    @property
    def start(self) -> int:
        """Offset of the chunk in its article."""
        return self.record.start

    @property
    def end(self) -> int:
        """Offset of the chunk's end in its article."""
        return self.record.end

    @property
    def sentences(self) -> list[tuple[int, int]]:
        """Absolute sentence spans inside the chunk."""
        return list(self.record.sentences)


def _record(meta: dict[str, Any] | None) -> ChunkRecord | None:
    """The chunk record of a Chroma record's metadata (None: not a chunk's, or gone)."""
    try:
        return ChunkRecord.from_metadata(node_meta(meta or {}))
    except (KeyError, ValueError, TypeError):
        return None


def _day(meta: dict[str, Any]) -> int | None:
    """The publication day (``YYYYMMDD``) a chunk's Chroma metadata carries (None: none)."""
    day = meta.get("day")
    return int(day) if isinstance(day, int) and not isinstance(day, bool) else None


class HybridRetriever:
    """BM25 + dense retrieval over one corpus, fused by reciprocal rank."""

    def __init__(self, store: Store, embed_model: TextEncoder | None = None, top_k: int = 5,
                 during_ingest: bool = False) -> None:
        self.store = store
        self.top_k = top_k
        self.embed_model = embed_model
        if store.count() == 0:
            if during_ingest:
                raise IngestRunning(store.ingest_notice(complete_index=False)
                                    or "an ingest is running: ask again when it has finished")
            raise AssistantError(
                "the store is empty: run `assistant ingest` first "
                f"(corpus {store.settings.corpus}, store {store.settings.store})"
            )
        self.bm25 = load_bm25(store, store.fingerprint(), during_ingest)
        self.pool = self.pool_size(top_k)
        # Rank the candidates by their best sentence instead of their chunk vector.
        self.rank_by_sentences = store.chunk_vectors == "pooled"
        # Articles in the index (a chunk id starts with its article's id).
        self.articles = len({cid.split("::", 1)[0] for cid in self.bm25.ids})

    @property
    def newest(self) -> dt.date | None:
        """The newest publication date among the indexed chunks (None: none is dated)."""
        return from_day_number(int(self.bm25.days.max())) if len(self.bm25.days) else None

    @staticmethod
    def pool_size(top_k: int) -> int:
        """How many chunks each retriever ranks before they are fused."""
        return max(2 * top_k, 10)

    def retrieve(self, query: str, query_vector: np.ndarray,
                 window: DayRange | None = None, prefer: DayRange | None = None
                 ) -> list[Hit]:
        """The ``top_k`` chunks for ``query``, best first; with ``window``, only chunks
        of articles published inside it (filtered inside Chroma and the BM25 index).

        ``prefer`` (a part of ``window``: the days just before a question's ``as_of``, see
        :meth:`assistant.timeframe.Scope.prefer`) ranks its chunks first without leaving
        the others out: the chunks of those days are ranked by both retrievers among
        themselves too, and these two rankings are fused with the window's, so a chunk
        found in both counts twice.
        """
        stored: dict[str, str] = {}  # sentence records read so far, by chunk id
        hits = self._fused(query, query_vector, window, stored)
        if prefer is not None:
            for cid, hit in self._fused(query, query_vector, prefer, stored).items():
                if (seen := hits.get(cid)) is None:
                    hits[cid] = hit
                else:
                    seen.score += hit.score
        ranked = sorted(hits.values(), key=lambda h: h.score, reverse=True)[: self.top_k]
        # The answer layer's sentence vectors, read with the chunks they belong to.
        if missing := [h.id for h in ranked if h.id not in stored]:
            stored.update(self.store.sentence_vectors(missing))
        for h in ranked:
            if (vectors := stored.get(h.id)) is not None:
                h.record = replace(h.record, vectors=SentenceData(h.record.sentences,
                                                                     vectors))
        return ranked

    def _fused(self, query: str, query_vector: np.ndarray, window: DayRange | None,
               stored: dict[str, str]) -> dict[str, Hit]:
        """Every chunk either retriever finds in its first ``pool`` inside ``window``, by
        id, its ``score`` the sum of its reciprocal ranks by BM25 and by chunk vector (or,
        with :attr:`rank_by_sentences`, by best sentence: :meth:`_rank_by_sentences`).
        ``stored`` keeps the sentence records read."""
        got = self._nearest(query_vector, window)
        hits: dict[str, Hit] = {}
        cosine: dict[str, float] = {}  # of the chunk vectors (unit length, squared L2)
        dense = list(zip(got["ids"][0], got["documents"][0], got["metadatas"][0],
                         got["distances"][0], strict=True))
        for rank, (cid, text, meta, distance) in enumerate(dense):
            record = _record(meta)
            if record is None:
                # Deleted by an ingest in another process after this one loaded its vector
                # index: the id is still in that index, the record is gone.
                continue
            hit = hits[cid] = Hit(cid, text or "", record)
            hit.ranks["dense"] = rank
            cosine[cid] = 1.0 - float(distance) / 2.0
            if not self.rank_by_sentences:
                hit.score += 1.0 / (RRF_K + rank + 1)
            # ChromaVectorStore's score is exp(-distance); the dense evidence is unchanged.
            score = math.exp(-distance)
            d = -np.log(max(score or 1e-12, 1e-12))
            hit.dense = float(1.0 - d**2 / 2.0)
        sparse = [(cid, v) for cid, v in self.bm25.search(query, self.pool, window) if v > 0]
        missing = [cid for cid, _ in sparse if cid not in hits]
        fetched: dict[str, tuple[str, ChunkRecord]] = {}
        if missing:
            rows = self.store.chunks.get(ids=missing, include=["documents", "metadatas"])
            for cid, text, meta in zip(rows["ids"], rows["documents"], rows["metadatas"],
                                       strict=True):
                if (record := _record(meta)) is not None:
                    fetched[cid] = (text or "", record)
        for rank, (cid, value) in enumerate(sparse):
            hit = hits.get(cid)
            if hit is None:
                if cid not in fetched:  # deleted since the index was built
                    continue
                hit = hits[cid] = Hit(cid, *fetched[cid])
            hit.ranks["bm25"] = rank
            hit.score += 1.0 / (RRF_K + rank + 1)
            hit.bm25 = float(value)
        if self.rank_by_sentences:
            self._rank_by_sentences(hits, query_vector, stored, cosine)
        return hits

    def _nearest(self, query_vector: np.ndarray, window: DayRange | None) -> QueryResult:
        """Chroma's ``pool`` nearest chunks to ``query_vector`` inside ``window``.

        A window with no start (everything up to an ``as_of``) holds most of a store, and
        Chroma filters on so many chunks slowly (about a quarter of a second at 100,000
        chunks against a few milliseconds unfiltered). So the unfiltered nearest chunks
        are asked first: when every one of them is inside the window, they are the
        filtered query's answer too (no chunk of the window is nearer than they are), and
        nothing is left out; otherwise the filtered query runs.
        """
        def query(where: dict[str, object] | None) -> QueryResult:
            return self.store.chunks.query(
                query_embeddings=[np.asarray(query_vector, dtype=np.float32).tolist()],
                n_results=self.pool, include=["documents", "metadatas", "distances"],
                where=where)

        if window is None:
            return query(None)
        if window.start is None:
            got = query(None)
            if all(meta is not None and window.holds(_day(meta))
                   for meta in got["metadatas"][0]):
                return got
        return query(window.where())

    def _rank_by_sentences(self, hits: dict[str, Hit], query_vector: np.ndarray,
                           stored: dict[str, str], chunk_cosine: dict[str, float]) -> None:
        """Rank the candidates ``hits`` by their best sentence's cosine similarity to the
        question and add that reciprocal rank to their score (``ranks["sentence"]``). A
        chunk whose sentence record is missing or damaged counts with its chunk vector's
        (``chunk_cosine``, known when Chroma found it), and is left unranked when only BM25
        did."""
        if missing := [cid for cid in hits if cid not in stored]:
            stored.update(self.store.sentence_vectors(missing))
        question = np.asarray(query_vector, dtype=np.float32)
        best: dict[str, float] = {}
        for cid, hit in hits.items():
            data = stored.get(cid)
            rows = SentenceData(hit.record.sentences, data).matrix() if data else None
            if rows is not None:
                best[cid] = float(np.max(rows @ question))
            elif cid in chunk_cosine:
                best[cid] = chunk_cosine[cid]
        for rank, cid in enumerate(sorted(best, key=lambda c: (-best[c], c))):
            hits[cid].ranks["sentence"] = rank
            hits[cid].score += 1.0 / (RRF_K + rank + 1)
