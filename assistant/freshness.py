"""Retrieved passages and citations checked against the corpus files as they are now.

The index holds each chunk's text and offsets as the last ingest read them; a file edited,
moved or deleted since would make those offsets point at other text. Before an answer is
chosen, every retrieved chunk is checked against its file: a chunk still at its offsets is
used as is; in a changed file each of its sentences is found again (exact text, the
occurrence nearest where it was) and its offsets corrected, and what is no longer there is
dropped. After the answer is made, each citation is checked once more, so a quote is always
``read_text(corpus / path)[start:end]``.

Files are read at most once per change: the text is cached by ``(size, mtime_ns)``, so an
unchanged corpus costs one ``stat`` per retrieved file.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

from assistant.corpus import SkippedFile, content_hash, decode, read_limited
from assistant.retrieval import Hit
from assistant.text import one_line
from assistant.types import Answer

"""Hit metadata key: the sentence spans as ingested, in the order of ``sents`` (present on
relocated hits; the stored sentence vectors are keyed by these)."""
SETTLE_NS = 2_000_000_000
"""A file read less than this after its last modification is read again next time: a write
in the same clock tick would leave its ``(size, mtime_ns)`` unchanged."""
MAX_NAMES = 3  # files named in a notice
_MARKER = re.compile(r"\s*\[(\s*\d{1,3}(?:\s*,\s*\d{1,3})*\s*)\]")


@dataclass
class FileState:
    """One corpus file as it is now: its text, or why there is none."""

    text: str | None
    problem: str = ""  # "missing", or why the file cannot be read
    stamp: tuple[int, int] | None = None
    settled: bool = False
    _sha256: str | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        """The content hash of the text, as ingest computes it ("" without text)."""
        if self._sha256 is None:
            self._sha256 = content_hash(self.text) if self.text is not None else ""
        return self._sha256


class CorpusFiles:
    """The current text of corpus files, read once per change (thread-safe).

    Up to ``max_chars`` characters of text are kept, least recently used first out.
    """

    def __init__(self, corpus: Path, max_bytes: int, max_chars: int = 32_000_000) -> None:
        self.corpus = Path(corpus)
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self._cache: OrderedDict[str, FileState] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        self.reads = 0  # files read (not served from the cache)

    def state(self, rel: str) -> FileState:
        """The file ``rel`` (a path relative to the corpus) as it is now."""
        parts = Path(rel).parts
        if not rel or Path(rel).is_absolute() or ".." in parts:
            return FileState(None, "outside the corpus")
        path = self.corpus / rel
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._forget(rel)
            return FileState(None, "missing")
        except OSError as exc:
            return FileState(None, exc.strerror or str(exc))
        with self._lock:
            known = self._cache.get(rel)
            if known is not None and known.settled and known.stamp == (st.st_size,
                                                                        st.st_mtime_ns):
                self._cache.move_to_end(rel)
                return known
        fresh = self._read(path)
        if fresh.text is not None:
            with self._lock:
                self._drop(rel)
                self._cache[rel] = fresh
                self._chars += len(fresh.text)
                while self._chars > self.max_chars and len(self._cache) > 1:
                    self._drop(next(iter(self._cache)))
        return fresh

    def _read(self, path: Path) -> FileState:
        stamp: list[tuple[int, int]] = []
        self.reads += 1
        try:
            text = decode(read_limited(path, self.max_bytes, stamp))
        except SkippedFile as exc:
            return FileState(None, str(exc))
        except FileNotFoundError:
            return FileState(None, "missing")
        except PermissionError:
            return FileState(None, "permission denied")
        except OSError as exc:
            return FileState(None, exc.strerror or str(exc))
        settled = time.time_ns() - stamp[0][1] >= SETTLE_NS
        return FileState(text, stamp=stamp[0], settled=settled)

    def _drop(self, rel: str) -> None:
        old = self._cache.pop(rel, None)
        if old is not None and old.text is not None:
            self._chars -= len(old.text)

    def _forget(self, rel: str) -> None:
        with self._lock:
            self._drop(rel)


@dataclass
class Changes:
    """The retrieved articles whose files changed since the last ingest."""

    corpus: Path
    files: dict[str, str] = field(default_factory=dict)  # path → "" (edited) or a problem

    def note(self, path: str, problem: str = "") -> None:
        """Record ``path`` as changed (``problem``: missing, or why it cannot be read)."""
        if path not in self.files or problem:
            self.files[path] = problem

    def notice(self) -> str | None:
        """One line for the user, or None when every retrieved file is as ingested."""
        if not self.files:
            return None
        if not self.corpus.is_dir():
            return (f"the corpus directory {one_line(str(self.corpus))} was not found: "
                    "no passage could be checked against its article, so none is cited")
        names = []
        for path, problem in list(self.files.items())[:MAX_NAMES]:
            name = one_line(path)
            if problem == "missing":
                name += ", now missing"
            elif problem:
                name += f", now unreadable: {one_line(problem)}"
            names.append(name)
        more = len(self.files) - MAX_NAMES
        if more > 0:
            names.append(f"and {more} more")
        n = len(self.files)
        noun = "article" if n == 1 else "articles"
        return (f"{n} {noun} changed since the last ingest ({'; '.join(names)}): "
                "run `assistant ingest` to update the index")


def _nearest(text: str, piece: str, near: int) -> int:
    """The start of the occurrence of ``piece`` in ``text`` nearest to ``near`` (-1: none)."""
    if not piece:
        return -1
    near = max(0, min(near, len(text)))
    before = text.rfind(piece, 0, near + len(piece))
    after = text.find(piece, near)
    if before < 0:
        return after
    if after < 0:
        return before
    return before if near - before <= after - near else after


def relocate(hit: Hit, text: str) -> Hit | None:
    """``hit`` as it stands in the file's current ``text``, or None when none of it does.

    A chunk still at its offsets is returned as is; one found whole elsewhere is moved.
    Otherwise each sentence is looked for on its own, nearest to where it was (shifted as
    far as the sentence before it moved); sentences no longer in the text are dropped, and
    the chunk is narrowed to the sentences that still stand together.
    """
    start, end = hit.start, hit.end
    if text[start:end] == hit.text:
        return hit
    old = hit.sentences
    at = _nearest(text, hit.text, start)
    if at >= 0:
        delta = at - start
        return _moved(hit, text, at, at + len(hit.text),
                      [((s + delta, e + delta), (s, e)) for s, e in old])
    placed: list[tuple[tuple[int, int], tuple[int, int]]] = []
    delta = 0
    for s, e in old:
        piece = hit.text[s - start : e - start]
        found = _nearest(text, piece, s + delta)
        if found < 0 or len(piece) != e - s:
            continue
        delta = found - s
        placed.append(((found, found + len(piece)), (s, e)))
    placed.sort()
    kept: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for new, orig in placed:  # identical sentences may have found the same occurrence
        if not kept or new[0] >= kept[-1][0][1]:
            kept.append((new, orig))
    if not kept:
        return None
    # Sentences found far apart (a paragraph moved) would make one huge passage: keep the
    # largest group of them that stand together.
    gap = max(200, len(hit.text))
    runs = [[kept[0]]]
    for item in kept[1:]:
        if item[0][0] - runs[-1][-1][0][1] > gap:
            runs.append([])
        runs[-1].append(item)
    best = max(runs, key=len)
    return _moved(hit, text, best[0][0][0], best[-1][0][1], best)


def _moved(hit: Hit, text: str, start: int, end: int,
           sentences: list[tuple[tuple[int, int], tuple[int, int]]]) -> Hit:
    record = replace(hit.record, start=start, end=end,
                     sentences=tuple(new for new, _ in sentences),
                     ingested_sentences=tuple(orig for _, orig in sentences))
    return replace(hit, text=text[start:end], record=record, ranks=dict(hit.ranks))


def check_hits(hits: list[Hit], files: CorpusFiles, changes: Changes) -> list[Hit]:
    """The hits as they stand in the current files (see :func:`relocate`); hits of deleted
    or unreadable files, and hits with nothing left, are dropped. Every retrieved file that
    differs from its ingested version is noted in ``changes``."""
    states: dict[str, FileState] = {}
    out = []
    for hit in hits:
        path = hit.record.path
        if path not in states:
            states[path] = files.state(path)
        state = states[path]
        if state.text is None:
            changes.note(path, state.problem)
            continue
        if state.sha256 != hit.record.sha256:
            changes.note(path)
        fixed = relocate(hit, state.text)
        if fixed is not None:
            out.append(fixed)
    return out


def confirm(answer: Answer, files: CorpusFiles, changes: Changes,
            abstain_text: str) -> Answer:
    """``answer`` with every citation and passage checked against the file as it is now.

    A citation whose quote is no longer ``read_text(path)[start:end]`` (the file changed
    while the question was answered) is dropped with its marker — and, for an extractive
    answer, its sentence; an answer left without citations becomes an abstention.
    """
    states: dict[str, FileState] = {}

    def holds(path: str, start: int, end: int, quote: str) -> bool:
        if path not in states:
            states[path] = files.state(path)
        state = states[path]
        if state.text is not None and state.text[start:end] == quote:
            return True
        changes.note(path, state.problem if state.text is None else "")
        return False

    answer.passages = [p for p in answer.passages if holds(p.path, p.start, p.end, p.text)]
    stale = {c.n for c in answer.citations if not holds(c.path, c.start, c.end, c.quote)}
    if not stale:
        return answer
    kept = [c for c in answer.citations if c.n not in stale]
    if not any(c.role == "answer" for c in kept):
        answer.text, answer.abstained, answer.short_answer = abstain_text, True, None
        answer.citations, answer.agreement = [], None
        return answer
    if answer.backend == "extractive":
        kept = [replace(c, n=i) for i, c in enumerate(kept, start=1)]
        answer.text = " ".join(f"{c.quote} [{c.n}]" for c in kept if c.role == "answer")
    else:
        answer.text = _drop_markers(answer.text, stale)
    answer.citations = kept
    if answer.short_answer and not any(answer.short_answer in c.quote for c in kept
                                       if c.role == "answer"):
        answer.short_answer = None
    if answer.agreement is not None:
        from assistant.agreement import agreement_line

        answer.agreement = agreement_line(kept)
    return answer


def _drop_markers(text: str, numbers: set[int]) -> str:
    """``text`` without the ``[n]`` markers of ``numbers`` (``[1, 3]`` → ``[1]``)."""

    def keep(m: re.Match[str]) -> str:
        left = [x.strip() for x in m.group(1).split(",") if int(x) not in numbers]
        lead = m.group(0)[: m.start(1) - m.start(0) - 1]
        return f"{lead}[{', '.join(left)}]" if left else ""

    return _MARKER.sub(keep, text)


def merge_notices(*notices: str | None) -> str | None:
    """Several one-line notices as one line (None when there is none)."""
    parts = [n.strip() for n in notices if n and n.strip()]
    return " ".join(p if p[-1] in ".!?" else p + "." for p in parts) if len(parts) > 1 else (
        parts[0] if parts else None)

