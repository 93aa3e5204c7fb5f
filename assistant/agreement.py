"""What several articles say about the chosen answer: which other articles state the same
short answer, and which state a different value of the kind asked for (a count that
changed as a story developed). Near-identical copies of one story count once.

Only the sentence ranker's shortlist is read (the eight sentences it ranks best), and of
it only sentences that hold half of the question's own words and state the value as one
of their entities, so agreement is never drawn from a sentence that merely shares a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from assistant.corpus import parse_date
from assistant.features import Choice, Sentence
from assistant.question import Question
from assistant.types import Citation

VALUE_TYPES = frozenset({"NUMBER", "AMOUNT", "MONEY", "PERCENT", "AGE", "DURATION"})
"""Answer types whose values change as a story develops ("27 dead" after "12 dead"); a
different value of another type (a person, a place) is a different answer, not an update."""
MIN_COVER = 0.5
"""A sentence speaks of the same thing when it holds at least this share of the question's
own content words (stems)."""
PREFER_NEWEST = True
"""When a newer article gives another value of the kind asked for, answer with it (the
older value is then shown as what an older article said)."""
SAME_STORY = 0.8
"""Two sentences whose word sets overlap this much (Jaccard) are copies of one story."""
_TOKEN = re.compile(r"\w+")


@dataclass
class Agreement:
    """Other articles on the chosen answer, each as its believed sentence."""

    agree: list[Sentence] = field(default_factory=list)  # state the same short answer
    differ: list[Sentence] = field(default_factory=list)  # state another value of its kind

    @property
    def articles(self) -> int:
        """Articles that state the answer, the chosen one included."""
        return 1 + len(self.agree)


def tokens(text: str) -> list[str]:
    """Lower-case word tokens, thousands separators dropped (``19,500`` → ``19500``)."""
    return _TOKEN.findall(re.sub(r"(?<=\d),(?=\d{3})", "", text.lower()))


def states(sentence: str, value: str) -> bool:
    """True when ``value``'s words occur in ``sentence`` as a whole-word run."""
    needle, hay = tokens(value), tokens(sentence)
    if not needle:
        return False
    n = len(needle)
    return any(hay[i : i + n] == needle for i in range(len(hay) - n + 1))


def same_story(a: str, b: str) -> bool:
    """True for near-identical sentences with the same figures (one wire story printed by
    several outlets); an update that changes a figure in the same words is not a copy."""
    sa, sb = set(tokens(a)), set(tokens(b))
    if {t for t in sa if t.isdigit()} != {t for t in sb if t.isdigit()}:
        return False
    return bool(sa and sb) and len(sa & sb) / len(sa | sb) >= SAME_STORY


def covers(sentence: Sentence, question: Question) -> bool:
    """True when ``sentence`` holds :data:`MIN_COVER` of the question's own content stems."""
    own = {t.stem for t in question.terms if not t.inherited}
    return bool(own) and len(own & sentence.stems) >= MIN_COVER * len(own)


def find_agreement(ranked: list[Sentence], choice: Choice, question: Question) -> Agreement:
    """The other articles among ``ranked`` (the scored shortlist) that state ``choice``'s
    short answer as one of their entities (a name, a number, a date: not a word that
    happens to occur), and, for a value type, those that state another value of that kind."""
    found = Agreement()
    if choice.span is None:
        return found
    answer_type = question.answer_type
    short = choice.span.text
    seen_docs = {s.doc_id for s in choice.sentences}
    kept = [s.text for s in choice.sentences]
    for s in ranked:
        if s.doc_id in seen_docs or not covers(s, question):
            continue
        if any(same_story(s.text, k) for k in kept):
            seen_docs.add(s.doc_id)  # a copy of a story already counted
            continue
        if any(states(e.text, short) or states(short, e.text) for e in s.entities or ()):
            found.agree.append(s)  # the same value, tagged as a value, not a common word
        elif answer_type in VALUE_TYPES and s.typed and not any(
                states(e.text, short) or states(short, e.text) for e in s.typed):
            found.differ.append(s)
        else:
            continue
        seen_docs.add(s.doc_id)
        kept.append(s.text)
    return found


def newer_value(found: Agreement, choice: Choice) -> Sentence | None:
    """The differing sentence of the newest article, when that article is newer than every
    article stating the chosen answer (None when any of the dates is unknown)."""
    stated = [parse_date(s.published) for s in (choice.best, *found.agree)]
    if not found.differ or any(d is None for d in stated):
        return None
    newest_stated = max(d for d in stated if d is not None)
    dated = [(d, s) for s in found.differ if (d := parse_date(s.published)) is not None]
    later = [(d, s.prob, s) for d, s in dated if d > newest_stated]
    return max(later, key=lambda t: (t[0], t[1]))[2] if later else None


def agreement_line(citations: list[Citation]) -> str | None:
    """"Stated in 3 articles", "… ; 1 other article gives another figure" (None when no
    other article was found saying the same or otherwise)."""
    agree = len({c.doc_id for c in citations if c.role in ("answer", "agrees")})
    differ = sum(c.role == "differs" for c in citations)
    if agree < 2 and not differ:
        return None
    line = f"Stated in {agree} articles" if agree > 1 else "Stated in 1 article"
    if differ:
        line += (f"; {differ} other article gives another figure" if differ == 1
                 else f"; {differ} other articles give other figures")
    return line
