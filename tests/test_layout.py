"""The store layout's typed chunk record: its sentence vectors as the record keeps them."""

import numpy as np
import pytest

from assistant.layout import VECTORS_KEY, ChunkRecord, SentenceData


def test_sentence_vectors_round_trip_through_one_metadata_string() -> None:
    spans = ((10, 40), (41, 90), (91, 120))
    rows = np.random.default_rng(3).standard_normal((3, 384)).astype(np.float32)
    stored = SentenceData.of(spans, rows)
    assert isinstance(stored.encoded, str) and stored.encoded.isascii()
    meta = ChunkRecord(doc_id="a.txt", path="a.txt", start=10, end=120,
                       sentences=spans).to_metadata()
    assert VECTORS_KEY not in meta
    record = ChunkRecord.from_metadata(meta, vectors=stored.encoded)
    for span, row in zip(spans, rows, strict=True):
        got = record.sentence_vector(span)
        assert got is not None and got.dtype == np.float32
        np.testing.assert_allclose(got, row.astype(np.float16).astype(np.float32))
    assert record.sentence_vector((0, 9)) is None


def test_sentence_entities_travel_with_the_vectors() -> None:
    spans = ((0, 30), (31, 60))
    found = [((0, 8, "PERSON"), (20, 24, "DATE")), ()]
    stored = SentenceData.of(spans, np.ones((2, 8)), found)
    assert stored.has_entities and stored.encoded.isascii()
    record = ChunkRecord.from_metadata(
        ChunkRecord(doc_id="a.txt", path="a.txt", start=0, end=60,
                    sentences=spans).to_metadata(), vectors=stored.encoded)
    assert record.sentence_entities((0, 30)) == found[0]
    assert record.sentence_entities((31, 60)) == ()
    assert record.sentence_entities((0, 9)) is None
    assert record.sentence_vector((31, 60)) is not None
    # Without entities (an earlier store) or with a damaged list: vectors only.
    assert not SentenceData.of(spans, np.ones((2, 8))).has_entities
    damaged = SentenceData(spans, stored.encoded.split("\n")[0] + "\n[[1,2]")
    assert damaged.entities((0, 30)) is None and damaged.get((0, 30)) is not None
    with pytest.raises(ValueError, match="entities of 1"):
        SentenceData.of(spans, np.ones((2, 8)), found[:1])


def test_a_damaged_or_absent_vectors_string_reads_as_no_vectors() -> None:
    meta = ChunkRecord(doc_id="a.txt", path="a.txt", start=0, end=20,
                       sentences=((0, 9), (10, 20))).to_metadata()
    assert ChunkRecord.from_metadata(meta).sentence_vector((0, 9)) is None
    assert ChunkRecord.from_metadata(meta, vectors="%%%").sentence_vector((0, 9)) is None
    three = SentenceData.of(((0, 1), (1, 2), (2, 3)), np.ones((3, 8)))
    assert ChunkRecord.from_metadata(meta, vectors=three.encoded).sentence_vector(
        (0, 9)) is None  # 3 rows for 2 sentences


def test_vectors_must_match_their_spans() -> None:
    with pytest.raises(ValueError, match="2 sentence spans"):
        SentenceData.of(((0, 1), (1, 2)), np.ones((3, 8)))
