"""The page's event handlers (chat, retry, undo, clear, uploads, examples) and its ``/ask``
API, shared by all browser sessions of one app."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from assistant.corpus import SkippedFile, decode
from assistant.settings import AssistantError, Settings
from assistant.types import IngestReport
from assistant.web.api import api_answer
from assistant.web.examples import example_questions, merge_examples
from assistant.web.locking import ReadWriteLock
from assistant.web.render import (
    SourceReader,
    _esc,
    chat_placeholder,
    error_message,
    index_status,
    render_answer,
    render_error,
    render_partial,
    render_pending,
    render_user,
    status_line,
    watch_status,
)
from assistant.web.sessions import Conversation, Turn, _last_user_index, _user_count
from assistant.web.uploads import save_upload, upload_folder

if TYPE_CHECKING:
    from assistant.core import Assistant
    from assistant.watch import CorpusWatcher

log = logging.getLogger(__name__)


class _Page:
    """Event handlers of one app (shared by all browser sessions)."""

    def __init__(self, bot: Assistant) -> None:
        self.bot = bot
        self.settings: Settings = bot.settings
        self.guard = ReadWriteLock()
        self.reader = SourceReader(Path(self.settings.corpus))
        self.examples: list[str] = []  # shown on an empty chat; uploads add to them
        self.watcher: CorpusWatcher | None = None  # set when the corpus folder is watched
        self._uploads = 0  # ingests of uploads, which change the index
        self._index_html: tuple[tuple[int, int], str] | None = None

    def status(self) -> str:
        """The status line (HTML): the index, and the watcher's state when there is one.

        The page asks for it every few seconds while the corpus is watched; the index's
        part is made again only after an ingest."""
        watcher = self.watcher
        if watcher is None:
            return status_line(self.bot)
        watch = watcher.status()
        key = (watch.ingests, self._uploads)
        cached = self._index_html
        if cached is not None and cached[0] == key:
            index = cached[1]
        else:
            index = index_status(self.bot)
            self._index_html = (key, index)
        return index + watch_status(watch)

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

    def respond(self, question: str, history: list[Any], conv: Conversation | None,
                since: str | None = None, until: str | None = None,
                as_of: str | None = None) -> Iterator[tuple[list[Any], Conversation]]:
        """Answer the remembered question, showing its text as the answer layer produces it
        (a language model's tokens as they stream; the extractive answer in one piece),
        then the whole answer with its sources.

        The answer is made in a worker thread (:meth:`_answer_in_worker`), which holds the
        read lock for as long as it answers; its pieces reach this generator through a
        queue, and each one is shown as soon as it arrives.
        """
        conv = self._conversation(conv)
        # The page's dates (a malformed date is the answer's one-line error).
        conv.chat.since, conv.chat.until = (since or "").strip(), (until or "").strip()
        conv.chat.as_of = (as_of or "").strip()
        history = list(history or [])
        history.append({"role": "assistant", "content": render_pending()})
        yield [*history], conv
        pieces: queue.Queue[str | None] = queue.Queue()
        outcome: list[Turn | BaseException] = []
        worker = threading.Thread(target=self._answer_in_worker,
                                  args=(conv, question or "", pieces, outcome),
                                  name="answer", daemon=True)
        worker.start()
        text = ""
        while (piece := pieces.get()) is not None:
            if not piece:
                continue
            text += piece
            history[-1] = {"role": "assistant", "content": render_partial(text)}
            yield [*history], conv
        worker.join()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result  # not an Exception (those became the turn's error): as if asked here
        if result.answer is None:
            history[-1] = {"role": "assistant", "content": render_error(result.error or "")}
        else:
            history[-1] = {"role": "assistant",
                           "content": render_answer(result.answer, self.reader)}
        yield [*history], conv

    def _answer_in_worker(self, conv: Conversation, question: str,
                          pieces: queue.Queue[str | None],
                          outcome: list[Turn | BaseException]) -> None:
        """Answer ``question`` in ``conv`` under the read lock, putting the text's pieces on
        ``pieces`` as they come; then the turn (or what escaped ``Conversation.send``) goes
        into ``outcome`` and ``None`` on ``pieces`` says the answer is done."""
        try:
            outcome.append(conv.send(question, self.guard, on_token=pieces.put))
        except BaseException as exc:  # e.g. SystemExit: raised again by respond
            outcome.append(exc)
        finally:
            pieces.put(None)

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

    def watcher_ingested(self, report: IngestReport) -> None:
        """The corpus watcher ingested: questions about its new articles lead the examples
        (of pages opened from now on, as after an upload)."""
        if report.added:
            self.add_examples([self.bot.settings.corpus / p for p in report.added])

    # -- uploads ----------------------------------------------------------------------------
    def upload(self, files: list[str] | str | None) -> tuple[str, str]:
        """Save uploaded .txt/.md files into the corpus and ingest them."""
        if not files:
            return "", self.status()
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
                self._uploads += 1
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
                self._uploads += 1  # a failed ingest may have changed the index too
                if not isinstance(exc, AssistantError):
                    log.exception("ingest after upload failed")
                lines.append("<div class='qa-upload-bad'>Saved, but indexing failed: "
                             f"{_esc(error_message(exc))}</div>")
        lines += [f"<div class='qa-upload-bad'>Not added: {p}</div>" for p in problems]
        return "".join(lines), self.status()
