"""The lexical index is updated, not rebuilt: an ingest reads only the chunks it added, and
the result scores exactly as an index built whole from the same chunks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant import lexical
from tests.conftest import corpus_bot

TOWNS = ["Arden", "Bexley", "Corran", "Dunmore", "Elgin", "Fenwick", "Garth", "Hollin"]
ARTICLES = {
    f"story-{i}.txt": (f"The harbour of {town} reopens\nPublished: 2026-01-{i + 1:02d}\n\n"
                       f"The harbour of {town} reopened after {i + 2} days of storms. "
                       f"Officials in {town} counted {i * 7 + 3} damaged boats on the quay. "
                       f"The mayor of {town} thanked the volunteers and the fishermen.")
    for i, town in enumerate(TOWNS)
}
QUERIES = ["harbour reopened after storms", "damaged boats quay", "mayor thanked volunteers",
           "fishermen of Fenwick", "pension reform vote"]


def record_updates(monkeypatch: pytest.MonkeyPatch, module: object
                   ) -> list[lexical.UpdateReport]:
    """The reports of every lexical update that ``module``'s code makes from now on."""
    reports: list[lexical.UpdateReport] = []
    real = lexical.update_bm25

    def recording(store, fingerprint, report=None):
        report = report if report is not None else lexical.UpdateReport()
        reports.append(report)
        return real(store, fingerprint, report)

    monkeypatch.setattr(module, "update_bm25", recording)
    return reports


def _full_build(store, tmp_path: Path) -> lexical.SparseIndex:
    """An index built whole from the store's chunks (no earlier index to start from)."""
    target = lexical.bm25_dir(store)
    aside = tmp_path / "aside"
    shutil.move(target, aside)
    report = lexical.UpdateReport()
    try:
        index = lexical.update_bm25(store, store.fingerprint(), report)
    finally:
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(aside, target)
    assert report.full and report.added == report.chunks
    assert index is not None
    return index


def test_an_ingest_reads_only_the_chunks_it_added(tmp_path: Path, embed_model,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bot = corpus_bot(tmp_path, ARTICLES, embed_model)
    store = bot.store
    before = lexical.SparseIndex.load(lexical.bm25_dir(store))
    assert len(before.ids) == store.count() == 8

    import assistant.ingest

    reports = record_updates(monkeypatch, assistant.ingest)
    corpus = bot.settings.corpus
    (corpus / "story-3.txt").write_text(ARTICLES["story-3.txt"].replace(
        "reopened", "stayed closed"), encoding="utf-8")
    (corpus / "story-6.txt").unlink()
    (corpus / "late.txt").write_text("A pension reform vote\n\nThe parliament passed the "
                                     "pension reform by 12 votes.", encoding="utf-8")
    bot.ingest()
    (report,) = reports
    assert not report.full
    assert (report.added, report.removed, report.chunks) == (2, 2, 8)

    updated = lexical.SparseIndex.load(lexical.bm25_dir(store))
    whole = _full_build(store, tmp_path)
    assert sorted(updated.ids) == sorted(whole.ids) == sorted(store.all_chunk_ids())
    for query in QUERIES:
        got, want = updated.search(query, 5), whole.search(query, 5)
        assert [round(v, 5) for _, v in got] == [round(v, 5) for _, v in want], query
        assert {i for i, _ in got} == {i for i, _ in want}, query
    assert updated.search("pension reform vote", 1)[0][0].startswith("late.txt")
    assert updated.search("harbour stayed closed", 1)[0][0].startswith("story-3.txt")
    assert not any(i.startswith("story-6.txt") for i in updated.ids)


def test_chunks_read_a_page_ahead_are_those_read_in_turn(tmp_path: Path,
                                                        embed_model) -> None:
    store = corpus_bot(tmp_path, ARTICLES, embed_model).store
    ids = [*sorted(store.all_chunk_ids()), "no-such-chunk"]
    in_turn = list(store.get_chunks(ids, page=3))
    assert sorted(c[0] for c in in_turn) == ids[:-1]  # a missing id is left out
    assert list(store.get_chunks(ids, page=3, ahead=True)) == in_turn  # pages of 3, 3, 3
    assert list(store.get_chunks(ids, page=100, ahead=True)) == in_turn  # one page
    assert list(store.get_chunks([], ahead=True)) == []


def test_a_damaged_tokenised_corpus_is_rebuilt_whole(tmp_path: Path, embed_model) -> None:
    bot = corpus_bot(tmp_path, ARTICLES, embed_model)
    store = bot.store
    folder = lexical.bm25_dir(store)
    (folder / lexical.LENGTHS_FILE).write_bytes(b"not an array")
    report = lexical.UpdateReport()
    index = lexical.update_bm25(store, store.fingerprint(), report)
    assert report.full and report.chunks == 8 and index is not None
    assert index.search("damaged boats quay", 1)
    assert lexical.TokenisedCorpus.load(folder).ids == index.ids


@pytest.mark.parametrize("block", [lexical.BLOCK_CHUNKS, 37, 1])
def test_the_scores_are_those_bm25s_computes_from_the_same_token_ids(block: int) -> None:
    import bm25s
    import numpy as np

    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 60, 400).astype(np.int32)  # empty chunks included
    # Terms 300-319 occur in no chunk, as after chunks were dropped.
    tokens = rng.integers(0, 300, int(lengths.sum())).astype(np.int32)
    corpus = lexical.TokenisedCorpus([f"c{i}" for i in range(400)], [0] * 400, tokens,
                                     lengths, {f"w{i}": i for i in range(320)})
    ours = corpus.index(block=block)  # the chunks' terms counted a block at a time
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    reference = bm25s.BM25()
    reference.index(([tokens[bounds[i]:bounds[i + 1]].tolist() for i in range(400)],
                     dict(corpus.vocab)), show_progress=False)
    for key in ("data", "indices", "indptr"):
        assert np.array_equal(ours.scores[key], reference.scores[key]), key
        assert ours.scores[key].dtype == reference.scores[key].dtype, key
    assert ours.scores["num_docs"] == reference.scores["num_docs"]
    assert ours.vocab_dict == reference.vocab_dict


def test_chunks_tokenised_a_page_at_a_time_make_the_same_corpus() -> None:
    chunks = [(f"{name}::c0", text, {"title": name, "day": 20260101 + i})
              for i, (name, text) in enumerate(ARTICLES.items())]
    whole, paged = lexical.TokenisedCorpus.empty(), lexical.TokenisedCorpus.empty()
    assert whole.add(chunks, page=len(chunks)) == len(chunks)
    assert paged.add(iter(chunks), page=3) == len(chunks)  # pages of 3, 3 and 2
    assert paged.ids == whole.ids and paged.days == whole.days
    assert paged.vocab == whole.vocab
    assert paged.tokens.tolist() == whole.tokens.tolist()
    assert paged.lengths.tolist() == whole.lengths.tolist()
    assert paged.add([]) == 0 and len(paged.ids) == len(chunks)


@pytest.mark.parametrize("title", ["Floods hit the valley", "", None])
def test_the_indexed_content_is_what_llama_index_gives_bm25(title: str | None) -> None:
    from llama_index.core.schema import MetadataMode

    from assistant.layout import ChunkRecord, make_node

    text = "  Heavy rain flooded the valley.\n\nMayor Ana Ruiz said 300 homes were evacuated. "
    meta = ChunkRecord(doc_id="a.txt", path="a.txt", start=0, end=len(text),
                       sentences=((0, 5),), title=title or "", day=20240301).to_metadata()
    if title is None:
        del meta["title"]
    node = make_node("a.txt::c0", text, meta)
    assert lexical.bm25_content(text, meta) == node.get_content(metadata_mode=MetadataMode.EMBED)
