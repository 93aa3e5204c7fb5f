"""The evidence the answer layer weighs: each feature a named, documented function.

Three kinds of candidates are scored, each by its own learned model
(:mod:`assistant.answer_model`):

- a **sentence** of the retrieved chunks (:data:`SENTENCE_BASE` for every sentence, cheap;
  :data:`SENTENCE_FULL` for the shortlist, with entities and word-vector matching);
- a **span** (an entity, number or date of the best sentences) for the short answer
  (:data:`SPAN_FEATURES`);
- the chosen **answer** as a whole, for abstention (:data:`ANSWER_FEATURES`).

A feature is a function ``(evidence, candidate) -> float``; :func:`matrix` evaluates a
list of them. The order of each list is the order of the model's weights.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from assistant.entities import Entity, Recognised
from assistant.question import TYPE_LABELS, WH_WORD, Question, Term, focus_word
from assistant.retrieval import Hit
from assistant.text import (
    IRREGULAR_PAST,
    STOPWORDS,
    is_about_speech,
    is_headline,
    stem,
    stems_of,
    words,
)

WordVectors = Callable[[list[str]], dict[str, np.ndarray]]

# ---------------------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------------------


@dataclass
class Sentence:
    """A sentence of a retrieved chunk: a possible answer."""

    doc_id: str
    path: str
    title: str
    start: int
    end: int
    text: str
    rank: int  # rank of its chunk among the hits (0 = first)
    hit: Hit
    order: int = 0  # position among all candidates, in reading order per article
    stems: frozenset[str] = frozenset()
    patterns: list[Entity] = field(default_factory=list)  # numbers, years, titled names
    entities: list[Entity] | None = None  # set for the shortlist (spaCy + patterns)
    recognised: Recognised | None = None  # the recogniser's findings, stored by the ingest
    typed: list[Entity] = field(default_factory=list)  # of the expected type, new
    base: float = 0.0  # the base ranker's score
    score: float = 0.0  # the full ranker's score
    published: str = ""  # the article's Published:/Date: header value, if any
    prob: float = 0.0  # the full ranker's probability (softmax over the shortlist) that
    # this is the sentence holding the answer
    soft: float | None = None  # coverage by meaning, set for the shortlist


@dataclass
class Span:
    """A short-answer candidate: an entity of one of the best sentences."""

    entity: Entity
    sentence: Sentence
    sentence_rank: int  # 0 for the best sentence
    text: str  # the cleaned span


@dataclass
class Choice:
    """The chosen answer: its sentences (one or two), best sentence and short answer."""

    sentences: list[Sentence]
    best: Sentence
    runner_up: Sentence | None
    span: Span | None
    span_prob: float


def match_strength(term: str, stems: frozenset[str] | set[str]) -> float:
    """1 for an exact stem match, 0.7 for a shared prefix of 5+ letters, else 0."""
    if term in stems:
        return 1.0
    if len(term) >= 5 and not term.isdigit():
        heads = _heads(stems) if isinstance(stems, frozenset) else _heads(frozenset(stems))
        if term[:5] in heads:
            return 0.7
    return 0.0


@lru_cache(maxsize=50_000)
def _heads(stems: frozenset[str]) -> frozenset[str]:
    return frozenset(s[:5] for s in stems if len(s) >= 5)


def weighted(question: Question, strengths: list[float]) -> float:
    """Weighted share of the question's terms from per-term strengths."""
    total = sum(t.weight for t in question.terms)
    if not total:
        return 0.0
    return sum(t.weight * v for t, v in zip(question.terms, strengths, strict=True)) / total


def coverage(question: Question, stems: frozenset[str] | set[str]) -> float:
    """Weighted share of the question's content terms found among ``stems``."""
    return weighted(question, [match_strength(t.stem, stems) for t in question.terms])


def sentence_stems(text: str) -> frozenset[str]:
    """Stems of every word of a sentence, plus the initials of capitalised runs
    ("International Criminal Court" → "icc") and dotted acronyms ("U.S." → "us")."""
    found = set(stems_of(text))
    for m in re.finditer(r"\b(?:[A-Z]\.){2,}", text):
        found.add(m.group().replace(".", "").lower())
    for m in re.finditer(r"\b[A-Z][a-z]+(?:\s+(?:of\s+)?[A-Z][a-z]+)+", text):
        found.add("".join(w[0] for w in m.group().split() if w[0].isupper()).lower())
    return frozenset(found)


class SoftMatcher:
    """Matches question terms to sentence words by meaning when their stems differ
    ("kids" ~ "children", "start" ~ "began"), with word vectors of the embedding model."""

    def __init__(self, vectors: WordVectors | None, strong: float = 0.7, weak: float = 0.55
                 ) -> None:
        self.vectors = vectors
        self.strong = strong
        self.weak = weak

    def strengths(self, question: Question, text: str, stems: frozenset[str] | set[str]
                  ) -> list[float]:
        """Match strength of each question term in ``text`` (0, 0.6, 0.7, 0.9 or 1)."""
        out = [match_strength(t.stem, stems) for t in question.terms]
        todo = [i for i, v in enumerate(out)
                if v < 0.7 and _softenable(question.terms[i]) and not question.terms[i].proper]
        if not stems:  # matching a lone term against a list of words
            todo = [i for i, t in enumerate(question.terms) if _softenable(t)]
        if not todo or self.vectors is None:
            return out
        cand = sorted({w.lower() for w, _, _ in words(text)
                       if w.lower() not in STOPWORDS and len(w) > 2 and not w.isdigit()})
        if not cand:
            return out
        vecs = self.vectors(cand + [question.terms[i].word.lower() for i in todo])
        matrix_ = np.stack([vecs[w] for w in cand])
        for i in todo:
            best = float((matrix_ @ vecs[question.terms[i].word.lower()]).max())
            if best >= self.strong:
                out[i] = max(out[i], 0.9)
            elif best >= self.weak:
                out[i] = max(out[i], 0.6)
        return out


def _softenable(term: Term) -> bool:
    return not any(ch.isdigit() for ch in term.word)


def adjacent(a: Sentence, b: Sentence) -> bool:
    """True for two consecutive sentences of one article."""
    if a.doc_id != b.doc_id:
        return False
    first, second = (a, b) if a.start < b.start else (b, a)
    return 0 <= second.start - first.end <= 3


_AUXILIARY = frozenset(
    "is was are were do does did has have had will would can could should may might must"
    .split())
_HOW_MANY = re.compile(r"\bhow (?:many|much)\s+([A-Za-z][\w’'-]*)", re.IGNORECASE)
_HEADER = re.compile(r"^(?:Published|Date|Updated|By|Source)\s*:", re.IGNORECASE)
_QUOTE_CHARS = re.compile(r"[\"“”]")
_DIGIT = re.compile(r"\d")


@dataclass
class Evidence:
    """Everything the features of one question read: the question, the retrieved chunks,
    the candidate sentences and their vectors."""

    question: Question
    hits: list[Hit]
    sentences: list[Sentence]
    dense: dict[tuple[str, int, int], float]
    soft: SoftMatcher
    corpus_articles: int = 0  # articles in the whole index
    _focus_cache: dict[tuple[str, tuple[str, ...]], float] = field(default_factory=dict)
    norm: tuple[float, float] | None = None  # the full ranker's softmax (max, sum)
    _cover_cache: dict[int, float] = field(default_factory=dict)
    _mention_cache: dict[str, int] = field(default_factory=dict)

    @cached_property
    def doc_texts(self) -> dict[str, str]:
        """The retrieved text of each article, lower-cased."""
        out: dict[str, list[str]] = {}
        for h in self.hits:
            out.setdefault(h.doc_id, []).append(h.text.lower())
        return {d: " ".join(t) for d, t in out.items()}

    @cached_property
    def doc_stems(self) -> dict[str, frozenset[str]]:
        """The stems of the retrieved text of each article."""
        out: dict[str, set[str]] = {}
        for h in self.hits:
            out.setdefault(h.doc_id, set()).update(sentence_stems(h.text))
        return {d: frozenset(s) for d, s in out.items()}

    @cached_property
    def doc_rank(self) -> dict[str, int]:
        """Rank of each article by its best chunk."""
        return {d: i for i, d in enumerate(dict.fromkeys(h.doc_id for h in self.hits))}

    @cached_property
    def max_dense(self) -> float:
        """The best question-sentence similarity among the candidates."""
        return max((self.dense_of(s) for s in self.sentences), default=0.0)

    @cached_property
    def max_cover(self) -> float:
        """The best stem coverage among the candidates."""
        return max((cover(self, s) for s in self.sentences), default=0.0)

    @cached_property
    def max_bm25(self) -> float:
        """The best chunk BM25 score."""
        return max((h.bm25 for h in self.hits), default=0.0)

    @cached_property
    def labels(self) -> tuple[str, ...]:
        """Entity labels that satisfy the question's expected answer type."""
        return TYPE_LABELS.get(self.question.answer_type or "", ())

    @cached_property
    def about_speech(self) -> bool:
        """The question asks who said something or what was said."""
        return is_about_speech(self.question.text)

    @cached_property
    def focus(self) -> str | None:
        """The noun a "which/what …" question asks for ("sport", "country")."""
        return focus_word(self.question.text)

    def focus_similarity(self, text: str) -> float:
        """Cosine similarity of the question's focus noun and the mean word vector of
        ``text`` ("chess" ~ "sport"); 0 without a focus noun or word vectors."""
        if self.focus is None or self.soft.vectors is None:
            return 0.0
        ws = sorted({w.lower() for w, _, _ in words(text)
                     if len(w) > 2 and w.lower() not in STOPWORDS and not w.isdigit()})
        if not ws:
            return 0.0
        key = (self.focus, tuple(ws))
        if key not in self._focus_cache:
            vecs = self.soft.vectors([self.focus, *ws])
            mean = np.mean([vecs[w] for w in ws], axis=0)
            norm = float(np.linalg.norm(mean))
            self._focus_cache[key] = float(mean @ vecs[self.focus]) / norm if norm else 0.0
        return self._focus_cache[key]

    @cached_property
    def inverted(self) -> bool:
        """True when an auxiliary and then the subject follow the wh-phrase ("What profit
        did the mill make?", "What were its sales?"): the statement that answers it puts
        the question's later words before the answer ("the mill made a profit of …"). Not
        so when a participle follows the auxiliary ("Which firm was fined?")."""
        text = self.question.text
        m = WH_WORD.search(text)
        if m is None:
            return False
        after = [w.lower() for w, _, _ in words(text[m.end() :])][:4]
        for i, w in enumerate(after):
            if w in _AUXILIARY:
                nxt = after[i + 1] if i + 1 < len(after) else ""
                return bool(nxt) and not (nxt.endswith(("ed", "ing")) or nxt in IRREGULAR_PAST)
            if w.endswith("ed") or w in IRREGULAR_PAST:
                return False
        return False

    @cached_property
    def counted(self) -> str | None:
        """The stem of the noun a "how many/much …" question counts ("How many books does
        it hold?" → "book"; a statement puts it just after the number), else None."""
        m = _HOW_MANY.search(self.question.text)
        if m is None or m.group(1).lower() in _AUXILIARY:
            return None
        return stem(m.group(1))

    @cached_property
    def wh_sides(self) -> dict[str, int]:
        """Each question term's side of the answer in a statement answering the question,
        by stem: -1 before it, +1 after it. The side of the question's first wh-word
        ("Which striker became the record scorer?": "scorer" +1), except that in an inverted
        question every term comes before ("What were its sales?": "sales" -1). The focus
        noun ("striker") and the counted noun ("how many *books*") are left out: they
        name the answer, not its context."""
        text = self.question.text
        m = WH_WORD.search(text)
        if m is None:
            return {}
        skip = {stem(self.focus) if self.focus else None, self.counted}
        sides: dict[str, int] = {}
        for w, a, b in words(text):
            st = stem(w)
            if st in self.question.stems and st not in skip and st not in sides:
                if b <= m.start():
                    sides[st] = -1
                elif a >= m.end():
                    sides[st] = -1 if self.inverted else 1
        return sides

    @cached_property
    def wh_neighbours(self) -> tuple[str | None, str | None]:
        """The stems of the question terms that a statement answering the question puts
        just before and just after the answer: those just before and after its first
        wh-word ("tried to balance what on his chin" gives ("balanc", "chin")), the focus noun
        skipped; in an inverted question, its subject just before ("What were its
        sales?" gives ("sale", None)); the counted noun of "how many …" just after ("How
        many books does the library hold?" gives ("librari", "book"))."""
        text = self.question.text
        m = WH_WORD.search(text)
        if m is None:
            return None, None
        skip = {stem(self.focus) if self.focus else None, self.counted}
        terms = [(stem(w), a) for w, a, _ in words(text)]
        terms = [(st, a) for st, a in terms if st in self.question.stems and st not in skip]
        before = [st for st, a in terms if a < m.start()]
        after = [st for st, a in terms if a >= m.end()]
        if self.inverted:
            return (after[0] if after else None), self.counted
        return (before[-1] if before else None), self.counted or (after[0] if after else None)

    def dense_of(self, s: Sentence) -> float:
        """Cosine similarity of the question and the sentence."""
        return self.dense.get((s.doc_id, s.start, s.end), 0.0)

    def neighbours(self, s: Sentence) -> list[Sentence]:
        """The candidate sentences just before and after ``s`` in its article."""
        out = []
        for j in (s.order - 1, s.order + 1):
            if 0 <= j < len(self.sentences) and adjacent(s, self.sentences[j]):
                out.append(self.sentences[j])
        return out

    @cached_property
    def headlines(self) -> dict[str, str]:
        """Each retrieved article's headline, lower-cased: its title, and the first line of
        its first chunk when that chunk was retrieved and the line reads as a headline (one
        the header did not take as the title stays in the text)."""
        out: dict[str, list[str]] = {}
        for h in self.hits:
            lines = out.setdefault(h.doc_id, [h.record.title.lower()])
            first, newline, _ = h.text.lstrip().partition("\n")
            if h.start == 0 and newline and is_headline(first):
                lines.append(first.lower())
        return {d: "\n".join(lines) for d, lines in out.items()}

    def mentions(self, text: str, haystack: str) -> int:
        """How often ``text`` occurs in the lower-cased ``haystack`` (case-insensitive,
        whole words)."""
        needle = text.lower().strip()
        if len(needle) < 2 or needle not in haystack:
            return 0
        return len(_whole_word(needle).findall(haystack))

    def docs_mentioning(self, text: str) -> int:
        """How many retrieved articles contain ``text`` (case-insensitive, whole words)."""
        needle = text.lower().strip()
        if len(needle) < 2:
            return 0
        if needle not in self._mention_cache:
            pattern = _whole_word(needle)
            self._mention_cache[needle] = sum(
                1 for t in self.doc_texts.values() if needle in t and pattern.search(t))
        return self._mention_cache[needle]


@lru_cache(maxsize=4096)
def _whole_word(needle: str) -> re.Pattern[str]:
    """A pattern finding ``needle`` as whole words."""
    return re.compile(r"(?<!\w)" + re.escape(needle) + r"(?!\w)")


Feature = Callable[[Evidence, object], float]


def matrix(features: list[tuple[str, Feature]], ev: Evidence, items: list) -> np.ndarray:
    """The feature matrix of ``items`` (one row each)."""
    return np.array([[f(ev, x) for _, f in features] for x in items], dtype=np.float64
                    ).reshape(len(items), len(features))


# ---------------------------------------------------------------------------------------
# Sentence features
# ---------------------------------------------------------------------------------------


def cover(ev: Evidence, s: Sentence) -> float:
    """Weighted share of the question's terms in the sentence (a name the sentence lacks
    counts 0.7 when its article's retrieved text has it: "she" for "Melania Trump")."""
    if s.order in ev._cover_cache and ev.sentences[s.order] is s:
        return ev._cover_cache[s.order]
    strengths = []
    doc = ev.doc_stems.get(s.doc_id, frozenset())
    for t in ev.question.terms:
        v = match_strength(t.stem, s.stems)
        if v == 0 and t.proper:
            v = 0.7 * match_strength(t.stem, doc)
        strengths.append(v)
    value = weighted(ev.question, strengths)
    if ev.sentences and ev.sentences[min(s.order, len(ev.sentences) - 1)] is s:
        ev._cover_cache[s.order] = value
    return value


def cover_gap(ev: Evidence, s: Sentence) -> float:
    """Coverage minus the best coverage among the candidates."""
    return cover(ev, s) - ev.max_cover


def cover_context(ev: Evidence, s: Sentence) -> float:
    """Coverage of the question by the sentence and its neighbours (the question's words
    often sit in the sentence next to the answer)."""
    stems = set(s.stems)
    for n in ev.neighbours(s):
        stems |= n.stems
    return coverage(ev.question, stems)


def cover_article(ev: Evidence, s: Sentence) -> float:
    """Coverage of the question by all retrieved text of the sentence's article."""
    return coverage(ev.question, ev.doc_stems.get(s.doc_id, frozenset()))


def proper_cover(ev: Evidence, s: Sentence) -> float:
    """Share of the question's names found in the sentence (1 when it names none)."""
    names = [t for t in ev.question.terms if t.proper]
    if not names:
        return 1.0
    return sum(match_strength(t.stem, s.stems) for t in names) / len(names)


def dense(ev: Evidence, s: Sentence) -> float:
    """Cosine similarity of question and sentence embeddings."""
    return ev.dense_of(s)


def dense_gap(ev: Evidence, s: Sentence) -> float:
    """Similarity minus the best similarity among the candidates."""
    return ev.dense_of(s) - ev.max_dense


def dense_context(ev: Evidence, s: Sentence) -> float:
    """The best similarity of the sentence's neighbours."""
    return max((ev.dense_of(n) for n in ev.neighbours(s)), default=0.0)


def chunk_rank(ev: Evidence, s: Sentence) -> float:
    """1 / (1 + rank of the sentence's chunk)."""
    return 1.0 / (1 + s.rank)


def article_rank(ev: Evidence, s: Sentence) -> float:
    """1 / (1 + rank of the sentence's article)."""
    return 1.0 / (1 + ev.doc_rank.get(s.doc_id, 0))


def chunk_bm25(ev: Evidence, s: Sentence) -> float:
    """The chunk's BM25 score relative to the best chunk's."""
    return s.hit.bm25 / ev.max_bm25 if ev.max_bm25 > 0 else 0.0


def chunk_dense(ev: Evidence, s: Sentence) -> float:
    """The chunk's dense similarity to the question."""
    return s.hit.dense


def lead(ev: Evidence, s: Sentence) -> float:
    """1 for the first sentences of an article body (news puts the facts first)."""
    return 1.0 if s.start < 600 else 0.0


def position(ev: Evidence, s: Sentence) -> float:
    """log(1 + offset / 1000): how deep in the article the sentence sits."""
    return math.log1p(s.start / 1000)


def header(ev: Evidence, s: Sentence) -> float:
    """1 for the headline (the first line) or a ``Published:``-style line."""
    return 1.0 if s.start == 0 or _HEADER.match(s.text) else 0.0


def length(ev: Evidence, s: Sentence) -> float:
    """log(1 + words in the sentence)."""
    return math.log1p(len(words(s.text)))


def fragment(ev: Evidence, s: Sentence) -> float:
    """1 for a fragment of under six words (captions, bylines, "Read more")."""
    return 1.0 if len(words(s.text)) < 6 else 0.0


def quoted(ev: Evidence, s: Sentence) -> float:
    """1 when the sentence holds a quotation."""
    return 1.0 if _QUOTE_CHARS.search(s.text) else 0.0


def question_numbers(ev: Evidence, s: Sentence) -> float:
    """Share of the question's numbers found in the sentence (1 when it has none)."""
    nums = [t for t in ev.question.terms if any(ch.isdigit() for ch in t.stem)]
    if not nums:
        return 1.0
    return sum(t.stem in s.stems for t in nums) / len(nums)


def _pattern_typed(ev: Evidence, s: Sentence) -> bool:
    labels = ev.labels
    if not labels:
        return False
    return any(e.label in labels or (e.label == "NUM" and "CARDINAL" in labels)
               for e in s.patterns if is_new(e, ev.question))


def pattern_type(ev: Evidence, s: Sentence) -> float:
    """1 when a number, year or titled name of the expected answer type (found by
    patterns alone, cheap) is in the sentence and not in the question."""
    return 1.0 if _pattern_typed(ev, s) else 0.0


def has_number(ev: Evidence, s: Sentence) -> float:
    """1 when the sentence holds a digit."""
    return 1.0 if _DIGIT.search(s.text) else 0.0


def new_names(ev: Evidence, s: Sentence) -> float:
    """log(1 + capitalised words of the sentence that the question does not hold)."""
    q = ev.question.stems
    n = sum(1 for w, st, _ in words(s.text) if st > 0 and w[:1].isupper() and stem(w) not in q)
    return math.log1p(n)


def _question_kind(kind: str) -> Feature:
    def f(ev: Evidence, s: object) -> float:
        return 1.0 if (ev.question.answer_type or "OPEN") in _KINDS[kind] else 0.0

    f.__doc__ = f"1 when the question asks for {kind.lower()}."
    return f


_KINDS = {
    "OPEN": {"OPEN"},
    "PERSON": {"PERSON", "ORG"},
    "NUMBER": {"NUMBER", "AMOUNT", "MONEY", "PERCENT", "AGE", "DURATION"},
    "DATE": {"DATE"},
    "PLACE": {"PLACE", "GPE"},
    "NAME": {"NAME"},
}


def _interaction(a: Feature, b: Feature) -> Feature:
    def f(ev: Evidence, x: object) -> float:
        return a(ev, x) * b(ev, x)

    f.__doc__ = f"({(a.__doc__ or '').strip()}) × ({(b.__doc__ or '').strip()})"
    return f


SENTENCE_BASE: list[tuple[str, Feature]] = [
    ("cover", cover),
    ("cover_gap", cover_gap),
    ("cover_context", cover_context),
    ("cover_article", cover_article),
    ("proper_cover", proper_cover),
    ("dense", dense),
    ("dense_gap", dense_gap),
    ("dense_context", dense_context),
    ("chunk_rank", chunk_rank),
    ("article_rank", article_rank),
    ("chunk_bm25", chunk_bm25),
    ("chunk_dense", chunk_dense),
    ("lead", lead),
    ("position", position),
    ("header", header),
    ("length", length),
    ("fragment", fragment),
    ("quoted", quoted),
    ("question_numbers", question_numbers),
    ("pattern_type", pattern_type),
    ("has_number", has_number),
    ("new_names", new_names),
    ("number_q_x_has_number", _interaction(_question_kind("NUMBER"), has_number)),
    ("open_q_x_new_names", _interaction(_question_kind("OPEN"), new_names)),
]
"""Features of every candidate sentence (no entity tagging)."""


# Features of the shortlist: entities and meaning.


def typed(ev: Evidence, s: Sentence) -> float:
    """1 when the sentence names an entity of the expected type that the question does not
    name (0 when the question expects no type)."""
    return 1.0 if s.typed else 0.0


def neighbour_typed(ev: Evidence, s: Sentence) -> float:
    """1 when a neighbouring sentence holds the expected entity and this one does not."""
    if s.typed:
        return 0.0
    return 1.0 if any(n.typed for n in ev.neighbours(s)) else 0.0


def untyped(ev: Evidence, s: Sentence) -> float:
    """1 when the question expects a type and neither the sentence nor its neighbours
    hold one."""
    if not ev.labels or s.typed:
        return 0.0
    return 0.0 if any(n.typed for n in ev.neighbours(s)) else 1.0


def new_entities(ev: Evidence, s: Sentence) -> float:
    """log(1 + entities of the sentence the question does not name)."""
    return math.log1p(sum(1 for e in s.entities or () if is_new(e, ev.question)))


def soft_cover(ev: Evidence, s: Sentence) -> float:
    """Coverage of the question's terms by stem or by meaning (word vectors)."""
    if s.soft is None:
        s.soft = max(cover(ev, s), weighted(
            ev.question, ev.soft.strengths(ev.question, s.text, s.stems)))
    return s.soft


def redundancy(ev: Evidence, s: Sentence) -> float:
    """The most retrieved articles that state one of the sentence's expected-type
    entities (the same answer in several articles), minus one, over four."""
    best = max((ev.docs_mentioning(e.text) for e in s.typed), default=1)
    return max(0, best - 1) / 4


def focus_match(ev: Evidence, s: Sentence) -> float:
    """The best similarity of the question's focus noun and a new entity of the
    sentence (0 without a focus noun)."""
    if ev.focus is None:
        return 0.0
    return max((ev.focus_similarity(e.text) for e in s.entities or ()
                if is_new(e, ev.question)), default=0.0)


def base_score(ev: Evidence, s: Sentence) -> float:
    """The base ranker's score for the sentence."""
    return s.base


SENTENCE_FULL: list[tuple[str, Feature]] = [
    ("base_score", base_score),
    ("typed", typed),
    ("neighbour_typed", neighbour_typed),
    ("untyped", untyped),
    ("new_entities", new_entities),
    ("soft_cover", soft_cover),
    ("redundancy", redundancy),
    ("focus_match", focus_match),
    ("open_q", _question_kind("OPEN")),
    ("open_q_x_new_entities", _interaction(_question_kind("OPEN"), new_entities)),
    ("person_q_x_typed", _interaction(_question_kind("PERSON"), typed)),
    ("number_q_x_typed", _interaction(_question_kind("NUMBER"), typed)),
    ("date_q_x_typed", _interaction(_question_kind("DATE"), typed)),
    ("place_q_x_typed", _interaction(_question_kind("PLACE"), typed)),
    ("cover", cover),
    ("dense", dense),
    ("header", header),
]
"""Features of the shortlisted sentences."""


# ---------------------------------------------------------------------------------------
# Span (short answer) features
# ---------------------------------------------------------------------------------------

_LABEL_FAMILIES = {
    "PERSON": {"PERSON"},
    "ORG": {"ORG", "GPE_GROUP"},
    "PLACE": {"GPE", "LOC", "FAC"},
    "NORP": {"NORP"},
    "DATE": {"DATE", "TIME"},
    "COUNT": {"CARDINAL", "NUM", "QUANTITY", "ORDINAL"},
    "MONEY": {"MONEY"},
    "PERCENT": {"PERCENT"},
    "TITLED": {"TITLED", "WORK_OF_ART", "LAW", "EVENT", "PRODUCT"},
    "CAPITAL": {"CAPITAL"},
    "WORD": {"WORD", "WORDS"},
}
_SPEAKER_AFTER = re.compile(r"^\s*,?\s*(said|says|told|added|wrote|noted|stated|explained)\b")
_SPEAKER_BEFORE = re.compile(r"\b(said|says|according to)\s*$")


def is_new(entity: Entity, question: Question) -> bool:
    """An entity the question does not already name ("Ukraine" is not new to a question
    about "Ukrainian children"), nor an earlier turn gave as its answer."""
    ent_stems = {stem(w) for w, _, _ in words(entity.text)}
    if not ent_stems:
        return False
    known = question.stems | question.given
    return not all(match_strength(s, known) > 0 for s in ent_stems)


def is_speaker(text: str, entity: Entity) -> bool:
    """True for the attribution of a quotation ("…,” Mrs. Trump said")."""
    return bool(_SPEAKER_AFTER.match(text[entity.end :])
                or _SPEAKER_BEFORE.search(text[: entity.start]))


def span_type_match(ev: Evidence, sp: Span) -> float:
    """1 when the span's label satisfies the question's expected answer type."""
    return 1.0 if sp.entity.label in ev.labels else 0.0


def span_type_order(ev: Evidence, sp: Span) -> float:
    """1 for the expected type's first label, falling with the label's place in the list."""
    labels = ev.labels
    if sp.entity.label not in labels:
        return 0.0
    return 1.0 / (1 + labels.index(sp.entity.label))


def _family(name: str) -> Feature:
    members = _LABEL_FAMILIES[name]

    def f(ev: Evidence, sp: Span) -> float:
        return 1.0 if sp.entity.label in members else 0.0

    f.__doc__ = f"1 when the span is labelled {name.lower()}."
    return f


def span_focus(ev: Evidence, sp: Span) -> float:
    """Similarity of the span to the question's focus noun ("chess" ~ "sport")."""
    return ev.focus_similarity(sp.text)


def has_focus(ev: Evidence, sp: object) -> float:
    """1 when the question has a focus noun ("which country", "what sport")."""
    return 1.0 if ev.focus is not None else 0.0


def span_sentence_prob(ev: Evidence, sp: Span) -> float:
    """The sentence ranker's probability for the span's sentence."""
    return sp.sentence.prob


def span_sentence_rank(ev: Evidence, sp: Span) -> float:
    """1 / (1 + rank of the span's sentence among the best ones)."""
    return 1.0 / (1 + sp.sentence_rank)


def span_in_question(ev: Evidence, sp: Span) -> float:
    """Share of the span's words that the question holds."""
    ws = [stem(w) for w, _, _ in words(sp.text)]
    if not ws:
        return 0.0
    return sum(match_strength(w, ev.question.stems) > 0 for w in ws) / len(ws)


def span_anchor_distance(ev: Evidence, sp: Span) -> float:
    """log(1 + characters between the span and the nearest question word in its sentence)
    (3 when no question word is there)."""
    q = ev.question.stems
    anchors = [(a, b) for w, a, b in words(sp.sentence.text) if stem(w) in q]
    if not anchors:
        return 3.0
    e = sp.entity
    dist = min(max(0, a - e.end, e.start - b) for a, b in anchors)
    return math.log1p(dist / 10)


def _outside(sp: Span) -> list[tuple[str, int, int]]:
    """The words of the span's sentence that are not part of the span."""
    e = sp.entity
    return [(w, a, b) for w, a, b in words(sp.sentence.text) if b <= e.start or a >= e.end]


def span_order(ev: Evidence, sp: Span) -> float:
    """Whether the question's words sit around the span as around the answer of a
    statement answering the question (:attr:`Evidence.wh_sides`): of the question terms in
    the span's sentence (each at its occurrence nearest the span), the share on the side
    ``wh_sides`` gives, minus the share on the other side (0 when none is there). "Which
    striker became the club's record scorer?" against "A became the club's record scorer,
    ahead of B": 1 for A, -1 for B."""
    sides = ev.wh_sides
    if not sides:
        return 0.0
    e = sp.entity
    nearest: dict[str, tuple[int, int]] = {}  # stem -> (distance, side)
    for w, a, b in _outside(sp):
        st = stem(w)
        if st in sides:
            found = (e.start - b, -1) if b <= e.start else (a - e.end, 1)
            if st not in nearest or found[0] < nearest[st][0]:
                nearest[st] = found
    if not nearest:
        return 0.0
    agree = sum(side == sides[st] for st, (_, side) in nearest.items())
    return (2 * agree - len(nearest)) / len(nearest)


def span_adjacent(ev: Evidence, sp: Span) -> float:
    """Whether the content words next to the span are the question's words next to its
    wh-word, side for side (½ for each side that matches, within three content words):
    "balance what on his chin" against "balanced a ladder on his chin"."""
    left, right = ev.wh_neighbours
    e = sp.entity
    content = [(stem(w), a, b) for w, a, b in _outside(sp) if w.lower() not in STOPWORDS]
    got = 0.0
    if left is not None and left in [st for st, _, b in content if b <= e.start][-3:]:
        got += 0.5
    if right is not None and right in [st for st, a, _ in content if a >= e.end][:3]:
        got += 0.5
    return got


def span_owner(ev: Evidence, sp: Span) -> float:
    """1 when the nearest content word before the span, within three words, is the
    question's focus noun ("a profit of $96 million" for "what profit …"), 0 when it is
    another word ("sales of $1.7 billion"), there is none, or the question has no focus."""
    if ev.focus is None:
        return 0.0
    e = sp.entity
    before = [w for w, _, b in _outside(sp) if b <= e.start][-3:]
    content = [w for w in before if w.lower() not in STOPWORDS]
    return 1.0 if content and stem(content[-1]) == stem(ev.focus) else 0.0


SPAN_WINDOW = 6  # words either side of a span that span_context reads


def span_context(ev: Evidence, sp: Span) -> float:
    """Weighted share of the question's terms within ``SPAN_WINDOW`` words either side of
    the span (the answer's own neighbourhood, not the whole sentence)."""
    e = sp.entity
    outside = _outside(sp)
    before = [w for w, _, b in outside if b <= e.start][-SPAN_WINDOW:]
    after = [w for w, a, _ in outside if a >= e.end][:SPAN_WINDOW]
    return coverage(ev.question, {stem(w) for w in before + after})


def span_redundancy(ev: Evidence, sp: Span) -> float:
    """Retrieved articles stating the span, minus one, over four."""
    return max(0, ev.docs_mentioning(sp.text) - 1) / 4


def span_sentences(ev: Evidence, sp: Span) -> float:
    """log(1 + candidate sentences holding the span)."""
    needle = sp.text.lower()
    return math.log1p(sum(1 for s in ev.sentences if needle in s.text.lower()))


def span_in_headline(ev: Evidence, sp: Span) -> float:
    """1 when the headline of the span's article names the span (a question about an
    article's story often asks for what the headline names)."""
    return 1.0 if ev.mentions(sp.text, ev.headlines.get(sp.sentence.doc_id, "")) else 0.0


def span_article_mentions(ev: Evidence, sp: Span) -> float:
    """log(1 + times the retrieved text of the span's article states the span)."""
    return math.log1p(ev.mentions(sp.text, ev.doc_texts.get(sp.sentence.doc_id, "")))


def span_focus_head(ev: Evidence, sp: Span) -> float:
    """1 when the question's focus noun ends the span or follows it ("Larchmoor Country
    Park" or "the Tarrow hoard" for "which park", "which hoard")."""
    if ev.focus is None:
        return 0.0
    focus = stem(ev.focus)
    inside = [stem(w) for w, _, _ in words(sp.text)]
    after = [stem(w) for w, a, _ in _outside(sp) if a >= sp.entity.end][:1]
    return 1.0 if focus in inside[-1:] or focus in after else 0.0


def span_speaker(ev: Evidence, sp: Span) -> float:
    """1 when the span is the speaker of a quotation and the question is not about
    speech (a speaker rarely answers then)."""
    return 1.0 if not ev.about_speech and is_speaker(sp.sentence.text, sp.entity) else 0.0


def span_speaker_asked(ev: Evidence, sp: Span) -> float:
    """1 when the span is a quotation's speaker and the question asks who said it."""
    return 1.0 if ev.about_speech and is_speaker(sp.sentence.text, sp.entity) else 0.0


def span_words(ev: Evidence, sp: Span) -> float:
    """log(1 + words in the span)."""
    return math.log1p(len(words(sp.text)))


def span_pattern_only(ev: Evidence, sp: Span) -> float:
    """1 when only a pattern (a run of capitalised words, a number) found the span."""
    return 1.0 if sp.entity.label in ("TITLED", "NUM", "CAPITAL") else 0.0


def span_in_header(ev: Evidence, sp: Span) -> float:
    """1 when the span's sentence is a headline or a date line."""
    return header(ev, sp.sentence)


def span_position(ev: Evidence, sp: Span) -> float:
    """Where the span starts in its sentence (0 first, 1 last)."""
    return sp.entity.start / max(1, len(sp.sentence.text))


SPAN_FEATURES: list[tuple[str, Feature]] = [
    ("type_match", span_type_match),
    ("type_order", span_type_order),
    *((f"label_{name.lower()}", _family(name)) for name in _LABEL_FAMILIES),
    ("focus", span_focus),
    ("has_focus", has_focus),
    ("focus_x_word", _interaction(span_focus, _family("WORD"))),
    ("sentence_prob", span_sentence_prob),
    ("sentence_rank", span_sentence_rank),
    ("in_question", span_in_question),
    ("anchor_distance", span_anchor_distance),
    ("order", span_order),
    ("context", span_context),
    ("adjacent", span_adjacent),
    ("owner", span_owner),
    ("redundancy", span_redundancy),
    ("sentences", span_sentences),
    ("in_headline", span_in_headline),
    ("article_mentions", span_article_mentions),
    ("focus_head", span_focus_head),
    ("speaker", span_speaker),
    ("speaker_asked", span_speaker_asked),
    ("words", span_words),
    ("pattern_only", span_pattern_only),
    ("in_header", span_in_header),
    ("position", span_position),
    ("open_q", _question_kind("OPEN")),
    *((f"{q.lower()}_q_x_{name.lower()}",
       _interaction(_question_kind(q), _family(name)))
      for q in ("OPEN", "PERSON", "NUMBER", "DATE", "PLACE", "NAME")
      for name in ("PERSON", "ORG", "PLACE", "NORP", "DATE", "COUNT", "TITLED", "CAPITAL",
                   "WORD")),
]
"""Features of each short-answer candidate."""


# ---------------------------------------------------------------------------------------
# Answer (abstention) features
# ---------------------------------------------------------------------------------------


def answer_prob(ev: Evidence, ch: Choice) -> float:
    """The sentence ranker's probability for the best sentence."""
    return ch.best.prob


def answer_margin(ev: Evidence, ch: Choice) -> float:
    """The full ranker's score of the best sentence minus the runner-up's."""
    return ch.best.score - ch.runner_up.score if ch.runner_up is not None else 3.0


def answer_cover(ev: Evidence, ch: Choice) -> float:
    """Coverage of the question by the answer's sentences (by stem or meaning)."""
    return max(soft_cover(ev, s) for s in ch.sentences)


def answer_cover_article(ev: Evidence, ch: Choice) -> float:
    """Coverage of the question by the retrieved text of the answer's article."""
    return cover_article(ev, ch.best)


def missing_names(ev: Evidence, ch: Choice) -> float:
    """Share of the question's names that no retrieved text of the answer's article
    holds (0 when the question names nothing)."""
    names = [t for t in ev.question.terms if t.proper]
    if not names:
        return 0.0
    doc = ev.doc_stems.get(ch.best.doc_id, frozenset())
    return sum(match_strength(t.stem, doc) == 0 for t in names) / len(names)


def own_numbers(question: Question) -> list[str]:
    """The numbers and years the question itself names (not those of earlier turns)."""
    return [t.stem for t in question.terms
            if not t.inherited and any(c.isdigit() for c in t.stem)]


def missing_number(ev: Evidence, ch: Choice) -> float:
    """1 when a number or year of the question is missing from the answer's sentences."""
    nums = own_numbers(ev.question)
    stems = set().union(*(s.stems for s in ch.sentences))
    return 1.0 if any(n not in stems for n in nums) else 0.0


STRICT_TYPES = frozenset(
    {"NUMBER", "AMOUNT", "MONEY", "PERCENT", "AGE", "DATE", "DURATION", "PLACE", "GPE"})
"""Answer types specific enough that an answer without such an entity cannot be right."""


def name_unknown(ev: Evidence, ch: Choice) -> float:
    """1 when a name of the question is in no retrieved text at all, not even by meaning
    ("the Kremlin" may stand for Moscow)."""
    names = [t for t in ev.question.terms if t.proper and not (t.speaker or t.inherited)]
    if not names:
        return 0.0
    everywhere = frozenset().union(*ev.doc_stems.values())
    for t in names:
        if match_strength(t.stem, everywhere) > 0:
            continue
        text = " ".join(sorted({w for h in ev.hits for w, _, _ in words(h.text)
                                if w[:1].isupper()}))
        one = Question(ev.question.text, [Term(t.word, t.stem, 1.0)])
        if ev.soft.strengths(one, text, set())[0] < 0.6:
            return 1.0
    return 0.0


def number_unknown(ev: Evidence, ch: Choice) -> float:
    """1 when a number or year of the question is nowhere in the retrieved text of the
    answer's article."""
    nums = own_numbers(ev.question)
    doc = ev.doc_stems.get(ch.best.doc_id, frozenset())
    return 1.0 if any(n not in doc for n in nums) else 0.0


def uncovered(ev: Evidence, ch: Choice) -> float:
    """1 when not one content word of the question (by stem) is in the answer's sentences
    or their neighbours."""
    stems: set[str] = set()
    for s in ch.sentences:
        stems |= s.stems
        for n in ev.neighbours(s):
            stems |= n.stems
    return 0.0 if any(match_strength(t.stem, stems) > 0 for t in ev.question.terms) else 1.0


def strict_type_missing(ev: Evidence, ch: Choice) -> float:
    """1 when the question asks for a number, amount, date, age or place (or the holder of
    a role) and the answer holds none."""
    strict = ev.question.answer_type in STRICT_TYPES or bool(ev.question.role)
    return 1.0 if strict and not any(s.typed for s in ch.sentences) else 0.0


def answer_dense(ev: Evidence, ch: Choice) -> float:
    """The best similarity of the question and the answer's sentences."""
    return max(ev.dense_of(s) for s in ch.sentences)


def answer_typed(ev: Evidence, ch: Choice) -> float:
    """1 when the question expects a type and the answer holds no such entity."""
    return 1.0 if ev.labels and not any(s.typed for s in ch.sentences) else 0.0


def answer_span_prob(ev: Evidence, ch: Choice) -> float:
    """The span ranker's probability for the short answer (0 without one)."""
    return ch.span_prob


def answer_span_redundancy(ev: Evidence, ch: Choice) -> float:
    """Retrieved articles stating the short answer, minus one, over four."""
    return span_redundancy(ev, ch.span) if ch.span is not None else 0.0


def top_chunk_dense(ev: Evidence, ch: Choice) -> float:
    """The best chunk's dense similarity."""
    return max((h.dense for h in ev.hits), default=0.0)


def articles_retrieved(ev: Evidence, ch: Choice) -> float:
    """Distinct articles among the retrieved chunks, over the chunks (low for a corpus
    of one or few articles, where every question finds the same text)."""
    return len(ev.doc_rank) / max(1, len(ev.hits))


def corpus_size(ev: Evidence, ch: Choice) -> float:
    """log10(1 + articles in the index): a corpus of one article answers differently from
    a year of news, and the abstention threshold should know it."""
    return math.log10(1 + ev.corpus_articles)


def question_terms(ev: Evidence, ch: Choice) -> float:
    """log(1 + content terms of the question)."""
    return math.log1p(len(ev.question.terms))


ANSWER_FEATURES: list[tuple[str, Feature]] = [
    ("prob", answer_prob),
    ("margin", answer_margin),
    ("cover", answer_cover),
    ("cover_article", answer_cover_article),
    ("missing_names", missing_names),
    ("missing_number", missing_number),
    ("number_unknown", number_unknown),
    ("name_unknown", name_unknown),
    ("dense", answer_dense),
    ("untyped", answer_typed),
    ("span_prob", answer_span_prob),
    ("span_redundancy", answer_span_redundancy),
    ("top_chunk_dense", top_chunk_dense),
    ("question_terms", question_terms),
    ("articles_retrieved", articles_retrieved),
    ("corpus_size", corpus_size),
    ("open_q", _question_kind("OPEN")),
]
"""Features of a chosen answer, for the abstention classifier."""


def describe(features: list[tuple[str, Feature]]) -> list[tuple[str, str]]:
    """``(name, first line of the docstring)`` of each feature, for the docs."""
    return [(n, (f.__doc__ or "").strip().splitlines()[0]) for n, f in features]
