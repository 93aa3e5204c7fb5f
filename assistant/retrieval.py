"""Hybrid retrieval: BM25 (bm25s through llama-index) and dense (Chroma through
llama-index), fused by reciprocal rank. The BM25 index is persisted next to the store."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.settings import AssistantError
from assistant.store import Store

log = logging.getLogger(__name__)
# The BM25 retriever warns whenever top-k exceeds the corpus size; top-k is clamped here.
logging.getLogger("llama_index.retrievers.bm25.base").setLevel(logging.ERROR)
RRF_K = 60
EMBED_METADATA = ("title",)


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


def build_bm25(store: Store, fingerprint: str) -> Any:
    """Build the BM25 index over every stored chunk and persist it atomically."""
    import Stemmer
    from llama_index.retrievers.bm25 import BM25Retriever

    _quiet_bm25()
    nodes = [make_node(cid, text, meta) for cid, text, meta in store.iter_chunks()]
    if not nodes:
        return None
    retriever = BM25Retriever.from_defaults(
        nodes=nodes, stemmer=Stemmer.Stemmer("english"), language="en",
        similarity_top_k=min(10, len(nodes)),
    )
    target = _bm25_dir(store)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bm25-", dir=target.parent))
    try:
        retriever.persist(str(tmp), show_progress=False)
        (tmp / "fingerprint").write_text(fingerprint)
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        log.warning("could not persist the BM25 index: %s", exc)
        shutil.rmtree(tmp, ignore_errors=True)
    return retriever


def load_bm25(store: Store, fingerprint: str) -> Any:
    """The persisted BM25 index when it matches the store, else a fresh build."""
    target = _bm25_dir(store)
    try:
        if (target / "fingerprint").read_text() == fingerprint and fingerprint:
            from llama_index.retrievers.bm25 import BM25Retriever

            _quiet_bm25()
            return BM25Retriever.from_persist_dir(str(target), show_progress=False)
    except (OSError, ValueError, KeyError) as exc:
        log.info("BM25 index at %s unusable (%s); rebuilding", target, exc)
    return build_bm25(store, fingerprint)


class HybridRetriever:
    """BM25 + dense retrieval over one corpus, fused by reciprocal rank."""

    def __init__(self, store: Store, embed_model: Any, top_k: int = 5) -> None:
        from llama_index.core import VectorStoreIndex
        from llama_index.vector_stores.chroma import ChromaVectorStore

        self.store = store
        self.top_k = top_k
        self.embed_model = embed_model
        if store.count() == 0:
            raise AssistantError(
                "the store is empty: run `assistant ingest` first "
                f"(corpus {store.settings.corpus}, store {store.settings.store})"
            )
        self.bm25 = load_bm25(store, store.fingerprint())
        vector_store = ChromaVectorStore(chroma_collection=store.chunks)
        index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)
        self.pool = max(2 * top_k, 10)
        self.dense = index.as_retriever(similarity_top_k=self.pool)

    def retrieve(self, query: str, query_vector: np.ndarray) -> list[Hit]:
        """The ``top_k`` chunks for ``query``, best first."""
        from llama_index.core.schema import QueryBundle

        bundle = QueryBundle(query_str=query, embedding=query_vector.tolist())
        hits: dict[str, Hit] = {}
        dense = self.dense.retrieve(bundle)
        self.bm25.similarity_top_k = min(self.pool, int(self.bm25.bm25.scores["num_docs"]))
        sparse = [n for n in self.bm25.retrieve(bundle) if (n.score or 0) > 0]
        for name, results in (("dense", dense), ("bm25", sparse)):
            for rank, nws in enumerate(results):
                node = nws.node
                hit = hits.get(node.node_id)
                if hit is None:
                    hit = hits[node.node_id] = Hit(node.node_id, node.get_content(),
                                                   dict(node.metadata))
                hit.ranks[name] = rank
                hit.score += 1.0 / (RRF_K + rank + 1)
                if name == "dense":
                    # Chroma reports exp(-L2 distance); vectors are unit length.
                    distance = -np.log(max(nws.score or 1e-12, 1e-12))
                    hit.dense = float(1.0 - distance**2 / 2.0)
                else:
                    hit.bm25 = float(nws.score or 0.0)
        ranked = sorted(hits.values(), key=lambda h: h.score, reverse=True)
        return ranked[: self.top_k]
