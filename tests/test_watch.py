"""The live corpus (assistant/watch.py): which changes count, the watcher's status line, new,
edited and deleted articles answered within seconds, failed ingests reported and retried,
and `assistant serve` with and without --no-watch (real processes, marked slow)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from watchfiles import Change

from assistant.corpus import read_text
from assistant.settings import AssistantError, Settings
from assistant.types import IngestReport
from assistant.watch import ArticleFilter, CorpusWatcher, WatchStatus, counts, error_line
from tests.conftest import ARTICLE, build_bot

LIBRARY = """Port Wren Library Extends Its Opening Hours

The Port Wren public library will stay open until nine in the evening on weekdays from March.
The head librarian, Tomas Keel, said 1,200 residents signed the petition for longer hours.
The town council agreed to pay for two more staff members.
"""
FERRY = """Ferry Service to Gull Island Resumes

The ferry between Port Wren and Gull Island resumed on Tuesday after the winter storms.
The captain, Ines Varga, said the crossing now takes forty minutes.
"""
BAKERY = """Bakery on Quay Street Wins Regional Prize

The Quay Street bakery in Port Wren won the regional bread prize on Friday.
Its owner, Marta Lind, said the winning loaf was a rye sourdough baked for 19 hours.
"""
Q_PETITION = "How many residents signed the petition for longer library hours?"
Q_FERRY = "How long does the ferry crossing to Gull Island take?"
Q_BAKERY = "Who owns the Quay Street bakery?"


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.1)


def save(path: Path, text: str) -> None:
    """Write ``path`` at once: a hidden temporary file renamed over it."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# --------------------------------------------------------------------------------------------
# Which changes count
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "rel", "expected"), [
    (Change.added, "new.txt", True),
    (Change.modified, "notes/letter.MD", True),
    (Change.deleted, "old.txt", True),
    (Change.deleted, "moved-away-folder", True),
    (Change.added, "image.png", False),
    (Change.deleted, "image.png", False),
    (Change.modified, ".hidden.txt", False),
    (Change.added, ".git/objects/x.txt", False),
    (Change.added, "sub/.cache/a.md", False),
    (Change.added, ".#letter.txt", False),
    (Change.added, "#letter.txt#", False),
    (Change.added, "letter.txt~", False),
    (Change.added, "letter.txt.swp", False),
    (Change.added, "letter.txt.tmp", False),
    (Change.added, "download.txt.part", False),
    (Change.added, "store/chroma/x.txt", False),
    (Change.deleted, "store/chroma/3f2a", False),
])
def test_the_filter_keeps_articles_and_folders_only(tmp_path: Path, change: Change, rel: str,
                                                     expected: bool) -> None:
    keep = ArticleFilter(tmp_path, ignore=(tmp_path / "store",))
    assert keep(change, str(tmp_path / rel)) is expected


def test_the_filter_takes_new_folders_and_the_corpus_itself_but_nothing_outside(
        tmp_path: Path) -> None:
    corpus = tmp_path / ".hidden-parent" / "corpus"  # hidden above the corpus does not count
    (corpus / "sub").mkdir(parents=True)
    keep = ArticleFilter(corpus)
    assert keep(Change.added, str(corpus / "sub"))
    assert keep(Change.added, str(corpus / "a.txt"))
    assert keep(Change.deleted, str(corpus))
    assert not keep(Change.added, str(tmp_path / "elsewhere.txt"))
    assert not keep(Change.modified, str(corpus / "sub"))  # a folder's own time stamp
    assert keep(Change.modified, str(corpus / ".." / "corpus" / "a.txt"))
    assert ArticleFilter(corpus / "sub" / "..")(Change.added, str(corpus / "a.txt"))


def test_a_corpus_given_with_dots_is_watched(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "other").mkdir()
    bot = FlakyBot(tmp_path / "other" / ".." / "corpus", [])
    with CorpusWatcher(bot, debounce_ms=300, step_ms=50) as watcher:  # type: ignore[arg-type]
        assert watcher.wait_ready()
        save(tmp_path / "corpus" / "a.txt", "An article.")
        wait_for(lambda: bot.calls == 1, 10, "the change seen")


# --------------------------------------------------------------------------------------------
# The status line
# --------------------------------------------------------------------------------------------
def test_the_status_says_what_the_last_ingest_did() -> None:
    at = time.mktime((2026, 3, 1, 10, 42, 5, 0, 0, -1))
    base = WatchStatus(corpus=Path("corpus"), watching=True)
    assert base.summary() == "watching corpus/"
    assert WatchStatus(corpus=Path("/srv/news/"), watching=False).summary() == (
        "not watching /srv/news/")
    updated = WatchStatus(corpus=Path("corpus"), watching=True, ingests=1, last_time=at,
                          updated_time=at, updated=(0, 1, 0), last_changed=(0, 1, 0))
    assert updated.summary() == "watching corpus/ · updated 10:42:05: 1 changed"
    busy = WatchStatus(corpus=Path("corpus"), watching=True, ingesting=True)
    assert busy.summary() == "watching corpus/ · indexing changes…"
    failed = WatchStatus(corpus=Path("corpus"), watching=True, last_time=at,
                         error="indexing failed: disk full")
    assert failed.summary() == ("watching corpus/ · indexing failed: disk full "
                                "(10:42:05; will retry)")
    skipped = WatchStatus(corpus=Path("corpus"), watching=True, last_skipped=2)
    assert skipped.summary() == "watching corpus/ · 2 files skipped"
    assert counts(1, 0, 2) == "1 new, 2 removed" and counts(0, 0, 0) == "no changes"


def test_an_error_is_one_line() -> None:
    assert error_line(AssistantError("the store is locked")) == "the store is locked"
    assert error_line(RuntimeError("boom\nTraceback (most recent call last):")) == (
        "RuntimeError: boom")
    assert error_line(OSError()) == "OSError"
    long = error_line(ValueError("x" * 1000))
    assert len(long) <= 300 and long.endswith("…")
    assert error_line(AssistantError("two\nlines\x1b[31m")) == "two lines\\x1b[31m"


def test_the_page_shows_the_watcher_and_refreshes_it(article_bot: Any) -> None:
    import gradio as gr

    from assistant import web

    watcher = CorpusWatcher(article_bot)
    assert watcher.lock is None
    app = web.build_app(article_bot, examples=[], watcher=watcher)
    assert watcher.lock is not None  # the page's write lock: questions wait for the ingest
    timers = [b for b in app.blocks.values() if isinstance(b, gr.Timer)]
    assert len(timers) == 1 and timers[0].value == web.app.STATUS_REFRESH_S
    page = web._Page(article_bot)
    page.watcher = watcher
    html = page.status()
    assert "<b>1</b> article" in html and "not watching" in html and "qa-status-bad" in html
    with watcher:
        assert watcher.wait_ready()
        folder = f"watching {article_bot.settings.corpus}/"
        assert f"<span class='qa-status qa-watch'>{folder}</span>" in page.status()
        watcher._set(ingesting=True)
        assert "indexing changes…" in page.status() and "qa-status-busy" in page.status()
        watcher._set(ingesting=False, error="indexing failed: <disk> full",
                     last_time=time.time())
        assert "indexing failed: &lt;disk&gt; full" in page.status()
    # Articles the watcher adds lead the examples of pages opened afterwards.
    from assistant.types import IngestReport

    (article_bot.settings.corpus / "ferry-new.txt").write_text(
        "Gull Island Ferry Timetable\n\nThe Harbour Board has approved a new ferry timetable "
        "for Gull Island. The first crossing leaves at seven.\n", encoding="utf-8")
    assert watcher.on_ingest is not None
    try:
        article_bot.ingest()
        watcher.on_ingest(IngestReport(new=1, added=["ferry-new.txt"]))
        examples = watcher.on_ingest.__self__.examples  # type: ignore[attr-defined]
        assert examples[0] == "Who has approved a new ferry timetable for Gull Island?"
    finally:
        (article_bot.settings.corpus / "ferry-new.txt").unlink()
        article_bot.ingest()
    # Without a watcher: no timer, the status line as before.
    plain = web.build_app(article_bot, examples=[])
    assert not [b for b in plain.blocks.values() if isinstance(b, gr.Timer)]
    assert "watching" not in web._Page(article_bot).status()


# --------------------------------------------------------------------------------------------
# A watcher over a real corpus
# --------------------------------------------------------------------------------------------
@pytest.fixture
def watched(tmp_path: Path, embed_model: Any) -> Iterator[tuple[Any, CorpusWatcher]]:
    bot = build_bot(tmp_path, embed_model, {"library.txt": LIBRARY, "ferry.txt": FERRY})
    watcher = CorpusWatcher(bot, debounce_ms=500, step_ms=100).start()
    assert watcher.wait_ready(), "the watcher did not start watching"
    yield bot, watcher
    watcher.stop()
    assert not watcher.status().watching


def _cites(answer: Any, path: str, text: str, corpus: Path) -> bool:
    """``answer`` says ``text``, citing ``path`` with exact quotes."""
    said = f"{answer.short_answer or ''} {answer.text}"
    if answer.abstained or text not in said or answer.notice:
        return False
    assert all(read_text(corpus / c.path)[c.start:c.end] == c.quote for c in answer.citations)
    return any(c.path == path for c in answer.citations)


def test_new_edited_and_deleted_articles_are_answered_within_seconds(watched: Any) -> None:
    bot, watcher = watched
    corpus = Path(bot.settings.corpus)
    assert _cites(bot.ask(Q_PETITION), "library.txt", "1,200", corpus)
    assert "Marta Lind" not in bot.ask(Q_BAKERY).text

    (corpus / "bakery.txt").write_text(BAKERY, encoding="utf-8")
    wait_for(lambda: _cites(bot.ask(Q_BAKERY), "bakery.txt", "Marta Lind", corpus), 30,
             "the new article answers")
    assert wait_for(lambda: watcher.status().updated == (1, 0, 0), 10)
    assert "updated" in watcher.status().summary() and "1 new" in watcher.status().summary()

    # Saved as editors save: a temporary file renamed over the article, one change (written
    # in place, a batch might see the file empty first and count it removed, then new).
    save(corpus / "library.txt", LIBRARY.replace("1,200", "1,850"))
    wait_for(lambda: _cites(bot.ask(Q_PETITION), "library.txt", "1,850", corpus), 30,
             "the edited number")
    assert wait_for(lambda: watcher.status().updated == (0, 1, 0), 10)

    assert _cites(bot.ask(Q_FERRY), "ferry.txt", "forty minutes", corpus)
    (corpus / "ferry.txt").unlink()
    wait_for(lambda: "ferry.txt" not in bot.store.stored_docs(), 30, "the deletion ingested")
    answer = bot.ask(Q_FERRY)
    assert "ferry.txt" not in {c.path for c in answer.citations} and not answer.notice
    assert wait_for(lambda: watcher.status().updated == (0, 0, 1), 10)
    status = watcher.status()
    assert status.error is None and status.watching and not status.ingesting
    assert status.ingests >= 3


def test_temporary_and_other_files_start_no_ingest(watched: Any) -> None:
    bot, watcher = watched
    corpus = Path(bot.settings.corpus)
    (corpus / ".library.txt.swp").write_text("x")
    (corpus / "photo.jpg").write_bytes(b"\xff\xd8")
    (corpus / "library.txt~").write_text(LIBRARY)
    save(corpus / "marker.txt", BAKERY)  # an article: the one change that counts
    wait_for(lambda: watcher.status().updated == (1, 0, 0), 30, "the article ingested")
    assert watcher.status().ingests == 1


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------
class FlakyBot:
    """A stand-in for Assistant whose ingest fails while ``failures`` lasts."""

    def __init__(self, corpus: Path, failures: list[BaseException]) -> None:
        self.settings = Settings(corpus=corpus, store=corpus.parent / "store")
        self.failures = failures
        self.calls = 0
        self.lock = threading.Lock()

    def ingest(self) -> IngestReport:
        with self.lock:
            self.calls += 1
            if self.failures:
                raise self.failures.pop(0)
        return IngestReport(new=1)


class FakePanic(BaseException):
    """Like pyo3's PanicException (Chroma's Rust core): not an Exception."""


def test_a_failing_ingest_is_reported_and_the_watcher_keeps_going(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    bot = FlakyBot(corpus, [AssistantError("the store is locked by another ingest"),
                            FakePanic("called `Result::unwrap()` on an `Err` value")])
    with CorpusWatcher(bot, debounce_ms=300, step_ms=50, retry=0.5) as watcher:  # type: ignore[arg-type]
        assert watcher.wait_ready()
        (corpus / "a.txt").write_text("An article.")
        status = wait_for(lambda: (s := watcher.status()).error and s, 10, "the first failure")
        assert status.error == "indexing failed: the store is locked by another ingest"
        assert status.watching and "will retry" in status.summary()
        # Retried without another change: the second failure (not even an Exception) is
        # reported too, then the third try succeeds and clears the error.
        wait_for(lambda: "FakePanic" in (watcher.status().error or ""), 10, "the retry")
        wait_for(lambda: watcher.status().updated == (1, 0, 0), 10, "the success")
        status = watcher.status()
        assert status.error is None and status.ingests == 3 and status.watching
        # And it still watches.
        (corpus / "b.txt").write_text("Another article.")
        wait_for(lambda: watcher.status().ingests == 4, 10, "the next change")
    assert not watcher.status().watching


def test_the_corpus_folder_removed_and_made_again_is_watched_again(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("An article.")
    bot = FlakyBot(corpus, [])
    with CorpusWatcher(bot, debounce_ms=300, step_ms=50, retry=0.3) as watcher:  # type: ignore[arg-type]
        assert watcher.wait_ready()
        shutil.rmtree(corpus)
        wait_for(lambda: "corpus directory not found" in (watcher.status().error or ""), 10,
                 "the missing folder reported")
        corpus.mkdir()
        calls = bot.calls
        (corpus / "b.txt").write_text("Another article.")
        wait_for(lambda: watcher.status().error is None and bot.calls > calls, 10,
                 "the folder watched again")
        calls = bot.calls
        (corpus / "c.txt").write_text("A third article.")
        wait_for(lambda: bot.calls > calls, 10, "a change in the new folder")


def test_stop_ends_the_thread(tmp_path: Path) -> None:
    bot = FlakyBot(tmp_path, [])
    watcher = CorpusWatcher(bot).start()  # type: ignore[arg-type]
    assert watcher.wait_ready()
    started = time.monotonic()
    watcher.stop()
    assert not watcher.status().watching and time.monotonic() - started < 5
    assert bot.calls == 0


# --------------------------------------------------------------------------------------------
# `assistant serve` in a process of its own
# --------------------------------------------------------------------------------------------
class Served:
    """``assistant serve`` on a free port over ``corpus``; stdout lines are collected."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        from tests.load_web import free_port

        self.corpus = tmp_path / "corpus"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
        env.update(ANONYMIZED_TELEMETRY="False", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.err_path = tmp_path / "serve.err"
        self._err = self.err_path.open("w")  # a file: an undrained pipe would block
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.cli", "serve", "--corpus", str(self.corpus),
             "--store", str(tmp_path / "store"), "--port", str(self.port), *extra],
            cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE,
            stderr=self._err, text=True)
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 180
        while not any("Chat page:" in line for line in self.lines):
            line = self.proc.stdout.readline()
            assert line, f"serve exited: {self.proc.wait()} {self.err_path.read_text()[-2000:]}"
            self.lines.append(line)
            assert time.monotonic() < deadline, "the page did not come up"
        from gradio_client import Client

        self.client = Client(f"http://127.0.0.1:{self.port}/", verbose=False,
                             analytics_enabled=False)

    def ask(self, question: str) -> dict[str, Any]:
        return self.client.predict(question, api_name="/ask")

    def status_line(self) -> str:
        """The page's status line as its timer fetches it (the tick event, over HTTP)."""
        import json
        import urllib.request

        base = f"http://127.0.0.1:{self.port}/"
        with urllib.request.urlopen(base + "config", timeout=30) as r:
            config = json.load(r)
        tick = next(d for d in config["dependencies"]
                    if any(event == "tick" for _, event in d["targets"]))
        body = {"data": [], "fn_index": tick["id"], "trigger_id": tick["targets"][0][0],
                "session_hash": "watch-test"}
        request = urllib.request.Request(base + "gradio_api/run/predict",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return str(json.load(r)["data"][0])

    def stop(self) -> int:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._err.close()
        return code


def _page_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ARTICLE, corpus / ARTICLE.name)
    (corpus / "library.txt").write_text(LIBRARY, encoding="utf-8")
    return corpus


def _says(answer: dict[str, Any], text: str, corpus: Path) -> bool:
    """The page's answer says ``text``, citing library.txt, every quote the file's span now."""
    said = f"{answer.get('short_answer') or ''} {answer['answer']}"
    if answer["abstained"] or text not in said:
        return False
    for c in answer["citations"]:
        assert read_text(corpus / c["file"])[c["start"]:c["end"]] == c["quote"]
    return any(c["file"] == "library.txt" for c in answer["citations"])


@pytest.mark.slow
def test_assistant_serve_answers_from_an_edited_file_within_seconds(tmp_path: Path) -> None:
    corpus = _page_corpus(tmp_path)
    served = Served(tmp_path)
    try:
        assert any(f"Watching {corpus}/ for changes" in line for line in served.lines)
        assert _says(served.ask(Q_PETITION), "1,200", corpus)
        (corpus / "library.txt").write_text(LIBRARY.replace("1,200", "1,850"),
                                            encoding="utf-8")
        edited = time.monotonic()

        def edited_answer() -> dict[str, Any] | None:
            answer = served.ask(Q_PETITION)
            return answer if _says(answer, "1,850", corpus) else None

        answer = wait_for(edited_answer, 30, "the page answers from the edited file")
        print(f"\nthe edit answered after {time.monotonic() - edited:.1f} s")
        assert not answer.get("notice")  # ingested, not merely noticed as changed
        quote = next(c for c in answer["citations"] if "1,850" in c["quote"])
        assert quote["file"] == "library.txt"
        assert read_text(corpus / "library.txt")[quote["start"]:quote["end"]] == quote["quote"]
        status = served.status_line()
        assert f"watching {corpus}/ · updated " in status and ": 1 changed</span>" in status
    finally:
        code = served.stop()
    assert code == 0, served.err_path.read_text()[-2000:]


@pytest.mark.slow
def test_assistant_serve_no_watch_does_not_pick_up_the_edit(tmp_path: Path) -> None:
    corpus = _page_corpus(tmp_path)
    served = Served(tmp_path, "--no-watch")
    try:
        assert not any("Watching" in line for line in served.lines)
        with pytest.raises(StopIteration):  # no watcher: no timer refreshing the status line
            served.status_line()
        assert _says(served.ask(Q_PETITION), "1,200", corpus)
        (corpus / "library.txt").write_text(LIBRARY.replace("1,200", "1,850"),
                                            encoding="utf-8")
        # The page sees the file changed (the notice) but its index stays as it was: for
        # well beyond the time the watcher takes, no answer says the new number.
        wait_for(lambda: "changed since the last ingest" in (served.ask(Q_PETITION).get(
            "notice") or ""), 30, "the changed file noticed")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            answer = served.ask(Q_PETITION)
            assert "1,850" not in f"{answer.get('short_answer')} {answer['answer']}"
            assert "changed since the last ingest" in (answer.get("notice") or "")
            time.sleep(0.5)
    finally:
        code = served.stop()
    assert code == 0, served.err_path.read_text()[-2000:]
