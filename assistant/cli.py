"""The command line: ``assistant ingest | ask | chat | serve | eval``."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from assistant.layout import StoreLayout
from assistant.settings import AssistantError, Settings
from assistant.text import one_line
from assistant.timeframe import RECENT_DAYS
from assistant.types import CITATION_ROLES, Answer

if TYPE_CHECKING:
    from assistant.core import Assistant

DEFAULTS = Settings()


def version() -> str:
    """The installed package's version (its metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("assistant")
    except PackageNotFoundError:
        from assistant import __version__

        return __version__


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and one line naming the help to read on bad usage.

    Options are spelt in full (no abbreviations: a new option would change what an
    abbreviation means), and anything left over is an error of the command it was given to.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}; see `{self.prog} --help`\n")
        raise SystemExit(2)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self.commands.get(getattr(parsed, "command", None) or "", self)
            command.error(_leftover(command, extras))
        return parsed


def _leftover(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """What is wrong with the arguments ``parser`` did not take: unknown options (with the
    closest known one), else stray words."""
    unknown = [a.split("=", 1)[0] for a in extras if a.startswith("-") and len(a) > 1]
    if unknown:
        known = list(parser._option_string_actions)
        named = []
        for option in unknown:
            close = difflib.get_close_matches(option, known, n=1, cutoff=0.75)
            named.append(f"{option} (did you mean {close[0]}?)" if close else option)
        return f"unknown option{'s' if len(named) > 1 else ''} {', '.join(named)}"
    words = " ".join(repr(a) for a in extras)
    takes_question = any(a.dest == "question" for a in parser._actions)
    hint = " (quote a question that has spaces)" if takes_question else ""
    return f"unexpected argument{'s' if len(extras) > 1 else ''} {words}{hint}"


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("store and corpus (also ASSISTANT_* environment variables)")
    g.add_argument("--corpus", metavar="DIR",
                   help=f"corpus directory (ASSISTANT_CORPUS, default ./{DEFAULTS.corpus})")
    g.add_argument("--store", metavar="DIR",
                   help=f"store directory (ASSISTANT_STORE, default ./{DEFAULTS.store})")
    g.add_argument("--chroma-url", dest="chroma_url", metavar="URL",
                   help="use a Chroma server, e.g. http://127.0.0.1:8000 (ASSISTANT_CHROMA_URL)")
    g.add_argument("--top-k", dest="top_k", type=int, metavar="N",
                   help=f"passages retrieved per question (ASSISTANT_TOP_K, default "
                   f"{DEFAULTS.top_k})")
    g.add_argument("--min-score", dest="min_score", type=float, metavar="X",
                   help="abstain when the probability that the answer is right is below this "
                   "(ASSISTANT_MIN_SCORE; default: the answer model's calibrated threshold)")
    g.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    m = parser.add_argument_group(
        "generative answers (optional, pip install 'assistant[llm]'; also ASSISTANT_LLM_*)")
    m.add_argument("--llm-url", dest="llm_url", metavar="URL",
                   help="OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 for Ollama "
                   "(ASSISTANT_LLM_URL)")
    m.add_argument("--llm-model", dest="llm_model", metavar="NAME",
                   help="the model's name on that server (ASSISTANT_LLM_MODEL)")
    m.add_argument("--llm-api-key", dest="llm_api_key", metavar="KEY",
                   help="API key, when the server needs one (prefer ASSISTANT_LLM_API_KEY)")
    m.add_argument("--llm-timeout", dest="llm_timeout", type=float, metavar="S",
                   help="seconds to wait for the server before answering extractively "
                   f"(ASSISTANT_LLM_TIMEOUT, default {DEFAULTS.llm_timeout:g})")


def _dates(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dates (YYYY-MM-DD; articles dated by a Published:/Date: line)")
    g.add_argument("--since", metavar="DATE", help="only articles published on or after DATE")
    g.add_argument("--until", metavar="DATE", help="only articles published on or before DATE")
    g.add_argument("--as-of", dest="as_of", metavar="DATE",
                   help="ask as on DATE: later articles are left out, those of the "
                   f"{RECENT_DAYS} days up to it are ranked first, and \"last week\" or "
                   "\"latest\" count back from it (default: the newest article's date, "
                   "nothing ranked first)")


def date_limits(args: argparse.Namespace) -> dict[str, dt.date | None]:
    """The ``since``/``until``/``as_of`` flags as dates (one-line error when malformed)."""
    from assistant.timeframe import parse_day

    return {key: parse_day(getattr(args, key, None), flag) for key, flag in
            (("since", "--since"), ("until", "--until"), ("as_of", "--as-of"))}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(prog="assistant", description="Cited answers from a corpus of articles.",
                     epilog="Run `assistant <command> --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands",
                                parser_class=_Parser)

    p = sub.add_parser("ingest", help="index the corpus (incremental)")
    _common(p)
    p.add_argument("--rebuild", action="store_true", help="drop the store and index anew")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("ask", help="answer one question")
    _common(p)
    p.add_argument("question", help="the question")
    p.add_argument("--json", action="store_true", help="print the machine-readable answer")

    _dates(p)

    p = sub.add_parser("chat", help="a conversation in the terminal")
    _common(p)
    _dates(p)

    p = sub.add_parser("serve", help="serve the chat page")
    _common(p)
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--auth", help="user:password, required off loopback (ASSISTANT_AUTH)")
    p.add_argument("--no-ingest", action="store_true", help="do not ingest before serving")
    p.add_argument("--no-watch", action="store_true",
                   help="do not watch the corpus folder (by default its changes are ingested "
                   "within seconds)")

    p = sub.add_parser("eval", help="score answers against gold questions")
    _common(p)
    from assistant.evals import add_eval_arguments

    add_eval_arguments(p)
    parser.commands = dict(sub.choices)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment settings overridden by the flags that were given."""
    keys = ("corpus", "store", "chroma_url", "top_k", "min_score", "host", "port", "auth",
            "llm_url", "llm_model", "llm_api_key", "llm_timeout")
    return Settings.from_env(**{k: getattr(args, k, None) for k in keys})


def format_answer(answer: Answer, with_text: bool = True) -> str:
    """An answer with its numbered sources, for the terminal (only the sources when
    ``with_text`` is false: the text was streamed)."""
    lines = [answer.text] if with_text else []
    if answer.notice and with_text:
        lines.insert(0, f"({answer.notice})")
    if answer.scope and with_text:
        lines.insert(0, answer.scope)
    if answer.notice and not with_text:  # the text was streamed: the notice follows it
        lines.append(f"({answer.notice})")
    if answer.scope and not with_text:
        lines.append(answer.scope)
    if answer.agreement:
        lines.append(f"({answer.agreement})")
    if answer.citations:
        lines.append("")
        for c in answer.citations:
            quote = c.quote if len(c.quote) <= 300 else c.quote[:297] + "…"
            about = " · ".join(one_line(x) for x in (c.title, c.source, c.published) if x)
            about = f" · {about}" if about else ""
            role = f" ({CITATION_ROLES[c.role]})" if c.role in CITATION_ROLES else ""
            lines.append(f"[{c.n}]{role} {one_line(c.path)} ({c.start}-{c.end}){about}: "
                         f"\"{quote}\"")
    elif answer.abstained and answer.passages:
        lines.append("")
        lines.append("Closest passages (not an answer):")
        for p in answer.passages[:3]:
            snippet = " ".join(p.text.split())[:160]
            lines.append(f"- {one_line(p.path)}: {snippet}…")
    return "\n".join(lines)


def _ingest(bot: Assistant, args: argparse.Namespace) -> int:
    from assistant.ingest import terminal_progress

    report = bot.ingest(rebuild=args.rebuild, progress=terminal_progress())
    for path, reason in report.skipped:
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    return 0


class _Stream:
    """Prints a generated answer's text as it arrives, then its sources; ``on_start`` is
    called once, before the first thing printed."""

    def __init__(self, on_start: Callable[[], None] | None = None) -> None:
        self.streamed = False
        self.on_start = on_start

    def _start(self) -> None:
        if self.on_start is not None:
            self.on_start()
            self.on_start = None

    def __call__(self, delta: str) -> None:
        if delta:
            self._start()
        sys.stdout.write(delta)
        sys.stdout.flush()
        self.streamed = self.streamed or bool(delta)

    def finish(self, answer: Answer) -> None:
        """The sources after the streamed text; the whole answer when nothing streamed or
        the model failed midway (the extractive answer, with its notice)."""
        self._start()
        if not self.streamed:
            print(format_answer(answer))
            return
        print()
        tail = format_answer(answer, with_text=False) if answer.backend == "llm" else (
            format_answer(answer))
        if tail:
            print(tail)


def store_options(args: argparse.Namespace) -> str:
    """The flags given on the command line that say which store and collection to use."""
    given = [(flag, getattr(args, dest, None)) for flag, dest in
             (("--corpus", "corpus"), ("--store", "store"), ("--chroma-url", "chroma_url"))]
    return " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in given
                    if value is not None)


_INGEST_HINT = "`assistant ingest`"


def name_options(message: str, args: argparse.Namespace) -> str:
    """``message`` with the store flags the user gave added to the `assistant ingest` it
    suggests, so that the suggested command fills this store."""
    options = store_options(args)
    return message.replace(_INGEST_HINT, f"`assistant ingest {options}`") if options else (
        message)


def with_options(answer: Answer, args: argparse.Namespace) -> Answer:
    """``answer`` with the store flags the user gave named in its notice's suggested
    command (a file changed since the last ingest: "run `assistant ingest --store s`")."""
    if answer.notice:
        answer.notice = name_options(answer.notice, args)
    return answer


def require_ingested(bot: Assistant) -> None:
    """Raise the "store is empty" error unless the store holds this corpus's chunks, without
    creating anything: no store folders, no collection. While the first ingest runs, wait
    briefly for it, then say how far it is instead."""
    settings = bot.settings

    def ingested() -> bool:
        if not settings.chroma_url and not StoreLayout(settings.store).chroma_db.is_file():
            return False
        for _ in range(3):
            bot.store.refresh()
            try:
                if bot.store.exists() and bot.store.count() > 0:
                    return True
            except AssistantError:
                if bot.store.current_generation() == bot.store.generation:
                    raise
                continue  # a rebuild switched generations meanwhile: look at the new one
            if bot.store.current_generation() == bot.store.generation:
                return False
        return False

    if ingested() or (bot.store.wait_for_ingest() and ingested()):
        return
    raise AssistantError(bot.store.ingest_notice(complete_index=False)
                         or "the store is empty: run `assistant ingest` first")


def _ask(bot: Assistant, args: argparse.Namespace) -> int:
    bot.check_question(args.question)  # a bad question is the error, whatever the store
    limits = date_limits(args)
    require_ingested(bot)
    if bot.settings.llm_enabled and not args.json:
        stream = _Stream()
        stream.finish(with_options(bot.ask(args.question, on_token=stream, **limits), args))
        return 0
    answer = with_options(bot.ask(args.question, **limits), args)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_answer(answer))
    return 0


def _chat(bot: Assistant, args: argparse.Namespace) -> int:
    """A conversation on stdin. At a terminal: a greeting, a ``> `` prompt and a blank line
    after each answer; piped: only the replies, a blank line between them. The index and the
    models load before the first question (``Assistant.prepare``). The error of one question
    is its reply, and the conversation goes on."""
    require_ingested(bot)  # also: an unreachable server fails at start, not at each question
    with contextlib.suppress(AssistantError):  # then the first question says what is wrong
        bot.prepare()
    with contextlib.suppress(AttributeError, ValueError, OSError):
        # Bytes that are not text become characters the question cleaner drops.
        sys.stdin.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]
    session = bot.chat()
    for key, value in date_limits(args).items():
        setattr(session, key, value)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Ask about the articles. Commands: /reset, /quit.")
    wrote = False  # piped: something was printed, so the next reply is set apart

    def reply_starts() -> None:
        nonlocal wrote
        if wrote and not interactive:
            print(flush=True)
        wrote = True

    while True:
        try:
            line = input("> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            if interactive:
                print()  # end the prompt's line
            return 0
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            session.reset()
            reply_starts()
            print("(conversation cleared)", flush=True)
            continue
        stream = _Stream(on_start=reply_starts) if bot.settings.llm_enabled else None
        try:
            answer = session.send(line, on_token=stream)
        except AssistantError as exc:
            reply_starts()
            print(f"error: {name_options(str(exc), args)}", flush=True)
            continue
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | BrokenPipeError):
                raise
            # A store or server failure ends this answer, not the conversation.
            logging.getLogger(__name__).info("answering failed", exc_info=True)
            reply_starts()
            print(f"error: {unexpected_message(exc)}", flush=True)
            continue
        answer = with_options(answer, args)
        if stream is not None:
            stream.finish(answer)
        else:
            reply_starts()
            print(format_answer(answer), flush=True)
        if interactive:
            print()


def _serve(bot: Assistant, args: argparse.Namespace) -> int:
    from assistant.web import check_bind, serve

    check_bind(bot.settings.host, bot.settings.auth)  # refuse an unsafe bind before ingesting
    if not args.no_ingest:
        print(bot.ingest().summary(), flush=True)
    else:
        bot.status()  # an unreachable or damaged store is an error now, not on each question
    with contextlib.suppress(AssistantError):  # an empty store: the page says so per question
        bot.prepare()  # the index and the models load now, not on the first question
    return serve(bot, watch=not args.no_watch)


def _eval(bot: Assistant, args: argparse.Namespace) -> int:
    from assistant.evals import run_eval_command

    return int(run_eval_command(args, bot))


def unexpected_message(exc: BaseException) -> str:
    """One line for an error that is not an AssistantError."""
    text = " ".join(str(exc).split())
    text = f": {text[:200]}" if text else ""
    return f"unexpected {type(exc).__name__}{text} (run with -v for details)"


COMMANDS = {"ingest": _ingest, "ask": _ask, "chat": _chat, "serve": _serve, "eval": _eval}


MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas at ``arenas`` for this process, unless ``MALLOC_ARENA_MAX``
    is set. By default glibc gives each thread that allocates an arena of its own (up to
    eight per core), and the embedding model and Chroma run native threads: with two,
    `assistant ingest` of 10,000 chunks with minilm-q8 peaked at 980 MiB against 1,071. A
    no-op where the C library has no ``mallopt``."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``assistant`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for noisy in ("chromadb", "httpx", "bm25s", "llama_index"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    limit_malloc_arenas()
    started = time.perf_counter()
    try:
        from assistant.core import Assistant

        bot = Assistant(settings_from_args(args))
        code = COMMANDS[args.command](bot, args)
    except AssistantError as exc:
        print(f"assistant: error: {name_options(str(exc), args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("assistant: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`assistant ask … | head -1`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except BaseException as exc:
        # Never a traceback (Chroma's Rust core even raises BaseException-derived panics):
        # one line, details with -v.
        if isinstance(exc, SystemExit | GeneratorExit):
            raise
        logging.getLogger(__name__).info("%s failed", args.command, exc_info=True)
        print(f"assistant: error: {unexpected_message(exc)}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info("%s took %.2f s", args.command,
                                     time.perf_counter() - started)
    return code


if __name__ == "__main__":
    sys.exit(main())
