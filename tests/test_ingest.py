from pathlib import Path

import pytest

from assistant.core import Assistant
from assistant.settings import AssistantError, Settings
from assistant.store import Store, ingest_lock

ARTICLES = {
    "floods.txt": "Floods hit the valley\nPublished: 2026-03-02\n\nHeavy rain flooded the "
    "valley on Monday. Mayor Ana Ruiz said 300 homes were evacuated.",
    "budget.md": "# City budget passes\n\nThe council approved a budget of 12 million euros. "
    "Councillor Tom Baker voted against it.",
}


@pytest.fixture
def bot(tmp_path: Path, embed_model) -> Assistant:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text)
    b = Assistant(corpus=corpus, store=tmp_path / "store")
    b._embed = embed_model
    return b


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the texts the embedding model is asked to embed."""
    from assistant.embedding import MiniLMEmbedding

    counts = [0]
    real = MiniLMEmbedding.embed

    def counting(self, texts):
        counts[0] += len(texts)
        return real(self, texts)

    monkeypatch.setattr(MiniLMEmbedding, "embed", counting)
    return counts


def test_incremental_add_change_delete_unchanged(bot: Assistant, embedded: list[int]) -> None:
    corpus = bot.settings.corpus
    first = bot.ingest()
    assert (first.new, first.changed, first.removed, first.unchanged) == (2, 0, 0, 0)
    assert first.chunks == 2

    assert embedded[0] > 0
    embedded[0] = 0
    again = bot.ingest()
    assert (again.new, again.changed, again.removed, again.unchanged) == (0, 0, 0, 2)
    assert embedded[0] == 0, "an unchanged corpus must not be embedded again"

    (corpus / "budget.md").write_text("# City budget fails\n\nThe council rejected the budget.")
    (corpus / "floods.txt").unlink()
    (corpus / "fire.txt").write_text("A fire destroyed the old mill on Tuesday night.")
    third = bot.ingest()
    assert (third.new, third.changed, third.removed, third.unchanged) == (1, 1, 1, 0)
    docs = bot.store.stored_docs()
    assert sorted(docs) == ["budget.md", "fire.txt"]
    assert all(d.complete for d in docs.values())
    answer = bot.ask("What happened to the budget?")
    assert "rejected" in answer.text


def test_metadata_is_parsed_and_stored(bot: Assistant) -> None:
    bot.ingest()
    got = bot.store.chunks.get(where={"doc_id": "floods.txt"}, include=["metadatas"])
    meta = got["metadatas"][0]
    assert meta["title"] == "Floods hit the valley"
    assert meta["published"] == "2026-03-02"
    text = (bot.settings.corpus / "floods.txt").read_text()
    assert text[meta["start"] : meta["end"]].startswith("Heavy rain flooded")


def test_interrupted_article_is_rewritten(bot: Assistant) -> None:
    bot.ingest()
    # Simulate a crash that left only part of an article's chunks.
    col = bot.store.chunks
    ids = col.get(where={"doc_id": "floods.txt"})["ids"]
    col.delete(ids=ids[:1])
    report = bot.ingest()
    assert report.new == 1 and report.unchanged == 1
    assert all(d.complete for d in bot.store.stored_docs().values())


def test_skipped_files_are_reported_and_rest_ingested(bot: Assistant) -> None:
    bot.ingest()
    corpus = bot.settings.corpus
    (corpus / "empty.txt").write_text("")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 100)
    (corpus / "copy.txt").write_text(ARTICLES["floods.txt"])
    report = bot.ingest()
    reasons = dict(report.skipped)
    assert reasons["empty.txt"] == "empty file"
    assert reasons["binary.txt"] == "binary file"
    # The copy of a stored article is skipped; the stored one stays.
    assert reasons["copy.txt"] == "same content as floods.txt"
    assert report.articles == 2
    assert sorted(bot.store.stored_docs()) == ["budget.md", "floods.txt"]


def test_missing_corpus_is_a_clear_error(tmp_path: Path) -> None:
    b = Assistant(corpus=tmp_path / "nope", store=tmp_path / "store")
    with pytest.raises(AssistantError, match="corpus directory not found"):
        b.ingest()


def test_store_built_with_other_settings_is_refused(bot: Assistant) -> None:
    bot.ingest()
    other = Settings(corpus=bot.settings.corpus, store=bot.settings.store, chunk_tokens=100)
    with pytest.raises(AssistantError, match="--rebuild"):
        _ = Store(other, "all-MiniLM-L6-v2-onnx-int8").chunks
    with pytest.raises(AssistantError, match="embed_model"):
        _ = Store(bot.settings, "another-model").chunks


def test_rebuild_recreates_the_store(bot: Assistant) -> None:
    bot.ingest()
    report = bot.ingest(rebuild=True)
    assert report.new == 2 and report.chunks == 2


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    with (ingest_lock(tmp_path, timeout=1),
          pytest.raises(AssistantError, match="another ingest"),
          ingest_lock(tmp_path, timeout=0.2)):
        pass
