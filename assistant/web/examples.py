"""Example questions, drawn from the corpus and kept only when they are answered."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.corpus import SkippedFile, iter_corpus_files, load_article

if TYPE_CHECKING:
    from assistant.core import Assistant

log = logging.getLogger(__name__)

MAX_EXAMPLES = 4

_NUM = (r"(?:more than |over |nearly |about |almost |just over |at least )?"
        r"(?:\d[\d,]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
        r"dozens|hundreds|thousands|millions)")
_HOW_MANY = re.compile(
    r"(?:^|[\s“\"(])" + _NUM
    + r"\s+(?P<np>(?:[A-Za-z][\w’'-]*\s+){0,2}?[a-z][\w-]*(?:s|ren|ople|men))\s+"
    r"(?P<verb>have been|has been|had been|were|are|have|had)\s+"
    r"(?P<rest>[^,.;:!?”\"\n]{8,110})(?=[,.;:!?”\"\n]|$)",
    re.IGNORECASE,
)
_WHO = re.compile(
    r"(?:^|[“\"]\s*)(?P<subj>The\s+(?:[A-Z][\w.’'-]*\s+){0,4}[A-Za-z][\w.’'-]*)\s+"
    r"(?P<aux>has|have|had)\s+(?P<pp>[a-z]+ed)\s+"
    r"(?P<rest>[^,.;:!?”\"\n]{3,80})(?=[,.;:!?”\"\n]|$)",
    re.MULTILINE,
)


def candidate_questions(text: str) -> list[str]:
    """Questions whose answer is stated in ``text`` (simple patterns; validated by asking)."""
    out = []
    for m in _HOW_MANY.finditer(text):
        out.append(f"How many {m['np']} {m['verb'].lower()} {m['rest'].strip()}?")
    for m in _WHO.finditer(text):
        out.append(f"Who {m['aux']} {m['pp']} {m['rest'].strip()}?")
    return out


def example_questions(bot: Assistant, limit: int = MAX_EXAMPLES, max_files: int = 40,
                      max_tries: int = 10, files: Sequence[Path] | None = None) -> list[str]:
    """A few questions drawn from the corpus that the assistant answers (not abstains on);
    from ``files`` only (corpus files, such as just-uploaded ones) when given."""
    corpus = Path(bot.settings.corpus)
    per_article: list[list[str]] = []
    try:
        for i, path in enumerate(iter_corpus_files(corpus) if files is None else files):
            if i >= max_files:
                break
            try:
                article = load_article(corpus, path)
            except SkippedFile:
                continue
            found = candidate_questions(article.body)
            if not found and article.title:
                found = [f"What does the article “{article.title}” report?"]
            per_article.append(sorted(found, key=len))
    except OSError:
        return []
    ordered: list[str] = []  # round robin over articles, so examples cover several
    for k in range(max(map(len, per_article), default=0)):
        ordered.extend(qs[k] for qs in per_article if k < len(qs))
    chosen: list[str] = []
    for question in list(dict.fromkeys(ordered))[:max_tries]:
        try:
            answer = bot.ask(question)
        except Exception as exc:  # an empty store: no examples, the page says why
            log.info("no example questions: %s", exc)
            break
        if not answer.abstained and answer.citations:
            chosen.append(question)
            if len(chosen) >= limit:
                break
    return chosen


def merge_examples(new: Sequence[str], old: Sequence[str], limit: int = MAX_EXAMPLES
                   ) -> list[str]:
    """``new`` examples first (questions about just-added articles), then the earlier ones,
    without repeats, at most ``limit``."""
    return list(dict.fromkeys([*new, *old]))[:limit]
