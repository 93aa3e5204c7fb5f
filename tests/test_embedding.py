import numpy as np

from assistant.embedding import MiniLMEmbedding, tokenizer_is_intact


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
