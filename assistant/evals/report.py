"""What a run leaves behind: the JSON Lines answers file, the Markdown report, the
plain-text summary table, and the ``--fail-under`` gate (parsing and checking thresholds)."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from assistant.evals.metrics import COUNT_METRICS, LOWER_IS_BETTER, METRICS, MS_METRICS
from assistant.evals.runner import EvalResult, QuestionResult
from assistant.settings import AssistantError

# ---------------------------------------------------------------------------
# The answers file (JSON Lines)
# ---------------------------------------------------------------------------


def open_output(output: Path | str | None) -> AbstractContextManager[IO[str] | None]:
    """The answers file opened for writing (its folder made), or None when not wanted."""
    if output is None:
        return nullcontext(None)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    return open(output, "w", encoding="utf-8")


def write_result(out: IO[str], result: QuestionResult) -> None:
    """Write one question's JSON line and flush, so a long run can be followed."""
    out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    out.flush()


# ---------------------------------------------------------------------------
# The summary table and the Markdown report
# ---------------------------------------------------------------------------


def format_metric(name: str, value: float | None) -> str:
    """A metric value for a table: rates with 3 decimals, counts and ms as integers."""
    if value is None:
        return "-"
    if name in COUNT_METRICS or name in MS_METRICS:
        return f"{value:.0f}"
    return f"{value:.3f}"


def format_summary_table(result: EvalResult) -> str:
    """The compact plain-text summary: one row per gold file plus ``overall``.

    Long metric names wrap over header lines at ``_`` (kept at the line end), so each
    column still spells the metric name used by ``--fail-under``.
    """
    rows = [
        [result.labels.get(f, f)] + [format_metric(m, metrics[m]) for m in METRICS]
        for f, metrics in result.files.items()
    ]
    rows.append(["overall"] + [format_metric(m, result.overall[m]) for m in METRICS])
    headers = [["file"]] + [_wrap_name(m) for m in METRICS]
    height = max(len(h) for h in headers)
    widths = [
        max(max(len(x) for x in h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)
    ]
    lines = []
    for k in range(height):
        cells = [(h[k] if k < len(h) else "") for h in headers]
        lines.append(_join_row(cells, widths))
    lines.extend(_join_row(row, widths) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _wrap_name(name: str, width: int = 10) -> list[str]:
    """A metric name split at ``_`` into header lines of about ``width`` characters."""
    parts = name.split("_")
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += "_" + part
        else:
            lines[-1] += "_"
            lines.append(part)
    return lines


def _join_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One table row: the first cell left-aligned, the others right-aligned."""
    first = cells[0].ljust(widths[0])
    return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)])


def md_cell(text: str | None, limit: int = 300) -> str:
    """Text made safe for a Markdown table cell: HTML-escaped, ``|`` escaped, newlines as
    ``<br>``, shortened to ``limit`` characters."""
    text = (text or "").strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    text = html.escape(text, quote=False).replace("|", "\\|")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def render_report(result: EvalResult) -> str:
    """The Markdown report: a summary table, then per gold file a per-question table with
    failures first."""
    answerable = sum(r.gold.answerable for r in result.results)
    backends = sorted({r.answer.backend for r in result.results})
    lines = [
        "# Evaluation report",
        "",
        f"- Run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Backend: {', '.join(backends) or '-'}",
        f"- Questions: {len(result.results)} ({answerable} answerable, "
        f"{len(result.results) - answerable} unanswerable), "
        f"failures: {len(result.failures)}",
        *_scope_lines(result),
        "",
        "## Summary",
        "",
    ]
    columns = [result.labels.get(f, f) for f in result.files] + ["overall"]
    lines.append("| metric | " + " | ".join(md_cell(c) for c in columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    for m in METRICS:
        values = [format_metric(m, metrics[m]) for metrics in result.files.values()]
        values.append(format_metric(m, result.overall[m]))
        lines.append(f"| {m} | " + " | ".join(values) + " |")
    lines += ["", *breakdown(result.results)]
    for file in result.files:
        rows = [r for r in result.results if r.gold.file == file]
        rows.sort(key=lambda r: not r.failed)  # stable: failures first, gold order kept
        failed = sum(r.failed for r in rows)
        lines += [
            "",
            f"## {md_cell(result.labels.get(file, file))}",
            "",
            f"{len(rows)} questions, {failed} failed.",
            "",
            "| id | question | answer | short answer | verdict | cited quote |",
            "|---|---|---|---|---|---|",
        ]
        lines.extend(_question_row(r) for r in rows)
    return "\n".join(lines) + "\n"


def _scope_lines(result: EvalResult) -> list[str]:
    """How many answers a date window or date limit narrowed (and how many had to widen),
    and how many cited other articles that agree or give another figure."""
    lines = []
    scopes = [r.answer.scope for r in result.results if r.answer.scope]
    if scopes:
        widened = sum(s.startswith("No article from") for s in scopes)
        lines.append(f"- Answers limited by date: {len(scopes) - widened}; widened to every "
                     f"article when nothing in the question's window answered: {widened}")
    agreeing = sum(bool(r.answer.agreement) for r in result.results)
    if agreeing:
        lines.append(f"- Answers citing other articles that agree or differ: {agreeing}")
    return lines


OUTCOMES = ("right answer and short answer", "right sentence, wrong short answer",
            "retrieval miss", "wrong sentence", "false abstention", "correct abstention",
            "missed abstention", "error")
"""What happened to a question, in the order of the pipeline's stages."""
_KINDS = ("how many", "how much", "who", "whom", "whose", "which", "what", "when", "where",
          "why", "how")
_KIND = re.compile(r"\b(" + "|".join(_KINDS) + r")\b", re.IGNORECASE)


def question_kind(question: str) -> str:
    """The question's first wh-phrase ("how many", "who", "what", …) or "other"."""
    m = _KIND.search(question)
    if m is None:
        return "other"
    kind = " ".join(m.group(1).lower().split())
    return "who" if kind in ("whom", "whose") else kind


def outcome(r: QuestionResult, k: int = 5) -> str:
    """Which stage a question was lost at, one of :data:`OUTCOMES`: retrieval (no gold
    article in the top ``k``), the sentence, the short answer, or the abstention."""
    if r.error:
        return "error"
    if not r.gold.answerable:
        return "correct abstention" if r.correct else "missed abstention"
    if r.correct:
        return ("right answer and short answer" if r.short_correct
                else "right sentence, wrong short answer")
    if r.gold.doc_ids and (r.rank is None or r.rank > k):
        return "retrieval miss"
    return "false abstention" if r.answer.abstained else "wrong sentence"


def breakdown(results: Sequence[QuestionResult]) -> list[str]:
    """Markdown lines: how many questions of each kind ended in each outcome."""
    kinds = [k for k in (*_KINDS, "other") if k not in ("whom", "whose")]
    counts: dict[str, dict[str, int]] = {k: dict.fromkeys(OUTCOMES, 0) for k in kinds}
    for r in results:
        counts[question_kind(r.gold.question)][outcome(r)] += 1
    used = [k for k in kinds if any(counts[k].values())]
    seen = [o for o in OUTCOMES if any(counts[k][o] for k in used)]
    lines = ["## Outcomes by question kind", "",
             "Each question counted once, at the first stage it was lost at (retrieval: no "
             "gold article in the top five).", "",
             "| question kind | questions | " + " | ".join(seen) + " |",
             "|---|---:|" + "---:|" * len(seen)]
    for k in [*used, "all"]:
        row = ({o: sum(counts[q][o] for q in used) for o in seen} if k == "all"
               else counts[k])
        lines.append(f"| {k} | {sum(row[o] for o in seen)} | "
                     + " | ".join(str(row[o]) for o in seen) + " |")
    return lines


def _question_row(r: QuestionResult) -> str:
    """One question's row of the report: its answer, verdict (with why) and quotes."""
    verdict = r.verdict
    if r.verdict in ("wrong", "false abstention"):
        verdict += "\nexpected: " + "; ".join(r.gold.answers)
    elif r.error:
        verdict += "\n" + r.error
    elif r.invalid_citations:
        verdict += f"\n{r.invalid_citations} invalid citation(s)"
    quotes = "\n".join(f"[{c.n}] {c.quote}" for c in r.answer.citations)
    text = ("(abstained) " if r.answer.abstained else "") + r.answer.text
    cells = [
        md_cell(r.gold.id),
        md_cell(r.gold.question),
        md_cell(text),
        md_cell(r.answer.short_answer),
        md_cell(verdict),
        md_cell(quotes, limit=600),
    ]
    return "| " + " | ".join(cells) + " |"



def write_report(path: Path | str, result: EvalResult) -> None:
    """Write :func:`render_report` of ``result`` to ``path`` (its folder made)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(render_report(result), encoding="utf-8")


# ---------------------------------------------------------------------------
# The --fail-under gate
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MissedThreshold:
    """A --fail-under threshold that the run did not meet."""

    metric: str
    value: float | None
    threshold: float

    def __str__(self) -> str:
        """``metric = value < minimum threshold`` (``>`` maximum for lower-is-better)."""
        if self.value is None:
            return f"{self.metric}: not measured (threshold {self.threshold:g})"
        op = ">" if self.metric in LOWER_IS_BETTER else "<"
        bound = "maximum" if self.metric in LOWER_IS_BETTER else "minimum"
        shown = format_metric(self.metric, self.value)
        return f"{self.metric} = {shown} {op} {bound} {self.threshold:g}"


def parse_thresholds(specs: Iterable[str]) -> dict[str, float]:
    """Parse ``METRIC=VALUE`` strings (``VALUE`` may be a percentage like ``95%``).

    Raises AssistantError for a malformed spec, an unknown metric or a bad value.
    """
    thresholds: dict[str, float] = {}
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise AssistantError(f"--fail-under {spec!r}: expected METRIC=VALUE")
        if name not in METRICS:
            known = ", ".join(METRICS)
            raise AssistantError(f"--fail-under: unknown metric {name!r} (known: {known})")
        try:
            value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            raise AssistantError(f"--fail-under {spec!r}: {raw!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise AssistantError(f"--fail-under {spec!r}: value must be a non-negative number")
        if name not in COUNT_METRICS | MS_METRICS and value > 1:
            raise AssistantError(
                f"--fail-under {spec!r}: {name} is a rate between 0 and 1 (or 0%-100%)"
            )
        thresholds[name] = value
    return thresholds


def check_thresholds(
    metrics: Mapping[str, float | None], thresholds: Mapping[str, float]
) -> list[MissedThreshold]:
    """The thresholds ``metrics`` misses: below a minimum, above a maximum (for the
    lower-is-better metrics), or not measured at all."""
    missed = []
    for name, threshold in thresholds.items():
        value = metrics.get(name)
        if value is None:
            ok = False
        elif name in LOWER_IS_BETTER:
            ok = value <= threshold
        else:
            ok = value >= threshold
        if not ok:
            missed.append(MissedThreshold(name, value, threshold))
    return missed

