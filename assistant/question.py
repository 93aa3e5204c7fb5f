"""Reading a question: its content terms and the kind of answer it expects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from assistant.chunking import split_sentences
from assistant.text import IRREGULAR_PAST, STOPWORDS, clean_text, stem, words

# Expected answer types and the entity labels that satisfy them.
TYPE_LABELS: dict[str, tuple[str, ...]] = {
    "NUMBER": ("CARDINAL", "QUANTITY", "NUM"),
    "AMOUNT": ("MONEY", "QUANTITY", "PERCENT", "CARDINAL", "NUM"),
    "MONEY": ("MONEY", "CARDINAL", "NUM"),
    "PERCENT": ("PERCENT", "CARDINAL", "NUM"),
    "AGE": ("AGE",),
    "DATE": ("DATE", "TIME"),
    "DURATION": ("DATE", "TIME", "QUANTITY"),
    "PLACE": ("GPE", "LOC", "FAC"),
    "GPE": ("GPE",),
    "PERSON": ("PERSON", "ORG", "GPE_GROUP", "NORP"),
    "ORG": ("ORG", "GPE_GROUP"),
    "NAME": ("LAW", "WORK_OF_ART", "EVENT", "ORG", "PRODUCT", "TITLED"),
}

# Up to two modifiers between "which" and its noun ("which US state"), but not a verb
# ("what does the bill …" does not ask for a bill's name) nor the start of a time phrase
# ("which country this week" asks for a country, not a week).
_MOD = (r"(?:\s+(?!(?:does|did|do|is|was|are|were|has|have|had|can|could|will|would|"
        r"should|this|last|next|past|earlier|later)\b)[\w’'-]+){0,2}?")
_WHAT = r"\b(?:what(?:'s|s)?|which)"
# Each rule: a wh-expression and the answer type it asks for. The expression that
# comes first in the question decides ("where was he when…" asks for a place).
_TYPE_RULES: list[tuple[str, str]] = [
    (r"\bhow much money\b|\bhow much\b(?=.*\b(?:cost|costs|spend|spent|pay|paid|earn|earns|"
     r"worth|price|fee|revenue|profit|budget|fund|raise|raised|charge|sell|sold|buy|bought|"
     r"salary|wage|wages|owe|owes|award|awarded|lose|lost|invest|invested)\b)"
     r"|\bwhat (?:revenue|profit|price|fee|sum|amount of money)\b", "MONEY"),
    (r"\bwhat percent(?:age)?\b|\bwhat share\b", "PERCENT"),
    (r"\bhow old\b|\bwhat age\b|\bat what age\b", "AGE"),
    (r"\bhow many\b|\bwhat number\b", "NUMBER"),
    (r"\bhow much\b|\bwhat amount\b", "AMOUNT"),
    (r"\bhow long\b", "DURATION"),
    (r"\bwhen\b|\b(?:what|which)" + _MOD + r"\s+(?:year|month|day|date|time|decade|week)s?\b"
     r"|\bsince when\b", "DATE"),
    (_WHAT + _MOD + r"\s+(?:country|countries|city|cities|state|states|town|towns|nation)\b",
     "GPE"),
    (r"\bwhere\b|\b(?:what|which)" + _MOD + r"\s+(?:country|countries|city|cities|state|"
     r"place|region|town|territory|territories|continent|location)\b", "PLACE"),
    (_WHAT + _MOD + r"\s+(?:organi[sz]ation|court|tribunal|agency|body|"
     r"institution|company|group|newspaper|network)s?\b", "ORG"),
    (_WHAT + _MOD + r"\s+(?:law|act|bill|legislation|initiative|campaign|"
     r"program|programme|database|project|treaty|policy)\b|\bwhat is the name\b"
     r"|\bwhat(?:'s| is)? (?:it|the \w+) called\b"
     r"|\bwhat (?:is|was|are|were) (?:its|his|her|their|the [\w-]+(?:['’]s)?) "
     r"(?:new |full |official )?names?\b", "NAME"),
    (r"\b(?:who|whom)\b", "PERSON"),
    (r"\b(?:what|which|why|how)\b", ""),
]
_QUOTED = re.compile(r"[\"“‘«]([^\"”’»]{3,200})[\"”’»]")
_SPEAKER_CLAUSE = re.compile(
    r"\b(?:according to|as told by|in the words of)\s+(?:the\s+)?(?:[\w’'.-]+\s*){1,3}"
    r"|\b(?:did|does|do)\s+(?:mrs?\.?\s+|ms\.?\s+|the\s+)?[\w’'.-]+(?:\s+[A-Z][\w’'-]+)?"
    r"\s+(?:say|claim|tell|write)\b",
    re.IGNORECASE,
)
_WHO_IS_NAME = re.compile(r"^\s*(?i:who|what) (?i:is|was|are|were) [A-Z][\w’'-]+"
                          r"(\s[A-Z][\w’'-]+)*\s*\??$")
PREAMBLE_WEIGHT = 0.2
"""Weight of a term said only in the sentences before the one that asks ("The bridge
reopened on Monday. Since what year has it carried trams?"): the article's sentence that
restates such a preamble is rarely the answer. Chosen on the training sets (0.15–0.25 best
of 0–1 with the shipped models; cross-validated, see the README)."""
WH_WORD = re.compile(r"\b(?:who|whom|whose|what|which|where|when|why|how)\b", re.IGNORECASE)
"""A question word: the one list of them."""
_ASKS = re.compile(WH_WORD.pattern + r"|[?:]\s*$", re.IGNORECASE)


def _sentences(text: str) -> list[tuple[int, int]]:
    return split_sentences(text) or [(0, len(text))]


def asked_sentence(text: str) -> tuple[int, int] | None:
    """The span of the sentence that asks, when the question has sentences before it: the
    last one with a wh-word or ending in "?" or ":", else the last one."""
    return _asked(text, _sentences(text))


def _asked(text: str, spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    if len(spans) < 2:
        return None
    for s, e in reversed(spans):
        if _ASKS.search(text[s:e]):
            return None if (s, e) == spans[0] else (s, e)
    return spans[-1]


@dataclass
class Term:
    """A content word of the question."""

    word: str
    stem: str
    weight: float
    proper: bool = False
    speaker: bool = False  # only names who speaks ("according to Mrs. Trump")
    inherited: bool = False  # from an earlier turn of a conversation, not this question


@dataclass
class Question:
    """A cleaned question, its content terms, its expected answer type and, for "who is
    the mayor?"-style questions, the role whose holder is asked for."""

    text: str
    terms: list[Term] = field(default_factory=list)
    answer_type: str | None = None
    role: str | None = None
    given: set[str] = field(default_factory=set)  # stems of answers already given in a chat

    @property
    def stems(self) -> set[str]:
        """The stems of the content terms."""
        return {t.stem for t in self.terms}


def analyze(text: str, turns: bool = False) -> Question:
    """Content terms (stemmed, weighted) and the expected answer type of a question.

    Names and numbers weigh more; words that only name the speaker ("according to
    Mrs. Trump") weigh less, since the speaker often sits in a neighbouring sentence. A
    question of several sentences asks in its last (:func:`asked_sentence`): the words only
    the sentences before it say weigh ``PREAMBLE_WEIGHT`` of theirs. With ``turns`` the
    text is a conversation's earlier turns (questions and short answers one after another),
    read as one sentence: none of them is a preamble.
    """
    text = clean_text(text)
    speaker_spans = [(m.start(), m.end()) for m in _SPEAKER_CLAUSE.finditer(text)]
    quoted = [(m.start(), m.end()) for m in _QUOTED.finditer(text)]
    terms: list[Term] = []
    seen: set[str] = set()
    tokens = words(text)
    spans = [(0, len(text))] if turns else _sentences(text)
    # A capital that starts one of the question's sentences says nothing of a name.
    firsts = {next((i for i, (_w, s, _e) in enumerate(tokens) if s >= a), -1)
              for a, _b in spans}
    for i, (w, s, _e) in enumerate(tokens):
        low = w.lower().replace("’", "'")
        if low in STOPWORDS or (len(low) < 2 and not low.isdigit()):
            continue
        st = stem(w)
        if st in seen:
            continue
        seen.add(st)
        proper = (w[0].isupper() and i not in firsts) or (w.isupper() and len(w) > 1)
        weight = 1.5 if proper or any(ch.isdigit() for ch in w) else 1.0
        speaker = any(a <= s < b for a, b in speaker_spans)
        if speaker:
            weight = 0.4
        elif any(a <= s < b for a, b in quoted):
            weight = 2.0  # words the user quotes are the surest clue
        terms.append(Term(w, st, weight, proper, speaker))
    ask = _asked(text, spans)
    if ask is not None:
        asked = {stem(w) for w, _, _ in words(text[ask[0]:ask[1]])}
        for t in terms:
            if t.stem not in asked:
                t.weight *= PREAMBLE_WEIGHT
    # The kind of answer is read from the sentence that asks, when there is one.
    asking = text[ask[0]:ask[1]] if ask is not None else text
    role = asked_role(asking)
    kind = "PERSON" if role else answer_type(asking)
    return Question(text=text, terms=terms, answer_type=kind, role=role)


ROLES = frozenset(
    """mayor judge manager coach ceo chief executive president minister governor senator
    sheriff spokesman spokeswoman spokesperson researcher author scientist professor founder
    owner chair chairman chairwoman director head leader councilman councilwoman councillor
    member officer commissioner player striker goalkeeper captain lawyer attorney prosecutor
    economist analyst official secretary ambassador chancellor premier editor reporter
    doctor surgeon teacher principal pilot driver architect engineer investor buyer seller
    victim suspect witness winner""".split()
)
# Plain people: a role only in "the name of the man", "who is the woman …".
PEOPLE = frozenset(
    """man woman boy girl person child teenager resident passenger patient men women boys girls
    people persons children teenagers residents passengers patients""".split()
)
_ROLE_VERBS = {"manages": "manager", "managed": "manager", "coaches": "coach",
               "coached": "coach", "leads": "leader", "led": "leader", "heads": "head",
               "headed": "head", "owns": "owner", "owned": "owner", "founded": "founder",
               "chairs": "chair", "chaired": "chair", "directs": "director",
               "directed": "director"}
_ROLE_TRIGGERS = re.compile(
    r"\bwho (?:is|was|are|were) (?:the|a|an|their|its|his|her)\s+|\b(?:which|what)\s+"
    r"|\bnames? of (?:(?:one|any|some|each) of )?(?:the|a|an|their|its)\s+"
)


# "'s" after these marks a kind ("a children's book"), not the owner a question asks for.
_KIND_OWNERS = frozenset("children women men people".split())
_POSSESSIVE = re.compile(r"^([\w-]+)['’]s?$")


def possessor(word: str) -> str | None:
    """The owner named by a possessive word ("state's" → "state"), None for any other word
    and for a kind ("children's")."""
    m = _POSSESSIVE.match(word.lower())
    if not m or (word.endswith(("'", "’")) and not m.group(1).endswith("s")):
        return None
    return None if m.group(1) in _KIND_OWNERS else m.group(1)


def asked_role(text: str) -> str | None:
    """The role whose holder a question asks for ("Who is the mayor of Millbrook?" →
    "mayor", "Which judge ruled?" → "judge", "Who manages the club?" → "manager"); none
    when an owner comes first ("Which state's governor …" asks for a state)."""
    low = text.lower()
    m = re.match(r"^\s*who (\w+)\b", low)
    if m and m.group(1) in _ROLE_VERBS:
        return _ROLE_VERBS[m.group(1)]
    for m in _ROLE_TRIGGERS.finditer(low):
        plain_ok = not m.group().lstrip().startswith(("which", "what"))
        for word in re.findall(r"[a-z-]+(?:['’]s?)?", low[m.end() :])[:4]:
            if possessor(word) and not plain_ok:  # "which state's …": the owner is asked
                break
            if owned := _POSSESSIVE.match(word):  # a kind: "which children's author"
                word = owned.group(1)
            if word in ROLES or (plain_ok and word in PEOPLE):
                return word
            if word in ("of", "in", "at", "for", "did", "does", "do", "is", "was", "has"):
                break
    return None


# A wh-word after a word or a comma opens a relative or time clause ("Ann Lee, who died
# this week, wrote which book?", "The crowd cheered when the mayor opened which bridge?")
# when the question has another wh-word after it.
_RELATIVE = re.compile(r"(?<=[\w,])\s+(?:who|whom|whose|where|when)\b(?=.*\b(?:who|whom|what|"
                       r"which|where|when|how)\b)", re.IGNORECASE | re.DOTALL)


def answer_type(text: str) -> str | None:
    """The kind of short answer a question asks for, or None for open questions."""
    # "Who is Maria Lvova-Belova?" asks for a description, not a name.
    if _WHO_IS_NAME.match(text):
        return None
    low = _RELATIVE.sub(lambda m: " " * len(m.group()), text).lower()
    first: tuple[int, str] | None = None
    for pattern, kind in _TYPE_RULES:
        m = re.search(pattern, low)
        if m and (first is None or m.start() < first[0]):
            first = (m.start(), kind)
    return first[1] or None if first else None


def within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion or substitution."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return a == b
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


def repair_typos(question: Question, vocabulary: set[str]) -> None:
    """Replace a term's stem that occurs nowhere in ``vocabulary`` by a vocabulary stem one
    edit away ("arested" → "arrest", "leter" → "letter"), for words of 4+ letters."""
    for t in list(question.terms):
        if t.stem in vocabulary or len(t.stem) < 4 or any(ch.isdigit() for ch in t.stem):
            continue
        low = t.word.lower()
        if any(within_one_edit(low, w) for w in STOPWORDS if len(w) >= 4):
            question.terms.remove(t)  # "befor", "becuase": a misspelt stopword
            continue
        close = sorted(v for v in vocabulary if len(v) >= 4 and within_one_edit(t.stem, v))
        if close:
            t.stem = close[0]


_FOCUS = re.compile(r"\b(?:which|what)\b", re.IGNORECASE)
_FOCUS_WORDS = re.compile(r"^(?:\s+[A-Za-z][\w’'.-]*){1,7}")
_FOCUS_SPAN = 4  # words of a focus phrase read (the ones after them only as lookahead)
_NOT_FOCUS = frozenset(
    """is was are were be been do does did has have had can could will would should may
    might must of in on at for to from by with as that this these those about the a an
    it its they he she his her their you we i kind type sort""".split())


_KIND_WORDS = frozenset({"kind", "type", "sort", "form", "breed", "species"})
# After a participle these start its object ("belonging to", "making the"); after a noun in
# "-ing" ("painting in", "building on") other function words come.
_OBJECT_STARTS = frozenset({"to", "the", "a", "an", "its", "their", "his", "her"})


def focus_word(text: str) -> str | None:
    """The noun a "which/what …" question asks for ("Which music genre …" → "genre",
    "What sport do they play?" → "sport", "Which club won …" → "club"), lower-cased; None
    when there is none. The phrase ends at a function word, a verb in the past tense or an
    adverb ("Which town recently opened …" → "town"); an adverb before the noun is
    passed over ("What rarely seen owl …" → "owl"), and so is "type of" ("Which type of
    boat belonging to …" → "boat": a participle before its object ends the phrase).
    An owner ends it too: "Which state's governor …" asks for a state (but "which
    children's book" for a book)."""
    m = _FOCUS.search(text)
    following = _FOCUS_WORDS.match(text[m.end() :]) if m else None
    if not following:
        return None
    found: list[str] = []
    ws = following.group().split()
    if len(ws) > 2 and ws[0].lower() in _KIND_WORDS and ws[1].lower() == "of":
        ws = ws[2:]  # "Which type of boat …" asks for a boat
    for i, w in enumerate(ws[:_FOCUS_SPAN]):
        owner = possessor(w)
        if owner:
            return owner.replace(".", "")
        if _POSSESSIVE.match(w.lower()):  # a kind, not the noun: "which children's book"
            continue
        low = w.lower().strip("’'").replace(".", "")  # "U.S." → "us"
        adverb = low.endswith("ly") and len(low) > 4
        nxt = ws[i + 1].lower() if i + 1 < len(ws) else ""
        participle = low.endswith("ing") and nxt in _OBJECT_STARTS  # "boat belonging to"
        if low in _NOT_FOCUS or (found and (adverb or participle or _past_tense(low))):
            break
        if not adverb:
            found.append(low)
    return found[-1] if found else None


def _past_tense(word: str) -> bool:
    """A verb in the past tense, by its ending ("opened", and "died" among the short ones,
    where "-ed" alone would take "bed" and "seed") or among the common irregular ones."""
    return ((word.endswith("ed") and len(word) > 4) or (word.endswith("ied") and len(word) == 4)
            or word in IRREGULAR_PAST)
