"""How long keeping the lexical (BM25) index up to date takes at scale, with no model:

    python -m evals.bench_lexical --chunks 100000 --changed 0.01

writes ``--chunks`` synthetic chunk records (news-like sentences from word pools, tiny
vectors: the dense side is not measured) into an embedded Chroma store, builds the lexical
index whole (what every incremental ingest did before the index kept its token ids), then
replaces ``--changed`` of the chunks by new ones (deletes and adds, as an ingest of changed
articles does) and times the incremental update against a whole build of the same store,
checking that both give the same top results.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from assistant.layout import ChunkRecord, chunk_id
from assistant.lexical import SparseIndex, UpdateReport, bm25_dir, update_bm25
from assistant.settings import Settings
from assistant.store import Store

WORDS = ("harbour council minister election storm flood budget court police hospital school "
         "bridge railway airport strike protest vote treaty market bank energy price wage "
         "tax army border river village city mayor senator judge report inquiry ship "
         "fire drought harvest factory union pension museum festival league final coach").split()


def _text(rng: random.Random, n_sentences: int = 8) -> str:
    out = []
    for _ in range(n_sentences):
        words = rng.choices(WORDS, k=rng.randint(12, 24))
        out.append(" ".join(words).capitalize() + f" {rng.randint(2, 9999)}.")
    return " ".join(out)


def _records(rng: random.Random, first: int, n: int, tag: str
             ) -> tuple[list[str], list[str], list[dict]]:
    ids, docs, metas = [], [], []
    for k in range(first, first + n):
        doc = f"{tag}-{k // 10:06d}.txt"
        text = _text(rng)
        rec = ChunkRecord(doc_id=doc, path=doc, start=0, end=len(text), sentences=((0, 1),),
                          title=f"Story {k // 10}", sha256=f"{tag}{k:010d}", index=k % 10,
                          n_chunks=10, day=20240101 + k % 28)
        ids.append(chunk_id(doc, rec.sha256, rec.index))
        docs.append(text)
        metas.append(rec.to_metadata())
    return ids, docs, metas


def _write(store: Store, ids: list[str], docs: list[str], metas: list[dict],
           rng: random.Random) -> None:
    step = 5000
    for b in range(0, len(ids), step):
        vecs = [[rng.random() for _ in range(8)] for _ in ids[b : b + step]]
        store.add(store.chunks, ids=ids[b : b + step], embeddings=vecs,
                  metadatas=metas[b : b + step], documents=docs[b : b + step])


def _top(index: SparseIndex, query: str) -> list[float]:
    return [round(v, 4) for _, v in index.search(query, 10)]


def _timed(store: Store, fingerprint: str) -> tuple[float, UpdateReport, SparseIndex | None]:
    report = UpdateReport()
    started = time.perf_counter()
    index = update_bm25(store, fingerprint, report)
    return time.perf_counter() - started, report, index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench_lexical", description=__doc__)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-lexical-"))
    try:
        store = Store(Settings(corpus=work / "corpus", store=work / "store"), "bench")
        started = time.perf_counter()
        ids, docs, metas = _records(rng, 0, args.chunks, "a")
        _write(store, ids, docs, metas, rng)
        print(f"wrote {store.count():,} chunks in {time.perf_counter() - started:.1f} s")
        first_s, first, _ = _timed(store, "v1")
        print(f"whole build: {first_s:.1f} s ({first.chunks:,} chunks)")

        n = max(1, int(args.chunks * args.changed))
        gone = rng.sample(ids, n)
        store.delete_chunks(gone)
        new_ids, new_docs, new_metas = _records(rng, args.chunks, n, "b")
        _write(store, new_ids, new_docs, new_metas, rng)
        incr_s, incr, index = _timed(store, "v2")
        print(f"incremental update after {n:,} chunks replaced: {incr_s:.1f} s "
              f"({incr.added:,} added, {incr.removed:,} removed, whole={incr.full})")

        aside = work / "aside"
        shutil.move(bm25_dir(store), aside)
        whole_s, _, rebuilt = _timed(store, "v2")
        print(f"whole build of the same store: {whole_s:.1f} s")
        assert index is not None and rebuilt is not None
        same = all(_top(index, q) == _top(rebuilt, q)
                   for q in ("harbour storm flood", "pension vote union", "court judge inquiry"))
        print(f"same top 10 for 3 queries: {same}; incremental/whole time ratio "
              f"{incr_s / whole_s:.2f}")
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
