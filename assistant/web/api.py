"""The page API's answer: ``Answer.to_dict()`` as the ``/ask`` endpoint returns it."""

from __future__ import annotations

from typing import Any

from assistant.types import Answer

API_PATH_KEY = "file"
"""What the page API calls ``Answer.to_dict()``'s ``"path"`` keys."""


def api_answer(answer: Answer) -> dict[str, Any]:
    """The answer as the page's ``/ask`` returns it: ``Answer.to_dict()`` with every
    ``"path"`` key named ``"file"``.

    gradio_client takes any returned dict with a string ``"path"`` for a file and downloads
    it from ``/gradio_api/file=…``, which the page refuses for corpus files (403), so a
    default ``Client(url).predict(...)`` would fail. ``assistant ask --json`` and
    ``Answer.to_dict()`` keep ``"path"``.
    """
    return _rename_path_keys(answer.to_dict())


def _rename_path_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {(API_PATH_KEY if k == "path" else k): _rename_path_keys(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rename_path_keys(v) for v in value]
    return value
