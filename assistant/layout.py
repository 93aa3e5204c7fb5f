"""The store directory's layout: where each part of a store lives, the schema version, the
ingest lock, the leftovers of killed runs, and the typed record of one chunk.

    <store>/
      chroma/                   the embedded Chroma database (absent with a Chroma server)
      generations/<base>.json   which generation readers use (atomic pointer)
      generations/<base>.progress.json   how far a running ingest is
      ingest.lock               held by the one process that writes
      sentences/<name>.sqlite3  each chunk's sentence vectors and entities, by chunk id
                                (embedded store)
      bm25/<name>/              the lexical index (bm25s), its chunk ids and days
      words/<name>/             vectors of the corpus vocabulary
      files/<name>.json         size and mtime of each ingested file

``<base>`` is the corpus's collection name, ``<name>`` one generation's
(:func:`generation_name`). Nothing else in the package builds a path inside a store.

Beside its chunks a store keeps, under each chunk's id, the vectors of that chunk's
sentences and their entities (:class:`SentenceData`): in the sentence file of an embedded
store, in Chroma on a server shared by several machines (see :mod:`assistant.store`).
"""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from assistant.entities import Recognised
from assistant.settings import AssistantError

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

SCHEMA = "5"
"""2: sentence vectors moved from a Chroma collection to SQLite; 3: chunks carry "day";
4: sentence vectors kept per chunk, under the chunk's id; 5: in a SQLite file when embedded
and in Chroma on a server."""


def generation_name(base: str, generation: int) -> str:
    """The collection (and file) name of one generation of a corpus's index."""
    return base if generation == 0 else f"{base}-g{generation}"


@dataclass(frozen=True)
class StoreLayout:
    """Every path of one store directory."""

    root: Path

    @property
    def chroma(self) -> Path:
        """The embedded Chroma database's directory."""
        return self.root / "chroma"

    @property
    def chroma_db(self) -> Path:
        """The embedded Chroma database's SQLite file."""
        return self.chroma / "chroma.sqlite3"

    @property
    def generations(self) -> Path:
        """The folder of generation pointers and progress files."""
        return self.root / "generations"

    def pointer(self, base: str) -> Path:
        """The generation pointer of the corpus whose collection is ``base``."""
        return self.generations / f"{base}.json"

    def progress(self, base: str) -> Path:
        """The progress file of a running ingest of ``base``."""
        return self.generations / f"{base}.progress.json"

    @property
    def lock(self) -> Path:
        """The ingest lock file."""
        return self.root / "ingest.lock"

    def sentences(self, name: str) -> Path:
        """The sentence-vector file of generation ``name`` (an embedded store's)."""
        return self.root / "sentences" / f"{name}.sqlite3"

    def bm25(self, name: str) -> Path:
        """The BM25 index folder of generation ``name``."""
        return self.root / "bm25" / name

    def words(self, name: str) -> Path:
        """The word-vector folder of generation ``name``."""
        return self.root / "words" / name

    def files_index(self, name: str) -> Path:
        """The size-and-mtime index of the files ingested into generation ``name``."""
        return self.root / "files" / f"{name}.json"

    def generation_paths(self, name: str) -> list[Path]:
        """Everything of generation ``name`` outside Chroma."""
        db = self.sentences(name)
        return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"),
                self.files_index(name), self.bm25(name), self.words(name)]

    @property
    def wiped_on_damage(self) -> list[Path]:
        """The folders deleted when the embedded store is damaged beyond opening."""
        return [self.chroma, self.root / "sentences", self.root / "bm25", self.root / "words"]

    def leftovers(self) -> Iterator[Path]:
        """Temporary files and folders of killed runs: half-written BM25 indexes and word
        vectors (``.bm25-*``, ``.words-*``), previous ones set aside (``*.old``), folders
        being deleted (``.*.deleting-*``), half-written pointers and file indexes
        (``*.tmp``)."""
        patterns = [(self.root, ".*.deleting-*"), (self.chroma, ".*.deleting-*"),
                    (self.generations, ".*.tmp"), (self.root / "files", ".*.tmp")]
        for sub, prefix in (("bm25", ".bm25-*"), ("words", ".words-*")):
            folder = self.root / sub
            patterns += [(folder, prefix), (folder, "*.old"), (folder, ".*.deleting-*")]
        for folder, pattern in patterns:
            if not folder.is_dir() or folder.is_symlink():
                continue
            for leftover in folder.glob(pattern):
                folder_left = leftover.is_dir() and not leftover.is_symlink()
                if folder_left or (pattern.endswith(".tmp") and leftover.is_file()):
                    yield leftover

    def remove_leftovers(self) -> None:
        """Delete :meth:`leftovers` (only under the ingest lock: they may be a live run's)."""
        for leftover in list(self.leftovers()):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def remove_inside(self, target: Path) -> None:
        """Delete ``target`` without ever leaving the store: a symbolic link is removed,
        not followed; a folder is renamed aside first, so that a crash leaves a leftover,
        not half a folder."""
        if target.is_symlink() or target.is_file():
            target.unlink()
            return
        if not target.is_dir():
            return
        if self.root.resolve() not in target.resolve().parents:
            raise AssistantError(f"refusing to delete {target}: it is not inside {self.root}")
        aside = target.with_name(f".{target.name}.deleting-{os.getpid()}-{time.time_ns()}")
        target.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)

    def ingest_running(self) -> bool:
        """True while a process holds the ingest lock (a shared lock cannot be had)."""
        try:
            fd = os.open(self.lock, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EAGAIN, errno.EACCES)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    @contextmanager
    def ingest_lock(self, timeout: float) -> Iterator[None]:
        """An exclusive file lock on the store: a second writer waits up to ``timeout`` s,
        then gets a clear error (Chroma is not safe for two writing processes). The thread
        that holds it may take it again (an ingest opens the store under it, then writes)."""
        key = (str(self.lock.absolute()), threading.get_ident())
        if _HELD.get(key):
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        path = self.lock
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AssistantError(
                f"cannot use the store directory {self.root}: {exc.strerror or exc}"
            ) from None
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
                            f"another ingest is running on {self.root} (lock {path}; waited "
                            f"{timeout:g} s, ASSISTANT_LOCK_TIMEOUT); try again when it has "
                            "finished"
                        ) from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid()}).encode())
            _HELD[key] = 1
            try:
                yield
            finally:
                _HELD.pop(key, None)
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


_HELD: dict[tuple[str, int], int] = {}
"""The ingest locks this process holds, by (lock path, thread): how many times taken."""


def ingest_lock(store: Path, timeout: float) -> AbstractContextManager[None]:
    """:meth:`StoreLayout.ingest_lock` of the store directory ``store``."""
    return StoreLayout(store).ingest_lock(timeout)


def ingest_running(store: Path) -> bool:
    """:meth:`StoreLayout.ingest_running` of the store directory ``store``."""
    return StoreLayout(store).ingest_running()


def chunk_id(doc_id: str, sha256: str, index: int) -> str:
    """Stable id of a chunk."""
    return f"{doc_id}::{sha256[:12]}::c{index}"


EMBED_METADATA = ("title",)  # the only metadata BM25 and the embedding model see


def make_node(chunk_id: str, text: str, meta: dict[str, Any],
              embedding: Sequence[float] | np.ndarray | None = None) -> TextNode:
    """A llama-index TextNode for a chunk; only the title is seen by BM25 and embedding."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    node = TextNode(
        id_=chunk_id,
        text=text,
        metadata=meta,
        start_char_idx=meta.get("start"),
        end_char_idx=meta.get("end"),
        excluded_embed_metadata_keys=[k for k in meta if k not in EMBED_METADATA],
        excluded_llm_metadata_keys=[k for k in meta if k not in EMBED_METADATA],
        embedding=None if embedding is None else list(map(float, embedding)),
    )
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=meta["doc_id"])
    return node


def node_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A node's own metadata from its Chroma record (llama-index's node format)."""
    content = meta.get("_node_content")
    if content:
        return dict(json.loads(content).get("metadata") or {})
    return {k: v for k, v in meta.items() if not k.startswith("_")}


Span = tuple[int, int]

SENTENCE_RECORD = "vectors+entities"
"""What a :class:`SentenceData` string holds (the eval stores' cache key follows it)."""

VECTORS_KEY = "sentence_vectors"
"""The metadata key of a :class:`SentenceData` string in a server's sentence collection."""


@dataclass(frozen=True)
class SentenceData:
    """What a chunk's record keeps of its sentences for the answer layer, read only for
    retrieved chunks (never scanned): their vectors, float16, and the entities the
    recogniser found in them (:data:`assistant.entities.Recognised`), in the order of
    ``spans`` (the sentences' spans when they were ingested). One string: the vectors as
    ``"<rows>x<dimensions>:<base64>"`` (the shape makes a damaged string detectable), then,
    when the entities were recognised, a newline and a JSON list of ``[start, end, label]``
    lists, one per sentence."""

    spans: tuple[Span, ...]
    encoded: str

    @classmethod
    def of(cls, spans: tuple[Span, ...], vectors: npt.ArrayLike,
           entities: Sequence[Recognised] | None = None) -> SentenceData:
        """The stored form of ``vectors`` and ``entities`` (one row and one tuple per
        span)."""
        rows = np.asarray(vectors, dtype="<f2")
        if rows.ndim != 2 or rows.shape[0] != len(spans):
            raise ValueError(f"{len(spans)} sentence spans, vectors of shape {rows.shape}")
        data = base64.b64encode(rows.tobytes()).decode("ascii")
        encoded = f"{rows.shape[0]}x{rows.shape[1]}:{data}"
        if entities is not None:
            if len(entities) != len(spans):
                raise ValueError(f"{len(spans)} sentence spans, entities of {len(entities)}")
            encoded += "\n" + json.dumps([[list(e) for e in found] for found in entities],
                                          separators=(",", ":"))
        return cls(tuple(spans), encoded)

    @cached_property
    def _entities(self) -> dict[Span, Recognised] | None:
        _, newline, data = self.encoded.partition("\n")
        if not newline:
            return None
        try:
            rows = json.loads(data)
            if not isinstance(rows, list) or len(rows) != len(self.spans):
                return None
            return {span: tuple((int(s), int(e), str(label)) for s, e, label in row)
                    for span, row in zip(self.spans, rows, strict=True)}
        except (ValueError, TypeError):
            return None  # damaged: read as not recognised

    def entities(self, span: Span) -> Recognised | None:
        """The recogniser's entities in the sentence ingested at ``span`` (None: not one of
        them, or none stored)."""
        return self._entities.get(span) if self._entities is not None else None

    @property
    def has_entities(self) -> bool:
        """True when the string has its entities part (written by an ingest that ran the
        recogniser)."""
        return "\n" in self.encoded

    @cached_property
    def _rows(self) -> dict[Span, np.ndarray]:
        shape, _, data = self.encoded.partition("\n")[0].partition(":")
        try:
            n, dims = (int(v) for v in shape.split("x"))
            flat = np.frombuffer(base64.b64decode(data, validate=True), dtype="<f2")
        except ValueError:
            return {}
        if n != len(self.spans) or flat.size != n * dims:
            return {}
        rows = flat.reshape(n, dims).astype(np.float32)
        return dict(zip(self.spans, rows, strict=True))

    def get(self, span: Span) -> np.ndarray | None:
        """The vector of the sentence ingested at ``span`` (None: not one of them, or the
        stored string is damaged)."""
        return self._rows.get(span)

    def matrix(self) -> np.ndarray | None:
        """All the sentences' vectors, one row each in the order of ``spans`` (None: the
        stored string is damaged)."""
        rows = self._rows
        return np.stack(list(rows.values())) if rows else None


@dataclass(frozen=True)
class ChunkRecord:
    """What the store keeps of one chunk besides its text and vector: the Chroma
    metadata, typed. ``text == article_text[start:end]``; ``sentences`` are absolute
    spans in the article; ``day`` is the publication date as ``YYYYMMDD`` (None: undated).

    ``ingested_sentences`` is never stored: when the file changed since the ingest and the
    chunk was found again elsewhere (:mod:`assistant.freshness`), it holds the spans its
    sentences had when they were ingested, which their stored ``vectors`` (their vectors
    and entities) are keyed by. ``vectors`` is not part of the chunk's metadata: the
    retriever reads it from the store's sentence records
    (:meth:`assistant.store.Store.sentence_vectors`).
    """

    doc_id: str
    path: str
    start: int
    end: int
    sentences: tuple[Span, ...]
    title: str = ""
    sha256: str = ""
    index: int = 0
    n_chunks: int = 1
    published: str = ""
    source: str = ""
    day: int | None = None
    ingested_sentences: tuple[Span, ...] | None = field(default=None, compare=False)
    vectors: SentenceData | None = field(default=None, compare=False, repr=False)

    def to_metadata(self) -> dict[str, str | int]:
        """The record as Chroma metadata (flat: the sentence spans as a JSON string)."""
        meta: dict[str, str | int] = {
            "doc_id": self.doc_id, "path": self.path, "title": self.title,
            "sha256": self.sha256, "n_chunks": self.n_chunks, "index": self.index,
            "start": self.start, "end": self.end,
            "sents": json.dumps([list(s) for s in self.sentences]),
            "published": self.published, "source": self.source,
        }
        if self.day is not None:
            meta["day"] = self.day
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], vectors: str | None = None) -> ChunkRecord:
        """The record of a chunk's stored metadata (KeyError when it is not a chunk's);
        ``vectors`` is its :class:`SentenceData` string, if known."""
        sents = meta.get("sents")
        spans = json.loads(sents) if isinstance(sents, str) else (sents or [])
        day = meta.get("day")
        sentences = tuple((int(s), int(e)) for s, e in spans)
        return cls(
            doc_id=str(meta["doc_id"]), path=str(meta.get("path") or meta["doc_id"]),
            start=int(meta["start"]), end=int(meta["end"]), sentences=sentences,
            title=str(meta.get("title") or ""), sha256=str(meta.get("sha256") or ""),
            index=int(meta.get("index") or 0), n_chunks=int(meta.get("n_chunks") or 1),
            published=str(meta.get("published") or ""), source=str(meta.get("source") or ""),
            day=int(day) if day else None,
            vectors=SentenceData(sentences, vectors) if isinstance(vectors, str) else None,
        )

    def sentence_vector(self, ingested: Span) -> np.ndarray | None:
        """The stored vector of the sentence ingested at ``ingested`` (None: none stored)."""
        return self.vectors.get(ingested) if self.vectors is not None else None

    def sentence_entities(self, ingested: Span) -> Recognised | None:
        """What the recogniser found in the sentence ingested at ``ingested`` (None: not
        stored)."""
        return self.vectors.entities(ingested) if self.vectors is not None else None

    @property
    def stored_sentences(self) -> tuple[Span, ...]:
        """The spans the sentences' vectors and entities are stored under."""
        return self.ingested_sentences or self.sentences
