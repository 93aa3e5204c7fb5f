"""Sentence splitting and token-bounded chunking, both with exact character offsets.

Every sentence and chunk is a span ``(start, end)`` of the article text, so
``text[start:end]`` is always the sentence or chunk itself.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Titles and other abbreviations that end with a period but do not end a sentence.
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt gen lt col sgt capt cmdr adm gov sen rep rev hon pres
    supt insp det fr messrs mme mlle jan feb mar apr jun jul aug sep sept oct nov dec mon
    tue tues wed thu thur thurs fri sat sun inc corp co ltd llc plc bros dept univ assn est
    approx vs etc al fig no nos vol vols ed eds pp ca cf viz e.g i.e a.m p.m u.s u.k u.n
    e.u d.c ft lb lbs oz km kg mi mph sq ave blvd rd hwy""".split()
)
_CLOSERS = "\"'”’)]»"
_OPEN_QUOTES = {"“": "”", "«": "»"}
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]»]*(?=\s+)")
_STARTER = re.compile(r"\s+[\"'“‘(\[«]*[A-Z0-9À-ÖØ-Þ]")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


@dataclass(frozen=True)
class Chunk:
    """A span of the article: ``text == article_text[start:end]``."""

    index: int
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...]


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]`` as absolute ``(start, end)`` offsets.

    Paragraph breaks always end a sentence. Inside a paragraph a sentence ends at
    ``.``, ``!``, ``?`` or ``…`` (with closing quotes) followed by a capitalised word,
    except after abbreviations ("Mrs.", "U.S.", "Jan."), initials ("J. Smith") and
    inside a short quotation that is still open.
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for p_start, p_end in _paragraphs(text, start, end):
        spans.extend(_split_paragraph(text, p_start, p_end))
    return spans


def _paragraphs(text: str, start: int, end: int) -> list[tuple[int, int]]:
    out = []
    for m in re.finditer(r"[^\n]+", text[start:end]):
        s, e = _strip(text, start + m.start(), start + m.end())
        if s < e:
            out.append((s, e))
    return out


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


_OPENER = re.compile("[" + re.escape("".join(_OPEN_QUOTES) + '"') + "]")


def _quoted_regions(para: str) -> list[tuple[int, int]]:
    regions = []
    i = 0
    while m := _OPENER.search(para, i):
        i = m.start()
        close = _OPEN_QUOTES.get(para[i]) or '"'
        j = para.find(close, i + 1)
        if j == -1:
            break
        if j - i < 400:
            regions.append((i, j))
        i = j + 1
    return regions


def _split_paragraph(text: str, p_start: int, p_end: int) -> list[tuple[int, int]]:
    para = text[p_start:p_end]
    quoted = _quoted_regions(para)
    # The regions are sorted and disjoint: only the last one opening before a boundary
    # can contain it (a bisection keeps long, quote-heavy paragraphs linear).
    quote_starts = [a for a, _ in quoted]
    spans = []
    sent_start = 0
    for m in _BOUNDARY.finditer(para):
        cut = m.end()
        if not _STARTER.match(para, cut):
            continue
        k = bisect_left(quote_starts, m.start()) - 1
        if k >= 0 and cut - 1 < quoted[k][1]:
            continue
        # Only the word before the period matters: look at a bounded window, not the whole
        # sentence so far ("Mr. Mr. Mr. …" would otherwise take quadratic time).
        if para[m.start()] == "." and m.group().rstrip(_CLOSERS) == "." and _is_abbreviation(
            para[max(sent_start, m.start() - 80) : m.start()]
        ):
            continue
        s, e = _strip(para, sent_start, cut)
        if s < e:
            spans.append((p_start + s, p_start + e))
        sent_start = cut
    s, e = _strip(para, sent_start, len(para))
    if s < e:
        spans.append((p_start + s, p_start + e))
    return spans


def _is_abbreviation(before: str) -> bool:
    m = _WORD_BEFORE.search(before)
    if not m:
        return False
    word = m.group(1).lower()
    if len(word) == 1:  # an initial: "J. Smith"
        return True
    if word in ABBREVIATIONS:
        return True
    # Dotted acronyms such as "U.S" (the final period is the boundary candidate).
    return bool(re.fullmatch(r"(?:[a-z]\.)+[a-z]", word))


@lru_cache(maxsize=1)
def _encoding():
    """cl100k_base, loaded offline from the cache shipped inside llama-index-core."""
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        import llama_index.core

        cache = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Number of cl100k_base tokens in ``text``."""
    return len(_encoding().encode_ordinary(text))


def chunk_article(
    text: str,
    start: int = 0,
    end: int | None = None,
    chunk_tokens: int = 220,
    overlap_tokens: int = 40,
) -> list[Chunk]:
    """Group the sentences of ``text[start:end]`` into chunks of at most ``chunk_tokens``.

    Consecutive chunks share their last sentences up to ``overlap_tokens``. A sentence
    longer than a chunk is cut at word boundaries into pieces that fit.
    """
    units: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for s, e in split_sentences(text, start, end):
        n = count_tokens(text[s:e])
        if n <= chunk_tokens:
            units.append((s, e, n))
        else:
            units.extend(_cut_long(text, s, e, chunk_tokens))
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j = i
        total = 0
        while j < len(units) and (j == i or total + units[j][2] <= chunk_tokens):
            total += units[j][2]
            j += 1
        c_start, c_end = units[i][0], units[j - 1][1]
        chunks.append(
            Chunk(
                index=len(chunks),
                start=c_start,
                end=c_end,
                text=text[c_start:c_end],
                sentences=tuple((u[0], u[1]) for u in units[i:j]),
            )
        )
        if j >= len(units):
            break
        # Step back over trailing sentences that fit in the overlap, keeping progress.
        back = j
        kept = 0
        while back - 1 > i and kept + units[back - 1][2] <= overlap_tokens:
            back -= 1
            kept += units[back][2]
        i = back
    return chunks


def _cut_long(text: str, s: int, e: int, limit: int) -> list[tuple[int, int, int]]:
    """Cut an over-long sentence into word-aligned pieces of at most ``limit`` tokens."""
    pieces = []
    words = [(m.start() + s, m.end() + s) for m in re.finditer(r"\S+", text[s:e])]
    i = 0
    while i < len(words):
        j = i
        piece_start = words[i][0]
        while j < len(words):
            n = count_tokens(text[piece_start : words[j][1]])
            if n > limit and j > i:
                break
            j += 1
        if j == i + 1 and count_tokens(text[piece_start : words[i][1]]) > limit:
            # A single huge "word": cut it by characters, into pieces that fit the limit
            # (a character can be several tokens: CJK, emoji, rare scripts).
            ws, we = words[i]
            cs = ws
            while cs < we:
                ce = min(we, cs + max(1, limit * 2))
                n = count_tokens(text[cs:ce])
                while n > limit and ce - cs > 1:
                    ce = cs + max(1, (ce - cs) * limit // n)
                    n = count_tokens(text[cs:ce])
                pieces.append((cs, ce, n))
                cs = ce
            i += 1
            continue
        piece_end = words[j - 1][1]
        pieces.append((piece_start, piece_end, count_tokens(text[piece_start:piece_end])))
        i = j
    return pieces
