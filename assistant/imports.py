"""Imports of two heavy dependencies, without import-time work this project never uses.

Every ``assistant ask`` in a new process imports chromadb and bm25s before its answer; the
imports were the largest part of a cold ``ask`` (about 1.3 of 2.9 s at 100,000 chunks: see
the README's benchmark section):

- chromadb decorates ~160 methods with ``overrides.override``, which looks up each method's
  base classes by disassembling the calling frame and checks that the signatures agree:
  checks of chromadb's own classes, for its developers, that cannot fail at run time. While
  chromadb is imported here, the decorator only marks the method (as ``override`` does, so
  ``EnforceOverrides`` still accepts it); the real one is put back afterwards.
- bm25s imports ``scipy.sparse`` (0.15 s) in case its optional scipy matrix backend is asked
  for. Its default backend is numpy, and the lexical index builds its matrices itself
  (:mod:`assistant.lexical`) and reads them with numpy, so bm25s is imported while
  ``scipy.sparse`` cannot be (bm25s then records scipy as unavailable). ``scipy.sparse``
  stays importable by anything else afterwards.

Both are used only when the module is not imported yet; otherwise it is returned as it is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any


def _mark_override(method: Any = None, **_: Any) -> Any:
    """``overrides.override`` without its checks: marks the method as an override."""

    def mark(m: Callable[..., Any]) -> Callable[..., Any]:
        m.__override__ = True  # type: ignore[attr-defined]
        return m

    return mark if method is None else mark(method)


def import_chromadb() -> ModuleType:
    """chromadb, imported without ``overrides``' signature checks (see the module)."""
    if (module := sys.modules.get("chromadb")) is not None:
        return module
    import overrides

    checked = overrides.override, overrides.overrides
    overrides.override = overrides.overrides = _mark_override  # type: ignore[assignment]
    try:
        import chromadb
    finally:
        overrides.override, overrides.overrides = checked  # type: ignore[assignment]
    return chromadb


def import_bm25s() -> ModuleType:
    """bm25s, imported without ``scipy.sparse`` unless that is loaded already (see the
    module)."""
    if (module := sys.modules.get("bm25s")) is not None:
        return module
    if "scipy.sparse" in sys.modules:
        import bm25s

        return bm25s
    sys.modules["scipy.sparse"] = None  # type: ignore[assignment]  # its import now fails
    try:
        import bm25s
    finally:
        del sys.modules["scipy.sparse"]
    return bm25s
