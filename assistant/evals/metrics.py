"""Answer metrics, with no LLM judge: normalisation, containment, exact match and F1,
retrieval ranks, abstention and latency figures, and :func:`summarize`, which turns scored
questions into every metric of :data:`METRICS`.

Metrics (the names used in summaries and by ``--fail-under``):

- ``answer_accuracy``: answerable questions are correct when the assistant did not
  abstain, the answer has at most 60 words and two cited sentences, and a normalised gold
  answer occurs, token-aligned, in the normalised answer text; unanswerable ones are
  correct when it abstained.
- ``short_answer_accuracy``: answerable questions whose normalised ``short_answer`` contains
  a normalised gold answer or lies inside one (not abstained, not empty).
- ``exact_match``, ``f1``: SQuAD-style scores of the short answer (answerable only).
- ``short_answer_quoted``: answers with a short answer that occurs in the quotes the answer
  cites for itself (role ``answer``), normalised and token-aligned or as written: a reader
  finds the short answer in what is quoted.
- ``citation_validity``: fraction of answers with citations whose citations are all
  exact (``quote == read_text(corpus / path)[start:end]``); ``invalid_citations`` counts
  the bad ones.
- ``citation_support``: fraction of questions with ``support`` where some valid cited
  span overlaps an occurrence of the support text in the cited file.
- ``hit@1``, ``hit@5``, ``mrr``: rank of the first gold doc id in ``retrieved``.
- ``abstention_precision``, ``abstention_recall``, ``false_abstention_rate``.
- ``latency_p50_ms``, ``latency_p95_ms``.

Nothing here reads files or runs the assistant: gold loading (:mod:`assistant.evals.gold`)
and the runner (:mod:`assistant.evals.runner`) build on these functions.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Protocol

from assistant.text import NUMBER_VALUES, SCALE_VALUES
from assistant.types import MAX_ANSWER_WORDS, Answer

# Metric names in summary order. Rates lie in [0, 1]; for the LOWER_IS_BETTER ones a
# --fail-under threshold is a maximum instead of a minimum.
METRICS: tuple[str, ...] = (
    "questions",
    "answer_accuracy",
    "short_answer_accuracy",
    "exact_match",
    "f1",
    "short_answer_quoted",
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

Metrics = dict[str, float | None]


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
    """``tokens`` with each run of number words (or numeral + scale) as one digit string."""
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
    """A number as digits: integers without a decimal point, others without trailing 0s."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _contains_tokens(haystack: list[str], needle: list[str]) -> bool:
    """True when the non-empty ``needle`` occurs as a contiguous run in ``haystack``."""
    n = len(needle)
    return n > 0 and any(haystack[k : k + n] == needle for k in range(len(haystack) - n + 1))


MAX_ANSWER_SENTENCES = 2
_MARKER = re.compile(r"\[\d+\]")


def text_contains(text: str, gold_answers: Sequence[str]) -> bool:
    """True when some normalised gold answer occurs as a run of whole tokens in the
    normalised ``text``."""
    tokens = normalize_tokens(text)
    return any(_contains_tokens(tokens, normalize_tokens(g)) for g in gold_answers)


def short_answer_quoted(answer: Answer) -> bool:
    """True when ``answer``'s short answer occurs (normalised as whole tokens, or as
    written) in the quotes cited for the answer itself (not those of other articles that
    agree or differ)."""
    short = answer.short_answer
    if not short:
        return False
    quoted = " ".join(c.quote for c in answer.citations if c.role == "answer")
    # As written, or normalised ("19,500" in "19500"; a bare "million" normalises to a
    # number that "$312 million" does not hold, so the words as written count too).
    return text_contains(quoted, [short]) or bool(
        re.search(rf"(?<!\w){re.escape(short.strip())}(?!\w)", quoted, re.IGNORECASE))


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
    quoted = [c for c in answer.citations if c.role == "answer"]  # not other articles
    if answer.backend == "extractive" and len(quoted) > MAX_ANSWER_SENTENCES:
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
# Retrieval, abstention and latency metrics
# ---------------------------------------------------------------------------


def clean_doc_id(doc_id: str) -> str:
    """A doc id as compared: forward slashes, no leading ``./``."""
    doc_id = doc_id.replace("\\", "/")
    while doc_id.startswith("./"):
        doc_id = doc_id[2:]
    return doc_id


def retrieval_rank(retrieved: Sequence[str], doc_ids: Sequence[str]) -> int | None:
    """1-based rank of the first gold doc id in ``retrieved``; None when absent."""
    gold = {clean_doc_id(d) for d in doc_ids}
    for rank, doc_id in enumerate(retrieved, start=1):
        if clean_doc_id(doc_id) in gold:
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
    """``num / den``, or None when ``den`` is zero."""
    return num / den if den else None


def _mean(values: Sequence[float]) -> float | None:
    """The mean of ``values``, or None when there are none."""
    return sum(values) / len(values) if values else None



# ---------------------------------------------------------------------------
# Summarising scored questions
# ---------------------------------------------------------------------------


class ScoredGold(Protocol):
    """What :func:`summarize` reads of a gold question (an ``evals.gold.GoldQuestion``)."""

    @property
    def answerable(self) -> bool:
        """False when the assistant is expected to abstain."""
        ...

    @property
    def doc_ids(self) -> Sequence[str]:
        """The gold documents (empty when retrieval is not scored)."""
        ...


class Scored(Protocol):
    """What :func:`summarize` reads of one scored question (an
    ``evals.runner.QuestionResult``)."""

    @property
    def gold(self) -> ScoredGold:
        """The gold question."""
        ...

    @property
    def answer(self) -> Answer:
        """The assistant's answer."""
        ...

    @property
    def latency_ms(self) -> float:
        """Time to answer, in milliseconds."""
        ...

    @property
    def correct(self) -> bool:
        """Answer accuracy of this question."""
        ...

    @property
    def short_correct(self) -> bool | None:
        """Short-answer accuracy (None when unanswerable)."""
        ...

    @property
    def exact_match(self) -> float | None:
        """Exact match of the short answer (None when unanswerable)."""
        ...

    @property
    def f1(self) -> float | None:
        """Token F1 of the short answer (None when unanswerable)."""
        ...

    @property
    def invalid_citations(self) -> int:
        """How many citations are not exact corpus spans."""
        ...

    @property
    def supported(self) -> bool | None:
        """Whether a valid citation covers the support text (None when not scored)."""
        ...

    @property
    def rank(self) -> int | None:
        """Rank of the first gold doc in ``retrieved`` (None when absent)."""
        ...


def summarize(results: Sequence[Scored]) -> Metrics:
    """Every metric of :data:`METRICS` over ``results`` (None when not measurable)."""
    answerable = [r for r in results if r.gold.answerable]
    cited = [r for r in results if r.answer.citations]
    with_support = [r for r in results if r.supported is not None]
    with_short = [r for r in results if not r.answer.abstained and r.answer.short_answer]
    ranks = [r.rank for r in results if r.gold.doc_ids]
    latencies = [r.latency_ms for r in results]
    metrics: Metrics = {
        "questions": float(len(results)),
        "answer_accuracy": _mean([float(r.correct) for r in results]),
        "short_answer_accuracy": _mean([float(bool(r.short_correct)) for r in answerable]),
        "exact_match": _mean([r.exact_match or 0.0 for r in answerable]),
        "f1": _mean([r.f1 or 0.0 for r in answerable]),
        "short_answer_quoted": _mean([float(short_answer_quoted(r.answer))
                                      for r in with_short]),
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
