"""Uploaded articles: safe file names, and saving them into the corpus without overwriting."""

from __future__ import annotations

import os
import re
from pathlib import Path

from assistant.corpus import SUFFIXES
from assistant.settings import AssistantError, Settings

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str) -> str:
    """A plain file name for an uploaded article: no directories, no hidden names, only
    ``[A-Za-z0-9._-]``, suffix ``.txt`` or ``.md``. Raises AssistantError for other types."""
    base = re.split(r"[\\/]", name.replace("\x00", ""))[-1].strip()
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = "." + suffix.lower()
    if suffix not in SUFFIXES:
        raise AssistantError(f"{base or name!r} is not a .txt or .md file")
    stem = _UNSAFE.sub("-", stem)
    stem = re.sub(r"-{2,}", "-", stem).strip(".-_")[:100].strip(".-_")
    return (stem or "article") + suffix


def upload_folder(settings: Settings) -> str:
    """Where uploaded articles go, as the page names it: the corpus directory as configured
    (by default ``corpus/``, which the gold eval of ``make eval`` reads too)."""
    return str(Path(settings.corpus)).rstrip("/\\") + "/"


def save_upload(corpus: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as a new file directly inside ``corpus``; never overwrites: a clashing
    name gets a numbered suffix (``letter-2.txt``). Returns the new path."""
    filename = safe_filename(name)
    stem, suffix = filename[: -len(Path(filename).suffix)], Path(filename).suffix
    corpus.mkdir(parents=True, exist_ok=True)
    root = corpus.resolve()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for i in range(1, 10_000):
        target = root / (filename if i == 1 else f"{stem}-{i}{suffix}")
        if target.parent != root:  # cannot happen with a safe name; belt and braces
            raise AssistantError(f"refusing to write outside the corpus: {name!r}")
        try:
            fd = os.open(target, flags, 0o644)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target
    raise AssistantError(f"too many files named like {filename!r} in the corpus")
