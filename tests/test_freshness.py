"""Citations checked against the corpus files as they are now (assistant/freshness.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from assistant.corpus import read_text
from assistant.freshness import Changes, CorpusFiles, confirm, merge_notices, relocate
from assistant.layout import ChunkRecord
from assistant.retrieval import Hit
from assistant.types import Answer, Citation
from tests.conftest import ARTICLE, build_bot

QUESTION = "How many children were reunited with their families in the past 24 hours?"
EIGHT = "“Eight children have been rejoined with their families during the past 24 hours,”"
LEAD = ("Editor's note: this article was updated after publication to add the reaction of "
        "several officials, a correction to the number of letters sent, and a paragraph on "
        "the talks that followed. Earlier versions of the article said otherwise. Readers "
        "were told of each change at the foot of the page.\n\n")


def _age(path: Path, seconds: float = 60) -> None:
    """Give ``path`` a modification time ``seconds`` ago (a file edited a while back)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def _prepend(path: Path, text: str) -> None:
    """Put ``text`` at the top of the article."""
    path.write_text(text + read_text(path), encoding="utf-8")


def _assert_true_to_files(answer: Answer, corpus: Path) -> None:
    for c in answer.citations:
        assert read_text(corpus / c.path)[c.start:c.end] == c.quote, c
    for p in answer.passages:
        assert read_text(corpus / p.path)[p.start:p.end] == p.text, p


def test_an_unchanged_corpus_answers_without_notice_and_reads_each_file_once(
        tmp_path: Path, embed_model) -> None:
    bot = build_bot(tmp_path, embed_model)
    _age(bot.settings.corpus / ARTICLE.name)
    first = bot.ask(QUESTION)
    second = bot.ask(QUESTION)
    assert first.notice is None and second.notice is None
    assert EIGHT in first.citations[0].quote
    assert [c.start for c in first.citations] == [c.start for c in second.citations]
    assert bot._files.reads == 1  # the second question only stats the file


def test_text_added_above_the_quote_moves_the_citation_to_where_it_is_now(
        tmp_path: Path, embed_model) -> None:
    bot = build_bot(tmp_path, embed_model)
    path = bot.settings.corpus / ARTICLE.name
    before = bot.ask(QUESTION).citations[0]
    _prepend(path, LEAD)
    answer = bot.ask(QUESTION)
    assert not answer.abstained
    cited = answer.citations[0]
    assert cited.quote == before.quote and EIGHT in cited.quote
    assert cited.start == before.start + len(LEAD)
    _assert_true_to_files(answer, bot.settings.corpus)
    assert answer.notice is not None
    assert ARTICLE.name in answer.notice and "`assistant ingest`" in answer.notice
    assert "1 article changed since the last ingest" in answer.notice


def test_a_sentence_no_longer_in_the_file_is_never_cited(tmp_path: Path, embed_model) -> None:
    bot = build_bot(tmp_path, embed_model)
    path = bot.settings.corpus / ARTICLE.name
    path.write_text(read_text(path).replace("Eight children have been rejoined",
                                            "Nine children have been brought back"),
                    encoding="utf-8")
    answer = bot.ask(QUESTION)
    assert all("Eight children" not in c.quote for c in answer.citations)
    assert all("Eight children" not in p.text for p in answer.passages)
    _assert_true_to_files(answer, bot.settings.corpus)
    assert answer.notice and ARTICLE.name in answer.notice


def test_a_deleted_article_is_not_cited_and_the_notice_says_it_is_missing(
        tmp_path: Path, embed_model) -> None:
    bot = build_bot(tmp_path, embed_model)
    (bot.settings.corpus / ARTICLE.name).unlink()
    answer = bot.ask(QUESTION)
    assert answer.abstained and answer.citations == [] and answer.passages == []
    assert answer.notice and f"{ARTICLE.name}, now missing" in answer.notice


def test_the_cli_notice_names_the_ingest_command_for_this_store(tmp_path: Path,
                                                                  embed_model) -> None:
    bot = build_bot(tmp_path, embed_model)
    corpus, store = bot.settings.corpus, bot.settings.store
    _prepend(corpus / ARTICLE.name, LEAD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    done = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "--corpus",
                           str(corpus), "--store", str(store), "--json", QUESTION],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert f"`assistant ingest --corpus {corpus} --store {store}`" in data["notice"]
    for c in data["citations"]:
        assert read_text(corpus / c["path"])[c["start"]:c["end"]] == c["quote"]


# -- the parts, on hand-made hits ------------------------------------------------------------

def _hit(text: str, start: int, sentences: list[tuple[int, int]], path: str = "a.txt") -> Hit:
    record = ChunkRecord(doc_id=path, path=path, start=start, end=start + len(text),
                         sentences=tuple(sentences), sha256="old")
    return Hit(id=f"{path}:{start}", text=text, record=record)


def test_relocate_keeps_a_chunk_in_place_and_moves_one_that_shifted() -> None:
    old = "Intro line. The count was 12. Officials agreed."
    hit = _hit(old[12:29], 12, [(12, 29)])
    assert relocate(hit, old) is hit
    moved = relocate(hit, "New first paragraph. " + old)
    assert moved is not None and moved.start == 12 + 21
    assert moved.text == "The count was 12." and moved.sentences == [(33, 50)]


def test_relocate_finds_each_sentence_nearest_its_old_place_and_drops_the_gone() -> None:
    old = "Alpha is first. Beta is second. Gamma is third."
    hit = _hit(old, 0, [(0, 15), (16, 31), (32, 47)])
    # Beta was rewritten; the text gained a copy of Gamma far above and some lead text.
    new = "Gamma is third. " + "x" * 300 + " Alpha is first. Beta changed. Gamma is third."
    fixed = relocate(hit, new)
    assert fixed is not None
    spans = fixed.sentences
    assert [new[s:e] for s, e in spans] == ["Alpha is first.", "Gamma is third."]
    assert spans[1][0] > 300  # the copy near its old neighbour, not the one at the top
    assert fixed.text == new[spans[0][0]:spans[-1][1]]
    assert relocate(hit, "Nothing of it is left.") is None


def test_confirm_drops_a_citation_whose_file_changed_after_the_answer_was_made(
        tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("One fact here. Another fact there.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("A third fact.", encoding="utf-8")
    def cite(n: int, path: str, quote: str) -> Citation:
        return Citation(n=n, doc_id=path, title="", path=path, start=0, end=len(quote),
                        quote=quote)

    answer = Answer(question="q", text="One fact here. [1] A third fact. [2]", abstained=False,
                    citations=[cite(1, "a.txt", "One fact here."),
                               cite(2, "b.txt", "A third fact.")],
                    backend="extractive")
    (tmp_path / "a.txt").write_text("Changed. One fact here.", encoding="utf-8")
    changes = Changes(tmp_path)
    out = confirm(answer, CorpusFiles(tmp_path, 1 << 20), changes, "abstain")
    assert [(c.n, c.path) for c in out.citations] == [(1, "b.txt")]
    assert out.text == "A third fact. [1]"
    assert changes.files == {"a.txt": ""}
    (tmp_path / "b.txt").unlink()
    gone = confirm(out, CorpusFiles(tmp_path, 1 << 20), changes, "abstain")
    assert gone.abstained and gone.text == "abstain" and gone.citations == []
    assert "b.txt, now missing" in (changes.notice() or "")


def test_notices_join_on_one_line() -> None:
    assert merge_notices(None, "") is None
    assert merge_notices("one", None) == "one"
    assert merge_notices("the model failed", "1 article changed") == (
        "the model failed. 1 article changed.")
