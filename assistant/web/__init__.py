"""The chat page: a Gradio app over an :class:`~assistant.core.Assistant`.

``build_app(bot)`` makes the page, ``serve(bot)`` binds it (127.0.0.1:7860 by default) and
blocks. The page shows streamed answers with inline markers ``[1]``, each followed by its
sources (title, file, the quoted sentence highlighted inside its paragraph); abstentions with
the closest passages, marked as not an answer; example questions; retry, undo and clear; a
status line (refreshed while ``serve`` watches the corpus folder); and an upload box that
adds ``.txt``/``.md`` articles to the corpus.

API (for ``gradio_client`` users)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/", analytics_enabled=False)
    answer = client.predict("How many children were reunited?", api_name="/ask")
    # -> api_answer(): question, answer, short_answer, abstained, citations, ...
    message, status = client.predict([handle_file("new.txt")], api_name="/upload")

A citation's file is under ``"file"`` there (``"path"`` in ``Answer.to_dict()``): gradio_client
takes any returned dict with a ``"path"`` key for a file to download, which the page refuses to
serve (403). ``analytics_enabled=False`` keeps the client itself from calling home.

The modules, none of them importing a later one:

- :mod:`~assistant.web.api`: the ``/ask`` answer (:func:`api_answer`);
- :mod:`~assistant.web.binding`: loopback hosts and the password other hosts need;
- :mod:`~assistant.web.uploads`: safe names for uploaded articles, saving them;
- :mod:`~assistant.web.render`: the HTML of answers, sources, abstentions, errors and the
  status line (with the corpus watcher's state, :mod:`assistant.watch`, when it runs);
- :mod:`~assistant.web.examples`: example questions drawn from the corpus;
- :mod:`~assistant.web.locking`: the read-write lock between questions and ingests;
- :mod:`~assistant.web.sessions`: a browser conversation kept in sync with its ChatSession;
- :mod:`~assistant.web.handlers`: the page's event handlers and its ``/ask`` API;
- :mod:`~assistant.web.app`: the Blocks (:func:`build_app`), :func:`launch` and
  :func:`serve`, with the style sheet ``static/page.css``.

Every public name is importable from ``assistant.web`` itself.

This package is the only one that imports gradio (the import costs seconds; only
``handlers`` and ``app`` import it); the telemetry and hub switches are set here, before
that import, so that start-up never contacts the internet.
"""

from __future__ import annotations

import os

# Before gradio (and huggingface_hub) are imported: no analytics, no version check, no hub.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from assistant.web.api import API_PATH_KEY, api_answer
from assistant.web.app import CSS, CSS_FILE, build_app, launch, serve
from assistant.web.binding import LOOPBACK_NAMES, check_bind, is_loopback, parse_auth
from assistant.web.examples import (
    MAX_EXAMPLES,
    candidate_questions,
    example_questions,
    merge_examples,
)
from assistant.web.handlers import _Page
from assistant.web.locking import ReadWriteLock
from assistant.web.render import (
    PARAGRAPH_LIMIT,
    SourceReader,
    chat_placeholder,
    error_message,
    highlight,
    index_status,
    paragraph_bounds,
    render_abstention,
    render_answer,
    render_error,
    render_partial,
    render_pending,
    render_user,
    status_line,
    watch_status,
)
from assistant.web.sessions import Conversation, Turn
from assistant.web.uploads import safe_filename, save_upload, upload_folder

__all__ = [
    "API_PATH_KEY",
    "CSS",
    "CSS_FILE",
    "LOOPBACK_NAMES",
    "MAX_EXAMPLES",
    "PARAGRAPH_LIMIT",
    "Conversation",
    "ReadWriteLock",
    "SourceReader",
    "Turn",
    "_Page",
    "api_answer",
    "build_app",
    "candidate_questions",
    "chat_placeholder",
    "check_bind",
    "error_message",
    "example_questions",
    "highlight",
    "index_status",
    "is_loopback",
    "launch",
    "merge_examples",
    "paragraph_bounds",
    "parse_auth",
    "render_abstention",
    "render_answer",
    "render_error",
    "render_partial",
    "render_pending",
    "render_user",
    "safe_filename",
    "save_upload",
    "serve",
    "status_line",
    "upload_folder",
    "watch_status",
]
