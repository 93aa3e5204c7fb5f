"""The runner: asks every gold question (chat turns through one session per conversation),
checks each answer's citations against the corpus and scores it, and summarises the results
per gold file and overall. The files a run writes are :mod:`assistant.evals.report`'s; the
``assistant eval`` command that prints and gates them is :mod:`assistant.evals.command`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from assistant.corpus import SkippedFile, read_text
from assistant.evals.gold import GoldConversation, GoldItem, GoldQuestion
from assistant.evals.metrics import (
    Metrics,
    answer_correct,
    exact_match,
    retrieval_rank,
    short_answer_correct,
    summarize,
    token_f1,
)
from assistant.settings import AssistantError
from assistant.types import Answer, Citation

# The verdicts of a question that passed; every other verdict is a failure in the report.
PASSING_VERDICTS = frozenset({"correct", "correct abstention"})


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

    def ask(self, question: str, *, as_of: str | None = None) -> Answer:
        """Answer one stand-alone question (as on the day ``as_of``, when given)."""
        ...

    def chat(self) -> ChatLike:
        """Start a new conversation."""
        ...



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
# Scoring one answer
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



def evaluate(
    bot: BotLike,
    golds: Mapping[str, Sequence[GoldItem]],
    texts: CorpusTexts,
    on_result: Callable[[QuestionResult], None] | None = None,
    as_of: bool = False,
) -> EvalResult:
    """Ask every question of ``golds`` (gold file -> its items, in order), score each
    answer with its citations checked against ``texts``, and summarise per file and
    overall. ``on_result`` sees each result as soon as it is scored. With ``as_of``, a
    question whose gold line has a date is asked as on that day."""
    results: list[QuestionResult] = []
    files: dict[str, Metrics] = {}
    for file, items in golds.items():
        file_results = []
        for gold, answer, latency, error in _answers(bot, items, as_of):
            result = score_answer(gold, answer, texts, latency, error)
            file_results.append(result)
            if on_result is not None:
                on_result(result)
        files[file] = summarize(file_results)
        results.extend(file_results)
    return EvalResult(
        results=results, files=files, overall=summarize(results), labels=_labels(list(golds))
    )


def _answers(
    bot: BotLike, items: Sequence[GoldItem], as_of: bool = False
) -> Iterator[tuple[GoldQuestion, Answer, float, str | None]]:
    """Ask every question (chat turns through one session per conversation), yielding
    ``(gold, answer, latency_ms, error)``; an AssistantError becomes an error answer.
    With ``as_of``, each question that has a date is asked as on that day."""
    for item in items:
        if isinstance(item, GoldConversation):
            session = bot.chat()
            for turn in item.turns:
                if as_of:
                    session.as_of = turn.as_of  # type: ignore[attr-defined]
                yield _timed(session.send, turn)
        elif as_of and item.as_of:
            yield _timed(partial(bot.ask, as_of=item.as_of), item)
        else:
            yield _timed(bot.ask, item)


def _timed(call: Any, gold: GoldQuestion) -> tuple[GoldQuestion, Answer, float, str | None]:
    """``call(gold.question)`` timed: the answer's own latency, else the wall time."""
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
