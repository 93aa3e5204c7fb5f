"""Hybrid retrieval: BM25 (bm25s, tokenised as llama-index's BM25Retriever does) and dense
(Chroma), fused by reciprocal rank. The BM25 index is persisted next to the store.

The question path reads the persisted bm25s index and the chunk collection (in llama-index's
node format) without importing llama-index: that import alone costs seconds of an
``assistant ask`` cold start. It scores exactly as ``BM25Retriever.retrieve`` and
``ChromaVectorStore.query`` do (tests/test_retrieval.py checks the former against
llama-index itself).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.settings import AssistantError
from assistant.store import IngestRunning, Store
from assistant.timeframe import DayRange, from_day_number

log = logging.getLogger(__name__)
RRF_K = 60
EMBED_METADATA = ("title",)
IDS_FILE = "ids.json"
DAYS_FILE = "days.json"  # each indexed chunk's publication day, in index order
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # BM25Retriever's default


@dataclass
class Hit:
    """A retrieved chunk with the evidence of each retriever."""

    id: str
    text: str
    meta: dict[str, Any]
    score: float = 0.0
    bm25: float = 0.0
    dense: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        """The article the chunk belongs to."""
        return str(self.meta["doc_id"])

    @property
    def start(self) -> int:
        """Offset of the chunk in its article."""
        return int(self.meta["start"])

    @property
    def sentences(self) -> list[tuple[int, int]]:
        """Absolute sentence spans inside the chunk."""
        return [tuple(s) for s in json.loads(self.meta["sents"])]


def make_node(chunk_id: str, text: str, meta: dict[str, Any], embedding: Any = None) -> Any:
    """A llama-index TextNode for a chunk; only the title is seen by BM25 and embedding."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    node = TextNode(
        id_=chunk_id,
        text=text,
        metadata=meta,
        start_char_idx=meta.get("start"),
        end_char_idx=meta.get("end"),
        excluded_embed_metadata_keys=[k for k in meta if k not in EMBED_METADATA],
        excluded_llm_metadata_keys=[k for k in meta if k not in EMBED_METADATA],
        embedding=None if embedding is None else list(map(float, embedding)),
    )
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=meta["doc_id"])
    return node


def _bm25_dir(store: Store) -> Path:
    return store.settings.store / "bm25" / store.name


def _quiet_bm25() -> None:
    # bm25s sets its own logger to DEBUG when imported.
    logging.getLogger("bm25s").setLevel(logging.WARNING)


def bm25_content(chunk_id: str, text: str, meta: dict[str, Any]) -> str:
    """What BM25 indexes of a chunk: its node's content as llama-index gives it to the
    embedding model and to ``BM25Retriever`` (the title, then the text)."""
    from llama_index.core.schema import MetadataMode

    return make_node(chunk_id, text, _node_meta(meta)).get_content(
        metadata_mode=MetadataMode.EMBED)


def build_bm25(store: Store, fingerprint: str) -> SparseIndex | None:
    """Build the BM25 index over every stored chunk and persist it atomically.

    bm25s with the tokenisation of llama-index's ``BM25Retriever`` (English stopwords,
    Snowball stemmer, its token pattern, same content) — the same index and scores — but
    without keeping a copy of every node: at 100,000 chunks that copy was most of the
    ingest's memory and half a gigabyte on disk. Only the chunk ids are saved beside it.
    """
    import bm25s
    import Stemmer

    _quiet_bm25()
    ids: list[str] = []
    days: list[int] = []
    contents: list[str] = []
    for cid, text, meta in store.iter_chunks():
        ids.append(cid)
        days.append(int((meta or {}).get("day") or 0))
        contents.append(bm25_content(cid, text or "", meta or {}))
    if not ids:
        return None
    tokens = bm25s.tokenize(contents, stopwords="en", stemmer=Stemmer.Stemmer("english"),
                            token_pattern=TOKEN_PATTERN, show_progress=False)
    del contents
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    del tokens
    index = SparseIndex(ids, bm25, days)
    target = _bm25_dir(store)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".bm25-", dir=target.parent))
        bm25.save(str(tmp))
        # Chunk ids in index order: the question path loads these, not the whole corpus.
        (tmp / IDS_FILE).write_text(json.dumps(ids))
        (tmp / DAYS_FILE).write_text(json.dumps(days))
        (tmp / "fingerprint").write_text(fingerprint)
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        log.warning("could not persist the BM25 index: %s", exc)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return index


class SparseIndex:
    """A BM25 index over the chunks (bm25s), the chunk id of each of its documents and
    each one's publication day (``YYYYMMDD``, 0 when its article has no date)."""

    def __init__(self, ids: list[str], bm25: Any, days: list[int] | None = None) -> None:
        import Stemmer

        if int(bm25.scores["num_docs"]) != len(ids):
            raise ValueError("BM25 index and chunk ids disagree")
        if days is not None and len(days) != len(ids):
            raise ValueError("BM25 index and chunk days disagree")
        self.ids = ids
        self.bm25 = bm25
        self.days = np.asarray(days if days is not None else [0] * len(ids), dtype=np.int64)
        self.stemmer = Stemmer.Stemmer("english")

    @classmethod
    def load(cls, path: Path) -> SparseIndex:
        """The persisted index, memory-mapped."""
        import bm25s

        _quiet_bm25()
        ids = json.loads((path / IDS_FILE).read_text())
        days = json.loads((path / DAYS_FILE).read_text())
        return cls(ids, bm25s.BM25.load(str(path), load_corpus=False, mmap=True,
                                        show_progress=False), days)

    def search(self, query: str, k: int, window: DayRange | None = None
               ) -> list[tuple[str, float]]:
        """``(chunk id, score)`` of the best ``k`` chunks, as BM25Retriever ranks them;
        with ``window``, only chunks of articles published inside it score."""
        import bm25s

        k = min(k, len(self.ids))
        tokens = bm25s.tokenize(query, stemmer=self.stemmer, token_pattern=TOKEN_PATTERN,
                                show_progress=False)
        mask = None
        if window is not None:
            mask = ((self.days >= window.first) & (self.days <= window.last)).astype(
                np.float32)
        indexes, scores = self.bm25.retrieve(tokens, k=k, show_progress=False,
                                             weight_mask=mask)
        return [(self.ids[int(i)], float(v)) for i, v in zip(indexes[0], scores[0],
                                                             strict=True)]


def load_bm25(store: Store, fingerprint: str, during_ingest: bool = False) -> SparseIndex:
    """The persisted BM25 index when it matches the store, else a fresh build (kept in
    memory when the store directory is read-only).

    ``during_ingest``: an ingest is writing the store, which then matches no index; the
    persisted one, the last complete ingest's, is used whatever its fingerprint, and none
    is built from the half-written store (:class:`IngestRunning` when there is none).
    """
    target = _bm25_dir(store)
    try:
        have = (target / "fingerprint").read_text()
        if have and (have == fingerprint or during_ingest):
            return SparseIndex.load(target)
    except (OSError, ValueError, KeyError) as exc:
        log.info("BM25 index at %s unusable (%s); rebuilding", target, exc)
    if during_ingest:
        raise IngestRunning(store.ingest_notice(complete_index=False)
                            or "an ingest is running: ask again when it has finished")
    index = build_bm25(store, fingerprint)
    if index is None:
        raise AssistantError("the store is empty: run `assistant ingest` first")
    return index


def _node_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A node's own metadata from its Chroma record (llama-index's node format)."""
    content = meta.get("_node_content")
    if content:
        return dict(json.loads(content).get("metadata") or {})
    return {k: v for k, v in meta.items() if not k.startswith("_")}


class HybridRetriever:
    """BM25 + dense retrieval over one corpus, fused by reciprocal rank."""

    def __init__(self, store: Store, embed_model: Any = None, top_k: int = 5,
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
        self.pool = max(2 * top_k, 10)
        # Articles in the index (a chunk id starts with its article's id).
        self.articles = len({cid.split("::", 1)[0] for cid in self.bm25.ids})

    @property
    def newest(self) -> dt.date | None:
        """The newest publication date among the indexed chunks (None: none is dated)."""
        return from_day_number(int(self.bm25.days.max())) if len(self.bm25.days) else None

    def retrieve(self, query: str, query_vector: np.ndarray,
                 window: DayRange | None = None) -> list[Hit]:
        """The ``top_k`` chunks for ``query``, best first; with ``window``, only chunks
        of articles published inside it (filtered inside Chroma and the BM25 index)."""
        got = self.store.chunks.query(
            query_embeddings=[np.asarray(query_vector, dtype=np.float32).tolist()],
            n_results=self.pool, include=["documents", "metadatas", "distances"],
            where=window.where() if window is not None else None,
        )
        hits: dict[str, Hit] = {}
        dense = list(zip(got["ids"][0], got["documents"][0], got["metadatas"][0],
                         got["distances"][0], strict=True))
        for rank, (cid, text, meta, distance) in enumerate(dense):
            node_meta = _node_meta(meta or {})
            if "doc_id" not in node_meta:
                # Deleted by an ingest in another process after this one loaded its vector
                # index: the id is still in that index, the record is gone.
                continue
            hit = hits[cid] = Hit(cid, text or "", node_meta)
            hit.ranks["dense"] = rank
            hit.score += 1.0 / (RRF_K + rank + 1)
            # ChromaVectorStore's score is exp(-distance); the dense evidence is unchanged.
            score = math.exp(-distance)
            d = -np.log(max(score or 1e-12, 1e-12))
            hit.dense = float(1.0 - d**2 / 2.0)
        sparse = [(cid, v) for cid, v in self.bm25.search(query, self.pool, window) if v > 0]
        missing = [cid for cid, _ in sparse if cid not in hits]
        fetched: dict[str, tuple[str, dict]] = {}
        if missing:
            rows = self.store.chunks.get(ids=missing, include=["documents", "metadatas"])
            for cid, text, meta in zip(rows["ids"], rows["documents"], rows["metadatas"],
                                       strict=True):
                fetched[cid] = (text or "", _node_meta(meta or {}))
        for rank, (cid, value) in enumerate(sparse):
            hit = hits.get(cid)
            if hit is None:
                if cid not in fetched:  # deleted since the index was built
                    continue
                hit = hits[cid] = Hit(cid, *fetched[cid])
            hit.ranks["bm25"] = rank
            hit.score += 1.0 / (RRF_K + rank + 1)
            hit.bm25 = float(value)
        ranked = sorted(hits.values(), key=lambda h: h.score, reverse=True)
        return ranked[: self.top_k]
