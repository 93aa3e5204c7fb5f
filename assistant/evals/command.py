"""``assistant eval``: load the gold files, ingest, run them through the assistant, write
the answers file and the report, print the summary table, and apply the ``--fail-under``
gate. :func:`run_eval` is the same run as a library call (no ingest, no printing)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from assistant.evals.gold import DEFAULT_GOLD_GLOB, GoldItem, load_gold, resolve_gold_paths
from assistant.evals.metrics import LOWER_IS_BETTER, METRICS
from assistant.evals.report import (
    check_thresholds,
    format_summary_table,
    open_output,
    parse_thresholds,
    write_report,
    write_result,
)
from assistant.evals.runner import BotLike, CorpusTexts, EvalResult, evaluate


def run_eval(
    bot: BotLike,
    gold_paths: Sequence[Path | str],
    output: Path | str | None = None,
    report: Path | str | None = None,
    *,
    corpus_dir: Path | str | None = None,
    as_of: bool = False,
) -> EvalResult:
    """Answer every gold question with ``bot`` in this process and score the answers.

    Writes one JSON line per question to ``output`` (as it goes) and a Markdown report to
    ``report`` when given. Citations are checked against ``corpus_dir`` (default: the
    bot's ``settings.corpus``). The bot is not ingested here (see run_eval_command).
    """
    golds = {str(p): load_gold(p) for p in gold_paths}
    return _evaluate(bot, golds, output, report, corpus_dir, as_of)


def _evaluate(
    bot: BotLike,
    golds: dict[str, list[GoldItem]],
    output: Path | str | None,
    report: Path | str | None,
    corpus_dir: Path | str | None,
    as_of: bool = False,
) -> EvalResult:
    """Run ``golds``, writing each answer's line to ``output`` as it comes and the Markdown
    report to ``report`` at the end (each when given); ``as_of`` as in ``evaluate``."""
    texts = CorpusTexts(corpus_dir if corpus_dir is not None else bot.settings.corpus)
    with open_output(output) as out:
        on_result = None if out is None else partial(write_result, out)
        evaluation = evaluate(bot, golds, texts, on_result, as_of)
    if report is not None:
        write_report(report, evaluation)
    return evaluation


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` command's arguments to ``parser``."""
    parser.add_argument(
        "gold",
        nargs="*",
        type=Path,
        default=[],
        help=f"gold JSONL files or directories (default: {DEFAULT_GOLD_GLOB})",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="write one JSON line per question here"
    )
    parser.add_argument("--report", type=Path, default=None, help="write a Markdown report here")
    parser.add_argument(
        "--as-of", dest="as_of", action="store_true",
        help="ask each question as on the date of its gold line's 'as_of' (or "
        "'question_date') field: later articles are left out, time words count from it",
    )
    parser.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help=(
            "exit 1 when an overall metric misses VALUE (repeatable); a minimum, except "
            f"a maximum for {', '.join(sorted(LOWER_IS_BETTER))}. Metrics: {', '.join(METRICS)}"
        ),
    )


def run_eval_command(args: argparse.Namespace, bot: BotLike) -> int:
    """Run ``assistant eval``: check the gold files, ingest, answer and score everything,
    print the summary table; returns 1 when a --fail-under threshold is missed, else 0."""
    thresholds = parse_thresholds(getattr(args, "fail_under", None) or [])
    paths = resolve_gold_paths(getattr(args, "gold", None))
    golds = {str(p): load_gold(p) for p in paths}
    ingest_report = bot.ingest()
    summary = getattr(ingest_report, "summary", None)
    if callable(summary):
        print(summary(), file=sys.stderr)
    output, report = getattr(args, "output", None), getattr(args, "report", None)
    result = _evaluate(bot, golds, output, report, None, getattr(args, "as_of", False))
    print(format_summary_table(result))
    errors = sum(r.error is not None for r in result.results)
    if errors:
        print(f"eval: {errors} question(s) raised errors (verdict 'error')", file=sys.stderr)
    if output is not None:
        print(f"eval: answers written to {output}", file=sys.stderr)
    if report is not None:
        print(f"eval: report written to {report}", file=sys.stderr)
    missed = check_thresholds(result.overall, thresholds)
    for miss in missed:
        print(f"eval: threshold missed: {miss}", file=sys.stderr)
    return 1 if missed else 0
