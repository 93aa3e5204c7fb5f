"""The store of a corpus: its chunks in a Chroma collection, embedded (``PersistentClient``)
or on a ``chroma run`` server, and beside them, under each chunk's id, the vectors of that
chunk's sentences and the entities found in them (:class:`assistant.layout.SentenceData`).

Where the sentence vectors live depends on the mode. On a server they are a
``<name>-sentences`` Chroma collection (:class:`ChromaSentences`), so that every machine
asking that server finds everything the answer layer needs there. In an embedded store they
are a SQLite table in the store directory (:class:`SentenceFile`): the same records, in less
than half the disk, because Chroma indexes every metadata string it stores (1,000 chunks of
the benchmark: 60 MB of Chroma with the collection against 23 MB + 12 MB with the file).
They are not in the chunk's own metadata because every whole-collection scan (the stored
articles at each ingest, a lexical index built from a server) reads all of it: on ``chroma
run`` 20,000 chunks read in 1.5 s without them and 5.0 s with them. They are only ever read
by chunk id, never searched.

A store holds *generations* of a corpus's index: ``ingest --rebuild`` writes a new one beside
the one readers use (a collection and files named ``<collection>-g<N>``; generation 0, the
only one of stores made before generations, is plain ``<collection>``) and switches to it
with an atomic pointer, ``<store>/generations/<collection>.json`` (on a Chroma server also
the metadata of a ``<collection>-pointer`` collection). A reader keeps the generation it
opened until the pointer changes. While an ingest runs it keeps a progress file beside the
pointer, which readers show in one line.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import shutil
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from assistant.imports import import_chromadb
from assistant.layout import (
    SCHEMA,
    VECTORS_KEY,
    SentenceData,
    StoreLayout,
    generation_name,
)
from assistant.lease import IngestLease, Lease, NoLease
from assistant.settings import AssistantError, Settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import GetResult
    from chromadb.config import Settings as ChromaSettings

__all__ = ["SCHEMA", "IngestRunning", "Store", "generation_name"]

Vectors = np.ndarray | Sequence[np.ndarray]
"""Vectors to store: one row (or one array) per record."""

INGEST_WAIT_S = 3.0
"""How long a question with no complete index to use waits for a running ingest."""
HNSW_SYNC_THRESHOLD = 100
"""How many written records Chroma applies to a chunk collection's vector index before it
saves the index to disk (Chroma's default: 1,000). Records applied but not yet saved are
applied again, from Chroma's log, by every process that opens the store: with the default,
each new ``assistant ask`` re-inserted up to 999 vectors before its first search. A store's
collections keep the value they were created with (``ingest --rebuild`` makes new ones)."""
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
log = logging.getLogger(__name__)


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


class IngestRunning(AssistantError):
    """No complete index to answer from while an ingest runs (the message says so)."""


def _pointer_collection(base: str) -> str:
    return base[: 63 - len("-pointer")].rstrip("-._") + "-pointer"


def _read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object file (None when missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: a reader
    sees the old content or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _clock(stamp: float) -> str:
    """A time of day (with the date when it is not today), as the notice shows it."""
    when = time.localtime(stamp)
    same_day = time.strftime("%Y-%m-%d", when) == time.strftime("%Y-%m-%d")
    return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", when)


class IngestProgress:
    """The progress file of a running ingest (``<store>/generations/<collection>.progress
    .json``: files written of those to write, when it started), removed when it ends."""

    def __init__(self, store: Store, rebuild: bool) -> None:
        self.path = store.progress_path
        self.data: dict[str, Any] = {"pid": os.getpid(), "started": time.time(),
                                     "rebuild": rebuild, "done": None, "total": None}

    def __enter__(self) -> IngestProgress:
        self._write()
        return self

    def __exit__(self, *exc: object) -> None:
        with suppress(OSError):
            self.path.unlink(missing_ok=True)

    def update(self, done: int, total: int) -> None:
        """``done`` files of ``total`` written."""
        self.data.update(done=done, total=total)
        self._write()

    def _write(self) -> None:
        try:
            write_json_atomically(self.path, self.data)
        except OSError as exc:  # readers then see no progress: they answer as before
            log.warning("could not write the ingest progress: %s", exc)


def _chroma_settings() -> ChromaSettings:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def _chroma_failed(exc: BaseException) -> bool:
    """True for an error of Chroma or its database. Chroma's Rust core reports some
    failures (a damaged database file) as ``pyo3_runtime.PanicException``, which derives
    from BaseException, not Exception."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return False
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


LOW_DISK_BYTES = 64 * 1024 * 1024
"""A store write that fails with less free space than this on the store's disk is reported as
a full disk: Chroma's Rust core often names only the step that failed ("Failed to apply logs
to the metadata segment"), not the lack of space."""


def disk_full(path: Path, exc: BaseException | None = None) -> bool:
    """True when ``exc`` says the disk is full, or the disk holding ``path`` nearly is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen).lower()
        if "disk is full" in text or "no space left" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(_existing(path)).free < LOW_DISK_BYTES
    except OSError:
        return False


def store_failed(what: str, path: Path, exc: BaseException, fix: str) -> AssistantError:
    """The one-line error for a failed store part ``what`` at ``path``: a full disk says so
    and asks for a plain ``assistant ingest`` once there is room (it keeps what was stored and
    finishes the rest); any other failure says ``fix``."""
    if disk_full(path, exc):
        free = _size(shutil.disk_usage(_existing(path)).free)
        return AssistantError(
            f"the disk holding {what} at {path} is full ({free} free; {_reason(exc)}): "
            "free some space, then run `assistant ingest` to finish; what was stored is kept")
    return AssistantError(f"{what} at {path} {fix.format(reason=_reason(exc))}")


def _existing(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def open_client(settings: Settings) -> ClientAPI:
    """A Chroma client: HTTP when ``chroma_url`` is set, else persistent under the store."""
    chromadb = import_chromadb()

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
        except BaseException as exc:
            if not _chroma_failed(exc):
                raise
            raise AssistantError(
                f"cannot reach the Chroma server at {settings.chroma_url}: "
                f"{type(exc).__name__}"
            ) from None
        return client
    path = StoreLayout(settings.store).chroma
    try:
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=_chroma_settings())
    except BaseException as exc:
        if not _chroma_failed(exc):
            raise
        raise store_failed("the store", path, exc,
                           "cannot be opened ({reason}); run `assistant ingest --rebuild` "
                           "to rebuild it from the corpus") from None


class SentenceFile:
    """The sentence vectors of an embedded store's chunks, by chunk id, in
    ``<store>/sentences/<generation>.sqlite3``. Written only under the ingest lock; readers
    (the page, ``ask``) may read meanwhile (WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                con = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
                con.execute("CREATE TABLE IF NOT EXISTS chunks (id TEXT PRIMARY KEY, "
                            "doc_id TEXT NOT NULL, vectors TEXT NOT NULL) WITHOUT ROWID")
                con.execute("CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id)")
                con.commit()
            except (sqlite3.Error, OSError) as exc:
                raise store_failed("the sentence vectors", self.path, exc,
                                   "are damaged or unreadable ({reason}); run `assistant "
                                   "ingest --rebuild` to rebuild them from the corpus") from None
            self._con = con
        return self._con

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db() as con:  # a transaction: committed, or rolled back on error
                yield con
        except sqlite3.Error as exc:
            raise store_failed("the sentence vectors", self.path, exc,
                               "failed ({reason}); run `assistant ingest --rebuild` to "
                               "rebuild them from the corpus") from None

    def add(self, ids: list[str], doc_ids: list[str], vectors: list[str],
            embeddings: Vectors) -> None:
        """Store the chunks' vector strings (replacing any of the same id); the chunks'
        own vectors, which a Chroma record needs, are not kept here."""
        with self._guard() as con:
            con.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?)",
                            zip(ids, doc_ids, vectors, strict=True))

    def get(self, ids: list[str]) -> dict[str, str]:
        """The vector strings of the chunks ``ids`` that are stored."""
        found: dict[str, str] = {}
        if not ids or (self._con is None and not self.path.exists()):
            return found  # none stored here (yet): not created by a reader
        with self._guard() as con:
            for b in range(0, len(ids), 500):
                part = ids[b : b + 500]
                marks = ",".join("?" * len(part))
                found.update(con.execute(
                    f"SELECT id, vectors FROM chunks WHERE id IN ({marks})", part))
        return found

    def ids(self) -> list[str]:
        """Every chunk id with vectors here."""
        if self._con is None and not self.path.exists():
            return []
        with self._guard() as con:
            return [row[0] for row in con.execute("SELECT id FROM chunks")]

    def count(self) -> int:
        """Number of chunks with vectors here."""
        if self._con is None and not self.path.exists():
            return 0
        with self._guard() as con:
            return int(con.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def delete(self, ids: list[str]) -> None:
        """Remove the vectors of these chunks."""
        with self._guard() as con:
            con.executemany("DELETE FROM chunks WHERE id = ?", ((i,) for i in ids))

    def delete_docs(self, doc_ids: list[str]) -> None:
        """Remove the vectors of these articles' chunks."""
        with self._guard() as con:
            con.executemany("DELETE FROM chunks WHERE doc_id = ?", ((d,) for d in doc_ids))

    def close(self) -> None:
        """Close the database (before its file is deleted, or another replaces it)."""
        if self._con is not None:
            with suppress(sqlite3.Error):
                self._con.close()
            self._con = None


class ChromaSentences:
    """The sentence vectors of a server store's chunks: a ``<name>-sentences`` collection
    with one record per chunk, under its id (its Chroma vector is the chunk's, which Chroma
    requires), the vector string in its metadata. The same methods as
    :class:`SentenceFile`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _col(self, create: bool) -> Collection:
        return self.store._side_collection("sentences", create)

    def add(self, ids: list[str], doc_ids: list[str], vectors: list[str],
            embeddings: Vectors) -> None:
        """Store the chunks' vector strings (replacing any of the same id)."""
        col = self._col(create=True)
        metadatas: list[dict] = [{"doc_id": d, VECTORS_KEY: v}
                                 for d, v in zip(doc_ids, vectors, strict=True)]
        with self.store._guard():
            step = max(1, min(5000, int(self.store.client.get_max_batch_size())))
            for b in range(0, len(ids), step):
                col.upsert(ids=ids[b : b + step], embeddings=embeddings[b : b + step],
                           metadatas=metadatas[b : b + step])

    def get(self, ids: list[str]) -> dict[str, str]:
        """The vector strings of the chunks ``ids`` that are stored."""
        col = self._col(create=False) if ids else None
        if col is None:
            return {}
        with self.store._guard():
            got = col.get(ids=ids, include=["metadatas"])
        return {i: v for i, m in zip(got["ids"], got["metadatas"], strict=True)
                if isinstance(v := (m or {}).get(VECTORS_KEY), str)}

    def ids(self) -> list[str]:
        """Every chunk id with vectors here."""
        col = self._col(create=False)
        if col is None:
            return []
        found: list[str] = []
        with self.store._guard():
            total = int(col.count())
            for offset in range(0, total, 20000):
                found += col.get(include=[], limit=20000, offset=offset)["ids"]
        return found

    def count(self) -> int:
        """Number of chunks with vectors here."""
        col = self._col(create=False)
        if col is None:
            return 0
        with self.store._guard():
            return int(col.count())

    def delete(self, ids: list[str]) -> None:
        """Remove the vectors of these chunks."""
        col = self._col(create=False) if ids else None
        if col is not None:
            with self.store._guard():
                for b in range(0, len(ids), 5000):
                    col.delete(ids=ids[b : b + 5000])

    def delete_docs(self, doc_ids: list[str]) -> None:
        """Remove the vectors of these articles' chunks."""
        col = self._col(create=False) if doc_ids else None
        if col is None:
            return
        with self.store._guard():
            for b in range(0, len(doc_ids), 500):
                part = doc_ids[b : b + 500]
                col.delete(where={"doc_id": part[0]} if len(part) == 1
                           else {"doc_id": {"$in": part}})

    def close(self) -> None:
        """Nothing to close (the client is the store's)."""


def _variant_of(model_name: object) -> str | None:
    """The ``Settings.embedding`` value whose model is ``model_name`` (None: no such one)."""
    from assistant.embedding import MODEL_NAMES

    return next((v for v, name in MODEL_NAMES.items() if name == model_name), None)


class Store:
    """The chunk collection of a corpus, and the bookkeeping on it."""

    def __init__(self, settings: Settings, model_name: str, client: ClientAPI | None = None,
                 generation: int | None = None) -> None:
        self.settings = settings
        self.layout = StoreLayout(settings.store)
        self.requested_model = model_name  # what a new or rebuilt generation is built with
        self.model_name = model_name  # this generation's: the recorded one once opened
        self._client = client
        self.base = settings.collection_name
        self._generation = generation  # None: the pointer's, read on first use
        self._pinned = generation is not None  # a rebuild's new generation: never follows
        self.expected = {
            "embed_model": model_name,
            "chunking": f"{settings.chunk_tokens}/{settings.chunk_overlap_tokens}",
            "schema": SCHEMA,
        }
        self._chunks: Collection | None = None
        # suffix: (chunk collection id, collection)
        self._side: dict[str, tuple[str, Collection]] = {}
        self._sentence_table: SentenceFile | ChromaSentences | None = None

    # -- generations ------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """The generation this object reads and writes (the pointer's when it was opened)."""
        if self._generation is None:
            self._generation = self.current_generation()
        return self._generation

    @property
    def name(self) -> str:
        """The collection (and file) name of this object's generation."""
        return generation_name(self.base, self.generation)

    @property
    def pointer_path(self) -> Path:
        """The generation pointer of this corpus's collection."""
        return self.layout.pointer(self.base)

    @property
    def progress_path(self) -> Path:
        """The progress file of a running ingest of this corpus's collection."""
        return self.layout.progress(self.base)

    def _pointer(self) -> dict[str, Any]:
        """The pointer: ``generation`` (current), and while a rebuild runs or cleans up
        ``building`` and ``previous`` (-1: none). No pointer: generation 0."""
        if self.settings.chroma_url:
            with self._guard():
                try:
                    col = self.client.get_collection(_pointer_collection(self.base),
                                                     embedding_function=None)
                except Exception as exc:
                    if type(exc).__name__ != "NotFoundError":
                        raise
                    return {"generation": 0}
            meta = col.metadata or {}
            if meta.get("pointer_of") != self.base:
                return {"generation": 0}
            return dict(meta)
        return _read_json(self.pointer_path) or {"generation": 0}

    def current_generation(self) -> int:
        """The generation the pointer names (read afresh)."""
        value = self._pointer().get("generation", 0)
        return value if isinstance(value, int) and value >= 0 else 0

    def _write_pointer(self, generation: int, building: int = -1, previous: int = -1) -> None:
        data = {"generation": generation, "building": building, "previous": previous,
                "switched": time.time()}
        if self.settings.chroma_url:
            name = _pointer_collection(self.base)
            with self._guard():
                col = self.client.get_or_create_collection(
                    name, embedding_function=None, metadata={"pointer_of": self.base, **data})
                if (col.metadata or {}).get("pointer_of") != self.base:
                    raise AssistantError(f"the collection {name!r} on the Chroma server is "
                                         "not this store's generation pointer; rename it")
                col.modify(metadata={"pointer_of": self.base, **data})
        try:
            write_json_atomically(self.pointer_path, data)
        except OSError as exc:
            raise store_failed("the generation pointer", self.pointer_path, exc,
                               "cannot be written ({reason})") from None

    def refresh(self) -> bool:
        """Follow the pointer (a reader, before each question): True when it names another
        generation than this object's, which is then opened instead."""
        if self._pinned:
            return False
        current = self.current_generation()
        if self._generation is not None and current == self._generation:
            return False
        changed = self._generation is not None
        self._generation = current
        self._chunks = None
        self._side = {}
        self._sentence_table = None  # the old file's connection closes when no reader uses it
        return changed

    def writer(self) -> Store:
        """A Store of its own on the same client, for an ingest (which reads the pointer
        under the store's lock): readers of this one go on meanwhile, with their own
        connections."""
        return Store(self.settings, self.requested_model, client=self._client)

    def ingest_progress(self) -> dict[str, Any] | None:
        """The progress of an ingest running on this collection (None when none runs)."""
        data = _read_json(self.progress_path)
        if data is None or not self.layout.ingest_running():
            return None  # none, or left by a killed run
        return data

    def indexed_at(self) -> float | None:
        """When the last complete ingest of this generation finished (None if unknown)."""
        try:
            value = (self._fresh_chunks().metadata or {}).get("indexed_at")
        except AssistantError:
            value = None
        if isinstance(value, int | float):
            return float(value)
        with suppress(OSError):
            return (self.layout.bm25(self.name) / "fingerprint").stat().st_mtime
        return None

    def ingest_notice(self, complete_index: bool = True) -> str | None:
        """One line about a running ingest (None when none runs): how far it is, and which
        index answers meanwhile (``complete_index``) or that there is none yet."""
        running = self.ingest_progress()
        if running is None:
            return None
        done, total = running.get("done"), running.get("total")
        where = (f"{done} of {total} file{'s' if total != 1 else ''}"
                 if isinstance(done, int) and isinstance(total, int) else "reading the corpus")
        if not complete_index:
            return (f"an ingest is running: {where}; there is no complete index yet: "
                    "ask again when it has finished")
        since = self.indexed_at()
        use = (f"answers use the index from {_clock(since)}" if since is not None
               else "answers use the last complete index")
        return f"an ingest is running: {where}; {use}"

    def wait_for_ingest(self, seconds: float = INGEST_WAIT_S) -> bool:
        """Wait up to ``seconds`` for a running ingest to end; True if one ran and ended."""
        if self.ingest_progress() is None:
            return False
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if self.ingest_progress() is None:
                return True
        return False

    def begin_rebuild(self) -> Store:
        """A new, empty generation to rebuild into (call it holding :func:`ingest_lock`);
        this object keeps answering from the current one until :meth:`switch_to`.

        Leftovers of a killed rebuild go first. When the embedded store cannot be opened,
        fails its integrity check or cannot drop a collection, its ``chroma``,
        ``sentences``, ``bm25`` and ``words`` directories are deleted instead — only those,
        only inside the store directory — and empty ones are created on next use.
        """
        problem = None if self.settings.chroma_url else self._integrity_problem()
        if problem is None:
            try:
                self.drop_leftovers()
            except AssistantError as exc:
                if self.settings.chroma_url:
                    raise
                problem = str(exc)
        if problem is not None:
            self._wipe(problem)
        pointer = self._pointer()
        current = self.current_generation()
        numbers = [current] + [v for k in ("building", "previous")
                               if isinstance(v := pointer.get(k), int)]
        new = max(numbers) + 1
        # Recorded before anything is written: a run killed from here on leaves a
        # generation that the next ingest knows to delete.
        self._write_pointer(current, building=new)
        target = Store(self.settings, self.requested_model, client=self._client,
                       generation=new)
        try:
            target._drop_generation(new)  # nothing of that name may be left, recorded or not
            target.count()
        except AssistantError as exc:
            if self.settings.chroma_url or problem is not None:
                raise
            self._wipe(str(exc))  # cannot create a collection: damaged after all
            target = Store(self.settings, self.requested_model, generation=new)
            target.count()
        return target

    def switch_to(self, target: Store) -> None:
        """Make ``target`` (complete) the current generation, then delete this one."""
        old = self.generation
        self._write_pointer(target.generation, previous=old)
        if self._sentence_table is not target._sentence_table:
            self._close_sentences()  # this object is a writer's: no reader shares it
        self._client = target._client
        self._generation = target.generation
        self._pinned = False
        self._chunks = target._chunks
        self._side, self._sentence_table = target._side, target._sentence_table
        try:
            self._drop_generation(old)
            self._remove_orphan_segments()
        except AssistantError as exc:  # the next ingest deletes it
            log.warning("could not delete generation %d: %s", old, exc)
            return
        self._write_pointer(target.generation)

    @contextmanager
    def ingest_lease(self, timeout: float) -> Iterator[IngestLease]:
        """Hold what keeps other machines from writing this store for the ``with`` block:
        on a Chroma server its ingest lease (:mod:`assistant.lease`), waiting up to
        ``timeout`` seconds for another machine's run; embedded, nothing (the caller
        holds the store directory's lock)."""
        if not self.settings.chroma_url:
            yield NoLease()
            return
        lease = Lease(self.client, self.base, self.settings.chroma_url)
        with self._guard():
            lease.acquire(timeout)
        try:
            yield lease
        finally:
            with self._guard():
                lease.release()

    def drop_leftovers(self) -> None:
        """Delete the generations a killed rebuild left (the one it was building, or the
        one it had replaced), recorded in the pointer; call it holding the ingest lock."""
        pointer = self._pointer()
        current = self.current_generation()
        stale = {v for k in ("building", "previous") if isinstance(v := pointer.get(k), int)
                 and v >= 0 and v != current}
        if not stale:
            return
        for generation in sorted(stale):
            log.info("deleting generation %d, left by an interrupted rebuild", generation)
            self._drop_generation(generation)
        self._remove_orphan_segments()
        self._write_pointer(current)
        if self._generation not in (None, current):
            self.refresh()

    def _drop_generation(self, generation: int) -> None:
        """Delete one generation: its collections (chunks, and on a server sentence and
        word vectors), its sentence-vector file, BM25 index, word vectors and file index."""
        name = generation_name(self.base, generation)
        with self._guard():
            for col in (name, name + "-sentences", name + "-words"):
                try:
                    self.client.delete_collection(col)
                except Exception as exc:
                    if type(exc).__name__ != "NotFoundError":
                        raise
        if generation == self._generation:
            self._chunks = None
            self._close_sentences()
        for path in self.layout.generation_paths(name):
            if path.exists() or path.is_symlink():
                self.layout.remove_inside(path)

    @property
    def client(self) -> ClientAPI:
        """The Chroma client, opened on first use (``ingest`` takes the store's lock first)."""
        if self._client is None:
            self._client = open_client(self.settings)
        return self._client

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Chroma's failures as one-line AssistantErrors that say what to do."""
        try:
            yield
        except AssistantError:
            raise
        except BaseException as exc:
            if not _chroma_failed(exc):
                raise
            if self.settings.chroma_url:
                raise AssistantError(
                    f"the Chroma server at {self.settings.chroma_url} failed ({_reason(exc)})"
                ) from None
            raise store_failed("the store", self.layout.chroma, exc,
                               "is damaged or unreadable ({reason}); run `assistant ingest "
                               "--rebuild` to rebuild it from the corpus") from None

    # -- collections --------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the chunk collection exists."""
        client = self.client
        try:
            client.get_collection(self.name, embedding_function=None)
        except Exception:
            return False
        return True

    @property
    def chunks(self) -> Collection:
        """The chunk collection (created on first use, checked against the settings)."""
        if self._chunks is None:
            self._chunks = self._open(self.name)
        return self._chunks

    def _side_collection(self, suffix: str, create: bool) -> Collection:
        """This generation's ``<name>-<suffix>`` collection (None: none yet, and not
        ``create``), kept while the chunk collection is the same one."""
        chunks_id = str(self.chunks.id)
        cached = self._side.get(suffix)
        if cached is not None and cached[0] == chunks_id:
            return cached[1]
        name = f"{self.name}-{suffix}"
        with self._guard():
            if create:
                col = self.client.get_or_create_collection(name, embedding_function=None)
            else:
                try:
                    col = self.client.get_collection(name, embedding_function=None)
                except Exception as exc:
                    if type(exc).__name__ != "NotFoundError":
                        raise
                    return None
        self._side[suffix] = (chunks_id, col)
        return col

    @property
    def sentences(self) -> SentenceFile | ChromaSentences:
        """The sentence vectors of this generation's chunks (see the module's docstring)."""
        if self._sentence_table is None:
            self._sentence_table = (ChromaSentences(self) if self.settings.chroma_url
                                    else SentenceFile(self.layout.sentences(self.name)))
        return self._sentence_table

    def _close_sentences(self) -> None:
        if self._sentence_table is not None:
            self._sentence_table.close()
        self._sentence_table = None
        self._side = {}

    def add_sentence_vectors(self, ids: list[str], doc_ids: list[str], vectors: list[str],
                             embeddings: Vectors) -> None:
        """Keep the sentence vectors (:class:`~assistant.layout.SentenceData` strings)
        of the chunks ``ids``; ``embeddings`` are the chunks' own vectors."""
        self.sentences.add(ids, doc_ids, vectors, embeddings)

    def sentence_vectors(self, ids: list[str]) -> dict[str, str]:
        """The stored sentence records (:class:`~assistant.layout.SentenceData` strings:
        vectors and entities) of the chunks ``ids`` (those it has)."""
        return self.sentences.get(ids)

    def sentence_count(self) -> int:
        """Chunks with sentence vectors (equal to :meth:`count` but after a killed run)."""
        return self.sentences.count()

    def delete_orphan_sentences(self) -> int:
        """Delete the sentence vectors whose chunk is not stored (left by a run killed
        between writing the two); returns how many."""
        chunks = set(self.all_chunk_ids())
        orphans = [i for i in self.sentences.ids() if i not in chunks]
        self.sentences.delete(orphans)
        return len(orphans)

    @property
    def shares_words(self) -> bool:
        """True on a Chroma server: the vocabulary's word vectors are kept there too (a
        ``<name>-words`` collection), for the machines that did not ingest."""
        return bool(self.settings.chroma_url)

    def add_word_vectors(self, words: list[str], vectors: Vectors) -> None:
        """Keep the vectors of ``words`` on the server (replacing any stored). Each is also
        in its record's metadata, exact (float32, base64): a read of metadata only is about
        a fifth of the JSON of the same vectors as embeddings."""
        col = self._side_collection("words", create=True)
        rows = np.asarray(vectors, dtype="<f4")
        with self._guard():
            step = max(1, min(5000, int(self.client.get_max_batch_size())))
            for b in range(0, len(words), step):
                part = rows[b : b + step]
                col.upsert(ids=words[b : b + step], embeddings=part,
                           metadatas=[{VECTORS_KEY: base64.b64encode(v.tobytes()).decode()}
                                      for v in part])

    def word_vectors(self, words: list[str]) -> dict[str, Any]:
        """The vectors the server keeps of ``words`` (those it has), as float32 arrays."""
        col = self._side_collection("words", create=False) if words and self.shares_words \
            else None
        if col is None:
            return {}
        found: dict[str, Any] = {}
        with self._guard():
            for b in range(0, len(words), 1000):
                got = col.get(ids=words[b : b + 1000], include=["metadatas"])
                for w, meta in zip(got["ids"], got["metadatas"], strict=True):
                    data = (meta or {}).get(VECTORS_KEY)
                    try:
                        found[w] = np.frombuffer(base64.b64decode(data), dtype="<f4")
                    except (TypeError, ValueError):  # damaged or absent: embedded instead
                        continue
        return found

    @property
    def embedding(self) -> str:
        """The ``Settings.embedding`` whose model made this store's vectors: the one it was
        built with (a new store is built with the settings')."""
        _ = self.chunks  # opening the collection adopts its recorded model
        return _variant_of(self.model_name) or self.settings.embedding

    @property
    def chunk_vectors(self) -> str:
        """How this store's chunk vectors are made (``Settings.chunk_vectors``): set when
        the collection is created; a store from before the setting existed is "embedded"."""
        return str((self.chunks.metadata or {}).get("chunk_vectors", "embedded"))

    def _open(self, name: str) -> Collection:
        if not self._pinned:
            # A reader's generation deleted by a rebuild (which moved the pointer first):
            # follow the pointer rather than create the deleted collection anew.
            try:
                with self._guard():
                    try:
                        self.client.get_collection(name, embedding_function=None)
                    except Exception as exc:
                        if type(exc).__name__ != "NotFoundError":
                            raise
                        if self.refresh():
                            return self._open(self.name)
            except AssistantError:
                pass  # the get_or_create below says what is wrong
        try:
            col = self.client.get_or_create_collection(
                name, embedding_function=None,
                metadata={**self.expected, "generation_of": self.base,
                          "generation": self.generation,
                          "chunk_vectors": self.settings.chunk_vectors},
                configuration={"hnsw": {"sync_threshold": HNSW_SYNC_THRESHOLD}})
        except AssistantError:
            raise
        except BaseException as exc:
            if not _chroma_failed(exc):
                raise
            raise AssistantError(
                f"cannot open collection {name!r} ({_reason(exc)}); "
                "run `assistant ingest --rebuild` to rebuild it from the corpus"
            ) from None
        meta = col.metadata or {}
        for key, want in self.expected.items():
            have = meta.get(key)
            if have != want and key == "embed_model" and _variant_of(have):
                # A store keeps the bundled model it was built with (Settings.embedding
                # applies to new and rebuilt stores): questions are embedded with it.
                self.model_name = str(have)
                self.expected = {**self.expected, key: have}
            elif have != want:
                raise AssistantError(
                    f"the store was built with {key}={have!r} but this assistant uses "
                    f"{want!r}; run `assistant ingest --rebuild` to rebuild it"
                )
        return col

    def _wipe(self, problem: str) -> None:
        """Delete the embedded store's ``chroma``, ``sentences``, ``bm25`` and ``words``
        directories (a store damaged beyond opening: ``problem``), only inside the store."""
        log.warning("the store at %s cannot be used (%s); deleting it and starting afresh",
                    self.settings.store, problem)
        self._forget_client()
        self._close_sentences()
        for folder in self.layout.wiped_on_damage:
            try:
                self.layout.remove_inside(folder)
            except OSError as exc:
                raise AssistantError(
                    f"cannot delete {folder}: {exc.strerror or exc}"
                ) from None
        self._chunks = None

    def _remove_orphan_segments(self) -> None:
        """Delete the vector-index folders of dropped collections: Chroma leaves them
        behind, and each rebuild would otherwise leave a copy of the index on disk."""
        if self.settings.chroma_url:
            return
        folder = self.layout.chroma
        db = self.layout.chroma_db
        try:
            con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
            try:
                live = {str(row[0]) for row in con.execute("SELECT id FROM segments")}
            finally:
                con.close()
        except (sqlite3.Error, OSError) as exc:
            log.info("not cleaning %s: %s", folder, exc)
            return
        for sub in folder.iterdir():
            if (_UUID.fullmatch(sub.name) and sub.name not in live and sub.is_dir()
                    and not sub.is_symlink()):
                self.layout.remove_inside(sub)

    def _integrity_problem(self) -> str | None:
        """Why the embedded store's database is unusable (sqlite's quick_check), or None."""
        db = self.layout.chroma_db
        if not db.exists():
            return None
        try:
            con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
            try:
                rows = con.execute("PRAGMA quick_check").fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None  # in use by another process: busy, not damaged
            return f"{db}: {exc}"
        if rows != [("ok",)]:
            return f"{db}: " + " ".join("; ".join(str(r[0]) for r in rows[:3]).split())[:300]
        return None

    def _forget_client(self) -> None:
        """Drop this process's Chroma client of the embedded store, and Chroma's cached
        system for its path, so that the directory can be deleted and opened anew."""
        self._client = None
        self._chunks = None
        try:
            from chromadb.api.shared_system_client import SharedSystemClient

            systems = SharedSystemClient._identifier_to_system
            refcounts = SharedSystemClient._identifier_to_refcount
        except (ImportError, AttributeError):
            return
        target = self.layout.chroma.resolve()
        for ident in list(systems):
            if ident in ("", "ephemeral") or Path(ident).resolve() != target:
                continue
            system = systems.pop(ident, None)
            refcounts.pop(ident, None)
            try:
                if system is not None:
                    system.stop()
            except BaseException as exc:
                if not _chroma_failed(exc):
                    raise
                log.info("stopping the damaged store's Chroma system: %s", _reason(exc))

    # -- state ----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """The corpus fingerprint recorded by the last complete ingest ('' if none).

        Read afresh each time, so that a long-running reader (the chat page) notices an
        ingest or a rebuild made by another process.
        """
        return str((self._fresh_chunks().metadata or {}).get("fingerprint", ""))

    def writing_run(self) -> str:
        """The token of the last ingest that began writing and has not completed ('' once
        one completes): another machine's ingest into the same server changes it."""
        return str((self._fresh_chunks().metadata or {}).get("writing", ""))

    def recorded_chunks(self) -> int | None:
        """The chunk count recorded with the fingerprint (None if none)."""
        value = (self._fresh_chunks().metadata or {}).get("chunks")
        return int(value) if isinstance(value, int | float) else None

    def _fresh_chunks(self) -> Collection:
        if self._chunks is None:
            return self.chunks
        with self._guard():
            try:
                col = self.client.get_collection(self.name, embedding_function=None)
            except Exception as exc:
                if type(exc).__name__ != "NotFoundError":
                    raise
                col = None
        if col is None and self.refresh():
            return self.chunks  # replaced by a rebuild in another process: follow it
        if col is None or col.id != self._chunks.id:
            # Dropped or rebuilt by another process: open it again, checking its settings
            # (and the sentence vectors, replaced with it).
            self._chunks = None
            self._close_sentences()
            return self.chunks
        self._chunks = col
        return col

    def set_fingerprint(self, value: str, chunks: int | None = None, writing: str = "") -> None:
        """Record the corpus fingerprint (and counts) once an ingest has completed; with
        ``value`` empty and ``writing`` a run's token, that the run has begun writing."""
        meta = dict(self._fresh_chunks().metadata or {})
        meta.update(self.expected)
        meta["fingerprint"] = value
        meta["writing"] = writing
        if value:
            meta["indexed_at"] = time.time()
        if chunks is not None:
            meta["chunks"] = int(chunks)
        meta.pop("hnsw:space", None)
        with self._guard():
            self.chunks.modify(metadata=meta)

    def stored_docs(self) -> dict[str, StoredDoc]:
        """Every article the store holds, with its hash and chunk counts."""
        counts: dict[str, int] = defaultdict(int)
        info: dict[str, tuple[str, int]] = {}
        for metas in self._iter_metadatas(self.chunks):
            for m in metas:
                m = m or {}
                doc = str(m.get("doc_id", ""))
                counts[doc] += 1
                info.setdefault(doc, (str(m.get("sha256", "")), int(m.get("n_chunks", 0))))
        return {d: StoredDoc(info[d][0], info[d][1], counts[d]) for d in counts}

    def count(self) -> int:
        """Number of chunks stored."""
        with self._guard():
            return int(self.chunks.count())

    def keeps_entities(self) -> bool:
        """True when the chunks' sentence records hold their entities (read for one chunk:
        a store ingested before they were kept, even in part, has its oldest without)."""
        with self._guard():
            ids = self.chunks.get(include=[], limit=1)["ids"]
        record = self.sentence_vectors(ids).get(ids[0]) if ids else None
        return record is not None and SentenceData((), record).has_entities

    def _iter_metadatas(self, col: Collection, page: int = 5000) -> Iterator[list[dict]]:
        offset = 0
        while True:
            with self._guard():
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
            with self._guard():
                got = self.chunks.get(include=["documents", "metadatas"], limit=page,
                                      offset=offset)
            ids = got.get("ids") or []
            yield from zip(ids, got["documents"], got["metadatas"], strict=True)
            if len(ids) < page:
                return
            offset += page

    def all_chunk_ids(self, page: int = 20000) -> list[str]:
        """The id of every stored chunk (ids only: no text, no metadata is read)."""
        out: list[str] = []
        while True:
            with self._guard():
                got = self.chunks.get(include=[], limit=page, offset=len(out))
            ids = got.get("ids") or []
            out.extend(ids)
            if len(ids) < page:
                return out

    def get_chunks(self, ids: list[str], page: int = 5000, ahead: bool = False
                   ) -> Iterator[tuple[str, str, dict]]:
        """The stored chunks of ``ids`` as ``(id, text, metadata)`` (missing ids left out),
        read ``page`` at a time. ``ahead``: the next page is read in a thread while the
        caller works on this one (for a reader that spends as long on each page as the
        store does: the lexical index's tokeniser)."""

        step = max(1, page)

        def read(b: int) -> GetResult:
            with self._guard():
                return self.chunks.get(ids=ids[b : b + step],
                                       include=["documents", "metadatas"])

        def pages() -> Iterator[GetResult]:
            starts = range(0, len(ids), step)
            if not ahead or len(starts) < 2:
                yield from map(read, starts)
                return
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = None
                for b in starts:
                    following = pool.submit(read, b)
                    if pending is not None:
                        yield pending.result()
                    pending = following
                yield pending.result()

        for got in pages():
            yield from zip(got["ids"], got["documents"], got["metadatas"], strict=True)

    # -- writes ---------------------------------------------------------------------------
    def delete_doc(self, doc_id: str) -> None:
        """Remove every chunk of an article, then their sentence vectors."""
        self.delete_docs([doc_id])

    def delete_docs(self, doc_ids: list[str]) -> None:
        """:meth:`delete_doc` for many articles at once (one write per collection)."""
        for b in range(0, len(doc_ids), 500):
            part = doc_ids[b : b + 500]
            where = {"doc_id": part[0]} if len(part) == 1 else {"doc_id": {"$in": part}}
            with self._guard():
                self.chunks.delete(where=where)
            self.sentences.delete_docs(part)

    def chunk_ids(self, doc_ids: list[str]) -> list[str]:
        """The ids of every stored chunk of these articles."""
        found: list[str] = []
        for b in range(0, len(doc_ids), 500):
            part = doc_ids[b : b + 500]
            where = {"doc_id": part[0]} if len(part) == 1 else {"doc_id": {"$in": part}}
            with self._guard():
                found += self.chunks.get(where=where, include=[]).get("ids") or []
        return found

    def delete_chunks(self, ids: list[str]) -> None:
        """Remove chunks by id, then their sentence vectors."""
        for b in range(0, len(ids), 5000):
            with self._guard():
                self.chunks.delete(ids=ids[b : b + 5000])
        if ids:
            self.sentences.delete(ids)

    def add(self, col: Collection, ids: list[str], embeddings: Vectors, metadatas: list[dict],
            documents: list[str] | None = None) -> None:
        """Add records in batches no larger than the server accepts."""
        with self._guard():
            step = max(1, min(5000, int(self.client.get_max_batch_size())))
            for b in range(0, len(ids), step):
                col.add(
                    ids=ids[b : b + step],
                    embeddings=embeddings[b : b + step],
                    metadatas=metadatas[b : b + step],
                    documents=None if documents is None else documents[b : b + step],
                )
