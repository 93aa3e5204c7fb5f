"""The chat page: a Gradio app over an :class:`~assistant.core.Assistant`.

``build_app(bot)`` makes the page, ``serve(bot)`` binds it (127.0.0.1:7860 by default) and
blocks. The page shows streamed answers with inline markers ``[1]``, each followed by its
sources (title, file, the quoted sentence highlighted inside its paragraph); abstentions with
the closest passages, marked as not an answer; example questions; retry, undo and clear; a
status line; and an upload box that adds ``.txt``/``.md`` articles to the corpus.

API (for ``gradio_client`` users)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/", analytics_enabled=False)
    answer = client.predict("How many children were reunited?", api_name="/ask")
    # -> api_answer(): question, answer, short_answer, abstained, citations, ...
    message, status = client.predict([handle_file("new.txt")], api_name="/upload")

A citation's file is under ``"file"`` there (``"path"`` in ``Answer.to_dict()``): gradio_client
takes any returned dict with a ``"path"`` key for a file to download, which the page refuses to
serve (403). ``analytics_enabled=False`` keeps the client itself from calling home.

This module is the only one that imports gradio (the import costs seconds); the telemetry and
hub switches are set before that import so that start-up never contacts the internet.
"""

from __future__ import annotations

import os

# Before gradio (and huggingface_hub) are imported: no analytics, no version check, no hub.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import html
import ipaddress
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from assistant.corpus import (
    SUFFIXES,
    SkippedFile,
    decode,
    iter_corpus_files,
    load_article,
    read_text,
)
from assistant.settings import AssistantError, Settings
from assistant.types import Answer, Citation, Passage

if TYPE_CHECKING:
    from assistant.core import Assistant

log = logging.getLogger(__name__)

PARAGRAPH_LIMIT = 900
"""Longest context (characters) shown around a quote before it is windowed."""
STREAM_WORDS = 3
STREAM_DELAY = 0.02
MAX_EXAMPLES = 4
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


# --------------------------------------------------------------------------------------------
# The API's answer
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Binding safety
# --------------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """``"user:password"`` → ``("user", "password")``; raises AssistantError when malformed."""
    if auth is None or auth == "":
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user.strip() or not password:
        raise AssistantError("--auth (ASSISTANT_AUTH) must look like user:password")
    return user.strip(), password


def check_bind(host: str, auth: str | None) -> tuple[str, str] | None:
    """The credentials to require; refuses a non-loopback ``host`` without ``auth``."""
    credentials = parse_auth(auth)
    if credentials is None and not is_loopback(host):
        raise AssistantError(
            f"refusing to serve on {host} without a password: anyone on the network could use "
            "the page. Pass --auth user:password (or set ASSISTANT_AUTH), or bind to 127.0.0.1"
        )
    return credentials


# --------------------------------------------------------------------------------------------
# Uploads
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Rendering (pure functions: strings of HTML, everything from the corpus escaped)
# --------------------------------------------------------------------------------------------
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
    if answer.notice:
        parts.append(f'<div class="qa-notice">{_esc(answer.notice)}</div>')
    if answer.short_answer:
        parts.append(f'<div class="qa-short"><span>Answer</span> {_esc(answer.short_answer)}'
                     "</div>")
    parts.append(f'<p class="qa-text">{_answer_text_html(shown)}</p>')
    if sources and answer.citations:
        parts.append('<div class="qa-sources"><div class="qa-sources-h">Sources</div>')
        for i, c in enumerate(answer.citations):
            is_open = " open" if i == 0 or len(answer.citations) <= 2 else ""
            parts.append(
                f'<details class="qa-src"{is_open}><summary>'
                f'<span class="qa-n">{c.n}</span>'
                f'<span class="qa-title">{_esc(c.title or c.path)}</span>{_date(c.published)}'
                f'<span class="qa-file">{_esc(c.path)}</span></summary>'
                f'<blockquote class="qa-para">{reader.context_html(c, answer.passages)}'
                "</blockquote></details>"
            )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _date(published: str) -> str:
    """The article's date beside its title ("" when the article has none)."""
    return f'<span class="qa-date">{_esc(published)}</span>' if published else ""


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
    if answer.passages:
        parts.append('<details class="qa-near" open><summary>Closest passages found '
                     "<em>(not an answer)</em></summary>")
        for p in answer.passages[:3]:
            parts.append(
                f'<div class="qa-near-item"><div class="qa-near-src">'
                f'<span class="qa-title">{_esc(p.title or p.path)}</span>{_date(p.published)}'
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


def status_line(bot: Assistant) -> str:
    """``1 article · 3 chunks indexed · extractive answers`` (Markdown)."""
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


# --------------------------------------------------------------------------------------------
# Example questions, drawn from the corpus
# --------------------------------------------------------------------------------------------
_NUM = (r"(?:more than |over |nearly |about |almost |just over |at least )?"
        r"(?:\d[\d,]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
        r"dozens|hundreds|thousands|millions)")
_HOW_MANY = re.compile(
    r"(?:^|[\s“\"(])" + _NUM
    + r"\s+(?P<np>(?:[A-Za-z][\w’'-]*\s+){0,2}?[a-z][\w-]*(?:s|ren|ople|men))\s+"
    r"(?P<verb>have been|has been|had been|were|are|have|had)\s+"
    r"(?P<rest>[^,.;:!?”\"\n]{8,110})(?=[,.;:!?”\"\n]|$)",
    re.IGNORECASE,
)
_WHO = re.compile(
    r"(?:^|[“\"]\s*)(?P<subj>The\s+(?:[A-Z][\w.’'-]*\s+){0,4}[A-Za-z][\w.’'-]*)\s+"
    r"(?P<aux>has|have|had)\s+(?P<pp>[a-z]+ed)\s+"
    r"(?P<rest>[^,.;:!?”\"\n]{3,80})(?=[,.;:!?”\"\n]|$)",
    re.MULTILINE,
)


def candidate_questions(text: str) -> list[str]:
    """Questions whose answer is stated in ``text`` (simple patterns; validated by asking)."""
    out = []
    for m in _HOW_MANY.finditer(text):
        out.append(f"How many {m['np']} {m['verb'].lower()} {m['rest'].strip()}?")
    for m in _WHO.finditer(text):
        out.append(f"Who {m['aux']} {m['pp']} {m['rest'].strip()}?")
    return out


def example_questions(bot: Assistant, limit: int = MAX_EXAMPLES, max_files: int = 40,
                      max_tries: int = 10, files: Sequence[Path] | None = None) -> list[str]:
    """A few questions drawn from the corpus that the assistant answers (not abstains on);
    from ``files`` only (corpus files, such as just-uploaded ones) when given."""
    corpus = Path(bot.settings.corpus)
    per_article: list[list[str]] = []
    try:
        for i, path in enumerate(iter_corpus_files(corpus) if files is None else files):
            if i >= max_files:
                break
            try:
                article = load_article(corpus, path)
            except SkippedFile:
                continue
            found = candidate_questions(article.body)
            if not found and article.title:
                found = [f"What does the article “{article.title}” report?"]
            per_article.append(sorted(found, key=len))
    except OSError:
        return []
    ordered: list[str] = []  # round robin over articles, so examples cover several
    for k in range(max(map(len, per_article), default=0)):
        ordered.extend(qs[k] for qs in per_article if k < len(qs))
    chosen: list[str] = []
    for question in list(dict.fromkeys(ordered))[:max_tries]:
        try:
            answer = bot.ask(question)
        except Exception as exc:  # an empty store: no examples, the page says why
            log.info("no example questions: %s", exc)
            break
        if not answer.abstained and answer.citations:
            chosen.append(question)
            if len(chosen) >= limit:
                break
    return chosen


def merge_examples(new: Sequence[str], old: Sequence[str], limit: int = MAX_EXAMPLES
                   ) -> list[str]:
    """``new`` examples first (questions about just-added articles), then the earlier ones,
    without repeats, at most ``limit``."""
    return list(dict.fromkeys([*new, *old]))[:limit]


def chat_placeholder(has_examples: bool) -> str:
    """The empty chat's invitation (HTML)."""
    return ("<div class='qa-placeholder'><div class='qa-ph-icon'>?</div>"
            "<b>Ask about the articles</b><p>"
            + ("Try one of these questions, or type your own below."
               if has_examples else "Type a question below.")
            + "</p></div>")


# --------------------------------------------------------------------------------------------
# Sessions and locking
# --------------------------------------------------------------------------------------------
class ReadWriteLock:
    """Many concurrent readers (questions) or one writer (ingest of uploads); writers first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold a shared lock."""
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the exclusive lock."""
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class Turn:
    """One question of a browser conversation and its outcome."""

    question: str
    answer: Answer | None = None
    error: str | None = None


class Conversation:
    """The state of one browser session: a ChatSession kept in sync with the visible turns.

    Undo, retry and clear cut the visible turns; :meth:`trim` then cuts the ChatSession's
    turns to the same point (``ChatSession.truncate``), so whatever context it derives from
    its turns (follow-up topics, history) matches the page again, and nothing is asked twice.
    """

    def __init__(self, bot: Assistant) -> None:
        self.chat = bot.chat()
        self.turns: list[Turn] = []
        self.lock = threading.Lock()

    def send(self, question: str, guard: ReadWriteLock) -> Turn:
        """Answer ``question`` in context; errors become a turn with a one-line ``error``."""
        with self.lock:
            turn = Turn(question)
            try:
                with guard.read():
                    turn.answer = self.chat.send(question)
            except Exception as exc:
                if not isinstance(exc, AssistantError):
                    log.exception("answering %r failed", question[:200])
                turn.error = error_message(exc)
            self.turns.append(turn)
            return turn

    def trim(self, keep: int) -> None:
        """Keep the first ``keep`` turns, and in the ChatSession the turns it holds of them
        (the answered ones: an error never entered it)."""
        with self.lock:
            self.turns = self.turns[: max(0, keep)]
            self.chat.truncate(sum(1 for turn in self.turns if turn.answer is not None))


def _user_count(history: Sequence[Any]) -> int:
    return sum(1 for m in history if _role(m) == "user")


def _role(message: Any) -> str | None:
    if isinstance(message, dict):
        return message.get("role")
    return getattr(message, "role", None)


def _last_user_index(history: Sequence[Any]) -> int:
    for i in range(len(history) - 1, -1, -1):
        if _role(history[i]) == "user":
            return i
    return -1


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------
CSS = """
.gradio-container { max-width: 1180px !important; margin: 0 auto !important; }
#qa-header { padding: 6px 2px 0 2px; }
#qa-header h1 { font-size: 1.55rem; font-weight: 700; margin: 0; letter-spacing: -0.01em; }
#qa-header p { margin: 2px 0 0 0; color: var(--body-text-color-subdued); font-size: 0.95rem; }
#qa-status { margin-top: -4px; }
.qa-status { display: inline-block; font-size: 0.82rem; padding: 3px 10px; border-radius: 999px;
  background: var(--color-accent-soft); color: var(--body-text-color); }
.qa-status::before { content: "●"; color: #16a34a; margin-right: 6px; }
.qa-status-bad::before { color: #dc2626; }
.qa-answer, .qa-abstain, .qa-error { line-height: 1.55; }
.qa-short { display: inline-block; font-weight: 700; font-size: 1.05rem; padding: 2px 10px;
  border-radius: 8px; background: #ecfdf5; color: #065f46; border: 1px solid #a7f3d0;
  margin-bottom: 6px; }
.qa-short span { font-weight: 500; font-size: 0.75rem; text-transform: uppercase;
  letter-spacing: 0.05em; margin-right: 6px; color: #047857; }
.qa-text { margin: 4px 0 6px 0 !important; }
.qa-ref { color: var(--color-accent); font-weight: 700; font-size: 0.72em; margin-left: 1px; }
.qa-notice { font-size: 0.85rem; font-style: italic; color: var(--body-text-color-subdued); }
.qa-sources { margin-top: 8px; border-top: 1px solid var(--border-color-primary);
  padding-top: 6px; }
.qa-sources-h { font-size: 0.72rem; text-transform: uppercase; letter-spacing: 0.08em;
  color: var(--body-text-color-subdued); font-weight: 600; margin-bottom: 4px; }
details.qa-src, details.qa-near { border: 1px solid var(--border-color-primary);
  border-radius: 10px; padding: 6px 10px; margin: 6px 0;
  background: var(--background-fill-secondary); }
details.qa-src > summary, details.qa-near > summary { cursor: pointer; display: flex; gap: 8px;
  align-items: baseline; flex-wrap: wrap; list-style: none; }
details.qa-src > summary::-webkit-details-marker { display: none; }
details.qa-src > summary::after { content: "▾"; margin-left: auto;
  color: var(--body-text-color-subdued); }
details.qa-src:not([open]) > summary::after { content: "▸"; }
.qa-n { display: inline-flex; align-items: center; justify-content: center; min-width: 1.4em;
  height: 1.4em; border-radius: 6px; background: var(--color-accent); color: white;
  font-size: 0.75rem; font-weight: 700; }
.qa-title { font-weight: 600; }
.qa-date { font-size: 0.78rem; color: var(--body-text-color-subdued); white-space: nowrap; }
.qa-file { font-family: var(--font-mono); font-size: 0.78rem;
  color: var(--body-text-color-subdued); }
.qa-para, .qa-near-item blockquote { margin: 8px 0 2px 0 !important;
  padding: 4px 0 4px 12px !important;
  border-left: 3px solid var(--border-color-accent) !important; font-size: 0.92rem;
  color: var(--body-text-color); background: transparent !important; }
.qa-para mark { background: #fef08a; color: #1f2937; padding: 1px 2px; border-radius: 3px; }
.qa-abstain { border-left: 4px solid #f59e0b; padding-left: 10px; }
.qa-abstain-h { font-weight: 700; color: #b45309; font-size: 0.95rem; }
.qa-abstain-h::before { content: "⚠ "; }
details.qa-near { background: #fffbeb; border-color: #fde68a; }
details.qa-near > summary { color: #92400e; font-weight: 600; font-size: 0.9rem; }
.qa-near-item { margin-top: 8px; }
.qa-near-src { display: flex; gap: 8px; align-items: baseline; font-size: 0.85rem; }
.qa-near-item blockquote { border-left-color: #fcd34d !important; opacity: 0.9; }
.qa-error { border-left: 4px solid #dc2626; padding-left: 10px; color: #991b1b; }
.qa-pending { color: var(--body-text-color-subdued); font-style: italic; }
#qa-side .prose h3 { margin-top: 0; }
#qa-side .qa-help { font-size: 0.85rem; color: var(--body-text-color); opacity: 0.8;
  line-height: 1.5; }
#qa-upload-msg { font-size: 0.88rem; }
#qa-upload-msg:has(.prose:empty) { display: none; }
.qa-upload-ok, .qa-upload-bad { border-radius: 8px; padding: 6px 10px; margin: 0 0 6px 0; }
.qa-upload-ok { background: #ecfdf5; border: 1px solid #a7f3d0; color: #065f46; }
.qa-upload-bad { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; }
#qa-chat button.example { border: 1px solid var(--border-color-primary); border-radius: 12px;
  background: var(--background-fill-secondary); padding: 12px 14px; text-align: left;
  transition: border-color 0.15s, box-shadow 0.15s; }
#qa-chat button.example:hover { border-color: var(--color-accent);
  box-shadow: 0 1px 6px rgba(79, 70, 229, 0.15); }
#qa-chat .example-text { font-size: 0.92rem; }
.qa-placeholder { text-align: center; }
.qa-placeholder .qa-ph-icon { width: 44px; height: 44px; margin: 0 auto 8px auto;
  border-radius: 50%; background: var(--color-accent-soft); color: var(--color-accent);
  font-size: 1.5rem; font-weight: 700; line-height: 44px; }
.qa-placeholder b { font-size: 1.1rem; }
.qa-placeholder p { margin: 4px 0 0 0; color: var(--body-text-color-subdued); }
/* The bin (clear) gets a row of its own above the messages, so no message or copy icon
   scrolls under it; the scroll-down arrow gets one below them, so it never covers the text
   (gradio places both over the scrolling messages). */
#qa-chat .wrapper:has(> [role=log]) { display: flex; flex-direction: column; }
#qa-chat .wrapper > .top-panel { position: static; align-self: flex-end; flex: none;
  margin: 4px 4px 0 0; }
#qa-chat .wrapper > [role=log] { flex: 1 1 0; min-height: 0; height: auto; padding-top: 6px; }
#qa-chat .wrapper > .scroll-down-button-container { position: static; transform: none;
  align-self: center; flex: none; margin: 4px 0; }
footer { opacity: 0.7; }
/* gradio's footer puts a "·" after its links for the ones hidden here (settings, "built
   with"), which would stand alone after "Use via API" (and alone on a phone, where gradio
   hides the API link). */
footer .divider { display: none !important; }
"""


def _theme() -> Any:
    """A calm theme with system fonts (nothing fetched from font CDNs)."""
    system = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto",
              "Helvetica Neue", "Arial", "sans-serif")
    mono = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
                          font=system, font_mono=mono)


class _Page:
    """Event handlers of one app (shared by all browser sessions)."""

    def __init__(self, bot: Assistant) -> None:
        self.bot = bot
        self.settings: Settings = bot.settings
        self.guard = ReadWriteLock()
        self.reader = SourceReader(Path(self.settings.corpus))
        self.examples: list[str] = []  # shown on an empty chat; uploads add to them

    # -- chat -----------------------------------------------------------------------------
    def _conversation(self, conv: Conversation | None) -> Conversation:
        return conv if isinstance(conv, Conversation) else Conversation(self.bot)

    def take_question(self, message: str, history: list[Any], conv: Conversation | None
                      ) -> tuple[Any, list[Any], str, Conversation]:
        """Show the user's message at once, clear the box, remember the question."""
        message = message or ""
        history = [*(history or []), {"role": "user", "content": render_user(message)}]
        return gr.update(value="", interactive=False), history, message, self._conversation(conv)

    def take_example(self, data: gr.SelectData, history: list[Any],
                     conv: Conversation | None) -> tuple[Any, list[Any], str, Conversation]:
        """An example was clicked: ask it."""
        value = data.value
        text = value.get("text", "") if isinstance(value, dict) else str(value or "")
        return self.take_question(text, history, conv)

    def respond(self, question: str, history: list[Any], conv: Conversation | None
                ) -> Iterator[tuple[list[Any], Conversation]]:
        """Answer the remembered question, streaming the text, then the sources."""
        conv = self._conversation(conv)
        history = list(history or [])
        history.append({"role": "assistant", "content": render_pending()})
        yield [*history], conv
        turn = conv.send(question or "", self.guard)
        if turn.answer is None:
            history[-1] = {"role": "assistant", "content": render_error(turn.error or "")}
            yield [*history], conv
            return
        answer = turn.answer
        words = answer.text.split(" ")
        for n in range(STREAM_WORDS, len(words), STREAM_WORDS):
            partial = " ".join(words[:n])
            history[-1] = {"role": "assistant",
                           "content": render_answer(answer, self.reader, partial, False)}
            yield [*history], conv
            time.sleep(STREAM_DELAY)
        history[-1] = {"role": "assistant", "content": render_answer(answer, self.reader)}
        yield [*history], conv

    def retry(self, history: list[Any], conv: Conversation | None
              ) -> tuple[list[Any], str, Conversation, Any]:
        """Drop the last answer and ask its question again."""
        conv = self._conversation(conv)
        history = list(history or [])
        i = _last_user_index(history)
        if i < 0:
            return history, "", conv, gr.update()
        keep = _user_count(history[:i])
        question = conv.turns[keep].question if keep < len(conv.turns) else ""
        conv.trim(keep)
        return history[: i + 1], question, conv, gr.update(interactive=False)

    def undo(self, history: list[Any], conv: Conversation | None
             ) -> tuple[list[Any], str, Conversation]:
        """Remove the last question and its answer; put the question back in the box."""
        conv = self._conversation(conv)
        history = list(history or [])
        i = _last_user_index(history)
        if i < 0:
            return history, "", conv
        keep = _user_count(history[:i])
        question = conv.turns[keep].question if keep < len(conv.turns) else ""
        conv.trim(keep)
        return history[:i], question, conv

    def clear(self, conv: Conversation | None) -> Conversation:
        """Forget the conversation."""
        conv = self._conversation(conv)
        conv.trim(0)
        return conv

    # -- API --------------------------------------------------------------------------------
    def ask(self, question: str) -> dict[str, Any]:
        """One question, no conversation: the Answer as JSON; errors raise gr.Error."""
        try:
            with self.guard.read():
                answer = self.bot.ask(question)
        except Exception as exc:
            if not isinstance(exc, AssistantError):
                log.exception("answering %r failed", str(question)[:200])
            raise gr.Error(error_message(exc), print_exception=False) from None
        return api_answer(answer)

    # -- examples ---------------------------------------------------------------------------
    def example_update(self) -> Any:
        """The chat's current example questions (and matching placeholder), as an update."""
        examples = list(self.examples)
        return gr.update(examples=[{"text": q} for q in examples] or None,
                         placeholder=chat_placeholder(bool(examples)))

    def add_examples(self, files: Sequence[Path]) -> None:
        """Put questions about the articles in ``files`` (just ingested) first among the
        examples; the earlier ones fill the rest."""
        try:
            with self.guard.read():
                new = example_questions(self.bot, files=files)
        except Exception as exc:  # examples are a nicety: never fail an upload for them
            log.warning("no example questions from the uploads: %s", exc)
            return
        self.examples = merge_examples(new, self.examples)

    # -- uploads ----------------------------------------------------------------------------
    def upload(self, files: list[str] | str | None) -> tuple[str, str]:
        """Save uploaded .txt/.md files into the corpus and ingest them."""
        if not files:
            return "", status_line(self.bot)
        if isinstance(files, str):
            files = [files]
        limit = self.settings.max_upload_bytes
        saved: list[str] = []
        paths: list[Path] = []
        problems: list[str] = []
        corpus = Path(self.settings.corpus)
        for item in files:
            path = Path(getattr(item, "path", None) or getattr(item, "name", None) or item)
            name = getattr(item, "orig_name", None) or path.name
            try:
                if path.stat().st_size > limit:
                    raise AssistantError(f"larger than the {limit / 1e6:g} MB limit")
                data = path.read_bytes()
                if not decode(data).strip():
                    raise AssistantError("the file is empty")
                target = save_upload(corpus, name, data)
                saved.append(target.name)
                paths.append(corpus / target.name)
            except SkippedFile as exc:
                problems.append(f"{_esc(Path(str(name)).name)}: {_esc(str(exc))}")
            except AssistantError as exc:
                problems.append(f"{_esc(Path(str(name)).name)}: {_esc(str(exc))}")
            except OSError as exc:
                problems.append(f"{_esc(Path(str(name)).name)}: {_esc(exc.strerror or str(exc))}")
        lines = []
        if saved:
            try:
                with self.guard.write():
                    report = self.bot.ingest()
                lines.append("<div class='qa-upload-ok'>Added "
                             + ", ".join(f"<code>{_esc(s)}</code>" for s in saved)
                             + f" to <code>{_esc(upload_folder(self.settings))}</code>. "
                             + f"{_esc(report.summary())}.</div>")
                skipped = set()
                for path_, reason in report.skipped:
                    if Path(path_).name in saved:
                        skipped.add(Path(path_).name)
                        lines.append(f"<div class='qa-upload-bad'>Skipped <code>{_esc(path_)}"
                                     f"</code>: {_esc(reason)}</div>")
                self.add_examples([p for p in paths if p.name not in skipped])
            except Exception as exc:
                if not isinstance(exc, AssistantError):
                    log.exception("ingest after upload failed")
                lines.append("<div class='qa-upload-bad'>Saved, but indexing failed: "
                             f"{_esc(error_message(exc))}</div>")
        lines += [f"<div class='qa-upload-bad'>Not added: {p}</div>" for p in problems]
        return "".join(lines), status_line(self.bot)


def build_app(bot: Assistant, *, examples: Sequence[str] | None = None) -> gr.Blocks:
    """The chat page of ``bot``. ``examples`` defaults to questions drawn from the corpus."""
    page = _Page(bot)
    settings = bot.settings
    if examples is None:
        examples = example_questions(bot)
    page.examples = list(examples)
    limit = max(1, int(settings.concurrency))
    with gr.Blocks(title="Ask the news", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as app:
        conv = gr.State(None)
        pending = gr.State("")
        gr.HTML(
            '<div id="qa-header"><h1>Ask the news</h1><p>Questions answered from the articles in '
            "the corpus, with every answer quoting its sources. Open a source to read the quote "
            "in its paragraph.</p></div>"
        )
        status = gr.HTML(status_line(bot), elem_id="qa-status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=420):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    show_label=False,
                    height="64vh",
                    min_height=420,
                    layout="bubble",
                    buttons=["copy"],
                    feedback_options=None,
                    latex_delimiters=[],
                    examples=[{"text": q} for q in examples] or None,
                    placeholder=chat_placeholder(bool(examples)),
                    elem_id="qa-chat",
                )
                box = gr.Textbox(
                    placeholder=f"Ask a question about the articles… (up to "
                                f"{settings.max_question_chars:,} characters)",
                    show_label=False,
                    lines=1,
                    max_lines=6,
                    # The browser keeps typed and pasted text within the limit; the server
                    # still refuses a longer question (check_question) sent by other means.
                    max_length=settings.max_question_chars,
                    submit_btn=True,
                    autofocus=True,
                    elem_id="qa-input",
                )
            with gr.Column(scale=1, min_width=250, elem_id="qa-side"):
                folder = upload_folder(settings).replace("`", "'")
                gr.Markdown(
                    "### Add articles\n"
                    f"Upload `.txt` or `.md` files (up to {settings.max_upload_bytes / 1e6:g} MB "
                    f"each). They are saved into the corpus folder `{folder}` (where they stay) "
                    "and indexed at once.",
                    elem_id="qa-upload-help",
                )
                files = gr.File(
                    label="Articles",
                    file_count="multiple",
                    file_types=list(SUFFIXES),
                    type="filepath",
                    height=140,
                    elem_id="qa-upload",
                )
                upload_msg = gr.HTML("", elem_id="qa-upload-msg")
                gr.HTML(
                    "<div class='qa-help'><b>How answers work.</b> Each answer is quoted from "
                    "the articles; the numbers [1] point to its sources below it, with the "
                    "quoted sentence <mark>highlighted</mark> in its paragraph. When the "
                    "articles do not cover a question, the page says so and shows the closest "
                    "passages instead. Follow-up questions keep the conversation's context; "
                    "use ↻ retry, ↶ undo or the bin to start over.</div>"
                )

        answer_kwargs: dict[str, Any] = {
            "fn": page.respond,
            "inputs": [pending, chatbot, conv],
            "outputs": [chatbot, conv],
            "api_visibility": "undocumented",
            "concurrency_limit": limit,
            "concurrency_id": "answer",
            "show_progress": "hidden",
        }
        quick: dict[str, Any] = {"api_visibility": "undocumented", "queue": False}
        unlock: dict[str, Any] = {"fn": lambda: gr.update(interactive=True), "inputs": None,
                                  "outputs": box, **quick}
        box.submit(page.take_question, [box, chatbot, conv], [box, chatbot, pending, conv],
                   **quick).then(**answer_kwargs).then(**unlock)
        chatbot.example_select(page.take_example, [chatbot, conv],
                               [box, chatbot, pending, conv], **quick
                               ).then(**answer_kwargs).then(**unlock)
        chatbot.retry(page.retry, [chatbot, conv], [chatbot, pending, conv, box],
                      **quick).then(**answer_kwargs).then(**unlock)
        chatbot.undo(page.undo, [chatbot, conv], [chatbot, box, conv], **quick)
        chatbot.clear(page.clear, [conv], [conv], **quick)

        files.upload(
            page.upload, [files], [upload_msg, status], api_name="upload",
            api_description="Add .txt/.md articles to the corpus and index them. Takes a "
                            "list of files; returns (message, status line), both HTML.",
            concurrency_limit=1, concurrency_id="ingest",
        ).then(page.example_update, None, chatbot, **quick
               ).then(lambda: None, None, files, **quick)
        app.load(lambda: status_line(bot), None, status, **quick)
        # A page opened after an upload shows the examples as they are now.
        app.load(page.example_update, None, chatbot, **quick)

        def ask(question: str) -> dict[str, Any]:
            """Answer one question about the articles (no conversation context).

            Args:
                question: the question (at most ASSISTANT_MAX_QUESTION_CHARS characters).
            Returns:
                The answer as JSON: question, answer (the text, with [n] markers),
                short_answer, abstained, citations (n, doc_id, title, file, start, end,
                quote, score; quote == text of file[start:end], file relative to the
                corpus), retrieved, latency_ms, backend and, when present, notice. This is
                Answer.to_dict() (assistant ask --json) with each "path" key named "file".
            """
            return page.ask(question)

        gr.api(ask, api_name="ask", concurrency_limit=limit, concurrency_id="answer")
    app.queue(default_concurrency_limit=limit, max_size=max(64, 16 * limit))
    return app


# --------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------
def launch(app: gr.Blocks, settings: Settings, *, host: str, port: int,
           credentials: tuple[str, str] | None = None) -> str:
    """Start ``app`` on ``host:port`` in the background (no share link, no telemetry, only
    the page's own files served); returns the local URL. Stop it with ``app.close()``."""
    blocked = [str(Path(p).resolve()) for p in (settings.store, settings.corpus)]
    try:
        _, url, _ = app.launch(
            server_name=host,
            server_port=port,
            auth=credentials,
            auth_message="Sign in to ask questions about the articles.",
            share=False,
            prevent_thread_lock=True,
            quiet=True,
            show_error=False,
            inbrowser=False,
            max_file_size=int(settings.max_upload_bytes),
            allowed_paths=[],
            blocked_paths=blocked,
            enable_monitoring=False,
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            footer_links=["api"],
            run_history=False,
            theme=_theme(),
            css=CSS,
        )
    except OSError as exc:
        raise AssistantError(f"cannot serve on {host}:{port}: {exc}") from None
    return url


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(bot: Assistant, *, host: str | None = None, port: int | None = None,
          auth: str | None = None) -> int:
    """Serve the chat page (default http://127.0.0.1:7860), print its URL and block until
    interrupted. A non-loopback ``host`` requires ``auth`` (``user:password``)."""
    settings = bot.settings
    host = host or settings.host
    port = int(port or settings.port)
    credentials = check_bind(host, auth if auth is not None else settings.auth)
    app = build_app(bot)
    url = launch(app, settings, host=host, port=port, credentials=credentials)
    shown = url if is_loopback(host) or host in ("0.0.0.0", "::") else f"http://{host}:{port}/"
    extra = " (all interfaces; password required)" if not is_loopback(host) else ""
    print(f"Chat page: {shown}{extra}  (Ctrl+C to stop)", flush=True)
    if threading.current_thread() is threading.main_thread():
        # Ctrl+C and SIGTERM (service managers) stop the page, also when this process was
        # started with SIGINT ignored (a background job of a script ignores it).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _interrupt)
    try:
        while app.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("Stopping the chat page.", flush=True)
    finally:
        # Bounded: a connection that does not close must not keep Ctrl+C from stopping.
        closer = threading.Thread(target=app.close, daemon=True)
        closer.start()
        closer.join(timeout=10)
        if closer.is_alive():
            log.warning("the web server did not stop within 10 s; exiting anyway")
    return 0
