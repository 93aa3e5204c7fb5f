"""Loading articles: files, decoding, header metadata, stable ids and content hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md")
# Files above this size are skipped with a warning (Settings.max_file_mb,
# ASSISTANT_MAX_FILE_MB): embedding runs at ~80 sentences/s, so 10 MB already takes
# some 20 minutes; a bigger file is almost always a dump, not an article.
MAX_FILE_BYTES = 10 * 1024 * 1024
HEADER_KEYS = ("published", "date", "author", "by", "source", "updated", "byline")
_HEADER_RE = re.compile(r"^\s*(?P<key>[A-Za-z]+)\s*:\s*(?P<value>.*\S)?\s*$")


@dataclass
class Article:
    """One corpus file as text plus the metadata parsed from its header lines."""

    doc_id: str
    path: str
    text: str
    sha256: str
    title: str
    body_start: int
    body_end: int
    meta: dict[str, str] = field(default_factory=dict)
    stamp: tuple[int, int] | None = None  # (size, mtime_ns) when it was read

    @property
    def body(self) -> str:
        """The article text without its title and header lines."""
        return self.text[self.body_start : self.body_end]

    @property
    def published(self) -> str:
        """The ``Published:`` (or ``Date:``) header value as written ("" when absent)."""
        return self.meta.get("published") or self.meta.get("date", "")

    @property
    def published_date(self) -> dt.date | None:
        """The publication date, when the header gives one :func:`parse_date` reads."""
        return parse_date(self.published)


class SkippedFile(Exception):
    """A corpus file that cannot be read as an article (the message says why).

    ``transient`` marks a file that exists but could not be read this time (permissions,
    an I/O error, a link to a missing target): the store keeps what it has of it.
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.stamp: tuple[int, int] | None = None  # (size, mtime_ns) when it was read


def read_text(path: Path | str) -> str:
    """The file's text as the assistant reads it: citation offsets index into this string.

    UTF-8 (a BOM is dropped), falling back to Windows-1252/Latin-1, or UTF-16 when the
    file starts with its byte-order mark; line endings normalised to ``\\n``.
    """
    data = Path(path).read_bytes()
    return decode(data)


def decode(data: bytes) -> str:
    """Decode file bytes the way :func:`read_text` does; raises SkippedFile for binary data."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") and not data.startswith(b"\xff\xfe\x00\x00"):
        # UTF-16 with a byte-order mark (Windows Notepad's "Unicode"): text, not binary.
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise SkippedFile("binary file") from None
        return text.replace("\r\n", "\n").replace("\r", "\n")
    if b"\x00" in data[:8192]:
        raise SkippedFile("binary file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def content_hash(text: str) -> str:
    """The sha256 of the decoded text: decides whether an article changed."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def doc_id_for(relpath: str) -> str:
    """Stable id of an article: its path relative to the corpus, with ``/`` separators."""
    return relpath.replace(os.sep, "/")


def iter_corpus_files(corpus: Path, errors: list[tuple[Path, str]] | None = None
                      ) -> Iterator[Path]:
    """Every ``.txt``/``.md`` file under ``corpus``, recursively, sorted, without following
    directory symlink loops or hidden folders.

    Folders that cannot be listed are appended to ``errors`` as ``(path, reason)``.
    """
    seen_dirs: set[tuple[int, int]] = set()

    def unreadable(exc: OSError) -> None:
        if errors is not None:
            errors.append((Path(exc.filename or corpus), exc.strerror or str(exc)))

    for root, dirs, files in os.walk(corpus, onerror=unreadable, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(key)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                continue
            yield Path(root) / name


def _too_large(max_bytes: int) -> str:
    return f"larger than the {max_bytes / (1024 * 1024):.3g} MB limit (ASSISTANT_MAX_FILE_MB)"


def read_limited(path: Path, max_bytes: int = MAX_FILE_BYTES,
                 stamp: list[tuple[int, int]] | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; raises SkippedFile otherwise.

    A FIFO or device named ``*.txt`` is refused before it is read (reading one would
    block or never end), and the read stops after ``max_bytes`` even if the file grows.
    The file's ``(size, mtime_ns)`` before the read is appended to ``stamp``.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise SkippedFile("not a regular file")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    with open(os.open(path, flags), "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SkippedFile("not a regular file")
        if stamp is not None:
            stamp.append((st.st_size, st.st_mtime_ns))
        if st.st_size > max_bytes:
            raise SkippedFile(_too_large(max_bytes))
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SkippedFile(_too_large(max_bytes))
    return data


def load_article(corpus: Path, path: Path, max_bytes: int = MAX_FILE_BYTES) -> Article:
    """Read and parse one file; raises SkippedFile when it is not a usable article."""
    rel = doc_id_for(os.path.relpath(path, corpus))
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        # Bytes that are not UTF-8 in a name cannot be stored, embedded or cited.
        raise SkippedFile("the file name is not valid UTF-8; rename the file") from None
    stamp: list[tuple[int, int]] = []
    try:
        text = decode(read_limited(path, max_bytes, stamp))
    except SkippedFile as exc:
        exc.stamp = stamp[0] if stamp else None
        raise
    except PermissionError:
        raise SkippedFile("permission denied", transient=True) from None
    except FileNotFoundError:
        if os.path.islink(path):
            raise SkippedFile("broken symbolic link", transient=True) from None
        raise SkippedFile("file vanished while reading") from None
    except OSError as exc:
        raise SkippedFile(exc.strerror or str(exc), transient=True) from None
    if not text.strip():
        raise _stamped(SkippedFile("empty file"), stamp)
    if _looks_binary(text):
        raise _stamped(SkippedFile("binary file"), stamp)
    title, meta, body_start, body_end = parse_header(text)
    if not title:
        title = title_from_filename(path.name)
    return Article(
        doc_id=rel,
        path=rel,
        text=text,
        sha256=content_hash(text),
        title=title,
        body_start=body_start,
        body_end=body_end,
        meta=meta,
        stamp=stamp[0],
    )


def _stamped(exc: SkippedFile, stamp: list[tuple[int, int]]) -> SkippedFile:
    exc.stamp = stamp[0] if stamp else None
    return exc


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\r]")  # control characters but \t \n \v \f


def _looks_binary(text: str) -> bool:
    sample = text[:4096]
    bad = len(_CONTROL.findall(sample))
    return bad > max(8, len(sample) // 50)


def title_from_filename(name: str) -> str:
    """``melania-trump-letter.txt`` → ``Melania trump letter``."""
    stem = Path(name).stem.replace("_", " ").replace("-", " ").strip()
    return stem[:1].upper() + stem[1:] if stem else name


def parse_header(text: str) -> tuple[str, dict[str, str], int, int]:
    """Split off an optional title line, ``Key: value`` header lines and a trailing
    ``Source:`` line.

    Returns ``(title, meta, body_start, body_end)``; the body is ``text[body_start:body_end]``.
    """
    lines = _lines_with_offsets(text)
    meta: dict[str, str] = {}
    title = ""
    i = 0
    while i < len(lines) and not lines[i][0].strip():
        i += 1
    if i < len(lines):
        first = lines[i][0].strip()
        if _header_pair(first) is None and _is_title(first) and _has_more(lines, i + 1):
            title = first.lstrip("#").strip()
            i += 1
        elif _header_pair(first) is None and _header_follows(lines, i + 1):
            # A headline ending in "?", "!" or the "..." of a shortened one, above header
            # lines: their date and byline are read; the text, headline and header lines
            # included, is chunked as it always was (taking these lines out of it changes
            # retrieval for every such article, which wants a study of its own).
            meta.update(_pairs_from(lines, i + 1))
    while i < len(lines):
        line = lines[i][0]
        if not line.strip():
            i += 1
            continue
        pair = _header_pair(line)
        if pair is None:
            break
        meta.setdefault(pair[0], pair[1])
        i += 1
    body_start = lines[i][1] if i < len(lines) else len(text)
    j = len(lines) - 1
    while j >= i and not lines[j][0].strip():
        j -= 1
    body_end = lines[j][1] + len(lines[j][0]) if j >= i else body_start
    if j > i:
        pair = _header_pair(lines[j][0])
        if pair is not None and pair[0] == "source":
            meta.setdefault("source", pair[1])
            k = j - 1
            while k >= i and not lines[k][0].strip():
                k -= 1
            body_end = lines[k][1] + len(lines[k][0])
    return title, meta, body_start, max(body_start, body_end)


def _lines_with_offsets(text: str) -> list[tuple[str, int]]:
    out = []
    pos = 0
    for line in text.split("\n"):
        out.append((line, pos))
        pos += len(line) + 1
    return out


def _header_pair(line: str) -> tuple[str, str] | None:
    m = _HEADER_RE.match(line)
    if not m or m.group("key").lower() not in HEADER_KEYS:
        return None
    value = (m.group("value") or "").strip()
    if len(value) > 200:
        return None
    return m.group("key").lower(), value


def _is_title(line: str) -> bool:
    if line.startswith("#"):
        return True
    if len(line) > 200 or (len(line.split()) < 2 and len(line) < 3):
        return False
    return not re.search(r"[.!?…][\"'”’)]*$", line)


def _pairs_from(lines: list[tuple[str, int]], start: int) -> dict[str, str]:
    """The ``Key: value`` header lines from ``start`` up to the first other line."""
    meta: dict[str, str] = {}
    for line, _ in lines[start:]:
        if not line.strip():
            continue
        pair = _header_pair(line)
        if pair is None:
            break
        meta.setdefault(pair[0], pair[1])
    return meta


def _header_follows(lines: list[tuple[str, int]], start: int) -> bool:
    """True when the next non-empty line from ``start`` is a ``Key: value`` header line."""
    for line, _ in lines[start:]:
        if line.strip():
            return len(line) <= 200 and _header_pair(line) is not None
    return False


def _has_more(lines: list[tuple[str, int]], start: int) -> bool:
    return any(line.strip() for line, _ in lines[start:])


_MONTHS = {m.lower(): i for i, m in enumerate(
    ("January February March April May June July August September October November "
     "December").split(), start=1)}
_MONTHS.update({name[:3]: i for name, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_ISO_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:$|[T\s])")
_MONTH_FIRST = re.compile(r"^(?:[A-Za-z]+,?\s+)?([A-Za-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?"
                          r"\s+(\d{4})\b")
_DAY_FIRST = re.compile(r"^(?:[A-Za-z]+,?\s+)?(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]+)\.?,?"
                        r"\s+(\d{4})\b")


def parse_date(value: str) -> dt.date | None:
    """The calendar date a header value names, or None.

    Reads ``2024-03-05`` (with or without a time after it, ``/`` or ``.`` also),
    ``March 5, 2024``, ``Tue, Mar 5 2024`` and ``5 March 2024``; nothing else, so a
    value it cannot place in time is never guessed at.
    """
    value = value.strip()
    parts: tuple[int, int, int] | None = None
    if m := _ISO_DATE.match(value):
        parts = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    elif (m := _MONTH_FIRST.match(value)) and m.group(1).lower() in _MONTHS:
        parts = (int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2)))
    elif (m := _DAY_FIRST.match(value)) and m.group(2).lower() in _MONTHS:
        parts = (int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1)))
    if parts is None:
        return None
    try:
        return dt.date(*parts)
    except ValueError:
        return None


def day_number(day: dt.date) -> int:
    """A date as the integer ``YYYYMMDD``: how chunks carry it for range filters."""
    return day.year * 10000 + day.month * 100 + day.day
