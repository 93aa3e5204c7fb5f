"""Words, stems, stopwords and number words: the one copy of each list the answer layer,
the retrieval helpers and the evals use."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

STOPWORDS = frozenset(
    """a an the and or but if of at by for with about against between into through during
    before after above below to from up down in out on off over under again further then
    once here there all any both each few more most other some such no nor not only own
    same so than too very s t can will just don should now is are was were be been being
    have has had having do does did doing i me my myself we our ours ourselves you your
    yours yourself he him his himself she her hers herself it its itself they them their
    theirs themselves what which who whom whose this that these those am would could might
    must shall may also as when where why how whats what's who's tell me please know say
    said says according article articles corpus mention mentioned mentions state stated
    states report reported text did does do get got give gave make made exactly actually
    really one ones someone something anything thing things much many""".split()
)
"""Words that carry no content of a question: they are not terms to cover. Speech verbs
are among them (a sentence rarely repeats "said"); a question *about* speech is recognised
from its raw words with :data:`SPEECH_WORDS`, never from its terms."""

SPEECH_WORDS = frozenset(
    """say says said saying tell tells told telling announce announces announced claim
    claims claimed quote quoted speak speaks spoke describe described according insist
    insisted deny denied denies write wrote writes written warn warned""".split()
)
"""Words that make a question ask who said something (its speaker may be the answer)."""

IRREGULAR_PAST = frozenset(
    """won took saw held became made said gave got went came told lost led began wrote ran
    hit set left sold bought paid built broke fell chose drew grew threw wore beat kept met
    sent spent struck stood brought caught fought taught thought found heard meant shut quit
    rose sank shook sang spoke stole swore tore woke""".split()
)
"""Common past-tense verbs that do not end in "-ed": where "Which club won …" stops naming
what it asks for."""

NUMBER_VALUES: dict[str, int] = {
    **{w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen".split())},
    **{w: (i + 2) * 10 for i, w in enumerate(
        "twenty thirty forty fifty sixty seventy eighty ninety".split())},
}
"""Number words below a hundred and their values (compounds like "twenty-one" are read
by the callers that need them)."""

SCALE_VALUES: dict[str, int] = {"hundred": 100, "thousand": 10**3, "million": 10**6,
                                "billion": 10**9, "trillion": 10**12}
"""Multiplier words."""

NUMBER_WORDS: tuple[str, ...] = (*NUMBER_VALUES, "hundred", "thousand", "million",
                                 "billion", "dozen")
"""Every word that can be part of a spelt-out number."""

_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ0-9]+(?:[’'][A-Za-z]+)?(?:[.,][0-9]+)*")
# "nine" ~ "9" for matching; larger number words are matched as words.
_STEM_NUMBERS = {w: str(v) for w, v in NUMBER_VALUES.items()} | {"hundred": "100"}


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The Snowball stem of a lower-cased word without possessive or thousands separators;
    small number words become digits ("nine" and "9" match)."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.replace(",", "")
    return _STEM_NUMBERS.get(w) or _stemmer().stemWord(w)


def clean_text(text: str) -> str:
    """Drop control characters and collapse whitespace."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (a file name may hold
    them), so that it stays on one line of a terminal or a notice."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def words(text: str) -> list[tuple[str, int, int]]:
    """Word tokens of ``text`` with their offsets."""
    return list(_words(text))


WORDS_CACHED = 8_192
"""Texts whose word tokens are kept for reuse: the answer layer reads the same few dozen
sentences and chunks many times per question. Each entry holds a tuple per word (a chunk's
cost about 30 KB), so the cache is bounded by what a few questions read, not by a corpus."""


@lru_cache(maxsize=WORDS_CACHED)
def _words(text: str) -> tuple[tuple[str, int, int], ...]:
    return tuple((m.group(), m.start(), m.end()) for m in _WORD.finditer(text))


def vocabulary(text: str) -> set[str]:
    """The content words of ``text``, lower-cased: the words the answer layer may need to
    match by meaning (stopwords, numbers and words of two letters are left out). Not
    cached: an ingest reads each chunk once, and keeping its tokens would grow memory with
    the corpus."""
    return {w for w in (m.group().lower() for m in _WORD.finditer(text))
            if len(w) > 2 and w not in STOPWORDS and not w.isdigit()}


def stems_of(text: str) -> frozenset[str]:
    """The stems of every word of ``text`` (cached: passages recur across questions)."""
    return _stems_of(text)


@lru_cache(maxsize=50_000)
def _stems_of(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w, _, _ in words(text))


def is_about_speech(text: str) -> bool:
    """True when a question asks about what was said or who said it."""
    return any(w.lower() in SPEECH_WORDS for w, _, _ in words(text))


def is_headline(line: str) -> bool:
    """Whether a text's first line reads as a headline: at most 200 characters, and no
    closing full stop unless it is the "…" of a shortened headline (a first paragraph is
    none). Looser than the title line the corpus reader takes off (``corpus.py`` also
    refuses a "?", "!" or "…" at the end): such a headline stays in the text, and this
    reads it there."""
    line = line.strip()
    if not line or len(line) > 200:
        return False
    return line.endswith(("...", "…")) or not re.search(r"\.[\"'”’)]*$", line)
