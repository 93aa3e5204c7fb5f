"""The real-news eval: skips in one line without the news folder; stores keyed by content."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_eval_news_skips_in_one_line_when_the_sets_are_absent(tmp_path: Path) -> None:
    env = {**os.environ, "ASSISTANT_NEWS_QA": str(tmp_path / "absent"),
           "ASSISTANT_EVAL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "evals.news", "dev-2024"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval-news: skipped:")
    assert not (tmp_path / "cache").exists(), "nothing is created when skipping"


def test_training_skips_cleanly_without_the_sets(tmp_path: Path) -> None:
    env = {**os.environ, "ASSISTANT_NEWS_QA": str(tmp_path / "absent")}
    out = tmp_path / "model.json"
    done = subprocess.run([sys.executable, "-m", "evals.train", "--output", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("train: skipped:")
    assert not out.exists()


def test_store_key_follows_the_chunking_settings(monkeypatch) -> None:
    from evals import news

    key = news.store_key()
    assert key == news.store_key()
    monkeypatch.setenv("ASSISTANT_CHUNK_TOKENS", "300")
    assert news.store_key() != key
    monkeypatch.delenv("ASSISTANT_CHUNK_TOKENS")
    monkeypatch.setenv("ASSISTANT_EMBEDDING", "minilm-q8")  # another model, another store
    assert news.store_key() not in (key, "")
    monkeypatch.setenv("ASSISTANT_EMBEDDING", "minilm")
    assert news.store_key() == key
    assert news.store_for("dev-2024").name.startswith("news-dev-2024-")
    # The stored entities come from the recogniser: another version, another store.
    import assistant.entities

    monkeypatch.setattr(assistant.entities, "RECOGNISER", "another_recogniser")
    assert news.store_key() != key


def _news_set(root: Path) -> None:
    """A two-article news set in the layout of ../shared/news-qa (written here)."""
    folder = root / "tiny"
    (folder / "corpus").mkdir(parents=True)
    (folder / "corpus" / "a.txt").write_text(
        "Harbour ferry returns\n\nThe harbour ferry carried 412 passengers on its first "
        "day back in service after a winter of repairs to its engines.\n", encoding="utf-8")
    (folder / "corpus" / "b.txt").write_text(
        "Orchard harvest\n\nApple growers in the valley picked a record crop this autumn, "
        "helped by a warm spring and late rain.\n", encoding="utf-8")
    rows = [{"id": "1", "question": "How many passengers did the harbour ferry carry?",
             "answers": ["412"], "doc_ids": ["a.txt"]},
            {"id": "2", "question": "Why was the apple crop a record?",
             "answers": ["a warm spring"], "doc_ids": ["b.txt"]},
            {"id": "3", "question": "Who won the chess final?", "answers": [],
             "doc_ids": []}]
    (folder / "questions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_embedding_comparison_measures_each_model_on_a_news_set(tmp_path: Path,
                                                                q8_env: Path) -> None:
    _news_set(tmp_path)
    env = {**os.environ, "ASSISTANT_NEWS_QA": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "evals.embedding_compare", "tiny",
                           "--models", "minilm,minilm-q8"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "tiny: 2 articles, 2 chunks, 2 answerable questions" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2:6] for line in out.splitlines()
            if line.startswith("| minilm")}
    assert set(rows) == {"minilm", "minilm-q8"}
    for speed, pieces, hit1, hit5 in rows.values():
        assert float(speed) > 0 and float(pieces) > 0
        assert float(hit1) == float(hit5) == 1.0  # each question finds its own article
    absent = subprocess.run([sys.executable, "-m", "evals.embedding_compare", "dev-2024"],
                            cwd=ROOT, env={**env, "ASSISTANT_NEWS_QA": str(tmp_path / "no")},
                            capture_output=True, text=True, timeout=120)
    assert absent.returncode == 0 and "nothing to compare" in absent.stdout
