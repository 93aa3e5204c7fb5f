"""Word tokens, content words, and the bound on the token cache."""

from __future__ import annotations

import pytest

from assistant.text import WORDS_CACHED, _words, is_headline, vocabulary, words


def test_words_keep_their_offsets() -> None:
    text = "The bridge cost 19,500 dollars."
    assert all(text[s:e] == w for w, s, e in words(text))
    assert [w for w, _, _ in words(text)][:3] == ["The", "bridge", "cost"]


def test_vocabulary_is_the_content_words_lower_cased() -> None:
    assert vocabulary("The Harbour Bridge cost 12 million in 2024 at Ely") == {
        "harbour", "bridge", "cost", "million", "ely"}


def test_vocabulary_of_a_corpus_leaves_the_token_cache_alone() -> None:
    # An ingest reads every chunk once: caching their tokens grew memory with the corpus.
    before = _words.cache_info().currsize
    for i in range(2_000):
        vocabulary(f"Chunk number {i} of a corpus, about the harbour bridge and its repairs.")
    assert _words.cache_info().currsize == before


def test_the_token_cache_is_bounded() -> None:
    for i in range(WORDS_CACHED + 500):
        words(f"Sentence {i} of a long-running server's answers.")
    assert _words.cache_info().currsize <= WORDS_CACHED


@pytest.mark.parametrize(
    ("line", "headline"),
    [("Council passes budget", True), ("Will the bridge reopen?", True),
     ("Storm hits coast as thousands flee ...", True), ("# Council passes budget", True),
     ("The council passed its budget on Tuesday.", False), ("", False),
     ("Council " * 40, False)],  # a first paragraph, not a headline
)
def test_is_headline(line: str, headline: bool) -> None:
    assert is_headline(line) is headline
