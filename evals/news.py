"""The real-news eval: the news-qa sets in ``../shared/news-qa`` (never copied into the
repository), each ingested once into a cached store outside the work tree.

    python -m evals.news dev-2024 --report eval-results/news-dev-2024.md \
        --fail-under answer_accuracy=0.5

prints the usual summary table and exits 1 below a threshold; when the news folder is absent
it prints one line saying so and exits 0. The store lives under
``$ASSISTANT_EVAL_CACHE`` (default ``~/.cache/assistant-evals``) in a folder named after the set
and a key of what invalidates it (chunking, corpus reading, embedding model, store schema), so
that a machine that comes back reuses it; an ingest into it is incremental.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.core import Assistant

ROOT = Path(__file__).resolve().parent.parent
NEWS_DIR = Path(os.environ.get("ASSISTANT_NEWS_QA", ROOT.parent / "shared" / "news-qa"))
SETS = ("train-2022", "train-2023", "dev-2024")
# The modules whose code decides what an ingested store holds (with the embedding model:
# see model_key).
_STORE_INPUTS = ("chunking.py", "corpus.py")


def model_key(embedding: str) -> str:
    """What decides a store's vectors: the model's name, its tokenizer, the window it
    reads and the weight a pooled chunk vector gives the headline."""
    from assistant import embedding as e

    return (f"model={e.MODEL_NAMES[embedding]};tokenizer={e.TOKENIZER_SHA256};"
            f"window={e.MAX_TOKENS};headline={e.HEADLINE_WEIGHT}")


def cache_root() -> Path:
    """Where the eval stores are kept (``ASSISTANT_EVAL_CACHE``)."""
    default = Path.home() / ".cache" / "assistant-evals"
    return Path(os.environ.get("ASSISTANT_EVAL_CACHE", default)).expanduser()


def store_key() -> str:
    """A short hash of everything that changes the contents of an ingested store."""
    from assistant.entities import recogniser_version
    from assistant.layout import SCHEMA, SENTENCE_RECORD
    from assistant.settings import Settings

    s = Settings.from_env()
    h = hashlib.sha256(f"schema={SCHEMA};chunk={s.chunk_tokens}/{s.chunk_overlap_tokens};"
                       f"vectors={s.chunk_vectors}".encode())
    h.update(model_key(s.embedding).encode())
    h.update(f"entities={recogniser_version()};sentences={SENTENCE_RECORD}".encode())
    for name in _STORE_INPUTS:
        h.update((ROOT / "assistant" / name).read_bytes())
    return h.hexdigest()[:12]


def store_for(name: str) -> Path:
    """The cached store of news set ``name``."""
    return cache_root() / f"news-{name}-{store_key()}"


def available(name: str) -> bool:
    """True when the news set ``name`` is present (questions and corpus)."""
    folder = NEWS_DIR / name
    return (folder / "questions.jsonl").is_file() and (folder / "corpus").is_dir()


def open_assistant(name: str) -> Assistant:
    """An Assistant over news set ``name`` and its cached store (not yet ingested)."""
    from assistant.core import Assistant

    return Assistant(corpus=NEWS_DIR / name / "corpus", store=store_for(name))


def main(argv: list[str] | None = None) -> int:
    """Ingest a news set into its cached store and score the assistant on its questions."""
    parser = argparse.ArgumentParser(prog="python -m evals.news", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("set", nargs="?", default="dev-2024", choices=SETS)
    parser.add_argument("--ingest-only", action="store_true",
                        help="bring the cached store up to date and stop")
    parser.add_argument("--print-store", action="store_true",
                        help="print the cached store's path and stop")
    from assistant.evals import add_eval_arguments

    add_eval_arguments(parser)
    args = parser.parse_args(argv)
    if args.gold:
        parser.error("the gold file is the set's questions.jsonl; give no gold paths")
    if not available(args.set):
        print(f"eval-news: skipped: {NEWS_DIR / args.set} is not here (the real-news sets "
              "live outside the repository)")
        return 0
    if args.print_store:
        print(store_for(args.set))
        return 0
    from assistant.evals import run_eval_command
    from assistant.settings import AssistantError

    bot = open_assistant(args.set)
    try:
        if args.ingest_only:
            print(bot.ingest().summary())
            return 0
        args.gold = [NEWS_DIR / args.set / "questions.jsonl"]
        return run_eval_command(args, bot)
    except AssistantError as exc:
        print(f"eval-news: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
