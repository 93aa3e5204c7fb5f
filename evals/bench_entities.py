"""What keeping the sentences' entities in the store costs an ingest and saves a question:

    python -m evals.bench_entities [--corpus DIR] [--articles 40] [--questions FILE]

ingests the same ``--articles`` articles of ``--corpus`` (by default ``dev-2024``'s, from
``../shared/news-qa``) into two stores, alternated ``--rounds`` times: one as the ingest
does (the recogniser's entities kept with each chunk) and one with the recogniser pass left
out (a store as ingested before entities were kept, whose questions tag the sentences
themselves). The recogniser is loaded before either ingest: loading it is a cost of a
process, not of an ingest. Then, on the two stores: a cold ``assistant ask`` (a new process,
alternated ``--cold-runs`` times), and the warm latency of the same questions (the first
``--limit`` of ``--questions``, a JSONL file with a ``question`` field; by default the news
set's), asked to each store in turn in one process, with a check that both give the same
answers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from assistant.core import Assistant
from evals.bench import cold_start
from evals.news import NEWS_DIR

WAYS = ("without", "with")
"""The two stores: entities left out of the ingest, and kept (what the ingest does)."""


def _ingest(corpus: Path, store: Path, way: str, model: object | None) -> tuple[float, Assistant]:
    """Seconds to ingest ``corpus`` into ``store`` the ``way`` named, and the assistant."""
    bot = Assistant(corpus=corpus, store=store)
    if model is not None:
        bot._embed = model
    bot._tagger.load()
    if way == "without":
        bot._tagger.recognise = lambda sentences: None  # type: ignore[method-assign]
    started = time.perf_counter()
    bot.ingest()
    return time.perf_counter() - started, bot


def _answer(bot: Assistant, question: str) -> tuple[float, tuple]:
    started = time.perf_counter()
    a = bot.ask(question)
    return time.perf_counter() - started, (a.text, a.short_answer, a.abstained)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=NEWS_DIR / "dev-2024" / "corpus")
    p.add_argument("--questions", type=Path, default=NEWS_DIR / "dev-2024" / "questions.jsonl")
    p.add_argument("--articles", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cold-runs", type=int, default=4)
    p.add_argument("--limit", type=int, default=120)
    args = p.parse_args(argv)
    files = sorted(f for f in args.corpus.glob("*") if f.is_file())[: args.articles]
    if not files or not args.questions.is_file():
        print(f"bench-entities: skipped: no articles in {args.corpus} or no {args.questions}")
        return 0
    questions = [json.loads(line)["question"] for line in
                 args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = questions[: args.limit]
    base = Path(tempfile.mkdtemp(prefix="bench-entities-"))
    try:
        corpus = base / "corpus"
        corpus.mkdir()
        for f in files:
            shutil.copy(f, corpus / f.name)
        seconds: dict[str, list[float]] = {w: [] for w in WAYS}
        bots: dict[str, Assistant] = {}
        model = None
        for r in range(args.rounds):
            for way in WAYS:
                took, bot = _ingest(corpus, base / f"{way}-{r}", way, model)
                model = bot._embed
                seconds[way].append(took)
                bots[way] = bot
        chunks = bots["with"].store.count()
        print(f"ingest of {len(files)} articles ({chunks} chunks), {args.rounds} rounds "
              "alternated, seconds:")
        for way in WAYS:
            print(f"  entities {way:<8} " + " ".join(f"{s:.1f}" for s in seconds[way]))
        ratio = sum(seconds["with"]) / sum(seconds["without"])
        print(f"  with / without: {ratio:.3f}")
        size = {w: sum(f.stat().st_size for f in (base / f"{w}-0").rglob("*") if f.is_file())
                for w in WAYS}
        print(f"store size, MiB: without {size['without'] / 2**20:.1f}, "
              f"with {size['with'] / 2**20:.1f}")

        stores = {w: base / f"{w}-{args.rounds - 1}" for w in WAYS}
        cold: dict[str, list[float]] = {w: [] for w in WAYS}
        for _ in range(args.cold_runs):
            for way in WAYS:
                spec = {"corpus": str(corpus), "store": str(stores[way])}
                asked = {"question": questions[0], "answers": [], "doc_id": ""}
                cold[way] += cold_start(spec, asked, runs=1)["cold_start_runs"]
        print("cold `assistant ask`, seconds: " + "; ".join(
            f"{w} " + " ".join(f"{s:.2f}" for s in cold[w]) for w in WAYS))

        fresh = {}
        for way in WAYS:
            fresh[way] = Assistant(corpus=corpus, store=stores[way])
            fresh[way]._embed = model
            fresh[way].prepare()
            fresh[way].ask(questions[0])
        times: dict[str, list[float]] = {w: [] for w in WAYS}
        same = 0
        for q in questions:
            answers = {}
            for way in WAYS:
                took, answers[way] = _answer(fresh[way], q)
                times[way].append(took * 1000)
            same += answers["with"] == answers["without"]
        for way in WAYS:
            ts = sorted(times[way])
            print(f"warm ask, entities {way:<8} p50 {statistics.median(ts):.1f} ms, "
                  f"p95 {ts[int(0.95 * (len(ts) - 1))]:.1f} ms")
        print(f"same answers: {same} of {len(questions)}; recogniser loaded by the store "
              f"with entities: {fresh['with']._tagger.loaded}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
