"""The Blocks of the chat page (``build_app``), and starting it (``launch``) or serving it
until interrupted (``serve``)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from assistant.corpus import SUFFIXES
from assistant.settings import AssistantError, Settings
from assistant.timeframe import RECENT_DAYS
from assistant.web.binding import check_bind, is_loopback
from assistant.web.examples import example_questions
from assistant.web.handlers import _Page
from assistant.web.render import chat_placeholder
from assistant.web.uploads import upload_folder

if TYPE_CHECKING:
    from assistant.core import Assistant
    from assistant.watch import CorpusWatcher

log = logging.getLogger(__name__)

CSS_FILE = Path(__file__).parent / "static" / "page.css"
CSS = CSS_FILE.read_text(encoding="utf-8")
"""The page's style sheet (``static/page.css``), passed to gradio at launch."""
STATUS_REFRESH_S = 2.0
"""How often an open page refreshes its status line while the corpus is watched."""


def _theme() -> Any:
    """A calm theme with system fonts (nothing fetched from font CDNs)."""
    system = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto",
              "Helvetica Neue", "Arial", "sans-serif")
    mono = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
                          font=system, font_mono=mono)


def build_app(bot: Assistant, *, examples: Sequence[str] | None = None,
              watcher: CorpusWatcher | None = None) -> gr.Blocks:
    """The chat page of ``bot``. ``examples`` defaults to questions drawn from the corpus.

    With a ``watcher`` (:class:`assistant.watch.CorpusWatcher`) of the corpus, the status
    line says what it did last, refreshed every ``STATUS_REFRESH_S`` seconds, and its ingests
    hold the page's write lock (unless it has a lock of its own), as uploads do."""
    page = _Page(bot)
    if watcher is not None:
        page.watcher = watcher
        if watcher.lock is None:
            watcher.lock = page.guard.write
        if watcher.on_ingest is None:  # new articles in the folder lead the examples
            watcher.on_ingest = page.watcher_ingested
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
        status = gr.HTML(page.status(), elem_id="qa-status")
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
                gr.Markdown("### Dates\nOnly articles published in this range, as "
                            "YYYY-MM-DD (both days included; empty: any date). *As of*: "
                            "ask as on that day — later articles are left out, those of "
                            f"the {RECENT_DAYS} days before it come first, and “last week” counts "
                            "back from it (empty: the newest article's date).",
                            elem_id="qa-dates-help")
                with gr.Row(elem_id="qa-dates"):
                    since = gr.Textbox(label="From", placeholder="any date", max_lines=1,
                                       min_width=110, elem_id="qa-since")
                    until = gr.Textbox(label="Until", placeholder="any date", max_lines=1,
                                       min_width=110, elem_id="qa-until")
                    as_of = gr.Textbox(label="As of", placeholder="newest", max_lines=1,
                                       min_width=110, elem_id="qa-as-of")
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
            "inputs": [pending, chatbot, conv, since, until, as_of],
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
        app.load(page.status, None, status, **quick)
        if watcher is not None:
            gr.Timer(STATUS_REFRESH_S).tick(page.status, None, status, **quick)
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
          auth: str | None = None, watch: bool = True) -> int:
    """Serve the chat page (default http://127.0.0.1:7860), print its URL and block until
    interrupted. A non-loopback ``host`` requires ``auth`` (``user:password``).

    ``watch`` (the default) ingests the corpus folder's changes as they happen
    (:class:`assistant.watch.CorpusWatcher`), stopped with the page."""
    settings = bot.settings
    host = host or settings.host
    port = int(port or settings.port)
    credentials = check_bind(host, auth if auth is not None else settings.auth)
    watcher = None
    if watch:
        from assistant.watch import CorpusWatcher

        watcher = CorpusWatcher(bot).start()  # first: changes from now on are ingested
    try:
        return _serve_page(bot, watcher, host, port, credentials)
    finally:
        if watcher is not None:
            watcher.stop(timeout=5)


def _serve_page(bot: Assistant, watcher: CorpusWatcher | None, host: str, port: int,
                credentials: tuple[str, str] | None) -> int:
    settings = bot.settings
    app = build_app(bot, watcher=watcher)
    url = launch(app, settings, host=host, port=port, credentials=credentials)
    if watcher is not None:
        print(f"Watching {upload_folder(settings)} for changes (--no-watch to turn off)",
              flush=True)
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
