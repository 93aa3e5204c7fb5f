"""A live corpus: :class:`CorpusWatcher` watches the corpus folder (``watchfiles``, the
operating system's file notifications) and runs an incremental ingest after each batch of
changes to its articles, so that new, edited and deleted files are answered from within a
few seconds. What happened last is kept as a :class:`WatchStatus` for the page to show.

A failed ingest is recorded (one line) and tried again after ``retry`` seconds or at the
next change; it never stops the watcher. Changes that arrive while an ingest runs are
collected by the notifier and make the next batch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchfiles import Change, watch

from assistant.corpus import SUFFIXES
from assistant.settings import AssistantError
from assistant.text import one_line

if TYPE_CHECKING:
    from assistant.core import Assistant
    from assistant.types import IngestReport

log = logging.getLogger(__name__)

DEBOUNCE_MS = 1000
"""Longest time changes are grouped into one batch before it is ingested."""
STEP_MS = 200
"""A batch is complete once no new change came for this long."""
RETRY_S = 10.0
"""Seconds before a failed ingest (or a corpus folder that went away) is tried again."""
HEARTBEAT_MS = 1000
"""The notifier returns an empty batch after this long without changes."""

_TEMPORARY_SUFFIXES = ("~", ".swp", ".swx", ".tmp", ".temp", ".part", ".crdownload", ".bak")


class ArticleFilter:
    """The ``watch_filter`` of a corpus: changes to articles (``SUFFIXES``), and to folders
    that went away or appeared (a moved folder of articles reports only its own name).

    Hidden names (``.x``) anywhere below the corpus, editors' and downloads' temporary
    files (``#x#``, ``x~``, ``.swp``, ``.tmp``, ``.part``, …) and anything inside
    ``ignore`` (the store, when it lies in the corpus) are left out.
    """

    def __init__(self, corpus: Path, ignore: tuple[Path, ...] = ()) -> None:
        self.corpus = Path(os.path.abspath(corpus))
        self.ignore = tuple(Path(os.path.abspath(p)) for p in ignore)

    def __call__(self, change: Change, path: str) -> bool:
        """True when ``change`` of ``path`` may change what the corpus holds."""
        p = Path(os.path.abspath(path))  # "corpus/../corpus/a.txt" as "corpus/a.txt"
        if p == self.corpus:
            return True  # the folder itself went away or came back
        try:
            parts = p.relative_to(self.corpus).parts
        except ValueError:
            return False
        if any(p == i or p.is_relative_to(i) for i in self.ignore):
            return False
        if any(part.startswith(".") for part in parts):
            return False
        name = parts[-1].lower()
        if name.startswith("#") or name.endswith(_TEMPORARY_SUFFIXES):
            return False
        if name.endswith(SUFFIXES):
            return True
        if change == Change.deleted:
            return "." not in name  # most likely a folder (its articles went with it)
        return change == Change.added and p.is_dir()


@dataclass(frozen=True)
class WatchStatus:
    """What the watcher is doing and what its last ingest did (times are ``time.time()``)."""

    corpus: Path
    watching: bool
    """The watcher thread is running."""
    ingesting: bool = False
    """An ingest of changes is running now."""
    ingests: int = 0
    """Ingests run since the watcher started (failed ones included)."""
    last_time: float | None = None
    """When the last ingest ended."""
    last_changed: tuple[int, int, int] | None = None
    """(new, changed, removed) articles of the last ingest that succeeded."""
    last_skipped: int = 0
    """Files the last successful ingest skipped (empty, binary, …)."""
    updated_time: float | None = None
    """When an ingest last changed the index."""
    updated: tuple[int, int, int] | None = None
    """(new, changed, removed) articles of the last ingest that changed the index."""
    error: str | None = None
    """One line when the last ingest failed (``indexing failed: …``) or the folder cannot
    be watched; cleared by the next ingest that succeeds."""

    def summary(self) -> str:
        """One plain line: ``watching corpus/ · updated 10:42:05: 1 changed``."""
        folder = str(self.corpus).rstrip("/\\") + "/"
        where = f"watching {folder}" if self.watching else f"not watching {folder}"
        if self.ingesting:
            return f"{where} · indexing changes…"
        if self.error is not None:
            return f"{where} · {self.error} ({_clock(self.last_time)}; will retry)"
        line = where
        if self.updated is not None:
            line += f" · updated {_clock(self.updated_time)}: {counts(*self.updated)}"
        if self.last_skipped:
            line += f" · {self.last_skipped} file{'s' if self.last_skipped != 1 else ''} skipped"
        return line


def counts(new: int, changed: int, removed: int) -> str:
    """``1 new, 2 changed`` (only the non-zero counts; ``no changes`` when all are 0)."""
    parts = [f"{n} {label}" for n, label in
             ((new, "new"), (changed, "changed"), (removed, "removed")) if n]
    return ", ".join(parts) or "no changes"


def _clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t is not None else "?"


def error_line(exc: BaseException) -> str:
    """One line for an ingest failure: an AssistantError's message, else its type and first
    line (at most 300 characters)."""
    if isinstance(exc, AssistantError):
        text = str(exc)
    else:
        detail = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
    text = one_line(" ".join(text.split()))
    return text if len(text) <= 300 else text[:297] + "…"


class CorpusWatcher:
    """Ingests ``bot``'s corpus whenever its articles change, in a daemon thread.

    >>> watcher = CorpusWatcher(bot).start()
    >>> watcher.status().summary()
    'watching corpus/'
    >>> watcher.stop()

    ``lock`` (a callable returning a context manager) is held around each ingest; the page
    passes its write lock, so that questions wait for the ingest, as they do for uploads.
    ``on_ingest`` is called with each successful report, outside ``lock``.
    """

    def __init__(self, bot: Assistant, *, debounce_ms: int = DEBOUNCE_MS,
                 step_ms: int = STEP_MS, retry: float = RETRY_S,
                 lock: Callable[[], AbstractContextManager[object]] | None = None,
                 on_ingest: Callable[[IngestReport], None] | None = None) -> None:
        self.bot = bot
        self.corpus = Path(bot.settings.corpus)
        self.debounce_ms = int(debounce_ms)
        self.step_ms = int(step_ms)
        self.retry = float(retry)
        self.lock = lock
        self.on_ingest = on_ingest
        store = Path(bot.settings.store)
        self.filter = ArticleFilter(self.corpus, ignore=(store,))
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()
        self._status = WatchStatus(corpus=self.corpus, watching=False)

    # -- status -------------------------------------------------------------------------------
    def status(self) -> WatchStatus:
        """What the watcher is doing now and what its last ingest did."""
        with self._mutex:
            status = self._status
        alive = self._thread is not None and self._thread.is_alive()
        return status if status.watching == alive else replace(status, watching=alive)

    def _set(self, **changes: Any) -> None:
        with self._mutex:
            self._status = replace(self._status, **changes)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> CorpusWatcher:
        """Start watching (in a daemon thread); returns the watcher."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="corpus-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching and wait (at most ``timeout`` seconds, as an ingest under way
        finishes first; an ingest cut short is completed by the next one)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the corpus watcher did not stop within %.0f s", timeout)

    def __enter__(self) -> CorpusWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread ---------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until the notifier is watching the folder (changes from then on are seen);
        True when it is."""
        return self._ready.wait(timeout)

    def _run(self) -> None:
        catch_up = False  # the folder came back, or watching failed: changes may be missed
        while not self._stop.is_set():
            if not self.corpus.is_dir():
                if self.status().error is None:
                    self._set(error=f"corpus directory not found: {self.corpus}",
                              last_time=time.time())
                self._stop.wait(self.retry)
                catch_up = True
                continue
            try:
                catch_up = self._watch(catch_up)
            except Exception as exc:  # the notifier failed (e.g. out of inotify watches)
                log.warning("watching %s failed: %s", self.corpus, exc)
                self._set(error=f"watching failed: {error_line(exc)}", last_time=time.time())
                self._stop.wait(self.retry)
                catch_up = True

    def _watch(self, catch_up: bool) -> bool:
        """Ingest after each batch of changes until stopped (returns False) or the corpus
        folder goes away (returns True: catch up once it is back).

        The notifier wakes this loop every ``HEARTBEAT_MS`` with an empty batch when
        nothing changed: the first one says it is watching, and a failed ingest (or the
        catch-up after watching anew) is tried on the first one ``retry`` seconds after.
        """
        changes = watch(self.filter.corpus, watch_filter=self.filter, debounce=self.debounce_ms,
                        step=self.step_ms, stop_event=self._stop, rust_timeout=HEARTBEAT_MS,
                        yield_on_timeout=True, raise_interrupt=False)
        pending, failed_at = catch_up, -math.inf
        try:
            for batch in changes:
                self._ready.set()
                if self._stop.is_set():
                    break
                due = pending and time.monotonic() - failed_at >= self.retry
                if batch or due:
                    if batch:
                        log.info("corpus changes: %s", sorted(p for _, p in batch)[:20])
                    pending = not self._ingest()
                    failed_at = time.monotonic()
                root_gone = any(Path(os.path.abspath(p)) == self.filter.corpus
                                for _, p in batch)
                if root_gone or not self.corpus.is_dir():
                    return True  # the notifier lost its folder: watch it again once back
        finally:
            changes.close()
        return False

    def _ingest(self) -> bool:
        """One incremental ingest, recorded in the status; True when it succeeded."""
        self._set(ingesting=True)
        report = None
        error = None
        try:
            with self.lock() if self.lock is not None else contextlib.nullcontext():
                report = self.bot.ingest()
        except BaseException as exc:
            if isinstance(exc, SystemExit | KeyboardInterrupt | GeneratorExit):
                raise
            error = f"indexing failed: {error_line(exc)}"
            log.warning("%s", error, exc_info=log.isEnabledFor(logging.INFO))
        now = time.time()
        with self._mutex:
            s = self._status
            if report is None:
                self._status = replace(s, ingesting=False, ingests=s.ingests + 1,
                                        last_time=now, error=error)
                return False
            counted = (report.new, report.changed, report.removed)
            changed = any(counted)
            self._status = replace(
                s, ingesting=False, ingests=s.ingests + 1, last_time=now,
                last_changed=counted, last_skipped=len(report.skipped), error=None,
                updated_time=now if changed else s.updated_time,
                updated=counted if changed else s.updated)
        log.info("corpus changes ingested: %s", report.summary())
        if self.on_ingest is not None:
            try:
                self.on_ingest(report)
            except Exception as exc:
                log.warning("after the ingest of corpus changes: %s", exc)
        return True
