import json
from pathlib import Path

import numpy as np
import pytest

from assistant.core import Assistant
from assistant.embedding import pooled_chunk_vector
from assistant.layout import VECTORS_KEY, ChunkRecord, ingest_lock, node_meta
from assistant.settings import AssistantError, Settings
from assistant.store import Store

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


def test_a_citation_carries_the_headline_and_date_outside_its_quote(bot: Assistant) -> None:
    bot.ingest()
    answer = bot.ask("How many homes were evacuated after the floods?")
    assert not answer.abstained and answer.citations
    c = answer.citations[0]
    assert (c.title, c.published) == ("Floods hit the valley", "2026-03-02")
    text = (bot.settings.corpus / "floods.txt").read_text()
    assert text[c.start : c.end] == c.quote
    assert "Floods hit" not in c.quote and "Published" not in c.quote
    assert answer.to_dict()["citations"][0]["published"] == "2026-03-02"


def test_interrupted_article_is_rewritten(bot: Assistant) -> None:
    bot.ingest()
    # Simulate a crash that left only part of an article's chunks.
    col = bot.store.chunks
    ids = col.get(where={"doc_id": "floods.txt"})["ids"]
    col.delete(ids=ids[:1])
    report = bot.ingest()
    assert report.new == 1 and report.unchanged == 1
    assert all(d.complete for d in bot.store.stored_docs().values())


LONG = "Harbour works\n\n" + " ".join(
    f"Crane {i} lifted {i + 3} containers onto the quay on day {i}." for i in range(80))


def test_an_incremental_ingest_trusts_the_last_runs_record_only_while_it_holds(
        bot: Assistant, store_reads: list[int]) -> None:
    corpus = bot.settings.corpus
    (corpus / "harbour.txt").write_text(LONG)
    bot.ingest()
    (corpus / "budget.md").write_text("# City budget fails\n\nThe council rejected it.")
    (corpus / "fire.txt").write_text("A fire destroyed the old mill on Tuesday night.")
    (corpus / "floods.txt").unlink()
    store_reads[0] = 0
    report = bot.ingest()
    articles = bot.status()["articles"]
    assert store_reads[0] == 0, "the store was as the last run left it: nothing read back"
    assert (report.new, report.changed, report.removed, report.unchanged, articles) == (
        1, 1, 1, 1, 3)
    held = bot.store.stored_docs()
    assert sorted(held) == ["budget.md", "fire.txt", "harbour.txt"]
    assert all(d.complete for d in held.values()) and held["harbour.txt"].n_chunks > 1
    index = json.loads(bot.store.layout.files_index(bot.store.name).read_text())
    assert {d: tuple(v) for d, v in index["held"].items()} == {
        d: (s.sha256, s.present) for d, s in held.items()}
    assert index["fingerprint"] == bot.store.fingerprint()

    # The store changed behind the record (one chunk of an article lost): it is read back
    # and the article written again.
    ids = bot.store.chunks.get(where={"doc_id": "harbour.txt"})["ids"]
    bot.store.chunks.delete(ids=ids[-1:])
    (corpus / "fire.txt").write_text("A fire destroyed the old mill. Schools stayed shut.")
    store_reads[0] = 0
    report = bot.ingest()
    assert store_reads[0] == 1
    assert (report.new, report.changed, report.unchanged) == (1, 1, 1)
    assert "Schools stayed shut" in bot.ask("What stayed shut after the fire?").text
    held = bot.store.stored_docs()
    assert all(d.complete for d in held.values()) and len(held) == 3


def test_an_ingest_that_another_wrote_beside_reads_the_store_back(
        bot: Assistant, store_reads: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another machine's ingest into the same server, begun while this one writes, marks
    the store with its own token: this run then takes what the store holds from the store,
    not from what it wrote."""
    import assistant.ingest as ingest_module

    bot.ingest()
    real = ingest_module._write_group

    def beside(settings, store, *args):
        written = real(settings, store, *args)
        store.set_fingerprint("", writing="another machine's run")
        return written

    monkeypatch.setattr(ingest_module, "_write_group", beside)
    (bot.settings.corpus / "fire.txt").write_text("A fire destroyed the old mill.")
    store_reads[0] = 0
    assert bot.ingest().new == 1
    assert store_reads[0] == 1
    assert bot.store.writing_run() == "" and bot.store.fingerprint()


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
    # A store built with a model this assistant does not have is refused too.
    odd = Settings(corpus=bot.settings.corpus, store=bot.settings.store.parent / "odd")
    _ = Store(odd, "another-model").chunks
    with pytest.raises(AssistantError, match="embed_model='another-model'"):
        _ = Store(odd, "all-MiniLM-L6-v2-onnx-int8").chunks


@pytest.mark.e2e
def test_a_store_keeps_the_model_it_was_built_with_until_rebuilt(
        corpus_dir: Path, tmp_path: Path, q8_env: Path) -> None:
    from assistant.embedding import MODEL_NAMES

    text = (corpus_dir / "melania-trump-putin-letter-children.txt").read_text()
    question = "How many children were reunited in 24 hours?"
    bot = Assistant(corpus=corpus_dir, store=tmp_path / "store", embedding="minilm-q8")
    bot.ingest()
    assert bot.store.chunks.metadata["embed_model"] == MODEL_NAMES["minilm-q8"]
    answer = bot.ask(question)
    assert answer.short_answer.lower() == "eight"
    c = answer.citations[0]
    assert text[c.start:c.end] == c.quote
    # Opened with the default setting, the store is read with the model that made it.
    plain = Assistant(corpus=corpus_dir, store=tmp_path / "store")
    again = plain.ask(question)
    assert plain.embed_model.variant == "minilm-q8"
    assert again.short_answer == answer.short_answer and again.citations == answer.citations
    # A rebuild builds it with the setting's model.
    plain.ingest(rebuild=True)
    assert plain.store.chunks.metadata["embed_model"] == MODEL_NAMES["minilm"]
    assert plain.embed_model.variant == "minilm"
    assert plain.ask(question).short_answer.lower() == "eight"


@pytest.fixture
def embed_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the embedding model is asked to embed."""
    from assistant.embedding import MiniLMEmbedding

    texts: list[str] = []
    real = MiniLMEmbedding.embed

    def recording(self, batch):
        texts.extend(batch)
        return real(self, batch)

    monkeypatch.setattr(MiniLMEmbedding, "embed", recording)
    return texts


def _chunk_records(bot: Assistant) -> list[tuple[str, dict, str, np.ndarray]]:
    got = bot.store.chunks.get(include=["embeddings", "metadatas", "documents"])
    return list(zip(got["ids"], got["metadatas"], got["documents"],
                    np.asarray(got["embeddings"]), strict=True))


def stored_record(bot: Assistant, chunk_id: str, meta: dict) -> ChunkRecord:
    """A chunk's record with the sentence vectors the store keeps for it."""
    vectors = bot.store.sentence_vectors([chunk_id])
    assert chunk_id in vectors
    return ChunkRecord.from_metadata(node_meta(meta), vectors=vectors[chunk_id])


def test_each_chunk_record_holds_the_vectors_of_its_sentences(
        bot: Assistant, embed_model) -> None:
    """What the answer layer needs of a chunk is kept under its id: one vector per
    sentence, the model's vector of that sentence's text (kept as float16)."""
    bot.ingest()
    records = _chunk_records(bot)
    assert records
    assert bot.store.sentence_count() == len(records)
    for cid, meta, text, _ in records:
        assert VECTORS_KEY not in meta  # not read with every scan of the chunks
        record = stored_record(bot, cid, meta)
        article = (bot.settings.corpus / record.path).read_text()
        assert article[record.start : record.end] == text
        for s, e in record.sentences:
            stored = record.sentence_vector((s, e))
            want = embed_model.embed([article[s:e]])[0]
            assert stored is not None and stored.dtype == np.float32
            assert float(stored @ want) > 0.9999
            assert np.abs(stored - want).max() < 2e-3  # float16 rounding only
        assert record.sentence_vector((0, 1)) is None  # not one of its sentences


def test_each_chunk_record_holds_the_entities_of_its_sentences(bot: Assistant) -> None:
    """The recogniser runs at ingest: each chunk keeps, for every sentence, what it finds
    in that sentence's text (offsets within the sentence)."""
    from assistant.entities import EntityTagger

    bot.ingest()
    assert bot.store.keeps_entities()
    tagger = EntityTagger()
    seen: set[tuple[str, str]] = set()
    for cid, meta, _, _ in _chunk_records(bot):
        assert "ents" not in node_meta(meta)  # not in what scans of the chunks read
        record = stored_record(bot, cid, meta)
        article = (bot.settings.corpus / record.path).read_text()
        for s, e in record.sentences:
            stored = record.sentence_entities((s, e))
            assert stored == tagger.recognise([article[s:e]])[0]
            seen |= {(article[s:e][a:b], label) for a, b, label in stored}
        assert record.sentence_entities((0, 1)) is None  # not one of its sentences
    assert {("Tom Baker", "PERSON"), ("Monday", "DATE"), ("300", "CARDINAL")} <= seen


def test_a_store_ingested_without_entities_still_answers_with_them(
        bot: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks stored without entities (the recogniser unavailable at ingest, or a store
    ingested before they were kept) are tagged when a question reaches them, and the
    recogniser is loaded when the store is prepared."""
    from assistant.entities import EntityTagger

    with monkeypatch.context() as m:
        m.setattr(EntityTagger, "recognise", lambda self, sentences: None)
        bot.ingest()
    assert not bot.store.keeps_entities()
    for cid, meta, _, _ in _chunk_records(bot):
        record = stored_record(bot, cid, meta)
        assert all(record.sentence_entities(s) is None for s in record.sentences)
        assert all(record.sentence_vector(s) is not None for s in record.sentences)
    fresh = Assistant(corpus=bot.settings.corpus, store=bot.settings.store)
    fresh._embed = bot._embed
    fresh.prepare()
    assert fresh._tagger.loaded
    answer = fresh.ask("Who voted against the budget?")
    assert answer.short_answer == "Tom Baker"


def test_chunk_vectors_are_pooled_from_the_stored_sentence_vectors(
        bot: Assistant, embed_calls: list[str], embed_model) -> None:
    bot = Assistant(corpus=bot.settings.corpus, store=bot.settings.store,
                    chunk_vectors="pooled")
    bot._embed = embed_model
    bot.ingest()
    assert bot.store.chunk_vectors == "pooled"
    records = _chunk_records(bot)
    assert len(records) == 2
    for cid, meta, text, vector in records:
        record = stored_record(bot, cid, meta)
        assert len(record.sentences) >= 2
        stored = [record.sentence_vector(span) for span in record.sentences]
        headline = embed_model.embed([meta["title"]])[0]
        want = pooled_chunk_vector(np.stack(stored), headline)
        assert vector @ want > 0.9999  # sentence vectors are stored as float16
        assert not any(text in t for t in embed_calls), "the model ran on a whole chunk"
    # The pooled vector still finds its chunk.
    answer = bot.ask("How many homes were evacuated?")
    assert "300" in answer.text and answer.citations


def test_a_store_keeps_its_chunk_vectors_until_it_is_rebuilt(
        bot: Assistant, embed_calls: list[str], tmp_path: Path, embed_model) -> None:
    pooled = Assistant(corpus=bot.settings.corpus, store=bot.settings.store,
                       chunk_vectors="pooled")
    pooled._embed = embed_model
    pooled.ingest()
    assert pooled.store.chunk_vectors == "pooled"
    assert not any("\n\n" in t for t in embed_calls)

    # An assistant with the default (a model pass over each chunk) adds to that store the
    # way it was built.
    assert bot.settings.chunk_vectors == "embedded"
    (bot.settings.corpus / "fire.txt").write_text(
        "Fire at the mill\n\nA fire destroyed the old mill. Nobody was hurt.")
    embed_calls.clear()
    assert bot.ingest().new == 1
    assert bot.store.chunk_vectors == "pooled"
    assert not any("\n\n" in t for t in embed_calls)

    embed_calls.clear()
    bot.ingest(rebuild=True)
    assert bot.store.chunk_vectors == "embedded"
    assert any(t.startswith("Fire at the mill\n\nA fire destroyed") for t in embed_calls)
    assert any("Floods hit the valley\n\nHeavy rain" in t for t in embed_calls)
    assert "destroyed" in bot.ask("What destroyed the old mill?").text


def test_an_unknown_chunk_vector_setting_is_one_clear_error() -> None:
    with pytest.raises(AssistantError, match="chunk_vectors must be one of pooled, embedded"):
        Settings.from_env({"ASSISTANT_CHUNK_VECTORS": "averaged"})


def test_rebuild_recreates_the_store(bot: Assistant) -> None:
    bot.ingest()
    report = bot.ingest(rebuild=True)
    assert report.new == 2 and report.chunks == 2


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    """Another thread's writer waits, then says why; the holder may take the lock again."""
    from concurrent.futures import ThreadPoolExecutor

    def second_writer() -> None:
        with ingest_lock(tmp_path, timeout=0.2):
            pass

    with ingest_lock(tmp_path, timeout=1), ThreadPoolExecutor(1) as pool:
        with pytest.raises(AssistantError, match="another ingest"):
            pool.submit(second_writer).result()
        with ingest_lock(tmp_path, timeout=0.2):  # the same thread: taken again
            pass
        with pytest.raises(AssistantError, match="another ingest"):
            pool.submit(second_writer).result()  # still held after the inner release
    with ThreadPoolExecutor(1) as pool:
        pool.submit(second_writer).result()  # released: the other thread has it now


def _age(corpus: Path, seconds: float = 3600) -> None:
    """Date every corpus file back: the file index notes only files that have settled."""
    import os
    import time

    for path in corpus.rglob("*"):
        if path.is_file():
            os.utime(path, (time.time() - seconds, time.time() - seconds))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The corpus files ingest opens."""
    import assistant.ingest

    opened: list[str] = []
    real = assistant.ingest.load_article

    def counting(corpus, path, *args, **kwargs):
        opened.append(path.name)
        return real(corpus, path, *args, **kwargs)

    monkeypatch.setattr(assistant.ingest, "load_article", counting)
    return opened


def test_an_unchanged_corpus_is_recognised_without_reading_a_file(
        tmp_path: Path, embed_model, reads: list[str]) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text)
    bot = Assistant(corpus=corpus, store=tmp_path / "store", max_file_mb=0.001)
    bot._embed = embed_model
    (corpus / "empty.txt").write_text("")
    _age(corpus)
    first = bot.ingest()
    assert sorted(reads) == ["budget.md", "empty.txt", "floods.txt"]
    reads.clear()
    again = bot.ingest()
    assert reads == []
    assert (again.new, again.changed, again.removed, again.unchanged) == (0, 0, 0, 2)
    assert again.chunks == first.chunks
    assert again.skipped == [("empty.txt", "empty file")]
    # A file noted as too large is read again once the limit is raised.
    (corpus / "big.txt").write_text("Big report\n\n" + "The dam held. " * 200)
    _age(corpus)
    assert bot.ingest().skipped[0][0] == "big.txt"
    reads.clear()
    assert bot.ingest().skipped[0][0] == "big.txt" and reads == []
    bigger = Assistant(corpus=corpus, store=bot.settings.store, max_file_mb=1)
    bigger._embed = bot._embed
    assert bigger.ingest().new == 1 and "big.txt" in reads


def test_a_touched_or_resized_file_is_read_again(bot: Assistant, reads: list[str]) -> None:
    import os

    corpus = bot.settings.corpus
    _age(corpus)
    bot.ingest()
    # Same size, new content, new modification time.
    text = (corpus / "budget.md").read_text()
    (corpus / "budget.md").write_text(text.replace("12 million", "13 million"))
    reads.clear()
    report = bot.ingest()
    assert "budget.md" in reads and report.changed == 1
    assert "13 million" in bot.ask("How large is the budget?").text
    # A file written just now is read on every run until it has settled.
    reads.clear()
    assert bot.ingest().unchanged == 2 and "budget.md" in reads
    # Content changed with the old size and modification time put back: the file index
    # is only a shortcut, and --rebuild reads everything.
    _age(corpus)
    bot.ingest()
    st = os.stat(corpus / "floods.txt")
    text = (corpus / "floods.txt").read_text()
    (corpus / "floods.txt").write_text(text.replace("300 homes", "400 homes"))
    os.utime(corpus / "floods.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    reads.clear()
    assert bot.ingest().unchanged == 2 and reads == []
    assert bot.ingest(rebuild=True).new == 2
    assert "400 homes" in bot.ask("How many homes were evacuated?").text


def test_a_store_changed_behind_the_index_takes_the_full_path(
        bot: Assistant, reads: list[str]) -> None:
    corpus = bot.settings.corpus
    _age(corpus)
    bot.ingest()
    # Another process (or a killed run) left the store without the recorded corpus.
    bot.store.chunks.delete(where={"doc_id": "floods.txt"})
    reads.clear()
    report = bot.ingest()
    assert reads == ["floods.txt"]  # the file of the article the store lacks
    assert (report.new, report.unchanged) == (1, 1)
    # The index of one corpus is not used for another.
    index = next((bot.settings.store / "files").iterdir())
    moved = corpus.with_name("moved")
    corpus.rename(moved)
    other = Assistant(corpus=moved, store=bot.settings.store, collection=bot.store.name)
    other._embed = bot._embed
    reads.clear()
    assert other.ingest().unchanged == 2 and len(reads) == 2
    assert str(moved) in index.read_text()


def test_word_vectors_follow_incremental_ingests(bot: Assistant) -> None:
    """The vocabulary's word vectors cover every stored chunk's words after each run, the
    words of a new article included (only those are embedded then)."""

    from assistant.text import vocabulary

    corpus = bot.settings.corpus
    bot.ingest()
    (corpus / "zeppelin.txt").write_text("Airship hangar reopens\n\nThe zeppelinworks "
                                         "hangar reopened after the storm damage.")
    bot.ingest()
    folder = bot.settings.store / "words" / bot.store.name
    stored = set(json.loads((folder / "words.json").read_text()))
    assert (folder / "fingerprint").read_text() == bot.store.fingerprint()
    for _, text, _ in bot.store.iter_chunks():
        assert vocabulary(text) <= stored
    assert "zeppelinworks" in stored


def test_an_incremental_ingest_reads_only_new_and_changed_files(
        bot: Assistant, reads: list[str]) -> None:
    corpus = bot.settings.corpus
    (corpus / "fire.txt").write_text("Fire at the mill\n\nA fire destroyed the old mill.")
    _age(corpus)
    bot.ingest()
    (corpus / "budget.md").write_text("# City budget fails\n\nThe council rejected it.")
    (corpus / "storm.txt").write_text("Storm\n\nA storm felled 30 trees on Friday.")
    (corpus / "fire.txt").unlink()
    reads.clear()
    report = bot.ingest()
    assert set(reads) == {"budget.md", "storm.txt"}  # the first changed file may be read twice
    assert (report.new, report.changed, report.removed, report.unchanged) == (1, 1, 1, 1)
    assert bot.ask("How many trees did the storm fell?").short_answer == "30"
    assert any("rejected" in text for _, text, _ in bot.store.iter_chunks())
    # The unread article is still there, whole.
    assert "300" in bot.ask("How many homes were evacuated?").text


def test_a_store_of_an_earlier_schema_is_refused_until_it_is_rebuilt(
        bot: Assistant, embed_model) -> None:
    """A store written before chunk records held their sentence vectors (schema 3) is not
    read as if it had them: the user is told to rebuild, and the rebuild answers."""
    bot.ingest()
    meta = {k: v for k, v in (bot.store.chunks.metadata or {}).items() if k != "hnsw:space"}
    bot.store.chunks.modify(metadata={**meta, "schema": "3"})
    old = Assistant(corpus=bot.settings.corpus, store=bot.settings.store)
    old._embed = embed_model
    with pytest.raises(AssistantError, match=r"built with schema='3' but this assistant "
                                             r"uses '5'; run `assistant ingest --rebuild`"):
        old.ask("How many homes were evacuated?")
    old.ingest(rebuild=True)
    assert "300" in old.ask("How many homes were evacuated?").text


def _unsaved_vectors(bot: Assistant) -> int:
    """Records of the chunk collection in Chroma's log that its vector index on disk does not
    hold yet: what every new process opening the store applies again before its first search
    (read from Chroma's own SQLite tables)."""
    import sqlite3

    collection = str(bot.store.chunks.id)
    con = sqlite3.connect(f"file:{bot.settings.store / 'chroma' / 'chroma.sqlite3'}?mode=ro",
                          uri=True)
    try:
        (segment,) = con.execute("SELECT id FROM segments WHERE collection = ? AND "
                                 "scope = 'VECTOR'", (collection,)).fetchone()
        saved = con.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?",
                            (segment,)).fetchone()
        return int(con.execute("SELECT count(*) FROM embeddings_queue WHERE topic LIKE ? "
                               "AND seq_id > ?", (f"%{collection}",
                                                  saved[0] if saved else 0)).fetchone()[0])
    finally:
        con.close()


def test_an_ingest_leaves_the_vector_index_saved_up_to_a_few_records(
        bot: Assistant, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chroma saves a collection's vector index every HNSW_SYNC_THRESHOLD records; what it
    has not saved, each new `assistant ask` applies again from Chroma's log. With Chroma's
    default (1,000) the 300 chunks here would all be re-applied by every new process."""
    from assistant.embedding import MiniLMEncoder
    from assistant.store import HNSW_SYNC_THRESHOLD
    from evals.bench import stand_in_embed

    monkeypatch.setattr(MiniLMEncoder, "embed", stand_in_embed)
    corpus = bot.settings.corpus
    for i in range(300):
        (corpus / f"note-{i:03}.txt").write_text(f"Note {i}\n\nThe depot logged {i} crates.")
    bot.ingest()
    assert bot.store.count() == 302
    assert _unsaved_vectors(bot) < HNSW_SYNC_THRESHOLD < 300
    for i in range(0, 300, 10):  # an incremental ingest: 30 changed, 5 removed
        (corpus / f"note-{i:03}.txt").write_text(f"Note {i}\n\nThe depot logged {i} boxes.")
    for i in range(1, 50, 10):
        (corpus / f"note-{i:03}.txt").unlink()
    _age(corpus)
    bot.ingest()
    assert bot.store.count() == 297
    assert _unsaved_vectors(bot) < HNSW_SYNC_THRESHOLD
    texts = {meta["doc_id"]: text for _, text, meta in bot.store.iter_chunks()}
    assert "20 boxes" in texts["note-020.txt"] and "note-021.txt" not in texts
