"""Smoke test of the performance benchmark at its smallest size (the real article), so
that it cannot rot. The full benchmark is `make bench`, never part of the test run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals import bench, synth


def test_bench_runs_at_the_smallest_size(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    code = bench.main(["--sizes", "real", "--modes", "embedded,pooled,q8,server",
                       "--questions", "12",
                       "--cold-runs", "1", "--inline", "--out", str(out)])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    row = data["results"][0]
    m = row["embedded"]
    assert m["chunks"] > 0 and m["ingest_s"] > 0 and m["floor_texts_per_s"] > 0
    assert m["reingest_embedded"] == 0          # unchanged corpus: nothing embedded again
    assert m["incr_embedded"] > 0               # a changed file is embedded again
    assert m["questions"] == 12 and m["p50_ms"] > 0 and m["p99_ms"] >= m["p95_ms"]
    assert m["unchecked_p50_ms"] > 0            # the citation check's cost is measured
    assert m["cold_start_answer_ok"]            # `assistant ask` printed the right answer
    assert m["hit5"] >= 0.9 and m["answer_acc"] >= 0.5
    assert row["peer"]["peer_hit5"] > 0
    # The modes embed with two models, so the peer uses the default one.
    assert row["peer"]["peer_embedding"] == "minilm"
    table = (out / "results.md").read_text()
    assert "| real | embedded |" in table
    # The ingest with pooled chunk vectors, on the same corpus in one run.
    pooled = row["pooled"]
    assert pooled["chunks"] == m["chunks"] and pooled["texts_embedded"] < m["texts_embedded"]
    assert "| real | embedded, pooled chunk vectors |" in table
    assert "- real: ingest " in table and "pooled chunk vectors, " in table
    # The same ingest with the minilm-q8 model: as many texts, its own quality figures.
    q8 = row["q8"]
    assert q8["chunks"] == m["chunks"] and q8["texts_embedded"] == m["texts_embedded"]
    assert q8["hit5"] >= 0.9 and q8["answer_acc"] >= 0.5
    assert "| real | embedded, minilm-q8 |" in table and "s minilm-q8, " in table
    # A second machine on the same Chroma server answers as the first without embedding
    # anything but its questions (and question words the corpus lacks): the sentence and
    # word vectors come from the server.
    server = row["server"]
    assert server["second_first_query_s"] > 0 and server["second_p50_ms"] > 0
    assert server["second_prepare_s"] > 0
    assert (server["second_hit5"], server["second_answer_acc"]) == (server["hit5"],
                                                                    server["answer_acc"])
    assert 1.0 <= server["second_embedded_texts"] < 1.5, server["second_embedded_texts"]
    assert "| real | server |" in table
    # Sizes run separately are put in one table, a stand-in model's run marked as such.
    stand_in = json.loads((out / "results-real.json").read_text())
    stand_in.update(size="100k", stand_in_embedding=True)
    (tmp_path / "results-100k.json").write_text(json.dumps(stand_in))
    both = tmp_path / "both"
    assert bench.main(["--combine", str(out / "results-real.json"),
                       str(tmp_path / "results-100k.json"), "--out", str(both)]) == 0
    combined = (both / "results.md").read_text()
    assert "| real | embedded |" in combined and "| 100k (stand-in model) | embedded |" in combined
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("matplotlib (the bench extra) is not installed: no plot")
    assert (out / "results.png").stat().st_size > 0


def test_generated_corpus_is_reproducible_with_unique_questions(tmp_path: Path) -> None:
    a = synth.generate(tmp_path / "a", 60, chunks_per_article=3.0)
    b = synth.generate(tmp_path / "b", 60, chunks_per_article=3.0)
    assert [f.question for f in a] == [f.question for f in b]
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.txt"))
    assert files_a and files_a == sorted(p.relative_to(tmp_path / "b")
                                         for p in (tmp_path / "b").rglob("*.txt"))
    assert len({f.question for f in a}) == len(a)
    for f in a:  # every planted answer is in its article
        text = (tmp_path / "a" / f.doc_id).read_text()
        assert f.sentence in text and f.answers[0] in f.sentence


def test_the_lexical_benchmark_runs_and_finds_the_update_equal_to_a_whole_build(
        capsys: pytest.CaptureFixture[str]) -> None:
    from evals import bench_lexical

    assert bench_lexical.main(["--chunks", "300", "--changed", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "15 added, 15 removed, whole=False" in out
    assert "same top 10 for 3 queries: True" in out


def test_the_filter_benchmark_finds_each_day_filter_equal_to_both_bounds(capsys) -> None:
    """The filters retrieval sends to Chroma keep exactly the chunks that both bounds keep
    (undated chunks out), on a real embedded Chroma, for each window questions use."""
    from evals import bench_filters

    assert bench_filters.main(["--chunks", "3000", "--queries", "4"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if "DayRange.where()" in line]
    assert len(rows) == 3, rows
    assert all(line.rstrip().endswith("| yes |") for line in rows), rows
    assert "`$in`" in rows[1] and "`$lte`" in rows[0]


def test_the_entity_benchmark_finds_the_same_answers_without_loading_the_recogniser(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The two stores it compares answer alike, and the one whose chunks keep their entities
    answers without loading the recogniser."""
    from evals import bench_entities

    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps({"question": q}) for q in [
        "How many children were reunited with their families?",
        "Where was the letter handed to Putin?", "What law did she champion?"]))
    corpus = Path(__file__).resolve().parent.parent / "corpus"
    assert bench_entities.main(["--corpus", str(corpus), "--questions", str(questions),
                                "--rounds", "1", "--cold-runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "same answers: 3 of 3; recogniser loaded by the store with entities: False" in out
    assert "with / without:" in out and "cold `assistant ask`" in out


def test_the_peer_embeds_with_the_model_it_is_given(tmp_path: Path) -> None:
    """Plain llama-index compared with a minilm-q8 ingest embeds with minilm-q8 too."""
    questions = bench.load_questions(tmp_path, "real")[:4]
    got = bench.worker_peer({"corpus": str(bench.REAL_CORPUS), "store": str(tmp_path / "p"),
                             "questions": questions, "embedding": "minilm-q8"})
    assert got["peer_embedding"] == "minilm-q8" and got["peer_chunks"] > 0
    import chromadb
    import numpy as np

    from assistant.embedding import MiniLMEncoder
    stored = chromadb.PersistentClient(path=str(tmp_path / "p")).get_collection(
        "peer").get(limit=3, include=["documents", "embeddings"])
    vectors = np.asarray(stored["embeddings"], dtype=np.float64)
    for variant, same in (("minilm-q8", True), ("minilm", False)):
        fresh = MiniLMEncoder(variant=variant).embed(stored["documents"])
        assert np.allclose(vectors, fresh, atol=1e-4) is same, variant
