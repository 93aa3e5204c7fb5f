"""Evaluation runner: answers gold questions and scores them, with no LLM judge.

Gold files are JSON Lines. A question line::

    {"id": "q1", "question": "...", "answers": ["8", "eight"], "doc_ids": ["a.txt"],
     "support": "Eight children have been rejoined"}

``"answers": []`` marks an unanswerable question (the assistant must abstain);
``doc_ids`` and ``support`` are optional; unknown fields are ignored. A chat line holds a
conversation whose turns are scored like questions (id ``<conv>#<n>``, ``n`` from 1),
all sent through one chat session::

    {"id": "c1", "turns": [{"user": "...", "answers": [...]}, {"user": "...", ...}]}

Metrics (the names used in summaries and by ``--fail-under``):

- ``answer_accuracy``: answerable questions are correct when the assistant did not
  abstain, the answer has at most 60 words and two cited sentences, and a normalised gold
  answer occurs, token-aligned, in the normalised answer text; unanswerable ones are
  correct when it abstained.
- ``short_answer_accuracy``: answerable questions whose normalised ``short_answer`` contains
  a normalised gold answer or lies inside one (not abstained, not empty).
- ``exact_match``, ``f1``: SQuAD-style scores of the short answer (answerable only).
- ``citation_validity``: fraction of answers with citations whose citations are all
  exact (``quote == read_text(corpus / path)[start:end]``); ``invalid_citations`` counts
  the bad ones.
- ``citation_support``: fraction of questions with ``support`` where some valid cited
  span overlaps an occurrence of the support text in the cited file.
- ``hit@1``, ``hit@5``, ``mrr``: rank of the first gold doc id in ``retrieved``.
- ``abstention_precision``, ``abstention_recall``, ``false_abstention_rate``.
- ``latency_p50_ms``, ``latency_p95_ms``.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

from assistant.corpus import SkippedFile, read_text
from assistant.settings import AssistantError
from assistant.text import NUMBER_VALUES, SCALE_VALUES
from assistant.types import MAX_ANSWER_WORDS, Answer, Citation

DEFAULT_GOLD_GLOB = "evals/gold/*.jsonl"

# Metric names in summary order. Rates lie in [0, 1]; for the LOWER_IS_BETTER ones a
# --fail-under threshold is a maximum instead of a minimum.
METRICS: tuple[str, ...] = (
    "questions",
    "answer_accuracy",
    "short_answer_accuracy",
    "exact_match",
    "f1",
    "citation_validity",
    "invalid_citations",
    "citation_support",
    "hit@1",
    "hit@5",
    "mrr",
    "abstention_precision",
    "abstention_recall",
    "false_abstention_rate",
    "latency_p50_ms",
    "latency_p95_ms",
)
COUNT_METRICS = frozenset({"questions", "invalid_citations"})
MS_METRICS = frozenset({"latency_p50_ms", "latency_p95_ms"})
LOWER_IS_BETTER = frozenset(
    {"invalid_citations", "false_abstention_rate", "latency_p50_ms", "latency_p95_ms"}
)
PASSING_VERDICTS = frozenset({"correct", "correct abstention"})

Metrics = dict[str, float | None]


# ---------------------------------------------------------------------------
# The bot interface (satisfied by assistant.core.Assistant)
# ---------------------------------------------------------------------------


class ChatLike(Protocol):
    """A conversation: each message is answered in the context of the earlier ones."""

    def send(self, message: str) -> Answer:
        """Answer one user message."""
        ...


class BotLike(Protocol):
    """What the runner needs from an assistant."""

    settings: Any

    def ingest(self) -> Any:
        """Bring the index up to date with the corpus."""
        ...

    def ask(self, question: str) -> Answer:
        """Answer one stand-alone question."""
        ...

    def chat(self) -> ChatLike:
        """Start a new conversation."""
        ...


# ---------------------------------------------------------------------------
# Gold files
# ---------------------------------------------------------------------------


@dataclass
class GoldQuestion:
    """One scored question (or one chat turn)."""

    id: str
    question: str
    answers: list[str]
    doc_ids: list[str] = field(default_factory=list)
    support: str | None = None
    file: str = ""
    line: int = 0

    @property
    def answerable(self) -> bool:
        """False when the assistant is expected to abstain."""
        return bool(self.answers)


@dataclass
class GoldConversation:
    """A chat conversation: its turns are answered in one session."""

    id: str
    turns: list[GoldQuestion]
    file: str = ""
    line: int = 0


GoldItem = GoldQuestion | GoldConversation


def load_gold(path: Path | str) -> list[GoldItem]:
    """Parse one gold JSONL file; raises AssistantError naming the file and line."""
    path = Path(path)
    try:
        raw = read_text(path)
    except FileNotFoundError:
        raise AssistantError(f"gold file not found: {path}") from None
    except (OSError, SkippedFile) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AssistantError(f"cannot read gold file {path}: {reason}") from None
    items: list[GoldItem] = []
    seen: set[str] = set()
    for lineno, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssistantError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise AssistantError(f"{where}: expected a JSON object")
        item = _parse_gold_object(obj, where, str(path), lineno)
        if item.id in seen:
            raise AssistantError(f"{where}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items


def _parse_gold_object(obj: dict[str, Any], where: str, file: str, lineno: int) -> GoldItem:
    item_id = obj.get("id", f"line{lineno}")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or str(item_id) == "":
        raise AssistantError(f"{where}: 'id' must be a non-empty string")
    item_id = str(item_id)
    if "turns" in obj:
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns:
            raise AssistantError(f"{where}: 'turns' must be a non-empty list")
        parsed = []
        for n, turn in enumerate(turns, start=1):
            if not isinstance(turn, dict):
                raise AssistantError(f"{where}: turn {n} must be a JSON object")
            text = turn.get("user", turn.get("question"))
            qid, turn_where = f"{item_id}#{n}", f"{where} turn {n}"
            parsed.append(_gold_question(qid, text, "user", turn, turn_where, file, lineno))
        return GoldConversation(id=item_id, turns=parsed, file=file, line=lineno)
    return _gold_question(item_id, obj.get("question"), "question", obj, where, file, lineno)


def _gold_question(
    qid: str,
    text: Any,
    text_key: str,
    obj: dict[str, Any],
    where: str,
    file: str,
    lineno: int,
) -> GoldQuestion:
    if not isinstance(text, str) or not text.strip():
        raise AssistantError(f"{where}: '{text_key}' must be a non-empty string")
    answers = obj.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise AssistantError(f"{where}: 'answers' must be a list of strings ([] = unanswerable)")
    for a in answers:
        if not normalize_answer(a):
            raise AssistantError(f"{where}: answer {a!r} is empty after normalisation")
    doc_ids = obj.get("doc_ids") or []
    if not isinstance(doc_ids, list) or not all(isinstance(d, str) for d in doc_ids):
        raise AssistantError(f"{where}: 'doc_ids' must be a list of strings")
    support = obj.get("support")
    if support is not None and not isinstance(support, str):
        raise AssistantError(f"{where}: 'support' must be a string")
    return GoldQuestion(
        id=qid,
        question=text,
        answers=list(answers),
        doc_ids=[_clean_doc_id(d) for d in doc_ids],
        support=support if support and support.strip() else None,
        file=file,
        line=lineno,
    )


def _clean_doc_id(doc_id: str) -> str:
    doc_id = doc_id.replace("\\", "/")
    while doc_id.startswith("./"):
        doc_id = doc_id[2:]
    return doc_id


def resolve_gold_paths(paths: Sequence[Path | str] | None) -> list[Path]:
    """The gold files to run: the given files (a directory means its ``*.jsonl``), or
    every ``evals/gold/*.jsonl`` when none are given."""
    if not paths:
        found = sorted(Path().glob(DEFAULT_GOLD_GLOB))
        if not found:
            raise AssistantError(f"no gold files given and none match {DEFAULT_GOLD_GLOB}")
        return found
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise AssistantError(f"no *.jsonl gold files in {p}")
            out.extend(found)
        else:
            out.append(p)
    return out


# ---------------------------------------------------------------------------
# Answer normalisation and text metrics
# ---------------------------------------------------------------------------

# Number words come from assistant.text (the one copy): units, teens, tens, scales.
_UNITS = {w: v for w, v in NUMBER_VALUES.items() if v < 10}
_TEENS = {w: v for w, v in NUMBER_VALUES.items() if 10 <= v < 20}
_TENS = {w: v for w, v in NUMBER_VALUES.items() if v >= 20}
_SCALES = {w: v for w, v in SCALE_VALUES.items() if v >= 1000}
_NUMBER_WORDS = NUMBER_VALUES.keys()
_ARTICLES = frozenset({"a", "an", "the"})
_APOSTROPHES = "'’‘ʼ`´"
_THOUSANDS_SEP = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_POSSESSIVE = re.compile(r"(?<=\w)['’ʼ]s\b")
_NUMERIC = re.compile(r"\d+(?:\.\d+)?")


def normalize_answer(s: str) -> str:
    """Normalise an answer for comparison.

    Lower case; thousands separators dropped (``19,500`` → ``19500``); possessive
    ``'s`` dropped (``Lady’s`` → ``lady``) and other apostrophes deleted; ``%`` read as
    ``percent``; other punctuation and symbols (curly quotes, dashes, …) become spaces,
    except a decimal point between digits; the articles
    a/an/the removed; number words turned into digits (``eight`` → ``8``,
    ``twenty-four`` → ``24``, ``two hundred and five`` → ``205``, ``1.5 million`` →
    ``1500000``); whitespace collapsed.
    """
    return " ".join(normalize_tokens(s))


def normalize_tokens(s: str) -> list[str]:
    """The tokens of :func:`normalize_answer`."""
    text = unicodedata.normalize("NFKC", s).lower()
    text = _THOUSANDS_SEP.sub("", text)
    text = _POSSESSIVE.sub("", text)
    text = text.replace("%", " percent ")
    chars: list[str] = []
    for i, ch in enumerate(text):
        if ch in _APOSTROPHES:
            continue
        if unicodedata.category(ch)[0] in "PS":
            decimal_point = (
                ch == "."
                and 0 < i < len(text) - 1
                and text[i - 1].isdigit()
                and text[i + 1].isdigit()
            )
            chars.append(ch if decimal_point else " ")
        else:
            chars.append(ch)
    tokens = [t for t in "".join(chars).split() if t not in _ARTICLES]
    return _numbers_to_digits(tokens)


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        value, end = _read_number(tokens, i)
        if end > i:
            out.append(_format_number(value))
            i = end
        else:
            out.append(tokens[i])
            i += 1
    return out


def _read_number(tokens: list[str], i: int) -> tuple[Decimal, int]:
    """Parse a run of number words starting at ``tokens[i]``; returns (value, end index),
    with end == i when there is none."""
    total, current = Decimal(0), Decimal(0)
    last: str | None = None
    last_scale = math.inf
    j = end = i
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if _NUMERIC.fullmatch(tokens[i]) and (nxt in _SCALES or nxt == "hundred"):
        current, last, j = Decimal(tokens[i]), "numeral", i + 1
    while j < len(tokens):
        w = tokens[j]
        if w in _UNITS and last in (None, "tens", "hundred", "scale"):
            current += _UNITS[w]
            last = "unit"
        elif w in _TEENS and last in (None, "hundred", "scale"):
            current += _TEENS[w]
            last = "teen"
        elif w in _TENS and last in (None, "hundred", "scale"):
            current += _TENS[w]
            last = "tens"
        elif w == "hundred" and last in (None, "unit", "teen", "tens", "numeral"):
            current = (current or 1) * 100
            last = "hundred"
        elif w in _SCALES and _SCALES[w] < last_scale and last != "scale":
            total += (current or 1) * _SCALES[w]
            current, last, last_scale = Decimal(0), "scale", _SCALES[w]
        elif (
            w == "and"
            and last in ("hundred", "scale")
            and j + 1 < len(tokens)
            and tokens[j + 1] in _NUMBER_WORDS
        ):
            j += 1
            continue
        else:
            break
        j += 1
        end = j
    return total + current, end


def _format_number(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _contains_tokens(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[k : k + n] == needle for k in range(len(haystack) - n + 1))


MAX_ANSWER_SENTENCES = 2
_MARKER = re.compile(r"\[\d+\]")


def text_contains(text: str, gold_answers: Sequence[str]) -> bool:
    """True when some normalised gold answer occurs as a run of whole tokens in the
    normalised ``text``."""
    tokens = normalize_tokens(text)
    return any(_contains_tokens(tokens, normalize_tokens(g)) for g in gold_answers)


def answer_words(answer: Answer) -> int:
    """Words of the answer text, citation markers left out."""
    return len(_MARKER.sub(" ", answer.text).split())


def answer_correct(answer: Answer, gold_answers: Sequence[str]) -> bool:
    """Answer accuracy of one answer: with gold answers, not abstained, at most
    :data:`MAX_ANSWER_WORDS` words and :data:`MAX_ANSWER_SENTENCES` cited sentences, and some
    normalised gold answer occurs as a run of whole tokens in the normalised answer text;
    with none (unanswerable), abstained."""
    if not gold_answers:
        return answer.abstained
    if answer.abstained or answer_words(answer) > MAX_ANSWER_WORDS:
        return False
    if answer.backend == "extractive" and len(answer.citations) > MAX_ANSWER_SENTENCES:
        return False
    return text_contains(answer.text, gold_answers)


def short_answer_correct(answer: Answer, gold_answers: Sequence[str]) -> bool:
    """Short-answer accuracy of one answer: not abstained, and the normalised
    ``short_answer`` is not empty and contains a normalised gold answer or lies inside
    one (whole tokens)."""
    if answer.abstained or not gold_answers:
        return False
    pred = normalize_tokens(answer.short_answer or "")
    if not pred:
        return False
    for gold in gold_answers:
        ref = normalize_tokens(gold)
        if ref and (_contains_tokens(pred, ref) or _contains_tokens(ref, pred)):
            return True
    return False


def exact_match(prediction: str | None, gold_answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals some normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction or "")
    return float(any(pred == normalize_answer(g) for g in gold_answers))


def token_f1(prediction: str | None, gold_answers: Sequence[str]) -> float:
    """SQuAD token F1 of the prediction, the best over the gold answers (0.0 if none)."""
    pred = normalize_tokens(prediction or "")
    best = 0.0
    for gold in gold_answers:
        ref = normalize_tokens(gold)
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            precision, recall = common / len(pred), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


# ---------------------------------------------------------------------------
# Citations
# ---------------------------------------------------------------------------

_FOLD = {
    **dict.fromkeys("‘’‚‛′ʼ`´", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    "…": "...",
}


def _fold(text: str) -> tuple[str, list[int]]:
    """Text for lenient searching (lower case, plain quotes and dashes, single spaces) and,
    for each folded character, its offset in ``text``."""
    chars: list[str] = []
    index: list[int] = []
    prev_space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if not prev_space:
                chars.append(" ")
                index.append(i)
            prev_space = True
            continue
        prev_space = False
        for c in _FOLD.get(ch, ch.lower()):
            chars.append(c)
            index.append(i)
    return "".join(chars), index


class CorpusTexts:
    """Corpus file texts as the assistant reads them, each file read at most once."""

    def __init__(self, corpus_dir: Path | str) -> None:
        self.corpus_dir = Path(corpus_dir)
        self._texts: dict[str, str | None] = {}
        self._folded: dict[str, tuple[str, list[int]]] = {}

    def get(self, path: str) -> str | None:
        """The text of ``corpus_dir / path``, or None when it cannot be read."""
        if path not in self._texts:
            try:
                self._texts[path] = read_text(self.corpus_dir / path)
            except (OSError, ValueError, SkippedFile):
                self._texts[path] = None
        return self._texts[path]

    def find(self, path: str, needle: str) -> list[tuple[int, int]]:
        """Every ``(start, end)`` span of ``path`` where ``needle`` occurs, ignoring case,
        quote and dash styles and whitespace differences."""
        text = self.get(path)
        target = _fold(needle.strip())[0].strip()
        if text is None or not target:
            return []
        if path not in self._folded:
            self._folded[path] = _fold(text)
        folded, index = self._folded[path]
        spans = []
        k = folded.find(target)
        while k >= 0:
            spans.append((index[k], index[k + len(target) - 1] + 1))
            k = folded.find(target, k + 1)
        return spans


def citation_valid(citation: Citation, texts: CorpusTexts) -> bool:
    """True when the citation's non-empty quote is exactly its file's text[start:end]."""
    text = texts.get(citation.path)
    return (
        text is not None
        and 0 <= citation.start < citation.end <= len(text)
        and text[citation.start : citation.end] == citation.quote
    )


def count_invalid_citations(answer: Answer, texts: CorpusTexts) -> int:
    """How many of the answer's citations are not exact spans of the corpus."""
    return sum(not citation_valid(c, texts) for c in answer.citations)


def citation_supported(answer: Answer, support: str, texts: CorpusTexts) -> bool:
    """True when some valid citation overlaps (by at least one character) an occurrence
    of ``support`` in the cited file."""
    for c in answer.citations:
        if not citation_valid(c, texts):
            continue
        if any(c.start < end and start < c.end for start, end in texts.find(c.path, support)):
            return True
    return False


# ---------------------------------------------------------------------------
# Retrieval, abstention and latency metrics
# ---------------------------------------------------------------------------


def retrieval_rank(retrieved: Sequence[str], doc_ids: Sequence[str]) -> int | None:
    """1-based rank of the first gold doc id in ``retrieved``; None when absent."""
    gold = {_clean_doc_id(d) for d in doc_ids}
    for rank, doc_id in enumerate(retrieved, start=1):
        if _clean_doc_id(doc_id) in gold:
            return rank
    return None


def hit_at_k(ranks: Sequence[int | None], k: int) -> float | None:
    """Fraction of questions whose first gold doc is ranked within the top ``k``."""
    if not ranks:
        return None
    return sum(r is not None and r <= k for r in ranks) / len(ranks)


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float | None:
    """Mean of 1/rank (0 when the gold doc was not retrieved)."""
    if not ranks:
        return None
    return sum(1 / r for r in ranks if r) / len(ranks)


def abstention_scores(cases: Iterable[tuple[bool, bool]]) -> Metrics:
    """Abstention metrics from ``(abstained, answerable)`` pairs.

    Precision: abstentions that were on unanswerable questions; recall: unanswerable
    questions that were abstained on; false-abstention rate: answerable questions that
    were abstained on. None when the denominator is zero.
    """
    counts = Counter(cases)
    abstained_unans = counts[(True, False)]
    abstained = abstained_unans + counts[(True, True)]
    unanswerable = abstained_unans + counts[(False, False)]
    answerable = counts[(True, True)] + counts[(False, True)]
    return {
        "abstention_precision": _ratio(abstained_unans, abstained),
        "abstention_recall": _ratio(abstained_unans, unanswerable),
        "false_abstention_rate": _ratio(counts[(True, True)], answerable),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------------------
# Scoring one answer and summarising many
# ---------------------------------------------------------------------------


@dataclass
class QuestionResult:
    """One answered gold question with its scores."""

    gold: GoldQuestion
    answer: Answer
    latency_ms: float
    correct: bool
    verdict: str
    short_correct: bool | None = None
    exact_match: float | None = None
    f1: float | None = None
    invalid_citations: int = 0
    supported: bool | None = None
    rank: int | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        """True for anything but a correct answer with valid, supporting citations."""
        return self.verdict not in PASSING_VERDICTS

    def scores(self) -> dict[str, Any]:
        """The per-question scores written to the output file."""
        return {
            "correct": self.correct,
            "short_answer_correct": self.short_correct,
            "exact_match": self.exact_match,
            "f1": None if self.f1 is None else round(self.f1, 4),
            "citations_valid": self.invalid_citations == 0,
            "invalid_citations": self.invalid_citations,
            "supported": self.supported,
            "retrieval_rank": self.rank,
        }

    def to_dict(self) -> dict[str, Any]:
        """One line of the output file: the answer JSON plus the gold data and verdict."""
        data: dict[str, Any] = {"id": self.gold.id, **self.answer.to_dict()}
        data["latency_ms"] = round(self.latency_ms, 1)
        data.update(
            gold_file=self.gold.file,
            gold_answers=self.gold.answers,
            verdict=self.verdict,
            scores=self.scores(),
        )
        if self.error:
            data["error"] = self.error
        return data


def score_answer(
    gold: GoldQuestion,
    answer: Answer,
    texts: CorpusTexts,
    latency_ms: float | None = None,
    error: str | None = None,
) -> QuestionResult:
    """Score one answer against its gold question."""
    correct = answer_correct(answer, gold.answers)
    em = f1 = short_ok = None
    if gold.answerable:
        short_ok = short_answer_correct(answer, gold.answers)
        short = None if answer.abstained else answer.short_answer
        em, f1 = exact_match(short, gold.answers), token_f1(short, gold.answers)
    invalid = count_invalid_citations(answer, texts)
    supported = None
    if gold.answerable and gold.support:
        supported = citation_supported(answer, gold.support, texts)
    rank = retrieval_rank(answer.retrieved, gold.doc_ids) if gold.doc_ids else None
    if error:
        verdict = "error"
    elif not gold.answerable:
        verdict = "correct abstention" if correct else "missed abstention"
    elif answer.abstained:
        verdict = "false abstention"
    elif not correct:
        verdict = "wrong"
    elif invalid:
        verdict = "invalid citation"
    elif supported is False:
        verdict = "unsupported"
    else:
        verdict = "correct"
    return QuestionResult(
        gold=gold,
        answer=answer,
        latency_ms=answer.latency_ms if latency_ms is None else latency_ms,
        correct=correct,
        verdict=verdict,
        short_correct=short_ok,
        exact_match=em,
        f1=f1,
        invalid_citations=invalid,
        supported=supported,
        rank=rank,
        error=error,
    )


def summarize(results: Sequence[QuestionResult]) -> Metrics:
    """Every metric of :data:`METRICS` over ``results`` (None when not measurable)."""
    answerable = [r for r in results if r.gold.answerable]
    cited = [r for r in results if r.answer.citations]
    with_support = [r for r in results if r.supported is not None]
    ranks = [r.rank for r in results if r.gold.doc_ids]
    latencies = [r.latency_ms for r in results]
    metrics: Metrics = {
        "questions": float(len(results)),
        "answer_accuracy": _mean([float(r.correct) for r in results]),
        "short_answer_accuracy": _mean([float(bool(r.short_correct)) for r in answerable]),
        "exact_match": _mean([r.exact_match or 0.0 for r in answerable]),
        "f1": _mean([r.f1 or 0.0 for r in answerable]),
        "citation_validity": _mean([float(r.invalid_citations == 0) for r in cited]),
        "invalid_citations": float(sum(r.invalid_citations for r in results)),
        "citation_support": _mean([float(bool(r.supported)) for r in with_support]),
        "hit@1": hit_at_k(ranks, 1),
        "hit@5": hit_at_k(ranks, 5),
        "mrr": mean_reciprocal_rank(ranks),
        **abstention_scores((r.answer.abstained, r.gold.answerable) for r in results),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
    }
    return {name: metrics[name] for name in METRICS}


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------


@dataclass
class EvalResult:
    """The outcome of one evaluation run."""

    results: list[QuestionResult]
    files: dict[str, Metrics]
    overall: Metrics
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> list[QuestionResult]:
        """Questions that did not pass (wrong, bad citation, unsupported, error)."""
        return [r for r in self.results if r.failed]

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON: per gold file and overall."""
        return {"files": self.files, "overall": self.overall}


def run_eval(
    bot: BotLike,
    gold_paths: Sequence[Path | str],
    output: Path | str | None = None,
    report: Path | str | None = None,
    *,
    corpus_dir: Path | str | None = None,
) -> EvalResult:
    """Answer every gold question with ``bot`` in this process and score the answers.

    Writes one JSON line per question to ``output`` (as it goes) and a Markdown report to
    ``report`` when given. Citations are checked against ``corpus_dir`` (default: the
    bot's ``settings.corpus``). The bot is not ingested here (see run_eval_command).
    """
    golds = {str(p): load_gold(p) for p in gold_paths}
    return _evaluate(bot, golds, output, report, corpus_dir)


def _evaluate(
    bot: BotLike,
    golds: dict[str, list[GoldItem]],
    output: Path | str | None,
    report: Path | str | None,
    corpus_dir: Path | str | None,
) -> EvalResult:
    texts = CorpusTexts(corpus_dir if corpus_dir is not None else bot.settings.corpus)
    results: list[QuestionResult] = []
    files: dict[str, Metrics] = {}
    with _open_output(output) as out:
        for file, items in golds.items():
            file_results = []
            for gold, answer, latency, error in _answers(bot, items):
                result = score_answer(gold, answer, texts, latency, error)
                file_results.append(result)
                if out is not None:
                    out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
                    out.flush()
            files[file] = summarize(file_results)
            results.extend(file_results)
    evaluation = EvalResult(
        results=results, files=files, overall=summarize(results), labels=_labels(list(golds))
    )
    if report is not None:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(render_report(evaluation), encoding="utf-8")
    return evaluation


def _open_output(output: Path | str | None) -> AbstractContextManager[IO[str] | None]:
    if output is None:
        return nullcontext(None)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    return open(output, "w", encoding="utf-8")


def _answers(
    bot: BotLike, items: Sequence[GoldItem]
) -> Iterator[tuple[GoldQuestion, Answer, float, str | None]]:
    """Ask every question (chat turns through one session per conversation), yielding
    ``(gold, answer, latency_ms, error)``; an AssistantError becomes an error answer."""
    for item in items:
        if isinstance(item, GoldConversation):
            session = bot.chat()
            for turn in item.turns:
                yield _timed(session.send, turn)
        else:
            yield _timed(bot.ask, item)


def _timed(call: Any, gold: GoldQuestion) -> tuple[GoldQuestion, Answer, float, str | None]:
    started = time.perf_counter()
    try:
        answer: Answer = call(gold.question)
        error = None
    except AssistantError as exc:
        answer, error = Answer(question=gold.question, text="", notice=str(exc)), str(exc)
    wall_ms = (time.perf_counter() - started) * 1000
    return gold, answer, answer.latency_ms if answer.latency_ms > 0 else wall_ms, error


def _labels(files: Sequence[str]) -> dict[str, str]:
    """Short display names: the file name, or the full path when names collide."""
    names = Counter(Path(f).name for f in files)
    return {f: Path(f).name if names[Path(f).name] == 1 else f for f in files}


# ---------------------------------------------------------------------------
# Reports
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


def _question_row(r: QuestionResult) -> str:
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


# ---------------------------------------------------------------------------
# Thresholds and the CLI command
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MissedThreshold:
    """A --fail-under threshold that the run did not meet."""

    metric: str
    value: float | None
    threshold: float

    def __str__(self) -> str:
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
    result = _evaluate(bot, golds, output, report, None)
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
