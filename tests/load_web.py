"""Helpers for the chat-page tests, and a bounded load test of the page's ``/ask`` endpoint.

Run against a running page::

    python tests/load_web.py http://127.0.0.1:7860/ --users 20 --questions 5

The tests import :func:`start_server` (the page on a free loopback port, over a copy of the
corpus) and :func:`run_load` from here.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import shutil
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
ARTIFACTS = ROOT / "test-artifacts"

# (question, text the answer must contain); all answered by the bundled article.
LOAD_QUESTIONS: list[tuple[str, str]] = [
    ("How many children were reunited in the past 24 hours?", "Eight"),
    ("How many of the reunited children had ended up in Russia because of the fighting?",
     "three"),
    ("Who personally responded to the First Lady's letter about children in the war?", "Putin"),
    ("Where was Putin visiting when he was handed the letter?", "Alaska"),
    ("Which body issued the arrest warrants for Putin and Maria Lvova-Belova?",
     "International Criminal Court"),
]


# --------------------------------------------------------------------------------------------
# Outbound network recorder (an audit hook: records, never blocks)
# --------------------------------------------------------------------------------------------
_CONTACTS: list[tuple[float, str, str]] = []
_HOOKED = False
_LOCAL_NAMES = {"localhost", "", None, "0.0.0.0", "::"}


def _is_local(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in _LOCAL_NAMES or (isinstance(host, str) and host.endswith(".localhost")):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event in ("socket.connect", "socket.sendto"):
        address = args[1]
        if not isinstance(address, tuple):  # unix sockets
            return
        host = address[0]
    else:
        return
    if not _is_local(host):
        _CONTACTS.append((time.time(), event, str(host)))


def record_network() -> None:
    """Start recording outbound (non-loopback) socket use in this process."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True


def external_contacts(since: float) -> list[tuple[str, str]]:
    """Non-loopback lookups and connections recorded since ``since`` (a ``time.time()``)."""
    return [(event, host) for t, event, host in list(_CONTACTS) if t >= since]


# --------------------------------------------------------------------------------------------
# A page on a free port
# --------------------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerHandle:
    """A running page: its URL, its Assistant and where its corpus and store live."""

    url: str
    bot: Any
    app: Any
    corpus: Path
    store: Path
    started: float
    startup_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        """Close the server."""
        self.app.close()


def start_server(workdir: Path, *, examples: list[str] | None = None,
                 credentials: tuple[str, str] | None = None, **overrides: Any) -> ServerHandle:
    """Copy the corpus into ``workdir``, ingest it into a store there and serve the page on a
    free loopback port (in this process, in Gradio's server thread)."""
    from assistant.core import Assistant
    from assistant.settings import Settings

    record_network()
    started = time.time()
    t0 = time.perf_counter()
    corpus, store = workdir / "corpus", workdir / "store"
    shutil.copytree(CORPUS, corpus)
    bot = Assistant(Settings(corpus=corpus, store=store, **overrides).normalised())
    bot.ingest()
    from assistant import web

    app = web.build_app(bot, examples=examples)
    url = web.launch(app, bot.settings, host="127.0.0.1", port=free_port(),
                     credentials=credentials)
    return ServerHandle(url=url, bot=bot, app=app, corpus=corpus, store=store,
                        started=started, startup_seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# The load test
# --------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """Outcome of :func:`run_load`."""

    users: int
    per_user: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def requests(self) -> int:
        """Questions sent."""
        return self.users * self.per_user

    def percentile(self, q: float) -> float:
        """Latency percentile (nearest rank), seconds."""
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        k = max(0, min(len(data) - 1, round(q / 100 * len(data) + 0.5) - 1))
        return data[k]

    def summary(self) -> str:
        """One line of figures."""
        mean = statistics.fmean(self.latencies) if self.latencies else float("nan")
        return (
            f"{self.users} users x {self.per_user} questions = {self.requests} requests in "
            f"{self.wall_seconds:.1f} s: answered {len(self.latencies)}, "
            f"errors {len(self.errors)}, wrong {len(self.wrong)}; latency p50 "
            f"{self.percentile(50):.2f} s, p95 {self.percentile(95):.2f} s, "
            f"max {max(self.latencies, default=float('nan')):.2f} s, mean {mean:.2f} s"
        )


def check_answer(answer: dict[str, Any], expected: str, corpus: Path | None) -> str | None:
    """Why ``answer`` (as the page's ``/ask`` returns it) is not a correct, validly cited
    answer containing ``expected``."""
    if answer.get("abstained"):
        return "abstained"
    text = f"{answer.get('short_answer') or ''} {answer.get('answer') or ''}"
    if expected.lower() not in text.lower():
        return f"{expected!r} not in {answer.get('answer')!r}"
    citations = answer.get("citations") or []
    if not citations:
        return "no citation"
    if corpus is not None:
        from assistant.corpus import read_text

        for c in citations:
            if read_text(corpus / c["file"])[c["start"]:c["end"]] != c["quote"]:
                return f"citation {c['n']} does not match its file"
    return None


def run_load(url: str, users: int = 20, per_user: int = 5, corpus: Path | None = None,
             timeout: float = 240.0, auth: tuple[str, str] | None = None) -> LoadReport:
    """``users`` concurrent gradio_client users each ask ``per_user`` questions of ``/ask``."""
    from gradio_client import Client

    report = LoadReport(users=users, per_user=per_user)
    lock = threading.Lock()
    barrier = threading.Barrier(users)

    def user(i: int) -> None:
        try:
            client = Client(url, verbose=False, auth=auth, analytics_enabled=False)
        except Exception as exc:
            with lock:
                report.errors.append(f"user {i}: connect: {exc}")
            return
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=60)
        for k in range(per_user):
            question, expected = LOAD_QUESTIONS[(i + k) % len(LOAD_QUESTIONS)]
            t = time.perf_counter()
            try:
                answer = client.predict(question, api_name="/ask")
            except Exception as exc:
                with lock:
                    report.errors.append(f"user {i}: {type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - t
            problem = check_answer(answer, expected, corpus)
            with lock:
                report.latencies.append(elapsed)
                if problem:
                    report.wrong.append(f"{question}: {problem}")
        client.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=users) as pool:
        futures = [pool.submit(user, i) for i in range(users)]
        deadline = time.monotonic() + timeout
        for f in futures:
            f.result(timeout=max(1.0, deadline - time.monotonic()))
    report.wall_seconds = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the load test against a running page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:7860/")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--corpus", type=Path, help="check citations against this corpus")
    parser.add_argument("--auth", help="user:password")
    args = parser.parse_args(argv)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    report = run_load(args.url, args.users, args.questions, args.corpus, auth=auth)
    print(report.summary())
    for line in (report.errors + report.wrong)[:10]:
        print("  ", line)
    return 0 if not report.errors and not report.wrong else 1


if __name__ == "__main__":
    sys.exit(main())
