"""The extractive answer layer: choose the sentence(s) that answer, cut the short answer,
or abstain when the retrieved passages do not support an answer.

Every decision is a learned model over the features of :mod:`assistant.features`
(:mod:`assistant.answer_model`): a base ranker shortlists sentences, a full ranker picks the
best, a span ranker picks the short answer among the entities of the best sentences, and an
abstention classifier gives the probability that the answer is right — the assistant
abstains below ``min_score`` (default: the threshold chosen by cross-validation for the
corpus's size).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

import numpy as np

from assistant import agreement, answer_model
from assistant.agreement import agreement_line, find_agreement, newer_value
from assistant.answer_model import AnswerModel
from assistant.entities import Entity, EntityTagger
from assistant.features import (
    ANSWER_FEATURES,
    SENTENCE_BASE,
    SENTENCE_FULL,
    SPAN_FEATURES,
    Choice,
    Evidence,
    Sentence,
    SoftMatcher,
    Span,
    WordVectors,
    header,
    is_new,
    match_strength,
    matrix,
    missing_number,
    name_unknown,
    number_unknown,
    sentence_stems,
    strict_type_missing,
    uncovered,
)
from assistant.question import TYPE_LABELS, Question, repair_typos
from assistant.retrieval import Hit
from assistant.text import STOPWORDS, stem, stems_of, words
from assistant.types import MAX_ANSWER_WORDS, Answer, Citation, Passage

ABSTAIN_TEXT = "The articles in the corpus do not answer this question."
RULES: dict[str, Callable[[Evidence, Choice], float]] = {
    "number": missing_number,
    "number_article": number_unknown,
    "name": name_unknown,
    "type": strict_type_missing,
    "uncovered": uncovered,
}
"""Checks that can rule an answer out: a number or year of the question missing from the
answer (or from its article's retrieved text), a name of the question in no retrieved text,
a strict answer type with no such entity, no word of the question in the answer. The model
file's policy says which are on (chosen by cross-validation)."""
SentenceKey = tuple[str, int, int]


@dataclass
class Analysis:
    """Every step of answering one question: what the models saw and what they chose."""

    evidence: Evidence
    shortlist: list[Sentence] = field(default_factory=list)  # best first
    choice: Choice | None = None
    spans: list[Span] = field(default_factory=list)
    span_probs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    answer_prob: float = 0.0
    ruled_out: list[str] = field(default_factory=list)  # every rule that fires


class ExtractiveAnswerer:
    """Picks the answering sentence among the sentences of the retrieved chunks."""

    def __init__(self, tagger: EntityTagger, min_score: float | None = None,
                 word_vectors: WordVectors | None = None,
                 model: AnswerModel | None = None) -> None:
        self.tagger = tagger
        self.model = model or answer_model.load()
        self.min_score = min_score  # None: the model's threshold for the corpus
        self.soft = SoftMatcher(word_vectors)
        self.corpus_articles = 0  # articles in the index (set by the Assistant)
        self.prefer_newest = agreement.PREFER_NEWEST

    # -- the steps ---------------------------------------------------------------------------
    @staticmethod
    def candidates(hits: list[Hit]) -> list[Sentence]:
        """Every distinct sentence of the hits, in reading order per article, with the
        entities its chunk's record holds for it (under its span as ingested)."""
        from assistant.entities import pattern_entities

        seen: dict[SentenceKey, Sentence] = {}
        for rank, hit in enumerate(hits):
            for (s, e), ingested in zip(hit.sentences, hit.record.stored_sentences,
                                        strict=True):
                key = (hit.doc_id, s, e)
                if key in seen:
                    continue
                text = hit.text[s - hit.start : e - hit.start]
                seen[key] = Sentence(
                    doc_id=hit.doc_id, path=hit.record.path,
                    title=hit.record.title, start=s, end=e, text=text,
                    rank=rank, hit=hit, stems=sentence_stems(text),
                    patterns=pattern_entities(text), published=_published(hit),
                    recognised=hit.record.sentence_entities(ingested))
        cands = sorted(seen.values(), key=lambda c: (c.doc_id, c.start))
        for i, c in enumerate(cands):
            c.order = i
        return cands

    def evidence(self, question: Question, hits: list[Hit], qvec: np.ndarray,
                 svecs: dict[SentenceKey, np.ndarray]) -> Evidence:
        """The evidence object the features read."""
        cands = self.candidates(hits)
        if cands:
            repair_typos(question, set().union(*(c.stems for c in cands)))
        dense = {k: float(np.dot(qvec, v)) for k, v in svecs.items()}
        return Evidence(question=question, hits=hits, sentences=cands, dense=dense,
                        soft=self.soft, corpus_articles=self.corpus_articles)

    def rank_base(self, ev: Evidence) -> list[Sentence]:
        """Score every sentence with the base ranker; the shortlist, best first."""
        x = matrix(SENTENCE_BASE, ev, ev.sentences)
        for s, v in zip(ev.sentences, self.model.sentence_base.logit(x), strict=True):
            s.base = float(v)
        ranked = sorted(ev.sentences, key=lambda s: (-s.base, s.order))
        return ranked[: self.model.policy.shortlist]

    def tag(self, ev: Evidence, sentences: list[Sentence]) -> None:
        """Entities of ``sentences`` (and of their neighbours, which the features read)."""
        todo = {s.order: s for s in sentences}
        for s in sentences:
            for n in ev.neighbours(s):
                todo.setdefault(n.order, n)
        todo = {k: s for k, s in todo.items() if s.entities is None}
        if not todo:
            return
        chosen = [todo[k] for k in sorted(todo)]
        labels = TYPE_LABELS.get(ev.question.answer_type or "", ())
        tagged = self.tagger.tag([s.text for s in chosen], [s.recognised for s in chosen])
        for s, ents in zip(chosen, tagged, strict=True):
            s.entities = ents
            s.typed = expected_entities(ents, labels, ev.question) if labels else []
            if labels and ev.question.role:
                s.typed = self._role_holders(s.text, s.typed, ev.question.role)

    def rank_full(self, ev: Evidence, sentences: list[Sentence]) -> list[Sentence]:
        """Score ``sentences`` with the full ranker; best first."""
        self.tag(ev, sentences)
        x = matrix(SENTENCE_FULL, ev, sentences)
        logits = self.model.sentence.logit(x)
        for s, v in zip(sentences, logits, strict=True):
            s.score = float(v)
        if ev.norm is None:  # the softmax over the shortlist; later neighbours share it
            top = max(s.score for s in sentences)
            ev.norm = (top, float(sum(np.exp(s.score - top) for s in sentences)))
        top, total = ev.norm
        for s in sentences:
            s.prob = min(1.0, float(np.exp(s.score - top)) / total)
        return sorted(sentences, key=lambda s: (-s.score, s.order))

    def choose(self, ev: Evidence, ranked: list[Sentence],
               avoid: Collection[SentenceKey] = ()) -> Choice:
        """The best sentence, joined by a neighbour the ranker also believes in (at most
        two sentences and :data:`MAX_ANSWER_WORDS` words; never the headline or a
        "Source: …" / "Published: …" line unless it holds the kind of answer asked for)."""
        best = ranked[0]
        runner_up = ranked[1] if len(ranked) > 1 else None
        scored = {s.order for s in ranked}
        neighbours = [n for n in ev.neighbours(best)
                      if (n.doc_id, n.start, n.end) not in avoid]
        unscored = [n for n in neighbours if n.order not in scored]
        if unscored:
            self.rank_full(ev, unscored)
        options = [n for n in neighbours if n.prob >= self.model.policy.join
                   and len(words(best.text)) + len(words(n.text)) <= MAX_ANSWER_WORDS
                   and (n.typed or not header(ev, n))]
        chosen = [best]
        if options:
            chosen.append(max(options, key=lambda n: (n.prob, -n.order)))
        chosen.sort(key=lambda s: s.start)
        return Choice(sentences=chosen, best=best, runner_up=runner_up, span=None,
                      span_prob=0.0)

    def span_candidates(self, ev: Evidence, ranked: list[Sentence], choice: Choice
                        ) -> list[Span]:
        """Entities, numbers and dates of the best sentences that the question does not
        name: the short-answer candidates."""
        sources = [choice.best, *[s for s in choice.sentences if s is not choice.best]]
        for s in ranked[: self.model.policy.spans_from]:
            if s not in sources:
                sources.append(s)
        self.tag(ev, sources)
        spans: list[Span] = []
        seen: set[tuple[int, str]] = set()
        for rank, s in enumerate(sources):
            found = list(s.entities or ())
            if rank == 0:
                found += word_candidates(s.text, found)
            dateline = dateline_end(s.text)
            for e in found:
                if e.start < dateline or not is_new(e, ev.question):
                    continue
                text = span_text(e, ev.question)
                if not text or (s.order, text) in seen:
                    continue
                seen.add((s.order, text))
                spans.append(Span(entity=e, sentence=s, sentence_rank=rank, text=text))
        return spans

    def short_answer(self, ev: Evidence, ranked: list[Sentence], choice: Choice,
                     spans: list[Span], probs: np.ndarray,
                     avoid: Collection[SentenceKey] = ()) -> Choice:
        """``choice`` with its short answer: the span ranker's best candidate (none below
        ``min_span``), stated in what the answer quotes. When that candidate lies in another
        of the best sentences, the policy says whether that sentence becomes the answer, is
        quoted after the best one, or the short answer is the best candidate of the quoted
        sentences."""
        def quoted(sp: Span) -> bool:
            return any(sp.sentence is s for s in choice.sentences)

        policy = self.model.policy
        best = int(np.argmax(probs)) if len(spans) else -1  # first of equals: reading order
        if best < 0 or probs[best] < policy.min_span:
            return choice
        if not quoted(spans[best]):
            outside = policy.outside(self.corpus_articles)
            other = spans[best].sentence
            if (outside == "add" and (other.doc_id, other.start, other.end) not in avoid
                    and len(words(choice.best.text)) + len(words(other.text))
                    <= MAX_ANSWER_WORDS):  # never the previous turn's sentence added
                pair = [choice.best, other]
                if other.doc_id == choice.best.doc_id:
                    pair.sort(key=lambda s: s.start)
                choice = replace(choice, sentences=pair)
            elif outside in ("move", "add"):
                choice = self.choose(ev, [other, *(s for s in ranked if s is not other)],
                                     avoid)
            else:
                inside = [i for i, sp in enumerate(spans)
                          if quoted(sp) and probs[i] >= policy.min_span]
                if not inside:
                    return choice
                best = max(inside, key=lambda i: (probs[i], -i))
        choice.span, choice.span_prob = spans[best], float(probs[best])
        return choice

    def pick_span(self, ev: Evidence, spans: list[Span]) -> np.ndarray:
        """The span ranker's probability for each candidate (a softmax over them)."""
        logits = self.model.span.logit(matrix(SPAN_FEATURES, ev, spans))
        if not len(logits):
            return logits
        e = np.exp(logits - logits.max())
        return e / e.sum()

    def answer_probability(self, ev: Evidence, choice: Choice) -> float:
        """The abstention classifier's probability (for this corpus's size) that ``choice``
        answers the question."""
        model = self.model.abstainer(self.corpus_articles)
        return float(model.prob(matrix(ANSWER_FEATURES, ev, [choice]))[0])

    # -- the whole answer --------------------------------------------------------------------
    def analyse(self, question: Question, hits: list[Hit], qvec: np.ndarray,
                svecs: dict[SentenceKey, np.ndarray],
                avoid: Collection[SentenceKey] = ()) -> Analysis:
        """Run every step; ``analysis.choice`` is None when there is nothing to choose."""
        ev = self.evidence(question, hits, qvec, svecs)
        analysis = Analysis(evidence=ev)
        if not ev.sentences or not question.terms:
            return analysis
        shortlist = self.rank_base(ev)
        ranked = self.rank_full(ev, shortlist)
        choice = self.choose(ev, ranked, avoid)
        spans = self.span_candidates(ev, ranked, choice)
        probs = self.pick_span(ev, spans)
        choice = self.short_answer(ev, ranked, choice, spans, probs, avoid)
        analysis.shortlist, analysis.choice = ranked, choice
        analysis.spans, analysis.span_probs = spans, probs
        analysis.answer_prob = self.answer_probability(ev, choice)
        analysis.ruled_out = [name for name, rule in RULES.items() if rule(ev, choice)]
        return analysis

    def answer(self, question: Question, hits: list[Hit], qvec: np.ndarray,
               svecs: dict[SentenceKey, np.ndarray],
               avoid: Collection[SentenceKey] | None = None) -> Answer:
        """The cited answer, or an abstention showing the closest passages."""
        passages = [_passage(h) for h in hits]
        retrieved = list(dict.fromkeys(h.doc_id for h in hits))
        analysis = self.analyse(question, hits, qvec, svecs, avoid or ())
        choice = analysis.choice
        threshold, rules = self.model.policy.abstention(self.corpus_articles)
        if self.min_score is not None:
            threshold = self.min_score
        if (choice is None or analysis.answer_prob < threshold
                or set(rules).intersection(analysis.ruled_out)):
            return _abstain(question, passages, retrieved)
        score = round(analysis.answer_prob, 4)
        found = find_agreement(analysis.shortlist, choice, question)
        newer = newer_value(found, choice) if self.prefer_newest else None
        if newer is not None:  # the story moved on: answer with the newest article's value
            choice = _choice_of(newer, choice)
            found = find_agreement(analysis.shortlist, choice, question)
        parts = quotes(choice, question)
        citations = [
            Citation(n=i + 1, doc_id=q.sentence.doc_id, title=q.sentence.title,
                     path=q.sentence.path, start=q.start, end=q.end, quote=q.text,
                     score=score, published=q.sentence.published, source=_source(q.sentence.hit))
            for i, q in enumerate(parts)
        ]
        text = " ".join(f"{q.shown} [{i + 1}]" for i, q in enumerate(parts))
        short = choice.span.text if choice.span is not None else None
        for role, sentences in (("agrees", found.agree), ("differs", found.differ)):
            for c in sentences:
                citations.append(Citation(
                    n=len(citations) + 1, doc_id=c.doc_id, title=c.title, path=c.path,
                    start=c.start, end=c.end, quote=c.text, score=round(c.prob, 4),
                    published=c.published, source=_source(c.hit), role=role))
        return Answer(question=question.text, text=text, short_answer=short, abstained=False,
                      citations=citations, retrieved=retrieved, passages=passages,
                      agreement=agreement_line(citations))

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


@dataclass(frozen=True)
class Quote:
    """What an answer quotes of one of its sentences: the whole sentence, or the words
    around the short answer when the sentence is longer than an answer may be (scraped
    pages run lists and captions together). ``text`` is exactly the article's
    ``[start, end)``."""

    sentence: Sentence
    start: int
    end: int
    text: str
    cut_before: bool = False
    cut_after: bool = False

    @property
    def shown(self) -> str:
        """The quote as the answer shows it, with "…" where the sentence was cut."""
        return f"{'…' if self.cut_before else ''}{self.text}{'…' if self.cut_after else ''}"


QUOTE_WORDS = MAX_ANSWER_WORDS
"""At most this many words (runs of non-space characters) of one answer are quoted: an
answer's limit; its "[n]" markers and "…" add none."""


def quotes(choice: Choice, question: Question, budget: int = QUOTE_WORDS) -> list[Quote]:
    """The quotes of ``choice``'s sentences: whole when they fit in ``budget`` words
    together, else the best sentence cut to the words around its short answer (or, with
    none, around the question's words)."""
    sizes = [len(s.text.split()) for s in choice.sentences]
    total = sum(sizes)
    span = choice.span
    out = []
    for s, n in zip(choice.sentences, sizes, strict=True):
        if total <= budget or s is not choice.best:
            out.append(Quote(s, s.start, s.end, s.text))
            continue
        anchor = span.entity if span is not None and span.sentence is s else None
        out.append(_cut(s, question, anchor, max(1, budget - (total - n))))
    return out


def _cut(s: Sentence, question: Question, anchor: Entity | None, room: int) -> Quote:
    """The window of ``room`` words of ``s`` that holds ``anchor`` and most of the
    question's words (the earliest of equals)."""
    tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", s.text)]
    if len(tokens) <= room:
        return Quote(s, s.start, s.end, s.text)
    hits = [1 if stems_of(s.text[a:b]) & question.stems else 0 for a, b in tokens]

    def fitness(i: int) -> tuple[bool, int]:
        a, b = tokens[i][0], tokens[i + room - 1][1]
        holds = anchor is None or (a <= anchor.start and anchor.end <= b)
        return holds, sum(hits[i : i + room])

    i = max(range(len(tokens) - room + 1), key=fitness)  # the first of equals
    a, b = tokens[i][0], tokens[i + room - 1][1]
    return Quote(s, s.start + a, s.start + b, s.text[a:b], cut_before=i > 0,
                 cut_after=i + room < len(tokens))


def expected_entities(entities: list[Entity], labels: tuple[str, ...], question: Question
                      ) -> list[Entity]:
    """Entities of the expected type that the question does not name. A number inside a
    date, time or sum of money ("the past 24 hours", "$7.5 million") is not a count."""
    spans = [(e.start, e.end) for e in entities
             if e.label in ("DATE", "TIME", "MONEY", "PERCENT", "AGE") and e.label not in labels]
    out = []
    for e in entities:
        if e.label not in labels or not is_new(e, question):
            continue
        if e.label == "NUM" and any(a <= e.start and e.end <= b for a, b in spans):
            continue
        out.append(e)
    return out


_CAPITAL = re.compile(r"\b[A-Z][a-z][\w’'-]*")


def word_candidates(text: str, entities: list[Entity]) -> list[Entity]:
    """Answers that are no entity: a capitalised word ("Batgirl"), a content word ("chess")
    or two ("edit button") of the best sentence, that no entity covers (the "million" of
    "$312 million" is not one: the entity is the candidate)."""
    covered = [(e.start, e.end) for e in entities]

    def free(a: int, b: int) -> bool:
        return not any(s < b and a < e for s, e in covered)

    out = []
    for m in _CAPITAL.finditer(text):
        if m.start() > 0 and free(m.start(), m.end()) and m.group().lower() not in STOPWORDS:
            out.append(Entity(m.group(), "CAPITAL", m.start(), m.end()))
    toks = [(w, a, b) for w, a, b in words(text)
            if w.islower() and len(w) > 3 and w not in STOPWORDS and free(a, b)]
    for i, (w, a, b) in enumerate(toks):
        out.append(Entity(w, "WORD", a, b))
        if i + 1 < len(toks) and 0 < toks[i + 1][1] - b <= 1:
            out.append(Entity(text[a : toks[i + 1][2]], "WORDS", a, toks[i + 1][2]))
    return out


def clean_span(text: str, owner: bool = False) -> str:
    """Trim quotes and punctuation, a trailing possessive, and a leading owner
    ("Ukraine’s Children of War" → "Children of War") unless ``owner``."""
    text = text.strip().strip("“”\"'‘’,;:—-().").strip()
    text = re.sub(r"[’']s$", "", text)
    if not owner:
        text = re.sub(r"^(?:the\s+)?[A-Z][\w-]*[’']s\s+(?=[A-Z])", "", text)
    return text


def span_text(entity: Entity, question: Question) -> str:
    """The short answer an entity gives: cleaned, its owner kept when only the owner is
    new to the question ("Acme’s Bakery" answers "which bakery chain?" with the owner)."""
    text = clean_span(entity.text)
    if text and not is_new(replace(entity, text=text), question):
        return clean_span(entity.text, owner=True)
    return text


# Up to four words before an outlet in brackets, or a place in capitals before a dash.
_DATELINE = re.compile(
    r"^\s*(?:(?:[A-Z][\w.'’-]*|\d+)[ ,]+){0,4}\([A-Z][\w .'-]{1,30}\)\s*(?:[—–-]\s*)?"
    r"|^\s*[A-Z][A-Z .,'’-]{2,40}\s[—–-]\s")
DATELINE_CHARS = 80  # a dateline is looked for at the start of a sentence only


def dateline_end(text: str) -> int:
    """Where a sentence's dateline ends ("LONDON (Reuters) — ", "(CNN) "; 0 without one):
    the outlet and place of a report, never an answer."""
    m = _DATELINE.match(text[:DATELINE_CHARS])
    return m.end() if m else 0


def _choice_of(sentence: Sentence, old: Choice) -> Choice:
    """``sentence`` as the answer, its short answer the value of the kind ``old`` gave (the
    entity of the same label, else its first value of the expected type)."""
    label = old.span.entity.label if old.span is not None else None
    entity = next((e for e in sentence.typed if e.label == label), sentence.typed[0])
    span = Span(entity=entity, sentence=sentence, sentence_rank=0,
                text=clean_span(entity.text))
    return Choice(sentences=[sentence], best=sentence, runner_up=None, span=span,
                  span_prob=old.span_prob)


def _passage(hit: Hit) -> Passage:
    return Passage(doc_id=hit.doc_id, title=hit.record.title,
                   path=hit.record.path, start=hit.start,
                   end=hit.end, text=hit.text, score=round(hit.score, 5),
                   published=_published(hit), source=_source(hit))


def _published(hit: Hit) -> str:
    """The chunk's article date from its header (stored as chunk metadata), or ""."""
    return hit.record.published


def _source(hit: Hit | None) -> str:
    """The chunk's article ``Source:`` line (its outlet), or ""."""
    return hit.record.source if hit is not None else ""


def _abstain(question: Question, passages: list[Passage], retrieved: list[str]) -> Answer:
    return Answer(question=question.text, text=ABSTAIN_TEXT, abstained=True,
                  retrieved=retrieved, passages=passages)
