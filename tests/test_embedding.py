from pathlib import Path

import numpy as np
import pytest

from assistant.embedding import (
    MODEL_NAMES,
    MiniLMEmbedding,
    MiniLMEncoder,
    q8_model_path,
    tokenizer_is_intact,
)
from assistant.settings import EMBEDDINGS, AssistantError, Settings


def test_tokenizer_file_is_the_published_one() -> None:
    assert tokenizer_is_intact()


def test_vectors_are_unit_length_and_meaningful(embed_model: MiniLMEmbedding) -> None:
    v = embed_model.embed([
        "How many children were reunited with their families?",
        "Eight children have been rejoined with their families during the past 24 hours.",
        "The central bank raised interest rates by half a point.",
    ])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_batching_does_not_change_vectors(embed_model: MiniLMEmbedding) -> None:
    texts = ["short", "a much longer sentence about the war in Ukraine and children", "mid one"]
    together = embed_model.embed(texts)
    alone = np.stack([embed_model.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_llama_index_interface(embed_model: MiniLMEmbedding) -> None:
    q = embed_model.get_query_embedding("children reunited")
    docs = embed_model.get_text_embedding_batch(["children reunited", "stock market"])
    assert len(q) == 384 and len(docs) == 2
    assert np.dot(q, docs[0]) > 0.99


def test_long_text_is_truncated_not_rejected(embed_model: MiniLMEmbedding) -> None:
    assert embed_model.count_tokens("word " * 1000) == 256
    assert embed_model.embed(["word " * 1000]).shape == (1, 384)


def test_a_pooled_chunk_vector_is_its_sentences_unit_mean_pulled_toward_the_headline(
        embed_model: MiniLMEmbedding) -> None:
    from assistant.embedding import pooled_chunk_vector

    sentences = embed_model.embed([
        "Heavy rain flooded the valley on Monday.",
        "Mayor Ana Ruiz said 300 homes were evacuated.",
    ])
    headline = embed_model.embed(["Floods hit the valley"])[0]
    plain = pooled_chunk_vector(sentences, None)
    mean = sentences.mean(axis=0)
    assert np.allclose(plain, mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(pooled_chunk_vector(sentences[:1], None), sentences[0], atol=1e-6)
    titled = pooled_chunk_vector(sentences, headline)
    assert abs(np.linalg.norm(titled) - 1.0) < 1e-5
    assert titled @ headline > plain @ headline
    # It still stands for its text: a question about it is nearer than one about another.
    q = embed_model.embed(["How many homes were evacuated in the floods?",
                           "Who won the chess tournament?"])
    assert q[0] @ titled > q[1] @ titled + 0.2


SENTENCES = [
    "Eight children have been rejoined with their families during the past 24 hours.",
    "The central bank raised interest rates by half a point on Tuesday.",
    "Melania Trump wrote a letter to Vladimir Putin about the children of Ukraine.",
    "Heavy rain flooded roads across the region and closed two schools.",
]


def test_the_q8_model_is_derived_once_into_the_model_cache(q8_env: Path) -> None:
    path = q8_model_path()
    assert path.parent == q8_env and path.is_file()
    written = path.stat().st_mtime_ns
    assert q8_model_path() == path and path.stat().st_mtime_ns == written  # reused
    assert not [p for p in q8_env.iterdir() if p.name.startswith(".")]  # no leftovers


def test_q8_vectors_agree_with_the_float_model(q8_env: Path, embed_model) -> None:
    q8 = MiniLMEncoder(variant="minilm-q8")
    assert q8.model_name == MODEL_NAMES["minilm-q8"] != embed_model.model_name
    question = "How many children were reunited with their families?"
    a, b = q8.embed([question, *SENTENCES]), embed_model.embed([question, *SENTENCES])
    assert a.shape == b.shape == (5, 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    assert float(((a * b).sum(axis=1)).min()) > 0.97  # the same model, int8 products
    # The question finds the same sentence first, by the same margin within a little.
    sa, sb = a[1:] @ a[0], b[1:] @ b[0]
    assert int(np.argmax(sa)) == int(np.argmax(sb)) == 0
    assert np.allclose(sa, sb, atol=0.05)


def test_an_unwritable_model_cache_is_a_clear_error(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ASSISTANT_MODEL_CACHE", str(blocker / "models"))
    with pytest.raises(AssistantError, match="ASSISTANT_MODEL_CACHE"):
        q8_model_path()


def test_every_embedding_setting_names_a_model() -> None:
    assert tuple(MODEL_NAMES) == EMBEDDINGS
    assert len(set(MODEL_NAMES.values())) == len(MODEL_NAMES)  # a store tells them apart


def test_an_unknown_embedding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedding"):
        MiniLMEncoder(variant="e5")
    with pytest.raises(AssistantError, match="embedding must be one of minilm, minilm-q8"):
        Settings.from_env({"ASSISTANT_EMBEDDING": "e5"})
