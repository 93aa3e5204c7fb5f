"""The store layout's typed chunk record: its sentence vectors as the record keeps them."""

import numpy as np
import pytest

from assistant.layout import VECTORS_KEY, ChunkRecord, SentenceVectors


def test_sentence_vectors_round_trip_through_one_metadata_string() -> None:
    spans = ((10, 40), (41, 90), (91, 120))
    rows = np.random.default_rng(3).standard_normal((3, 384)).astype(np.float32)
    stored = SentenceVectors.of(spans, rows)
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


def test_a_damaged_or_absent_vectors_string_reads_as_no_vectors() -> None:
    meta = ChunkRecord(doc_id="a.txt", path="a.txt", start=0, end=20,
                       sentences=((0, 9), (10, 20))).to_metadata()
    assert ChunkRecord.from_metadata(meta).sentence_vector((0, 9)) is None
    assert ChunkRecord.from_metadata(meta, vectors="%%%").sentence_vector((0, 9)) is None
    three = SentenceVectors.of(((0, 1), (1, 2), (2, 3)), np.ones((3, 8)))
    assert ChunkRecord.from_metadata(meta, vectors=three.encoded).sentence_vector(
        (0, 9)) is None  # 3 rows for 2 sentences


def test_vectors_must_match_their_spans() -> None:
    with pytest.raises(ValueError, match="2 sentence spans"):
        SentenceVectors.of(((0, 1), (1, 2)), np.ones((3, 8)))
