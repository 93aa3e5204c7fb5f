"""One typed settings object, read from environment variables and overridden by flags."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class AssistantError(Exception):
    """An error caused by the user's input or environment, shown as one line."""


ENV_PREFIX = "ASSISTANT_"
CHUNK_VECTORS = ("pooled", "embedded")  # see Settings.chunk_vectors
EMBEDDINGS = ("minilm", "minilm-q8")  # see Settings.embedding
PACKAGE_DIR = Path(__file__).resolve().parent


def default_prompts_dir() -> Path:
    """The prompt templates that ship with the assistant: the copy an installed wheel
    carries inside the package (``assistant/prompts``, mapped from the top-level
    ``prompts/`` at build time), else the project's ``prompts/`` (a source tree or an
    editable install)."""
    packaged = PACKAGE_DIR / "prompts"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "prompts"


@dataclass(frozen=True)
class Settings:
    """Every knob of the assistant.

    Each field can be set from the environment as ``ASSISTANT_<NAME>`` (for example
    ``ASSISTANT_CORPUS``, ``ASSISTANT_CHROMA_URL``) and from the CLI flag of the same name.
    """

    corpus: Path = Path("corpus")
    store: Path = Path(".assistant")
    chroma_url: str | None = None
    collection: str | None = None
    top_k: int = 5
    chunk_tokens: int = 220
    chunk_overlap_tokens: int = 40
    min_score: float | None = None  # None: the answer model's calibrated threshold
    max_question_chars: int = 2000
    lock_timeout: float = 30.0  # seconds a second ingest waits for the store's lock
    # Corpus files larger than this are skipped with a warning: at ~80 sentences/s a
    # 10 MB file takes some 20 minutes to embed, a 50 MB one hours.
    max_file_mb: float = 10.0
    embed_batch_size: int = 32
    # How a new or rebuilt store gets its chunk vectors: "embedded" by running the model on
    # every chunk (with its headline) as well as on its sentences, or "pooled" from the
    # vectors of the chunk's sentences and the headline: half the model work of an ingest,
    # at a small cost in quality on real news (README, "Ingest: pooled chunk vectors").
    # A store keeps the way it was built with until it is rebuilt.
    chunk_vectors: str = "embedded"
    # The embedding model of a new or rebuilt store: "minilm" (the bundled int8 weights,
    # computed in float32) or "minilm-q8" (the same weights with int8 matrix products:
    # faster, vectors within about 0.99 cosine; see assistant.embedding). A store keeps
    # the model it was built with until it is rebuilt.
    embedding: str = "minilm"
    llm_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_timeout: float = 30.0
    # The LLM's prompt templates (ASSISTANT_PROMPTS_DIR; default: the shipped prompts/).
    prompts_dir: Path | None = field(default_factory=default_prompts_dir)
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = field(default=None, repr=False)
    max_upload_bytes: int = 5_000_000
    concurrency: int = 2

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``env`` (default ``os.environ``), then ``overrides`` that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).normalised()

    def normalised(self) -> Settings:
        """Coerce paths and check ranges; raises AssistantError on nonsense."""
        s = replace(self, corpus=Path(self.corpus), store=Path(self.store))
        if s.top_k < 1:
            raise AssistantError("top_k must be at least 1")
        if s.chunk_tokens < 32:
            raise AssistantError("chunk_tokens must be at least 32")
        if not 0 <= s.chunk_overlap_tokens < s.chunk_tokens:
            raise AssistantError("chunk_overlap_tokens must be between 0 and chunk_tokens")
        if s.max_question_chars < 1:
            raise AssistantError("max_question_chars must be positive")
        if not 0 <= s.lock_timeout <= 86_400:  # also rejects nan
            raise AssistantError("lock_timeout must be between 0 and 86400 seconds")
        if s.chunk_vectors not in CHUNK_VECTORS:
            raise AssistantError(
                f"chunk_vectors must be one of {', '.join(CHUNK_VECTORS)}, "
                f"not {s.chunk_vectors!r}")
        if s.embedding not in EMBEDDINGS:
            raise AssistantError(
                f"embedding must be one of {', '.join(EMBEDDINGS)}, not {s.embedding!r}")
        if not 0 < s.max_file_mb <= 1_000_000:
            raise AssistantError("max_file_mb must be a positive number of megabytes")
        return s

    @property
    def collection_name(self) -> str:
        """The Chroma collection of this corpus (3-63 safe characters)."""
        if self.collection:
            name = self.collection
        else:
            base = self.corpus.resolve().name or "corpus"
            name = "assistant-" + base
        name = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-._") or "assistant-corpus"
        if len(name) < 3:
            name = name + "-corpus"
        return name[:63].rstrip("-._")

    @property
    def llm_enabled(self) -> bool:
        """True when a generative backend is configured."""
        return bool(self.llm_url and self.llm_model)


def _convert(name: str, type_: Any, raw: str) -> Any:
    text = str(type_)
    try:
        if "Path" in text:
            return Path(raw)
        if "float" in text:
            return float(raw)
        if "int" in text:
            return int(raw)
    except ValueError:
        raise AssistantError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid number"
        ) from None
    return raw
