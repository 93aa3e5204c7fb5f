"""HTML of the chat: answers with their sources, abstentions, errors, the user's bubble,
the status line and the empty chat's placeholder (pure functions: strings of HTML,
everything from the corpus escaped)."""

from __future__ import annotations

import html
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.corpus import SkippedFile, read_text
from assistant.settings import AssistantError
from assistant.types import CITATION_ROLES, Answer, Citation, Passage

if TYPE_CHECKING:
    from assistant.core import Assistant
    from assistant.watch import WatchStatus

log = logging.getLogger(__name__)

PARAGRAPH_LIMIT = 900
"""Longest context (characters) shown around a quote before it is windowed."""


def _esc(text: str) -> str:
    return html.escape(text, quote=True).replace("\n", "<br>")


def paragraph_bounds(text: str, start: int, end: int, limit: int = PARAGRAPH_LIMIT
                     ) -> tuple[int, int]:
    """The paragraph around ``text[start:end]``: blank-line separated, narrowed to the lines
    of the span when longer than ``limit``, then to a word-aligned window."""
    ps = text.rfind("\n\n", 0, start)
    ps = 0 if ps < 0 else ps + 2
    pe = text.find("\n\n", end)
    pe = len(text) if pe < 0 else pe
    if pe - ps > limit:
        ps = max(ps, text.rfind("\n", 0, start) + 1)
        le = text.find("\n", end)
        pe = min(pe, len(text) if le < 0 else le)
    if pe - ps > limit:
        room = max(0, (limit - (end - start)) // 2)
        ws, we = max(ps, start - room), min(pe, end + room)
        if ws > ps:
            cut = text.find(" ", ws, start)
            ws = cut + 1 if cut >= 0 else start
        if we < pe:
            cut = text.rfind(" ", end, we)
            we = cut if cut >= 0 else end
        ps, pe = ws, we
    while ps < start and text[ps].isspace():
        ps += 1
    while pe > end and text[pe - 1].isspace():
        pe -= 1
    return ps, pe


def highlight(text: str, start: int, end: int, limit: int = PARAGRAPH_LIMIT) -> str:
    """HTML of the paragraph around ``text[start:end]`` with the span in ``<mark>``."""
    ps, pe = paragraph_bounds(text, start, end, limit)
    before = ("…" if ps > 0 and text[ps - 1] not in "\n" else "") + text[ps:start]
    after = text[end:pe] + ("…" if pe < len(text) and text[pe] not in "\n" else "")
    return f"{_esc(before)}<mark>{_esc(text[start:end])}</mark>{_esc(after)}"


class SourceReader:
    """Reads corpus files (cached by size and mtime) to show a citation in its paragraph."""

    def __init__(self, corpus: Path) -> None:
        self.corpus = Path(corpus)
        self._cache: dict[str, tuple[tuple[int, int], str]] = {}
        self._lock = threading.Lock()

    def text(self, relpath: str) -> str | None:
        """The text of a corpus file as citations index it, or None when unreadable."""
        root = self.corpus.resolve()
        path = (root / relpath).resolve()
        if not path.is_relative_to(root):
            return None
        try:
            st = path.stat()
            key = (st.st_size, st.st_mtime_ns)
            with self._lock:
                cached = self._cache.get(relpath)
            if cached and cached[0] == key:
                return cached[1]
            text = read_text(path)
        except (OSError, SkippedFile):
            return None
        with self._lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[relpath] = (key, text)
        return text

    def context_html(self, citation: Citation, passages: Sequence[Passage] = ()) -> str:
        """The citation's quote highlighted in its surrounding paragraph (HTML)."""
        text = self.text(citation.path)
        if text is not None and text[citation.start:citation.end] == citation.quote:
            return highlight(text, citation.start, citation.end)
        for p in passages:
            s, e = citation.start - p.start, citation.end - p.start
            if p.path == citation.path and 0 <= s <= e <= len(p.text) and \
                    p.text[s:e] == citation.quote:
                return highlight(p.text, s, e)
        return f"<mark>{_esc(citation.quote)}</mark>"


_MARKER = re.compile(r"\[(\d{1,3})\]")


def _answer_text_html(text: str) -> str:
    return _MARKER.sub(r'<sup class="qa-ref">[\1]</sup>', _esc(text))


def render_answer(answer: Answer, reader: SourceReader, text: str | None = None,
                  sources: bool = True) -> str:
    """The chat message of an answer: the (possibly partial) text, then its sources."""
    if answer.abstained:
        return render_abstention(answer, text)
    shown = answer.text if text is None else text
    parts = ['<div class="qa-answer">']
    if answer.scope:
        parts.append(f'<div class="qa-scope">{_esc(answer.scope)}</div>')
    if answer.notice:
        parts.append(f'<div class="qa-notice">{_esc(answer.notice)}</div>')
    if answer.short_answer:
        parts.append(f'<div class="qa-short"><span>Answer</span> {_esc(answer.short_answer)}'
                     "</div>")
    parts.append(f'<p class="qa-text">{_answer_text_html(shown)}</p>')
    if answer.agreement and sources:
        parts.append(f'<div class="qa-agreement">{_esc(answer.agreement)}</div>')
    if sources and answer.citations:
        parts.append('<div class="qa-sources"><div class="qa-sources-h">Sources</div>')
        for i, c in enumerate(answer.citations):
            is_open = " open" if i == 0 or len(answer.citations) <= 2 else ""
            parts.append(
                f'<details class="qa-src"{is_open}><summary>'
                f'<span class="qa-n">{c.n}</span>{_role(c.role)}'
                f'<span class="qa-title">{_esc(c.title or c.path)}</span>{_outlet(c.source)}'
                f'{_date(c.published)}'
                f'<span class="qa-file">{_esc(c.path)}</span></summary>'
                f'<blockquote class="qa-para">{reader.context_html(c, answer.passages)}'
                "</blockquote></details>"
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def render_partial(text: str) -> str:
    """The chat message of an answer still being produced: its text so far, markers as
    superscripts, no sources yet (they come with :func:`render_answer`)."""
    return f'<div class="qa-answer"><p class="qa-text">{_answer_text_html(text)}</p></div>'


def _date(published: str) -> str:
    """The article's date beside its title ("" when the article has none)."""
    return f'<span class="qa-date">{_esc(published)}</span>' if published else ""


def _role(role: str) -> str:
    """A label for a source not quoted in the answer text ("" for one that is)."""
    label = CITATION_ROLES.get(role)
    return f'<span class="qa-role qa-{role}">{label}</span>' if label else ""


def _outlet(source: str) -> str:
    """The article's Source: line beside its title ("" when it has none)."""
    return f'<span class="qa-outlet">{_esc(source)}</span>' if source else ""


def _snippet(text: str, limit: int = 320) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat.rfind(" ", 0, limit)
    return flat[: cut if cut > 0 else limit] + " …"


def render_abstention(answer: Answer, text: str | None = None) -> str:
    """The chat message of an abstention: a notice plus the closest passages, not an answer."""
    shown = answer.text if text is None else text
    parts = [
        '<div class="qa-abstain">',
        '<div class="qa-abstain-h">Not covered by the articles</div>',
        f'<p class="qa-text">{_esc(shown)}</p>',
    ]
    if answer.scope:
        parts.insert(2, f'<div class="qa-scope">{_esc(answer.scope)}</div>')
    if answer.passages:
        parts.append('<details class="qa-near" open><summary>Closest passages found '
                     "<em>(not an answer)</em></summary>")
        for p in answer.passages[:3]:
            parts.append(
                f'<div class="qa-near-item"><div class="qa-near-src">'
                f'<span class="qa-title">{_esc(p.title or p.path)}</span>{_outlet(p.source)}'
                f'{_date(p.published)}'
                f'<span class="qa-file">{_esc(p.path)}</span></div>'
                f"<blockquote>{_esc(_snippet(p.text))}</blockquote></div>"
            )
        parts.append("</details>")
    parts.append("</div>")
    return "".join(parts)


def render_error(message: str) -> str:
    """The chat message of an error: one readable line."""
    return f'<div class="qa-error"><strong>Could not answer:</strong> {_esc(message)}</div>'


def render_pending() -> str:
    """Shown while the question is being answered."""
    return '<div class="qa-pending">Searching the articles…</div>'


def render_user(question: str) -> str:
    """The user's bubble (escaped; very long questions are shortened for display)."""
    if not question.strip():
        return "<em>(empty question)</em>"
    if len(question) > 600:
        return _esc(question[:600]) + f" … <em>({len(question):,} characters)</em>"
    return _esc(question)


def error_message(exc: BaseException) -> str:
    """One line for any exception: AssistantError as is, others with their type."""
    if isinstance(exc, AssistantError):
        text = str(exc)
    else:
        detail = str(exc).strip().splitlines()
        first = detail[0] if detail else "no detail"
        text = f"the assistant failed ({type(exc).__name__}: {first})"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "…"


def status_line(bot: Assistant, watch: WatchStatus | None = None) -> str:
    """``1 article · 3 chunks indexed · extractive answers`` (HTML), then, when the corpus is
    watched, what the watcher did last: ``watching corpus/ · updated 10:42:05: 1 changed``
    (or its one-line error)."""
    return index_status(bot) + (watch_status(watch) if watch is not None else "")


def index_status(bot: Assistant) -> str:
    """The index's part of the status line: articles, chunks and the answer backend."""
    try:
        st = bot.status()
    except Exception as exc:
        log.warning("status failed: %s", exc)
        return ("<span class='qa-status qa-status-bad'>Index unavailable: "
                f"{_esc(error_message(exc))}</span>")
    articles, chunks = int(st.get("articles", 0)), int(st.get("chunks", 0))
    backend = str(st.get("backend", "?"))
    if not articles:
        return ("<span class='qa-status qa-status-bad'>No articles indexed yet: add some with "
                "the upload box, or run <code>assistant ingest</code></span>")
    label = {"extractive": "extractive answers (quoted sentences, no LLM)",
             "llm": "LLM answers"}.get(backend, f"{backend} answers")
    return (f"<span class='qa-status'><b>{articles:,}</b> article{'s' if articles != 1 else ''}"
            f" · <b>{chunks:,}</b> chunk{'s' if chunks != 1 else ''} indexed"
            f" · {_esc(label)}</span>")


def watch_status(watch: WatchStatus) -> str:
    """The watcher's part of the status line: busy while it ingests, red when its last
    ingest failed or it is not watching."""
    classes = ["qa-status", "qa-watch"]
    if watch.ingesting:
        classes.append("qa-status-busy")
    elif watch.error is not None or not watch.watching:
        classes.append("qa-status-bad")
    return f" <span class='{' '.join(classes)}'>{_esc(watch.summary())}</span>"


def chat_placeholder(has_examples: bool) -> str:
    """The empty chat's invitation (HTML)."""
    return ("<div class='qa-placeholder'><div class='qa-ph-icon'>?</div>"
            "<b>Ask about the articles</b><p>"
            + ("Try one of these questions, or type your own below."
               if has_examples else "Type a question below.")
            + "</p></div>")
