"""The extractive answer layer: choose the sentence(s) that answer, cut the short answer,
or abstain when the retrieved passages do not support an answer."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from assistant.entities import Entity, EntityTagger
from assistant.question import (
    STOPWORDS,
    TYPE_LABELS,
    Question,
    Term,
    repair_typos,
    stem,
    words,
)
from assistant.retrieval import Hit
from assistant.types import Answer, Citation, Passage

ABSTAIN_TEXT = "The articles in the corpus do not answer this question."
# Answer types specific enough that a window without such an entity cannot answer.
STRICT_TYPES = frozenset(
    {"NUMBER", "AMOUNT", "MONEY", "PERCENT", "AGE", "DATE", "DURATION", "PLACE", "GPE"})
_PRONOUN_START = re.compile(r"^[\"“‘']?(She|He|They|It|This|That|These|Those|Her|His)\b")


@dataclass
class Candidate:
    """A sentence of a retrieved chunk and the evidence that it answers the question."""

    doc_id: str
    path: str
    title: str
    start: int
    end: int
    text: str
    rank: int
    chunk_score: float
    order: int = 0
    stems: set[str] = field(default_factory=set)
    chunk_stems: set[str] = field(default_factory=set)
    dense: float = 0.0
    cover: float = 0.0
    cover_ctx: float = 0.0
    typed: list[Entity] = field(default_factory=list)
    score: float = 0.0


@dataclass
class Weights:
    """How the evidence is combined; the knobs of the sentence picker."""

    cover: float = 0.45
    cover_ctx: float = 0.15
    dense: float = 0.30
    rank: float = 0.10
    type_hit: float = 0.20
    type_miss: float = 0.15
    extend_gain: float = 0.12
    repeat: float = 0.1
    tag_limit: int = 6
    rescore: int = 6


WordVectors = Callable[[list[str]], dict[str, np.ndarray]]


def match_strength(term: str, stems: set[str]) -> float:
    """1 for an exact stem match, 0.7 for a shared prefix of 5+ letters, else 0."""
    if term in stems:
        return 1.0
    if len(term) >= 5 and not term.isdigit():
        head = term[:5]
        for s in stems:
            if len(s) >= 5 and s[:5] == head:
                return 0.7
    return 0.0


def coverage(question: Question, stems: set[str]) -> float:
    """Weighted share of the question's content terms found among ``stems``."""
    total = sum(t.weight for t in question.terms)
    if total == 0:
        return 0.0
    return sum(t.weight * match_strength(t.stem, stems) for t in question.terms) / total


def sentence_stems(text: str) -> frozenset[str]:
    """Stems of every word of a sentence (cached: passages recur across questions)."""
    return _sentence_stems(text)


@lru_cache(maxsize=50_000)
def _sentence_stems(text: str) -> frozenset[str]:
    """Stems of every word of a sentence, plus the initials of capitalised runs
    ("International Criminal Court" → "icc") and dotted acronyms ("U.S." → "us")."""
    found = {stem(w) for w, _, _ in words(text)}
    for m in re.finditer(r"\b(?:[A-Z]\.){2,}", text):
        found.add(m.group().replace(".", "").lower())
    for m in re.finditer(r"\b[A-Z][a-z]+(?:\s+(?:of\s+)?[A-Z][a-z]+)+", text):
        initials = "".join(w[0] for w in m.group().split() if w[0].isupper())
        found.add(initials.lower())
    return frozenset(found)


class SoftMatcher:
    """Matches question terms to sentence words by meaning when their stems differ
    ("kids" ~ "children", "start" ~ "began"), with word vectors of the embedding model."""

    def __init__(self, vectors: WordVectors | None, strong: float = 0.7, weak: float = 0.55
                 ) -> None:
        self.vectors = vectors
        self.strong = strong
        self.weak = weak

    def strengths(self, question: Question, text: str, stems: set[str]) -> list[float]:
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
        matrix = np.stack([vecs[w] for w in cand])
        for i in todo:
            best = float((matrix @ vecs[question.terms[i].word.lower()]).max())
            if best >= self.strong:
                out[i] = max(out[i], 0.9)
            elif best >= self.weak:
                out[i] = max(out[i], 0.6)
        return out


def _softenable(term: Term) -> bool:
    return not any(ch.isdigit() for ch in term.word)


def weighted(question: Question, strengths: list[float]) -> float:
    """Weighted coverage from per-term strengths."""
    total = sum(t.weight for t in question.terms)
    return sum(t.weight * v for t, v in zip(question.terms, strengths, strict=True)) / total \
        if total else 0.0


class ExtractiveAnswerer:
    """Picks the answering sentence among the sentences of the retrieved chunks."""

    def __init__(self, tagger: EntityTagger, min_score: float = 0.42,
                 weights: Weights | None = None, word_vectors: WordVectors | None = None
                 ) -> None:
        self.tagger = tagger
        self.min_score = min_score
        self.weights = weights or Weights()
        self.soft = SoftMatcher(word_vectors)

    def candidates(self, hits: list[Hit]) -> list[Candidate]:
        """Every distinct sentence of the hits, in reading order per article."""
        seen: dict[tuple[str, int, int], Candidate] = {}
        for rank, hit in enumerate(hits):
            chunk_stems = sentence_stems(hit.text)
            for s, e in hit.sentences:
                key = (hit.doc_id, s, e)
                if key in seen:
                    continue
                text = hit.text[s - hit.start : e - hit.start]
                seen[key] = Candidate(
                    doc_id=hit.doc_id, path=str(hit.meta.get("path", hit.doc_id)),
                    title=str(hit.meta.get("title", "")), start=s, end=e, text=text,
                    rank=rank, chunk_score=hit.score, stems=sentence_stems(text),
                    chunk_stems=chunk_stems,
                )
        cands = sorted(seen.values(), key=lambda c: (c.doc_id, c.start))
        for i, c in enumerate(cands):
            c.order = i
        return cands

    def score(self, question: Question, cands: list[Candidate],
              qvec: np.ndarray, svecs: dict[tuple[str, int, int], np.ndarray]) -> None:
        """Fill in each candidate's evidence and score."""
        w = self.weights
        labels = TYPE_LABELS.get(question.answer_type or "", ())
        for i, c in enumerate(cands):
            vec = svecs.get((c.doc_id, c.start, c.end))
            c.dense = float(np.dot(qvec, vec)) if vec is not None else 0.0
            c.cover = self._cover(question, c)
            ctx = set(c.stems)
            for j in (i - 1, i + 1):
                if 0 <= j < len(cands) and _adjacent(cands[i], cands[j]):
                    ctx |= cands[j].stems
            c.cover_ctx = coverage(question, ctx)
            c.score = (
                w.cover * c.cover + w.cover_ctx * c.cover_ctx + w.dense * max(c.dense, 0.0)
                + w.rank / (1 + c.rank)
            )
        if labels:
            # Entity tagging is the costly step: tag the front runners and their neighbours.
            front = sorted(range(len(cands)), key=lambda i: cands[i].score,
                           reverse=True)[: w.tag_limit]
            chosen = sorted({j for i in front for j in (i - 1, i, i + 1) if 0 <= j < len(cands)})
            tagged = self.tagger.tag([cands[j].text for j in chosen])
            for j, entities in zip(chosen, tagged, strict=True):
                c = cands[j]
                c.typed = _typed(entities, labels, question)
                if question.role:
                    c.typed = self._role_holders(c.text, c.typed, question.role)
        for i, c in enumerate(cands):
            if not labels:
                break
            if c.typed:
                c.score += w.type_hit
            elif any(0 <= j < len(cands) and _adjacent(c, cands[j]) and cands[j].typed
                     for j in (i - 1, i + 1)):
                c.score += w.type_hit / 2 - w.type_miss / 2  # the answer may sit next door
            else:
                c.score -= w.type_miss
        # Second pass on the front runners: coverage by meaning, not only by stem.
        for c in sorted(cands, key=lambda c: c.score, reverse=True)[: w.rescore]:
            soft = weighted(question, self.soft.strengths(question, c.text, c.stems))
            if soft > c.cover:
                c.score += w.cover * (soft - c.cover)
                c.cover = soft

    def _role_holders(self, text: str, entities: list[Entity], role: str) -> list[Entity]:
        """People named next to a mention of ``role`` ("Judge Margaret Oyelaran", "Stefan
        Novak, the manager"): only they can answer "who is the judge?"."""
        found = [(s, e) for w, s, e in words(text) if match_strength(stem(w), {stem(role)}) > 0]
        if not found and self.soft.vectors is not None:
            cand = sorted({w.lower() for w, _, _ in words(text) if w.isalpha() and len(w) > 3})
            if cand:
                vecs = self.soft.vectors([*cand, role])
                near = {w for w in cand if float(vecs[w] @ vecs[role]) >= self.soft.weak}
                found = [(s, e) for w, s, e in words(text) if w.lower() in near]
        return [ent for ent in entities if ent.label == "PERSON" and any(
            -40 <= ent.start - e <= 40 or -40 <= s - ent.end <= 40 for s, e in found)]

    @staticmethod
    def _cover(question: Question, c: Candidate) -> float:
        """Coverage of the question by a sentence; a name the sentence lacks counts
        partly when its passage has it (the sentence says "she" for "Melania Trump")."""
        strengths = []
        for t in question.terms:
            v = match_strength(t.stem, c.stems)
            if v == 0 and t.proper:
                v = 0.7 * match_strength(t.stem, c.chunk_stems)
            strengths.append(v)
        return weighted(question, strengths)

    def evidence(self, question: Question, chosen: list[Candidate],
                 context: str) -> float:
        """How well the chosen sentences support an answer, in [0, 1] (below 0: never).

        Common words must be matched in the chosen sentences (by stem or meaning); names
        may be matched anywhere in the retrieved passages of the same article (a later
        sentence says "she" for "Melania Trump"). A number or year of the question that
        the chosen sentences lack, or a name no retrieved passage contains, rules the
        answer out.
        """
        text = " ".join(c.text for c in chosen)
        stems: set[str] = set().union(*(c.stems for c in chosen))
        strengths = self.soft.strengths(question, text, stems)
        context_stems = sentence_stems(context)
        names = " ".join(sorted({w for w, _, _ in words(context) if w[:1].isupper()}))
        main = max(chosen, key=lambda c: c.score)
        for i, t in enumerate(question.terms):
            if t.proper and strengths[i] < 1.0:
                strengths[i] = max(strengths[i], match_strength(t.stem, context_stems))
                if strengths[i] == 0.0 and t.weight > 1.0:
                    # "the Kremlin" for Moscow: a name may still match a name by meaning.
                    one = Question(question.text, [Term(t.word, t.stem, 1.0)])
                    near = self.soft.strengths(one, names, set())[0]
                    if near < 0.6:
                        return -1.0
                    strengths[i] = 0.6
            if (any(ch.isdigit() for ch in t.word) and t.weight > 1.0
                    and match_strength(t.stem, main.stems) == 0):
                return -1.0
        cover = weighted(question, strengths)
        dense = max(c.dense for c in chosen)
        value = 0.6 * cover + 0.4 * max(dense, 0.0)
        if question.answer_type and not any(c.typed for c in chosen):
            if question.answer_type in STRICT_TYPES or question.role:
                return -1.0  # asked "when" and no date is there, or "who is the judge" and no judge
            value -= 0.2
        return value

    def answer(self, question: Question, hits: list[Hit], qvec: np.ndarray,
               svecs: dict[tuple[str, int, int], np.ndarray],
               avoid: set[tuple[str, int, int]] | None = None) -> Answer:
        """The cited answer, or an abstention showing the closest passages."""
        passages = [_passage(h) for h in hits]
        retrieved = list(dict.fromkeys(h.doc_id for h in hits))
        cands = self.candidates(hits)
        if not cands or not question.terms:
            return _abstain(question, passages, retrieved)
        repair_typos(question, set().union(*(c.chunk_stems for c in cands)))
        self.score(question, cands, qvec, svecs)
        for c in cands:
            if avoid and (c.doc_id, c.start, c.end) in avoid:
                c.score -= self.weights.repeat
        best = max(cands, key=lambda c: c.score)
        chosen = self._window(question, cands, best)
        context = " ".join(h.text for h in hits if h.doc_id == best.doc_id)
        support = self.evidence(question, chosen, context)
        if support < self.min_score:
            return _abstain(question, passages, retrieved)
        short = self._short_answer(question, chosen, best)
        citations = [
            Citation(n=i + 1, doc_id=c.doc_id, title=c.title, path=c.path, start=c.start,
                     end=c.end, quote=c.text, score=round(support, 4))
            for i, c in enumerate(chosen)
        ]
        text = " ".join(f"{c.text} [{i + 1}]" for i, c in enumerate(chosen))
        return Answer(question=question.text, text=text, short_answer=short, abstained=False,
                      citations=citations, retrieved=retrieved, passages=passages)

    def _window(self, question: Question, cands: list[Candidate],
                best: Candidate) -> list[Candidate]:
        """The best sentence, joined by a neighbour when it adds what the question asks."""
        i = best.order
        options = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(cands) and _adjacent(best, cands[j]):
                n = cands[j]
                gain = coverage(question, best.stems | n.stems) - best.cover
                needs_type = bool(question.answer_type) and not best.typed and bool(n.typed)
                needs_context = j == i - 1 and bool(_PRONOUN_START.match(best.text)) and (
                    gain > 0
                )
                if gain >= self.weights.extend_gain or needs_type or needs_context:
                    options.append((gain + (0.5 if needs_type else 0.0), n))
        if not options:
            return [best]
        neighbour = max(options, key=lambda o: o[0])[1]
        return sorted([best, neighbour], key=lambda c: c.start)

    def _short_answer(self, question: Question, chosen: list[Candidate],
                      best: Candidate) -> str | None:
        """The minimal span answering a factual question, in the article's words."""
        if not question.answer_type:
            return None
        order = [best] + [c for c in chosen if c is not best]
        labels = TYPE_LABELS[question.answer_type]
        for c in order:
            if not c.typed:
                continue
            anchors = [s for w, s, _ in words(c.text) if stem(w) in question.stems]
            about_speech = bool(question.stems & _SPEECH_STEMS)

            def rank(e: Entity, c: Candidate = c, anchors: list[int] = anchors,
                     about_speech: bool = about_speech) -> tuple:
                dist = min((abs(e.start - a) for a in anchors), default=0)
                # "…,” Mrs. Trump said": the speaker rarely answers unless asked who said it.
                speaker = not about_speech and _is_speaker(c.text, e)
                overlap = bool({stem(w) for w, _, _ in words(e.text)} & question.stems)
                return (speaker, overlap, dist // 40, labels.index(e.label), dist, e.start)

            ent = min(c.typed, key=rank)
            return _clean_span(ent.text)
        return None


_SPEECH_STEMS = {"say", "said", "tell", "told", "announc", "claim", "quot", "speak", "spoke",
                 "describ", "accord", "insist", "deni", "wrote", "write"}
_SPEAKER_AFTER = re.compile(r"^\s*(said|says|told|added|wrote|noted|stated|explained)\b")
_SPEAKER_BEFORE = re.compile(r"\b(said|says|according to)\s*$")


def _is_speaker(text: str, entity: Entity) -> bool:
    """True for the attribution of a quotation ("Mrs. Trump said")."""
    return bool(_SPEAKER_AFTER.match(text[entity.end :])
                or _SPEAKER_BEFORE.search(text[: entity.start]))


def _adjacent(a: Candidate, b: Candidate) -> bool:
    if a.doc_id != b.doc_id:
        return False
    first, second = (a, b) if a.start < b.start else (b, a)
    return 0 <= second.start - first.end <= 3


def _typed(entities: list[Entity], labels: tuple[str, ...], question: Question
           ) -> list[Entity]:
    """Entities of the expected type that the question does not name. A number inside a
    date, time or sum of money ("the past 24 hours", "$7.5 million") is not a count."""
    spans = [(e.start, e.end) for e in entities
             if e.label in ("DATE", "TIME", "MONEY", "PERCENT", "AGE") and e.label not in labels]
    out = []
    for e in entities:
        if e.label not in labels or not _is_new(e, question):
            continue
        if e.label == "NUM" and any(a <= e.start and e.end <= b for a, b in spans):
            continue
        out.append(e)
    return out


def _is_new(entity: Entity, question: Question) -> bool:
    """An entity the question does not already name."""
    ent_stems = {stem(w) for w, _, _ in words(entity.text)}
    if not ent_stems:
        return False
    # "Ukraine" is not new to a question about "Ukrainian children".
    return not all(match_strength(s, question.stems) > 0 for s in ent_stems)


def _clean_span(text: str) -> str:
    """Trim quotes and punctuation, a trailing possessive, and a leading owner
    ("Ukraine’s Children of War" → "Children of War")."""
    text = text.strip().strip("“”\"'‘’,;:—-").strip()
    text = re.sub(r"[’']s$", "", text)
    text = re.sub(r"^(?:the\s+)?[A-Z][\w-]*[’']s\s+(?=[A-Z])", "", text)
    return text


def _passage(hit: Hit) -> Passage:
    return Passage(doc_id=hit.doc_id, title=str(hit.meta.get("title", "")),
                   path=str(hit.meta.get("path", hit.doc_id)), start=hit.start,
                   end=int(hit.meta["end"]), text=hit.text, score=round(hit.score, 5))


def _abstain(question: Question, passages: list[Passage], retrieved: list[str]) -> Answer:
    return Answer(question=question.text, text=ABSTAIN_TEXT, abstained=True,
                  retrieved=retrieved, passages=passages)
