import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.chunking import chunk_article, count_tokens, split_sentences
from assistant.corpus import read_text
from tests.conftest import ARTICLE


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def test_abbreviations_do_not_end_sentences() -> None:
    text = ("Mrs. Trump met Dr. Smith in Washington, D.C. on Jan. 5. The U.S. government "
            "agreed. J. R. Doe left.")
    assert sentences(text) == [
        "Mrs. Trump met Dr. Smith in Washington, D.C. on Jan. 5.",
        "The U.S. government agreed.",
        "J. R. Doe left.",
    ]


def test_quotes_stay_with_their_sentence() -> None:
    text = ("“Eight children have been rejoined,” Mrs. Trump said. “Each child has endured "
            "hardship.” She wrote, “They dream… They hope.” Done!")
    assert sentences(text) == [
        "“Eight children have been rejoined,” Mrs. Trump said.",
        "“Each child has endured hardship.”",
        "She wrote, “They dream… They hope.”",
        "Done!",
    ]


def test_paragraphs_always_split() -> None:
    assert sentences("A headline\nThe body starts here.") == ["A headline",
                                                             "The body starts here."]


def test_article_chunks_have_exact_offsets_and_fit_the_model() -> None:
    text = read_text(ARTICLE)
    chunks = chunk_article(text, chunk_tokens=220, overlap_tokens=40)
    assert len(chunks) >= 2
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert count_tokens(c.text) <= 220
        for s, e in c.sentences:
            assert c.start <= s < e <= c.end
    # Consecutive chunks overlap by whole sentences and the last chunk reaches the end.
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end and b.start > a.start
    assert chunks[-1].end == len(text.rstrip())


def test_long_sentence_is_cut_to_fit() -> None:
    text = "word " * 2000
    chunks = chunk_article(text, chunk_tokens=100, overlap_tokens=10)
    assert all(count_tokens(c.text) <= 100 for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=1500))
def test_chunks_are_exact_spans_and_cover_the_text(text: str) -> None:
    chunks = chunk_article(text, chunk_tokens=48, overlap_tokens=8)
    covered = set()
    for c in chunks:
        assert text[c.start : c.end] == c.text
        covered.update(range(c.start, c.end))
    # Every non-space character belongs to some chunk.
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())
