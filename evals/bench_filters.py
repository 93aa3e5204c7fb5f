"""What a date filter costs a Chroma query, by the shape of its ``where``, with no model:

    python -m evals.bench_filters --chunks 100000

writes ``--chunks`` random unit vectors (384 dimensions, as the embedding models give) with
a ``day`` spread over one year (every twentieth chunk undated) into an embedded Chroma
collection, then times the same ``--queries`` dense queries (the retriever's pool of results,
with documents and metadata, as :mod:`assistant.retrieval` asks) with no filter and with each
shape of filter: a lower bound, an upper bound, both (``$and``), and the days listed
(``$in``), for the windows questions use — everything up to a day (``as_of``), the 30 days
before it (the preferred days), a month. For each window it checks that the filter
:meth:`assistant.timeframe.DayRange.where` builds returns the same chunks as ``$and``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assistant.corpus import day_number
from assistant.retrieval import HybridRetriever
from assistant.settings import Settings
from assistant.store import open_client
from assistant.timeframe import DayRange

DIMENSIONS = 384
YEAR = dt.date(2015, 1, 1)


def _fill(collection: object, n: int, rng: np.random.Generator) -> None:
    batch = 5000
    for at in range(0, n, batch):
        size = min(batch, n - at)
        vectors = rng.standard_normal((size, DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        metas = []
        for i in range(at, at + size):
            meta: dict[str, str | int] = {"doc_id": f"doc-{i // 8}"}
            if i % 20:
                meta["day"] = day_number(YEAR + dt.timedelta(days=int(rng.integers(365))))
            metas.append(meta)
        collection.add(ids=[f"c{i}" for i in range(at, at + size)], embeddings=vectors,
                       documents=[f"chunk {i}" for i in range(at, at + size)],
                       metadatas=metas)


def _time(collection: object, queries: np.ndarray, pool: int,
          where: dict | None) -> tuple[float, list[list[str]]]:
    """The median milliseconds of a query, and the ids each query returned."""
    times, ids = [], []
    for q in queries:
        started = time.perf_counter()
        got = collection.query(query_embeddings=[q.tolist()], n_results=pool, where=where,
                               include=["documents", "metadatas", "distances"])
        times.append((time.perf_counter() - started) * 1000)
        ids.append(got["ids"][0])
    return statistics.median(times), ids


def main(argv: list[str] | None = None) -> int:
    """Build the collection, time each filter shape, print a table."""
    parser = argparse.ArgumentParser(prog="python -m evals.bench_filters",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=Settings().top_k,
                        help="the retriever's top_k (its pool of results is twice that)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="bench-filters-"))
    try:
        client = open_client(Settings(store=folder))
        collection = client.create_collection("bench-filters", metadata={"hnsw:space": "l2"})
        started = time.perf_counter()
        _fill(collection, args.chunks, rng)
        print(f"{args.chunks:,} chunks written in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
        queries = rng.standard_normal((args.queries, DIMENSIONS)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        pool = HybridRetriever.pool_size(args.top_k)
        _time(collection, queries[:3], pool, None)  # warm the index
        as_of = YEAR + dt.timedelta(days=200)
        windows = {
            f"up to {as_of}": DayRange(None, as_of),
            "the 30 days before it": DayRange(as_of - dt.timedelta(days=29), as_of),
            "a month": DayRange(dt.date(2015, 3, 1), dt.date(2015, 3, 31)),
        }
        none_ms, _ = _time(collection, queries, pool, None)
        print(f"| filter ({args.chunks:,} chunks, {args.queries} queries, {pool} results) "
              "| median ms | same chunks as $and |")
        print("|---|---|---|")
        print(f"| none | {none_ms:.1f} | – |")
        for label, window in windows.items():
            both = {"$and": [{"day": {"$gte": window.first}}, {"day": {"$lte": window.last}}]}
            shapes = {"$and of $gte and $lte": both,
                      "$lte alone": {"day": {"$lte": window.last}},
                      "$gte alone": {"day": {"$gte": window.first}},
                      "DayRange.where()": window.where(),
                      "the corpus's days listed": DayRange(window.start or YEAR,
                                                           window.end).where()}
            base_ms, base_ids = _time(collection, queries, pool, both)
            for name, where in shapes.items():
                ms, ids = (base_ms, base_ids) if where is both else _time(
                    collection, queries, pool, where)
                same = "–" if name.endswith("alone") else ("yes" if ids == base_ids else "NO")
                shape = next(iter(where["day"])) if "day" in where else "$and"
                print(f"| {label}: {name} (`{shape}`) | {ms:.1f} | {same} |")
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
