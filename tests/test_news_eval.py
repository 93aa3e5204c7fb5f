"""The real-news eval: skips in one line without the news folder; stores keyed by content."""

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
    assert news.store_for("dev-2024").name.startswith("news-dev-2024-")
