"""Reliability across processes (issue 7): ``kill -9`` during ingest, two writers on one
store, a Chroma server that is down or restarted, and the command line's answers to bad
input and damaged stores — one line, exit 2, never a traceback.

Every test here starts processes of its own (about 3 s each to load the model).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.core import Assistant
from assistant.corpus import read_text
from assistant.layout import ChunkRecord, ingest_lock, node_meta
from assistant.settings import AssistantError
from tests.conftest import ARTICLE
from tests.test_reliability import Q24, close, make_corpus, new_bot

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ANONYMIZED_TELEMETRY="False", HF_HUB_OFFLINE="1", **extra)
    return env


def cli(*args: str | bytes, env: dict[str, str] | None = None, input: str | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], cwd=ROOT,
                          env=env or cli_env(), input=input, capture_output=True,
                          timeout=timeout, text=True, errors="backslashreplace")


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("assistant: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def store_state(corpus: Path, store: Path, embed_model) -> dict:
    """What a store holds, opened as a new process would open it."""
    bot = new_bot(corpus, store, embed_model)
    s = bot.store
    chunks = s.chunks.get(include=["embeddings", "metadatas"])
    stored = s.sentence_vectors(chunks["ids"])
    records = [ChunkRecord.from_metadata(node_meta(m), vectors=stored.get(i))
               for i, m in zip(chunks["ids"], chunks["metadatas"], strict=True)]
    # The vector index answers for every chunk: each finds itself first.
    found = s.chunks.query(query_embeddings=chunks["embeddings"], n_results=1)["ids"]
    bm25 = store / "bm25" / s.name / "fingerprint"
    words = store / "words" / s.name / "fingerprint"
    state = {
        "chunk_ids": sorted(chunks["ids"]),
        "chunk_count": s.count(),
        # Every chunk has the vectors of all its sentences, and no others are kept.
        "sentence_records": s.sentence_count(),
        "sentence_vectors": sorted((r.doc_id, r.index, sum(r.sentence_vector(x) is not None
                                                          for x in r.sentences))
                                   for r in records),
        "docs": {d: (v.sha256, v.n_chunks, v.present) for d, v in s.stored_docs().items()},
        "fingerprint": s.fingerprint(),
        "bm25": bm25.read_text() if bm25.exists() else None,
        "words": words.read_text() if words.exists() else None,
        "self_hits": sum(f == [i] for i, f in zip(chunks["ids"], found, strict=True)),
        "segments": len([p for p in (store / "chroma").iterdir() if p.is_dir()]),
        "leftovers": sorted(str(p.relative_to(store)) for p in store.rglob(".*")),
    }
    close(bot)
    return state


# -- kill -9 during ingest ------------------------------------------------------------------------
class Ingest:
    """``assistant ingest -v`` in a process of its own; its log lines are the kill points."""

    def __init__(self, corpus: Path, store: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.cli", "ingest", "-v", "--corpus", str(corpus),
             "--store", str(store), *extra],
            cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.events: list[str] = []
        self.done = False
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "assistant.ingest:" in line:
                with self._cv:
                    self.events.append(line.split("assistant.ingest: ", 1)[1].strip())
                    self._cv.notify_all()
        with self._cv:
            self.done = True
            self._cv.notify_all()

    def wait_for_event(self, k: int, timeout: float = 120) -> str | None:
        with self._cv:
            self._cv.wait_for(lambda: len(self.events) > k or self.done, timeout)
            return self.events[k] if len(self.events) > k else None

    def kill(self) -> bool:
        """SIGKILL; True when the process was still running."""
        alive = self.proc.poll() is None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        return alive


def test_kill_9_during_ingest_then_reingest_equals_a_clean_ingest(tmp_path: Path,
                                                                 embed_model) -> None:
    """Ingest is killed at random points — while embedding, between and inside the writes
    of an article, while building the BM25 index — from an empty store, from a store of
    an older corpus, and during ``--rebuild``. Each time the next ingest must leave exactly
    what a clean ingest leaves: the same chunks and sentences, no duplicates, no orphans,
    the same fingerprint, BM25 index and word vectors, and no temporary leftovers."""
    # RELIABILITY_TRIALS / RELIABILITY_SEED run a longer soak by hand.
    trials = max(10, int(os.environ.get("RELIABILITY_TRIALS", "10")))
    rnd = random.Random(int(os.environ.get("RELIABILITY_SEED", "20261126")))
    old = make_corpus(tmp_path / "old" / "corpus")
    new = tmp_path / "new" / "corpus"  # same folder name: same collection
    shutil.copytree(old, new)
    for name in ("report-00.txt", "report-01.txt"):
        (new / name).write_text((new / name).read_text() + "\nA correction followed.\n")
    (new / "report-02.txt").unlink()
    (new / "extra.txt").write_text("Extra report\n\nThe harbour reopened on Monday after "
                                   "repairs. Officials counted 42 boats.\n")
    base = new_bot(old, tmp_path / "base", embed_model)
    base.ingest()
    close(base)
    clean = new_bot(new, tmp_path / "clean", embed_model)
    clean.ingest()
    close(clean)
    want = store_state(new, tmp_path / "clean", embed_model)
    assert want["chunk_count"] == len(set(want["chunk_ids"])) > 5
    assert want["self_hits"] == want["chunk_count"]

    results = []
    started = time.monotonic()
    for trial in range(trials):
        kind = ("fresh", "incremental", "rebuild")[trial % 3]
        store = tmp_path / f"trial-{trial}"
        if kind != "fresh":
            shutil.copytree(tmp_path / "base", store)
        run = Ingest(new, store, *(["--rebuild"] if kind == "rebuild" else []))
        if trial % 4 == 3:  # any moment at all, startup included
            aim = "timed"
            time.sleep(rnd.uniform(0.2, 6.0))
        else:  # just after a step of the run began (embedding, each write, BM25)
            k = rnd.randrange(0, 5)
            aim = f"event {k}"
            run.wait_for_event(k)
            time.sleep(rnd.uniform(0, 0.08))
        killed = run.kill()
        last = run.events[-1] if run.events else "start-up"
        recovery = new_bot(new, store, embed_model)
        report = recovery.ingest()
        close(recovery)
        got = store_state(new, store, embed_model)
        diff = sorted(k for k in want if got[k] != want[k])
        results.append((trial, kind, aim, killed, last, report.summary(), diff))
        assert time.monotonic() - started < 40 * trials, "crash trials are taking too long"
    table = "\n".join(f"  {t:2} {kind:11} {aim:8} killed={killed!s:5} after {last!r}: "
                      f"{summary} {'OK' if not diff else 'DIFFERS: ' + ', '.join(diff)}"
                      for t, kind, aim, killed, last, summary, diff in results)
    print(f"\ncrash trials ({time.monotonic() - started:.0f} s):\n{table}")
    assert all(not r[-1] for r in results), table
    assert sum(r[3] for r in results) >= trials // 2, "most trials must kill a live ingest"


# -- two writers ----------------------------------------------------------------------------------
def test_two_ingests_at_once_on_one_store(tmp_path: Path, embed_model) -> None:
    corpus = make_corpus(tmp_path / "corpus", n=4, sentences=8)
    store = tmp_path / "store"
    args = ["ingest", "--json", "--corpus", str(corpus), "--store", str(store)]
    procs = [subprocess.Popen([sys.executable, "-m", "assistant.cli", *args], cwd=ROOT,
                              env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    reports = sorted((json.loads(out) for out, _ in outs), key=lambda r: -r["new"])
    # One did the work; the other waited for the lock and found everything current.
    assert (reports[0]["new"], reports[1]["new"], reports[1]["unchanged"]) == (4, 0, 4)
    state = store_state(corpus, store, embed_model)
    clean = new_bot(corpus, tmp_path / "clean", embed_model)
    clean.ingest()
    close(clean)
    want = store_state(corpus, tmp_path / "clean", embed_model)
    for key in ("chunk_ids", "chunk_count", "sentence_vectors", "sentence_records",
                "docs", "fingerprint", "bm25"):
        assert state[key] == want[key], key


def test_second_writer_waits_for_the_lock_or_gives_up_clearly(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus", n=1, sentences=3)
    store = tmp_path / "store"
    args = ["ingest", "--corpus", str(corpus), "--store", str(store)]
    with ingest_lock(store, timeout=1):  # another writer holds the store
        impatient = subprocess.Popen([sys.executable, "-m", "assistant.cli", *args], cwd=ROOT,
                                     env=cli_env(ASSISTANT_LOCK_TIMEOUT="1"),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        patient = subprocess.Popen([sys.executable, "-m", "assistant.cli", *args], cwd=ROOT,
                                   env=cli_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        out, err = impatient.communicate(timeout=120)
        gave_up_after = time.monotonic() - t0
        time.sleep(1)
        assert patient.poll() is None, "the patient writer must still be waiting"
        # Neither opened the store before it had the lock: two processes creating one
        # Chroma database at once can fail.
        assert not (store / "chroma").exists()
    assert_one_line_error(subprocess.CompletedProcess(args, impatient.returncode, out, err),
                          "another ingest is running", "ASSISTANT_LOCK_TIMEOUT")
    assert gave_up_after < 60
    out, err = patient.communicate(timeout=240)
    assert patient.returncode == 0, err
    assert out.startswith("Ingested 1 article (1 new")


# -- a Chroma server ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChromaServer:
    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        chroma = Path(sys.executable).parent / "chroma"
        self.proc = subprocess.Popen(
            [str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port",
             str(self.port)], env=cli_env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1).read()
                return
            assert self.proc.poll() is None, "chroma run exited"
            time.sleep(0.1)
        raise TimeoutError("chroma run did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-data", _free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_chroma_server_restarted_during_a_chat_session(tmp_path: Path, corpus_dir: Path,
                                                        chroma_server: ChromaServer,
                                                        embed_model) -> None:
    done = cli("ingest", "--corpus", str(corpus_dir), "--store", str(tmp_path / "store"),
               "--chroma-url", chroma_server.url)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "store" / "chroma").exists()
    bot = Assistant(corpus=corpus_dir, store=tmp_path / "store", chroma_url=chroma_server.url)
    bot._embed = embed_model
    session = bot.chat()
    assert session.send(Q24).short_answer == "Eight"

    chroma_server.kill()
    with pytest.raises(AssistantError, match=f"Chroma server at {chroma_server.url}"):
        session.send(Q24)
    chroma_server.start()  # same port, same data
    # (The same question again would be a follow-up — "their" — that avoids turn 1's
    # sentence: ask a new one in the session, and the first through the same Assistant.)
    answer = session.send("Which court issued arrest warrants for Putin?")
    assert not answer.abstained and "Criminal Court" in answer.text
    for c in answer.citations:
        assert read_text(corpus_dir / c.path)[c.start : c.end] == c.quote
    assert bot.ask(Q24).short_answer == "Eight"
    assert bot.ingest().unchanged == 1


@pytest.mark.parametrize("command", [["ask", "How many children?"], ["ingest"], ["chat"],
                                     ["serve", "--no-ingest"]])
def test_unreachable_chroma_server_is_one_line_and_exit_2(tmp_path: Path, corpus_dir: Path,
                                                          command: list[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    done = cli(*command, "--corpus", str(corpus_dir), "--store", str(tmp_path / "store"),
               "--chroma-url", url, input="How many children?\n")
    assert_one_line_error(done, f"cannot reach the Chroma server at {url}")


# -- the command line -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_store(tmp_path_factory: pytest.TempPathFactory, embed_model) -> tuple[Path, Path]:
    """The real article ingested in-process; the CLI processes only read it."""
    root = tmp_path_factory.mktemp("reliability-cli")
    corpus = root / "corpus"
    corpus.mkdir()
    shutil.copy(ARTICLE, corpus / ARTICLE.name)
    bot = new_bot(corpus, root / "store", embed_model)
    bot.ingest()
    close(bot)
    return corpus, root / "store"


def test_cli_bad_questions(cli_store: tuple[Path, Path]) -> None:
    corpus, store = cli_store
    where = ["--corpus", str(corpus), "--store", str(store)]
    done = cli("ask", "x" * 100_000, *where)
    assert_one_line_error(done, "too long (100000 characters; the limit is 2000)")
    done = cli("ask", "How many children?" * 4, *where, env=cli_env(
        ASSISTANT_MAX_QUESTION_CHARS="50"))
    assert_one_line_error(done, "the limit is 50")
    # Control characters, terminal escapes and bytes that are not UTF-8 (NUL cannot be in
    # an argument): a normal answer.
    question = os.fsencode("How many\x01 children\x1b were reunited in the past 24 hours?\x7f")
    done = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "--json",
                           question + b"\xff\xfe", *where], cwd=ROOT, env=cli_env(),
                          capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["short_answer"] == "Eight"
    assert b"Traceback" not in done.stderr


def test_cli_chat_survives_hostile_lines(cli_store: tuple[Path, Path]) -> None:
    corpus, store = cli_store
    lines = [b"x" * 100_000, b"\x00\x00", b"?!?!", "😀 🔥".encode(), "Сколько детей?".encode(),
             b"How many\xff\xfe children?", b"\x1b[2J\x1b]0;title\x07", Q24.encode(), b"/quit"]
    done = subprocess.run([sys.executable, "-m", "assistant.cli", "chat", "--corpus",
                           str(corpus), "--store", str(store)], cwd=ROOT,
                          env=cli_env(PYTHONIOENCODING="utf-8:strict"),
                          input=b"\n".join(lines) + b"\n", capture_output=True, timeout=180)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert "Traceback" not in err + out
    assert "error: the question is too long" in out
    assert "error: the question is empty" in out
    assert "Eight children" in out


def test_cli_damaged_store_then_rebuild(tmp_path: Path, embed_model) -> None:
    corpus = make_corpus(tmp_path / "corpus", n=2, sentences=4)
    store = tmp_path / "store"
    where = ["--corpus", str(corpus), "--store", str(store)]
    bot = new_bot(corpus, store, embed_model)
    bot.ingest()
    close(bot)
    db = store / "chroma" / "chroma.sqlite3"
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)
    assert_one_line_error(cli("ask", "Who inspected the valley?", *where),
                          "assistant ingest --rebuild")
    done = cli("ingest", "--rebuild", *where)
    assert done.returncode == 0, done.stderr
    assert "Ingested 2 articles (2 new" in done.stdout
    assert "cannot be used" in done.stderr and "Traceback" not in done.stderr
    assert new_bot(corpus, store, embed_model).store.count() == 2


def test_cli_store_of_other_settings_is_refused_with_the_fix(tmp_path: Path,
                                                             embed_model) -> None:
    corpus = make_corpus(tmp_path / "corpus", n=1, sentences=4)
    where = ["--corpus", str(corpus), "--store", str(tmp_path / "store")]
    bot = new_bot(corpus, tmp_path / "store", embed_model)
    bot.ingest()
    close(bot)
    other = cli_env(ASSISTANT_CHUNK_TOKENS="120", ASSISTANT_CHUNK_OVERLAP_TOKENS="20")
    done = cli("ask", "Who inspected the valley?", *where, env=other)
    assert_one_line_error(done, "chunking='220/40'", "run `assistant ingest --rebuild`")
    done = cli("ingest", "--rebuild", *where, env=other)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Ingested 1 article (1 new")


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (skips unless the tests run as root, as
    CI's do)."""
    where.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_says_so_and_a_plain_ingest_finishes_once_there_is_room(
        tmp_path: Path, embed_model) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ARTICLE, corpus / ARTICLE.name)
    with small_disk(tmp_path / "store", "64m") as store:
        where = ["--corpus", str(corpus), "--store", str(store)]
        bot = new_bot(corpus, store, embed_model)
        bot.ingest()
        close(bot)
        used = shutil.disk_usage(store).used
        # Room for a few kilobytes more, not for two more articles of 150 sentences.
        subprocess.run(["mount", "-o", f"remount,size={used // 1024 + 100}k", str(store)],
                       check=True)
        make_corpus(corpus, n=2, sentences=150)
        done = cli("ingest", *where)
        assert_one_line_error(done, "is full", "free some space",
                              f"run `assistant ingest --corpus {corpus} --store {store}`")
        assert "--rebuild" not in done.stderr
        subprocess.run(["mount", "-o", "remount,size=64m", str(store)], check=True)
        done = cli("ingest", *where)
        assert done.returncode == 0, done.stderr
        assert "(2 new, 0 changed, 0 removed, 1 unchanged)" in done.stdout
        done = cli("ask", "--json", Q24, *where)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert not answer["abstained"] and answer["short_answer"] == "Eight"
        for c in answer["citations"]:
            assert read_text(corpus / c["path"])[c["start"]:c["end"]] == c["quote"]
