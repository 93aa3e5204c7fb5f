from pathlib import Path

import pytest

from assistant.corpus import (
    SkippedFile,
    iter_corpus_files,
    load_article,
    parse_header,
    read_text,
    title_from_filename,
)
from tests.conftest import ARTICLE


def test_real_article_metadata() -> None:
    article = load_article(ARTICLE.parent, ARTICLE)
    assert article.doc_id == "melania-trump-putin-letter-children.txt"
    assert article.meta["source"] == "Africa Publicity"
    assert article.title == "Melania trump putin letter children"
    assert article.body.startswith("First Lady Melania Trump has revealed")
    assert article.body.endswith("protect children from the conflict.")
    assert "Source:" not in article.body


def test_title_and_header_lines() -> None:
    text = "# Floods hit the valley\nPublished: 2026-06-16\nAuthor: Jane Roe\n\nRain fell.\n"
    title, meta, start, end = parse_header(text)
    assert title == "Floods hit the valley"
    assert meta == {"published": "2026-06-16", "author": "Jane Roe"}
    assert text[start:end] == "Rain fell."


def test_first_sentence_is_not_a_title() -> None:
    title, meta, start, _ = parse_header("The mayor resigned on Monday.\nMore text.")
    assert title == "" and meta == {} and start == 0


@pytest.mark.parametrize("headline", ["Is this the end of the high street?",
                                      "Inside the guesthouse set to become a royal home ...",
                                      "Floods! Three towns cut off.",
                                      "The mayor resigned on Monday."])
def test_header_lines_under_a_first_line_that_is_no_title_are_read(headline: str) -> None:
    text = f"{headline}\nPublished: 2024-03-05\n\nThe body begins here. It goes on.\n"
    title, meta, start, end = parse_header(text)
    assert meta == {"published": "2024-03-05"}  # the date is read
    assert title == "" and start == 0  # the text is chunked as before, headline included
    assert text[start:end] == text.rstrip("\n")


def test_title_from_filename() -> None:
    assert title_from_filename("city-council_vote.md") == "City council vote"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xef\xbb\xbfHello world", "Hello world"),
        (b"Line one\r\nLine two\r\n", "Line one\nLine two\n"),
        ("Caf\u00e9 cr\u00e8me".encode("latin-1"), "Caf\u00e9 cr\u00e8me"),
    ],
)
def test_read_text_decodes(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(raw)
    assert read_text(path) == expected


def test_binary_and_empty_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02binary" * 10)
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(SkippedFile, match="binary"):
        load_article(tmp_path, tmp_path / "bin.txt")
    with pytest.raises(SkippedFile, match="empty"):
        load_article(tmp_path, tmp_path / "empty.txt")


def test_iter_corpus_files_recursive_and_loop_safe(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("A text.")
    (tmp_path / "sub" / "b.md").write_text("B text.")
    (tmp_path / "sub" / "c.json").write_text("{}")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in iter_corpus_files(tmp_path)]
    assert names == ["a.txt", "sub/b.md"]
