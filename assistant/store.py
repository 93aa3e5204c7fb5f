"""The Chroma store: chunks (with their vectors) and sentence vectors, one pair of
collections per corpus, embedded (``PersistentClient``) or on a ``chroma run`` server."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from assistant.settings import AssistantError, Settings

SCHEMA = "1"


@dataclass
class StoredDoc:
    """What the store holds of one article."""

    sha256: str
    n_chunks: int
    present: int

    @property
    def complete(self) -> bool:
        """All chunks written: a crash mid-write leaves ``present < n_chunks``."""
        return self.present == self.n_chunks


def _chroma_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def open_client(settings: Settings) -> Any:
    """A Chroma client: HTTP when ``chroma_url`` is set, else persistent under the store."""
    import chromadb

    if settings.chroma_url:
        url = urlparse(settings.chroma_url if "//" in settings.chroma_url
                       else "http://" + settings.chroma_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise AssistantError(f"invalid Chroma URL: {settings.chroma_url}")
        port = url.port or (443 if url.scheme == "https" else 8000)
        try:
            client = chromadb.HttpClient(
                host=url.hostname, port=port, ssl=url.scheme == "https",
                settings=_chroma_settings(),
            )
            client.heartbeat()
        except Exception as exc:
            raise AssistantError(
                f"cannot reach the Chroma server at {settings.chroma_url}: "
                f"{type(exc).__name__}"
            ) from None
        return client
    path = settings.store / "chroma"
    try:
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=_chroma_settings())
    except Exception as exc:
        raise AssistantError(
            f"cannot open the store at {path} ({type(exc).__name__}: {exc}); "
            "run `assistant ingest --rebuild` to rebuild it from the corpus"
        ) from None


class Store:
    """The two collections of a corpus and the bookkeeping on them."""

    def __init__(self, settings: Settings, model_name: str, client: Any | None = None) -> None:
        self.settings = settings
        self.client = client or open_client(settings)
        self.name = settings.collection_name
        self.expected = {
            "embed_model": model_name,
            "chunking": f"{settings.chunk_tokens}/{settings.chunk_overlap_tokens}",
            "schema": SCHEMA,
        }
        self._chunks: Any = None
        self._sentences: Any = None

    # -- collections --------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the chunk collection exists."""
        try:
            self.client.get_collection(self.name)
        except Exception:
            return False
        return True

    @property
    def chunks(self) -> Any:
        """The chunk collection (created on first use, checked against the settings)."""
        if self._chunks is None:
            self._chunks = self._open(self.name)
        return self._chunks

    @property
    def sentences(self) -> Any:
        """The sentence-vector collection."""
        if self._sentences is None:
            self._sentences = self._open(self.name + "-sentences")
        return self._sentences

    def _open(self, name: str) -> Any:
        try:
            col = self.client.get_or_create_collection(
                name, embedding_function=None, metadata=dict(self.expected)
            )
        except AssistantError:
            raise
        except Exception as exc:
            raise AssistantError(
                f"cannot open collection {name!r} ({type(exc).__name__}: {exc}); "
                "run `assistant ingest --rebuild` to rebuild it from the corpus"
            ) from None
        meta = col.metadata or {}
        for key, want in self.expected.items():
            have = meta.get(key)
            if have != want:
                raise AssistantError(
                    f"the store was built with {key}={have!r} but this assistant uses "
                    f"{want!r}; run `assistant ingest --rebuild` to rebuild it"
                )
        return col

    def drop(self) -> None:
        """Delete both collections (for ``ingest --rebuild``)."""
        for name in (self.name, self.name + "-sentences"):
            with suppress(Exception):
                self.client.delete_collection(name)
        self._chunks = self._sentences = None

    # -- state ----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """The corpus fingerprint recorded by the last complete ingest ('' if none)."""
        return str((self.chunks.metadata or {}).get("fingerprint", ""))

    def set_fingerprint(self, value: str) -> None:
        """Record the corpus fingerprint once an ingest has completed."""
        meta = dict(self.chunks.metadata or {})
        meta.update(self.expected)
        meta["fingerprint"] = value
        meta.pop("hnsw:space", None)
        self.chunks.modify(metadata=meta)

    def stored_docs(self) -> dict[str, StoredDoc]:
        """Every article the store holds, with its hash and chunk counts."""
        counts: dict[str, int] = defaultdict(int)
        info: dict[str, tuple[str, int]] = {}
        for metas in self._iter_metadatas(self.chunks):
            for m in metas:
                doc = str(m.get("doc_id", ""))
                counts[doc] += 1
                info.setdefault(doc, (str(m.get("sha256", "")), int(m.get("n_chunks", 0))))
        return {d: StoredDoc(info[d][0], info[d][1], counts[d]) for d in counts}

    def count(self) -> int:
        """Number of chunks stored."""
        return int(self.chunks.count())

    def _iter_metadatas(self, col: Any, page: int = 5000) -> Iterator[list[dict]]:
        offset = 0
        while True:
            got = col.get(include=["metadatas"], limit=page, offset=offset)
            metas = got.get("metadatas") or []
            if not metas:
                return
            yield metas
            if len(metas) < page:
                return
            offset += page

    def iter_chunks(self, page: int = 5000) -> Iterator[tuple[str, str, dict]]:
        """Every stored chunk as ``(id, text, metadata)``."""
        offset = 0
        while True:
            got = self.chunks.get(include=["documents", "metadatas"], limit=page, offset=offset)
            ids = got.get("ids") or []
            yield from zip(ids, got["documents"], got["metadatas"], strict=True)
            if len(ids) < page:
                return
            offset += page

    # -- writes ---------------------------------------------------------------------------
    def delete_doc(self, doc_id: str) -> None:
        """Remove every chunk and sentence of an article."""
        self.chunks.delete(where={"doc_id": doc_id})
        self.sentences.delete(where={"doc_id": doc_id})

    def add(self, col: Any, ids: list[str], embeddings: Any, metadatas: list[dict],
            documents: list[str] | None = None) -> None:
        """Add records in batches no larger than the server accepts."""
        step = max(1, min(5000, int(self.client.get_max_batch_size())))
        for b in range(0, len(ids), step):
            col.add(
                ids=ids[b : b + step],
                embeddings=embeddings[b : b + step],
                metadatas=metadatas[b : b + step],
                documents=None if documents is None else documents[b : b + step],
            )

    def sentence_vectors(self, ids: list[str]) -> dict[str, Any]:
        """The stored vectors of the given sentence ids (missing ids are left out)."""
        if not ids:
            return {}
        got = self.sentences.get(ids=ids, include=["embeddings"])
        return dict(zip(got["ids"], got["embeddings"], strict=True))


def sentence_id(doc_id: str, sha256: str, start: int, end: int) -> str:
    """Stable id of a sentence vector."""
    return f"{doc_id}::{sha256[:12]}::s{start}-{end}"


def chunk_id(doc_id: str, sha256: str, index: int) -> str:
    """Stable id of a chunk."""
    return f"{doc_id}::{sha256[:12]}::c{index}"


@contextmanager
def ingest_lock(store: Path, timeout: float) -> Iterator[None]:
    """An exclusive file lock on the store: a second writer waits up to ``timeout`` s,
    then gets a clear error (Chroma is not safe for two writing processes)."""
    store.mkdir(parents=True, exist_ok=True)
    path = store / "ingest.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise AssistantError(
                        f"another ingest is running on {store} (lock {path}); "
                        "try again when it has finished"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid()}).encode())
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
