"""Shared fixtures: isolated environment, the real article, one embedding model per run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTICLE = ROOT / "corpus" / "melania-trump-putin-letter-children.txt"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ASSISTANT_* setting of the developer's shell leaks into a test."""
    import os

    for key in list(os.environ):
        if key.startswith("ASSISTANT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def embed_model():
    """The bundled embedding model, loaded once."""
    from assistant.embedding import MiniLMEmbedding

    return MiniLMEmbedding()


@pytest.fixture(scope="session")
def q8_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache folder of this test run, where the minilm-q8 model is derived once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def q8_env(monkeypatch: pytest.MonkeyPatch, q8_cache: Path) -> Path:
    """ASSISTANT_MODEL_CACHE pointed at the run's model cache."""
    monkeypatch.setenv("ASSISTANT_MODEL_CACHE", str(q8_cache))
    return q8_cache


@pytest.fixture
def store_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the times a store's articles are read back from Chroma (``stored_docs``)."""
    from assistant.store import Store

    reads = [0]
    read_back = Store.stored_docs

    def counting(self: Store):
        reads[0] += 1
        return read_back(self)

    monkeypatch.setattr(Store, "stored_docs", counting)
    return reads


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A corpus holding the real article."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ARTICLE, corpus / ARTICLE.name)
    return corpus


def build_bot(base: Path, embed_model, extra: dict[str, str] | None = None):
    """An ingested Assistant under ``base`` over the real article plus ``extra`` files."""
    from assistant.core import Assistant

    corpus = base / "corpus"
    corpus.mkdir()
    shutil.copy(ARTICLE, corpus / ARTICLE.name)
    for name, text in (extra or {}).items():
        (corpus / name).write_text(text, encoding="utf-8")
    bot = Assistant(corpus=corpus, store=base / "store")
    bot._embed = embed_model
    bot.ingest()
    return bot


def corpus_bot(base: Path, articles: dict[str, str], embed_model):
    """An ingested Assistant under ``base`` over exactly ``articles`` (name -> text)."""
    from assistant.core import Assistant

    corpus = base / "corpus"
    corpus.mkdir()
    for name, text in articles.items():
        (corpus / name).write_text(text, encoding="utf-8")
    bot = Assistant(corpus=corpus, store=base / "store")
    bot._embed = embed_model
    bot.ingest()
    return bot


@pytest.fixture(scope="session")
def article_bot(tmp_path_factory: pytest.TempPathFactory, embed_model):
    """An Assistant over the real article, ingested once for the session."""
    return build_bot(tmp_path_factory.mktemp("article"), embed_model)
