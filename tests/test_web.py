"""The chat page: binding safety, uploads, rendering, and gradio_client tests against a live
page on a free loopback port (marked slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from assistant import web
from assistant.corpus import read_text
from assistant.settings import AssistantError, Settings
from assistant.types import Answer, Citation, Passage
from tests.load_web import (
    CORPUS,
    ROOT,
    ServerHandle,
    check_answer,
    external_contacts,
    free_port,
    run_load,
    start_server,
)

Q_24H = "How many children were reunited in the past 24 hours?"
ARTICLE = "melania-trump-putin-letter-children.txt"
LIGHTHOUSE = """Old Harbor Lighthouse Reopens After Restoration

The Old Harbor Lighthouse in Port Wren reopened to visitors on Saturday after a two-year \
restoration.
The lighthouse keeper, Agnes Morrow, said the restored lens can be seen from 22 nautical miles \
away.
The restoration cost 3.4 million dollars and was paid for by the Port Wren Heritage Trust.
"""

FISH_MARKET = """Port Wren Opens a Covered Fish Market

The covered fish market on the Port Wren quay opened on Monday after a year of building work.
More than 40 traders have moved their stalls into the new hall from the open quayside.
The Port Wren Harbour Board has approved a second hall for the winter season.
"""


# --------------------------------------------------------------------------------------------
# Binding safety (no server)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_hosts_need_no_password(host: str) -> None:
    assert web.is_loopback(host)
    assert web.check_bind(host, None) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "example.org"])
def test_non_loopback_host_without_auth_is_refused(host: str) -> None:
    with pytest.raises(AssistantError, match="--auth user:password"):
        web.check_bind(host, None)
    assert web.check_bind(host, "alice:s3cret:x") == ("alice", "s3cret:x")


@pytest.mark.parametrize("auth", ["alice", ":pw", "alice:", "  :x"])
def test_malformed_auth_is_refused(auth: str) -> None:
    with pytest.raises(AssistantError, match="user:password"):
        web.check_bind("0.0.0.0", auth)


def test_serve_refuses_before_building_anything() -> None:
    bot: Any = SimpleNamespace(settings=Settings(host="0.0.0.0", auth=None))
    with pytest.raises(AssistantError, match=r"refusing to serve on 0\.0\.0\.0"):
        web.serve(bot)


def test_cli_serve_on_all_interfaces_without_auth_exits_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from assistant.cli import main

    monkeypatch.delenv("ASSISTANT_AUTH", raising=False)
    monkeypatch.delenv("ASSISTANT_HOST", raising=False)
    code = main(["serve", "--host", "0.0.0.0", "--no-ingest", "--corpus", str(tmp_path),
                 "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "refusing to serve on 0.0.0.0" in err
    assert "Traceback" not in err


def test_gradio_stays_out_of_the_other_import_paths() -> None:
    code = ("import sys, assistant, assistant.cli, assistant.core, assistant.chat;"
            "assistant.cli.build_parser(); print('gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------------------------
# Uploads (no server)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "expected"), [
    ("letter.txt", "letter.txt"),
    ("Notes.MD", "Notes.md"),
    ("../../etc/passwd.txt", "passwd.txt"),
    ("/etc/cron.d/evil.md", "evil.md"),
    ("C:\\Windows\\system32\\x.txt", "x.txt"),
    ("..\\..\\boot.txt", "boot.txt"),
    (".hidden.txt", "hidden.txt"),
    ("...txt", "article.txt"),
    ("my article (final) ü.txt", "my-article-final.txt"),
    ("a\x00b.txt", "ab.txt"),
])
def test_safe_filename(name: str, expected: str) -> None:
    assert web.safe_filename(name) == expected


@pytest.mark.parametrize("name", ["/etc/passwd", "evil.py", "x.txt.exe", "archive.tar.gz", ""])
def test_safe_filename_refuses_other_types(name: str) -> None:
    with pytest.raises(AssistantError, match=r"not a \.txt or \.md file"):
        web.safe_filename(name)


def test_save_upload_never_overwrites_and_stays_inside(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    outside = tmp_path / "passwd.txt"
    outside.write_text("secret")
    first = web.save_upload(corpus, "../passwd.txt", b"one")
    second = web.save_upload(corpus, "passwd.txt", b"two")
    third = web.save_upload(corpus, str(outside), b"three")
    assert [p.name for p in (first, second, third)] == ["passwd.txt", "passwd-2.txt",
                                                       "passwd-3.txt"]
    assert all(p.parent == corpus.resolve() for p in (first, second, third))
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    assert outside.read_text() == "secret"


def test_save_upload_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    target = tmp_path / "victim.txt"
    target.write_text("keep")
    (corpus / "note.txt").symlink_to(target)
    saved = web.save_upload(corpus, "note.txt", b"new")
    assert saved.name == "note-2.txt"
    assert target.read_text() == "keep"


# --------------------------------------------------------------------------------------------
# Rendering (no server)
# --------------------------------------------------------------------------------------------
def test_highlight_shows_the_paragraph_and_escapes_everything() -> None:
    text = "Title\n\nFirst <b>para</b>.\n\nBefore & <script>x</script> QUOTE here. After.\n\nNext"
    start = text.index("QUOTE")
    out = web.highlight(text, start, start + len("QUOTE here."))
    assert out == ("Before &amp; &lt;script&gt;x&lt;/script&gt; <mark>QUOTE here.</mark>"
                   " After.")


def test_paragraph_of_a_long_block_is_narrowed_to_lines_then_a_window() -> None:
    lines = [f"Line {i} " + "word " * 30 for i in range(40)]
    text = "\n".join(lines)
    start = text.index("Line 20")
    ps, pe = web.paragraph_bounds(text, start, start + 7)
    assert text[ps:pe] == lines[20].strip()
    one = "x " * 3000 + "NEEDLE " + "y " * 3000
    s = one.index("NEEDLE")
    ps, pe = web.paragraph_bounds(one, s, s + 6, limit=200)
    assert ps <= s and pe >= s + 6 and pe - ps <= 200


def _citation(text: str, quote: str, path: str = "a.txt") -> Citation:
    start = text.index(quote)
    return Citation(n=1, doc_id=path, title="A <title>", path=path, start=start,
                    end=start + len(quote), quote=quote)


def test_render_answer_cites_with_marks_from_the_file(tmp_path: Path) -> None:
    text = "Head line\n\nIntro sentence. The key fact is 42. Trailing words.\n"
    (tmp_path / "a.txt").write_text(text)
    c = _citation(text, "The key fact is 42.")
    answer = Answer(question="q", text="The key fact is 42. [1]", short_answer="42",
                    citations=[c])
    out = web.render_answer(answer, web.SourceReader(tmp_path))
    assert '<sup class="qa-ref">[1]</sup>' in out
    assert "Intro sentence. <mark>The key fact is 42.</mark> Trailing words." in out
    assert "A &lt;title&gt;" in out and "a.txt" in out and "<details" in out
    assert "qa-date" not in out  # no date line in the article: none shown
    c.published = "2026-03-02"
    assert '<span class="qa-date">2026-03-02</span>' in web.render_answer(
        answer, web.SourceReader(tmp_path))
    partial = web.render_answer(answer, web.SourceReader(tmp_path), "The key", sources=False)
    assert "The key" in partial and "<mark>" not in partial


def test_render_answer_falls_back_to_the_passages(tmp_path: Path) -> None:
    text = "Para one.\n\nAlpha beta. Gamma delta.\n"
    c = _citation(text, "Gamma delta.", path="gone.txt")
    p = Passage(doc_id="gone.txt", title="T", path="gone.txt", start=11, end=len(text),
                text=text[11:])
    answer = Answer(question="q", text="Gamma delta. [1]", citations=[c], passages=[p])
    out = web.render_answer(answer, web.SourceReader(tmp_path))
    assert "Alpha beta. <mark>Gamma delta.</mark>" in out


def test_api_answer_is_to_dict_with_no_path_key_gradio_client_would_download() -> None:
    text = "Head line\n\nThe key fact is 42.\n"
    p = Passage(doc_id="a.txt", title="T", path="a.txt", start=0, end=len(text), text=text)
    answer = Answer(question="q", text="The key fact is 42. [1]", short_answer="42",
                    citations=[_citation(text, "The key fact is 42.")], passages=[p],
                    retrieved=["a.txt"], notice="n")
    data = web.api_answer(answer)

    def dicts(value: Any) -> list[dict]:
        if isinstance(value, dict):
            return [value, *(d for v in value.values() for d in dicts(v))]
        return [d for v in value for d in dicts(v)] if isinstance(value, list) else []

    assert not any("path" in d for d in dicts(data))
    expected = answer.to_dict()
    expected["citations"] = [{("file" if k == "path" else k): v for k, v in c.items()}
                             for c in expected["citations"]]
    assert data == expected
    assert data["citations"][0]["file"] == "a.txt"
    assert answer.to_dict()["citations"][0]["path"] == "a.txt"  # ask --json keeps "path"


def test_abstention_looks_different_and_is_marked_not_an_answer() -> None:
    p = Passage(doc_id="a.txt", title="A", path="a.txt", start=0, end=9, text="Close <one>")
    answer = Answer(question="q", text="The articles in the corpus do not answer this question.",
                    abstained=True, passages=[p])
    out = web.render_answer(answer, web.SourceReader(Path(".")))
    assert 'class="qa-abstain"' in out and "not an answer" in out
    assert "Close &lt;one&gt;" in out and "<mark>" not in out


def test_errors_are_one_escaped_line() -> None:
    assert web.error_message(AssistantError("the question is empty")) == "the question is empty"
    msg = web.error_message(ConnectionError("refused\nTraceback (most recent call last):"))
    assert msg == "the assistant failed (ConnectionError: refused)"
    assert "&lt;b&gt;" in web.render_error("<b>")
    assert web.render_user("<img src=x onerror=alert(1)>").startswith("&lt;img")


class _CountingBot:
    """An Assistant stand-in under a real ChatSession: answers every question with its own
    text, fails on "boom", and records every question it is asked (each one a retrieval)."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.asked: list[str] = []

    def check_question(self, question: str) -> str:
        return question.strip()

    def ask(self, question: str, context: str | None = None, **_: Any) -> Answer:
        self.asked.append(question)
        if question == "boom":
            raise RuntimeError("llm server down")
        return Answer(question=question, text=f"answer to {question}")

    def chat(self) -> Any:
        from assistant.chat import ChatSession

        return ChatSession(self)  # type: ignore[arg-type]


def test_conversation_keeps_the_chat_session_in_sync() -> None:
    bot = _CountingBot()
    conv = web.Conversation(bot)  # type: ignore[arg-type]
    guard = web.ReadWriteLock()
    questions = ("Which court issued the warrants?", "boom", "Who wrote the letter?",
                 "How many children were reunited?")
    for q in questions:
        conv.send(q, guard)
    assert conv.turns[1].error == "the assistant failed (RuntimeError: llm server down)"
    assert [m for m, _ in conv.chat.history] == [questions[0], questions[2], questions[3]]
    conv.trim(3)
    assert [m for m, _ in conv.chat.history] == [questions[0], questions[2]]
    assert len(conv.chat._topics) == 2
    conv.trim(1)
    assert [m for m, _ in conv.chat.history] == [questions[0]]
    conv.trim(0)
    assert conv.chat.history == [] and conv.turns == [] and conv.chat._topics == []
    assert bot.asked == list(questions)  # trimming asked nothing again


def test_undo_retry_and_clear_ask_nothing_again_for_the_kept_turns() -> None:
    bot = _CountingBot()
    page = web._Page(bot)  # type: ignore[arg-type]
    history: list[Any] = []
    conv = None
    questions = ["Which court issued the warrants?", "and for whom?",
                 "Who wrote the letter to Putin?"]
    for q in questions:
        _, history, pending, conv = page.take_question(q, history, conv)
        history, conv = list(page.respond(pending, history, conv))[-1]
    assert bot.asked[-1] == questions[-1] and len(bot.asked) == 3
    topics = list(conv.chat._topics)

    history, box_text, conv = page.undo(history, conv)
    assert box_text == questions[2] and len(history) == 4
    assert len(bot.asked) == 3  # the two kept turns were not asked again
    assert [m for m, _ in conv.chat.history] == questions[:2]
    assert conv.chat._topics == topics[:2]

    history, question, conv, _ = page.retry(history, conv)
    assert question == questions[1] and len(bot.asked) == 3
    assert [m for m, _ in conv.chat.history] == questions[:1]
    history, conv = list(page.respond(question, history, conv))[-1]
    assert len(bot.asked) == 4  # only the retried question, in turn 1's context
    assert [m for m, _ in conv.chat.history] == questions[:2]
    assert conv.chat._topics == topics[:2]

    conv = page.clear(conv)
    assert conv.turns == [] and conv.chat.history == [] and len(bot.asked) == 4


class _FailingBot:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.settings = Settings()

    def ask(self, question: str) -> Answer:
        raise self.exc

    def chat(self) -> Any:
        bot = self

        class _Chat:
            def __init__(self) -> None:
                self.history: list[Any] = []

            def send(self, message: str, on_token: Any = None) -> Answer:
                return bot.ask(message)

            def truncate(self, keep: int) -> None:
                pass

            def reset(self) -> None:
                pass

        return _Chat()

    def status(self) -> dict[str, Any]:
        raise OSError("store unreachable")


def test_a_failing_backend_is_one_readable_line_in_chat_and_api() -> None:
    import gradio as gr

    page = web._Page(_FailingBot(ConnectionError("[Errno 111] Connection refused")))
    _, history, pending, conv = page.take_question("Who?", [], None)
    history, conv = list(page.respond(pending, history, conv))[-1]
    assert history[-1]["content"] == web.render_error(
        "the assistant failed (ConnectionError: [Errno 111] Connection refused)")
    with pytest.raises(gr.Error) as info:
        page.ask("Who?")
    assert info.value.message == \
        "the assistant failed (ConnectionError: [Errno 111] Connection refused)"
    assert "Index unavailable: the assistant failed (OSError: store unreachable)" in \
        web.status_line(page.bot)


PIECES = ("Eight children ", "were reunited ", "in the past 24 hours [1].")


class _StreamingBot:
    """An Assistant stand-in under a real ChatSession whose answer layer streams: it hands
    ``on_token`` the pieces of ``PIECES`` one at a time, waiting for the test's go-ahead
    (``go[i]``) before each later piece, and records each piece as it produces it. A
    question "boom …" fails after the first piece."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.go = [threading.Event() for _ in PIECES]
        self.produced: list[str] = []

    def check_question(self, question: str) -> str:
        return question.strip()

    def ask(self, question: str, context: str | None = None,
            on_token: Any = None, **_: Any) -> Answer:
        for i, piece in enumerate(PIECES):
            if i:  # unset when the page waits for the whole answer: the test then fails
                self.go[i].wait(timeout=10)
            self.produced.append(piece)
            if on_token is not None:
                on_token(piece)
            if question.startswith("boom"):
                if question == "boom":
                    raise RuntimeError("llm server down")
                raise AssistantError("the language model refused")
        return Answer(question=question, text="".join(PIECES), short_answer="Eight")

    def chat(self) -> Any:
        from assistant.chat import ChatSession

        return ChatSession(self)  # type: ignore[arg-type]


def test_the_page_shows_each_piece_as_the_answer_layer_produces_it() -> None:
    """Each piece is on the page before the next one is even produced: the test lets the
    answer layer go on only after it has seen the piece before (no timing involved)."""
    bot = _StreamingBot()
    page = web._Page(bot)  # type: ignore[arg-type]
    _, history, pending, conv = page.take_question("How many children?", [], None)
    frames = page.respond(pending, history, conv)
    history, conv = next(frames)
    assert history[-1]["content"] == web.render_pending()
    for i in range(len(PIECES)):
        history, conv = next(frames)
        shown = "".join(PIECES[: i + 1])
        assert history[-1]["content"] == web.render_partial(shown)
        assert bot.produced == list(PIECES[: i + 1])  # the next piece is not made yet
        assert "qa-sources" not in history[-1]["content"]
        if i + 1 < len(PIECES):
            assert page.guard._readers == 1  # the answer holds the read lock as it streams
            bot.go[i + 1].set()
    history, conv = next(frames)
    answer = conv.turns[-1].answer
    assert answer is not None and answer.text == "".join(PIECES)
    assert history[-1]["content"] == web.render_answer(answer, page.reader)
    assert '<sup class="qa-ref">[1]</sup>' in web.render_partial("".join(PIECES))
    assert list(frames) == []
    assert page.guard._readers == 0
    assert [m for m, _ in conv.chat.history] == ["How many children?"]


@pytest.mark.parametrize(("question", "message"), [
    ("boom", "the assistant failed (RuntimeError: llm server down)"),
    ("boom refused", "the language model refused"),
])
def test_an_error_in_the_answer_worker_is_the_same_error_line(question: str,
                                                              message: str) -> None:
    """An answer that fails after streaming a piece ends as the one error line it always
    was; the failed turn does not enter the conversation and the read lock is released."""
    bot = _StreamingBot()
    page = web._Page(bot)  # type: ignore[arg-type]
    _, history, pending, conv = page.take_question(question, [], None)
    frames = [h[-1]["content"] for h, _ in page.respond(pending, history, conv)]
    assert frames == [web.render_pending(), web.render_partial(PIECES[0]),
                      web.render_error(message)]
    assert conv.turns[-1].error == message and conv.turns[-1].answer is None
    assert conv.chat.history == [] and page.guard._readers == 0


def test_the_extractive_answer_appears_in_one_piece_then_with_its_sources(
        tmp_path: Path) -> None:
    """Without a language model the answer layer hands over the whole text once: the page
    shows it, then the answer with its sources."""
    from assistant.core import Assistant

    text = "Head line\n\nThe key fact is 42.\n"
    (tmp_path / "a.txt").write_text(text)
    answer = Answer(question="q", text="The key fact is 42. [1]", short_answer="42",
                    citations=[_citation(text, "The key fact is 42.")])

    class _Extractive(Assistant):
        def _answer(self, *args: Any, **kwargs: Any) -> Answer:
            return answer

    bot = _Extractive(Settings(corpus=tmp_path, store=tmp_path / "store"))
    bot.check_files = False
    page = web._Page(bot)
    _, history, pending, conv = page.take_question("What is the key fact?", [], None)
    frames = [h[-1]["content"] for h, _ in page.respond(pending, history, conv)]
    assert frames == [web.render_pending(), web.render_partial(answer.text),
                      web.render_answer(answer, page.reader)]
    assert "<mark>The key fact is 42.</mark>" in frames[-1]


@pytest.mark.e2e
def test_a_language_models_tokens_reach_the_page_as_they_stream(article_bot: Any,
                                                                embed_model: Any) -> None:
    """Through a real Assistant and the fake chat-completions server: the page shows the
    model's text growing piece by piece, then the cited answer with its sources."""
    from tests.test_llm import QUESTION, FakeLLM, _with_llm, cites_24_hours

    fake = FakeLLM()
    try:
        fake.reply(cites_24_hours)
        bot = _with_llm(article_bot, embed_model, fake.url)
        page = web._Page(bot)
        _, history, pending, conv = page.take_question(QUESTION, [], None)
        frames = [h[-1]["content"] for h, _ in page.respond(pending, history, conv)]
    finally:
        fake.close()
    answer = conv.turns[-1].answer
    assert answer is not None and answer.backend == "llm" and answer.citations
    partials = frames[1:-1]
    assert len(partials) > 5 and len(set(partials)) == len(partials)  # one frame a piece
    assert all("qa-sources" not in f for f in partials)
    assert "Eight" in partials[0] and "children" not in partials[0]  # the first token
    assert partials[-1] == web.render_partial(answer.text)
    assert frames[-1] == web.render_answer(answer, page.reader)
    assert "qa-sources" in frames[-1] and "<mark>" in frames[-1]


def test_the_box_and_the_server_both_hold_questions_to_the_limit(tmp_path: Path) -> None:
    """The box takes at most ASSISTANT_MAX_QUESTION_CHARS characters (its max_length); a
    longer question sent around it is refused by the server with one readable line."""
    from assistant.core import Assistant

    bot = Assistant(Settings(corpus=tmp_path / "corpus", store=tmp_path / "store",
                             max_question_chars=300))
    app = web.build_app(bot, examples=[])
    box = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "qa-input")
    assert box.max_length == 300 and "up to 300 characters" in box.placeholder
    page = web._Page(bot)
    _, history, pending, conv = page.take_question("y" * 301, [], None)
    history, conv = list(page.respond(pending, history, conv))[-1]
    assert history[-1]["content"] == web.render_error(
        "the question is too long (301 characters; the limit is 300)")
    assert conv.chat.history == []


def test_the_page_says_where_uploads_go(tmp_path: Path) -> None:
    from assistant.core import Assistant

    assert web.upload_folder(Settings()) == "corpus/"
    assert web.upload_folder(Settings(corpus=Path("/srv/news/"))) == "/srv/news/"
    bot = Assistant(Settings(corpus=tmp_path / "articles", store=tmp_path / "store"))
    app = web.build_app(bot, examples=[])
    help_text = next(b for b in app.blocks.values()
                     if getattr(b, "elem_id", None) == "qa-upload-help").value
    assert f"saved into the corpus folder `{tmp_path / 'articles'}/`" in help_text


def test_a_store_that_is_not_ingested_is_explained(tmp_path: Path) -> None:
    from assistant.core import Assistant

    bot = Assistant(Settings(corpus=tmp_path / "corpus", store=tmp_path / "store"))
    page = web._Page(bot)
    _, history, pending, conv = page.take_question("How many children?", [], None)
    history, conv = list(page.respond(pending, history, conv))[-1]
    assert "the store is empty: run `assistant ingest` first" in history[-1]["content"]
    assert "No articles indexed yet" in web.status_line(bot)
    assert web.example_questions(bot) == []


@pytest.mark.e2e
def test_an_upload_puts_questions_about_the_new_article_among_the_examples(
        tmp_path: Path, embed_model: Any) -> None:
    from tests.conftest import build_bot

    bot = build_bot(tmp_path, embed_model)
    page = web._Page(bot)
    page.examples = before = web.example_questions(bot)
    assert before
    new = tmp_path / "fish-market.txt"
    new.write_text(FISH_MARKET, encoding="utf-8")
    message, _ = page.upload([str(new)])
    assert "Added" in message and "fish-market.txt" in message
    about_new = web.candidate_questions(FISH_MARKET)
    assert page.examples[0] in about_new
    assert 1 <= len([q for q in page.examples if q not in about_new]) <= len(before)
    assert len(page.examples) <= web.MAX_EXAMPLES
    assert not bot.ask(page.examples[0]).abstained
    update = page.example_update()
    assert update["examples"] == [{"text": q} for q in page.examples]
    assert "Try one of these questions" in update["placeholder"]
    # A file that adds nothing new leaves the examples as they are.
    page.examples = kept = ["Which court issued arrest warrants for Putin?"]
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    page.upload([str(empty)])
    assert page.examples == kept


# --------------------------------------------------------------------------------------------
# A live page (gradio_client)
# --------------------------------------------------------------------------------------------
def _client(url: str) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    handle = start_server(tmp_path_factory.mktemp("web"))
    print(f"\npage on {handle.url} after {handle.startup_seconds:.1f} s")
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    handle = start_server(tmp_path_factory.mktemp("upload"), examples=[],
                          max_upload_bytes=4000)
    yield handle
    handle.stop()


@pytest.mark.slow
def test_ask_gives_an_answer_with_a_valid_citation(server: ServerHandle) -> None:
    answer = _client(server.url).predict(Q_24H, api_name="/ask")
    assert check_answer(answer, "Eight", server.corpus) is None
    assert not answer["abstained"] and "Eight" in answer["answer"]
    for c in answer["citations"]:
        assert read_text(server.corpus / c["file"])[c["start"]:c["end"]] == c["quote"]
        assert c["file"] == ARTICLE
    assert set(answer) >= {"question", "answer", "short_answer", "abstained", "citations",
                           "retrieved", "latency_ms"}


@pytest.mark.slow
def test_a_default_gradio_client_gets_the_answer(server: ServerHandle) -> None:
    """``Client(url).predict(question, api_name="/ask")`` as Gradio documents it: the answer
    holds nothing gradio_client takes for a file to download (it would get a 403)."""
    from gradio_client import Client

    answer = Client(server.url, verbose=False).predict(Q_24H, api_name="/ask")
    assert isinstance(answer, dict) and answer["abstained"] is False
    assert check_answer(answer, "Eight", server.corpus) is None
    for c in answer["citations"]:
        assert "path" not in c and c["file"] == ARTICLE
        assert read_text(server.corpus / c["file"])[c["start"]:c["end"]] == c["quote"]


@pytest.mark.slow
def test_ask_abstains_outside_the_corpus(server: ServerHandle) -> None:
    answer = _client(server.url).predict("What is the capital of Australia?", api_name="/ask")
    assert answer["abstained"] is True
    assert answer["citations"] == []


@pytest.mark.slow
@pytest.mark.parametrize(("question", "message"), [
    ("", "the question is empty"),
    ("   ", "the question is empty"),
    ("x" * 2001, "the question is too long (2001 characters; the limit is 2000)"),
])
def test_ask_errors_are_readable(server: ServerHandle, question: str, message: str) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        _client(server.url).predict(question, api_name="/ask")
    assert str(info.value) == message


@pytest.mark.slow
def test_api_is_named_and_documented(server: ServerHandle) -> None:
    api = _client(server.url).view_api(print_info=False, return_format="dict")
    endpoints = api["named_endpoints"]
    assert set(endpoints) == {"/ask", "/upload"}
    params = endpoints["/ask"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["question"]
    assert "Answer the question" in endpoints["/ask"].get("description", "") or \
        "Answer one question" in endpoints["/ask"].get("description", "")


@pytest.mark.slow
def test_startup_made_no_outbound_connections(server: ServerHandle) -> None:
    _client(server.url).predict(Q_24H, api_name="/ask")
    assert external_contacts(server.started) == []


@pytest.mark.slow
def test_page_serves_no_corpus_store_or_other_files(server: ServerHandle) -> None:
    store_file = next(p for p in server.store.rglob("*") if p.is_file())
    for path in (server.corpus / ARTICLE, store_file, Path("/etc/passwd"),
                 ROOT / "pyproject.toml"):
        url = f"{server.url}gradio_api/file={path}"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url, timeout=10)
        assert info.value.code in (403, 404), path
    with urllib.request.urlopen(server.url, timeout=10) as page:
        assert page.status == 200 and b"Ask the news" in page.read()


@pytest.mark.slow
def test_chat_handlers_stream_and_keep_context_in_sync(server: ServerHandle) -> None:
    page = web._Page(server.bot)
    _box, history, pending, conv = page.take_question(Q_24H, [], None)
    frames = list(page.respond(pending, history, conv))
    assert len(frames) > 2  # pending, partial text..., final
    history, conv = frames[-1]
    final = history[-1]["content"]
    assert "Eight" in final and "<mark>" in final and "qa-sources" in final
    assert "<mark>" not in frames[1][0][-1]["content"]  # sources only once streamed
    _, history, pending, conv = page.take_question("And where had some been taken?", history,
                                                   conv)
    history, conv = list(page.respond(pending, history, conv))[-1]
    _, history, pending, conv = page.take_question("", history, conv)
    history, conv = list(page.respond(pending, history, conv))[-1]
    assert "the question is empty" in history[-1]["content"]
    assert len(history) == 6 and len(conv.turns) == 3 and len(conv.chat.history) == 2

    history, box_text, conv = page.undo(history, conv)
    assert len(history) == 4 and box_text == "" and len(conv.turns) == 2
    history, question, conv, _ = page.retry(history, conv)
    assert question == "And where had some been taken?" and len(history) == 3
    assert len(conv.chat.history) == 1
    history, conv = list(page.respond(question, history, conv))[-1]
    assert len(history) == 4 and len(conv.chat.history) == 2
    conv = page.clear(conv)
    assert conv.turns == [] and conv.chat.history == []


@pytest.mark.slow
def test_example_questions_come_from_the_corpus(server: ServerHandle) -> None:
    examples = web.example_questions(server.bot)
    assert 1 <= len(examples) <= web.MAX_EXAMPLES
    for q in examples:
        assert not server.bot.ask(q).abstained


@pytest.mark.slow
def test_upload_adds_an_article_that_then_answers(upload_server: ServerHandle,
                                                  tmp_path: Path) -> None:
    from gradio_client import handle_file

    client = _client(upload_server.url)
    new = tmp_path / "harbor-lighthouse.txt"
    new.write_text(LIGHTHOUSE, encoding="utf-8")
    message, status = client.predict([handle_file(str(new))], api_name="/upload")
    assert "Added" in message and "harbor-lighthouse.txt" in message
    assert f"to <code>{upload_server.corpus}/</code>" in message
    assert "<b>2</b> articles" in status
    assert (upload_server.corpus / "harbor-lighthouse.txt").read_text() == LIGHTHOUSE

    answer = client.predict("How far away can the restored lens be seen?", api_name="/ask")
    assert check_answer(answer, "22 nautical miles", upload_server.corpus) is None
    assert answer["citations"][0]["file"] == "harbor-lighthouse.txt"

    # The same name again: a numbered copy, the first file untouched.
    new.write_text(LIGHTHOUSE.replace("Saturday", "Sunday"), encoding="utf-8")
    message, _ = client.predict([handle_file(str(new))], api_name="/upload")
    assert "harbor-lighthouse-2.txt" in message
    assert (upload_server.corpus / "harbor-lighthouse.txt").read_text() == LIGHTHOUSE


@pytest.mark.slow
def test_upload_refuses_other_types_and_oversized_files(upload_server: ServerHandle,
                                                        tmp_path: Path) -> None:
    from gradio_client import handle_file

    client = _client(upload_server.url)
    before = sorted(p.name for p in upload_server.corpus.iterdir())
    script = tmp_path / "evil.py"
    script.write_text("print('x')\n")
    with pytest.raises(Exception, match="Invalid file type"):  # refused by Gradio itself
        client.predict([handle_file(str(script))], api_name="/upload")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    message, _ = client.predict([handle_file(str(binary)), handle_file(str(empty))],
                                api_name="/upload")
    assert "Not added: blob.txt: binary file" in message
    assert "Not added: empty.md: the file is empty" in message
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000)  # 5,000 bytes > max_upload_bytes=4000
    with pytest.raises(Exception, match=r"(?i)size|large|413"):
        client.predict([handle_file(str(big))], api_name="/upload")
    assert sorted(p.name for p in upload_server.corpus.iterdir()) == before


@pytest.mark.slow
def test_a_password_protected_page_refuses_anonymous_clients(tmp_path: Path) -> None:
    from gradio_client import Client

    handle = start_server(tmp_path, examples=[], credentials=("reader", "s3cret pass"))
    try:
        with pytest.raises(Exception):  # noqa: B017 - the client raises a bare ValueError
            Client(handle.url, verbose=False, analytics_enabled=False)
        client = Client(handle.url, verbose=False, analytics_enabled=False,
                        auth=("reader", "s3cret pass"))
        answer = client.predict(Q_24H, api_name="/ask")
        assert check_answer(answer, "Eight", handle.corpus) is None
    finally:
        handle.stop()


@pytest.mark.slow
def test_twenty_concurrent_users_all_get_correct_answers(server: ServerHandle) -> None:
    started = time.perf_counter()
    report = run_load(server.url, users=20, per_user=5, corpus=server.corpus, timeout=240)
    print("\nload:", report.summary())
    assert report.errors == [], report.errors[:5]
    assert report.wrong == [], report.wrong[:5]
    assert len(report.latencies) == 100
    assert time.perf_counter() - started < 240


# --------------------------------------------------------------------------------------------
# `assistant serve` as a user runs it
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_assistant_serve_prints_the_url_and_serves_the_page(tmp_path: Path,
                                                            stop: signal.Signals) -> None:
    """The page comes up, and Ctrl+C or SIGTERM stops it with exit 0 — also when the process
    starts with SIGINT ignored, as a background job of a script (CI) does."""
    import shutil

    shutil.copytree(CORPUS, tmp_path / "corpus")
    port = free_port()
    env = {**os.environ, "ASSISTANT_CORPUS": str(tmp_path / "corpus"),
           "ASSISTANT_STORE": str(tmp_path / "store"), "ASSISTANT_PORT": str(port),
           "PYTHONUNBUFFERED": "1"}
    env.pop("ASSISTANT_HOST", None)
    env.pop("ASSISTANT_AUTH", None)
    t0 = time.perf_counter()
    # stderr goes to a file: an undrained pipe would block the server once it filled.
    err_path = tmp_path / "serve.err"
    err = err_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            assert line, f"serve exited: {proc.wait()} {err_path.read_text()[-2000:]}"
            lines.append(line)
            if "Chat page:" in line:
                break
            assert time.perf_counter() - t0 < 120
        url_seen = time.perf_counter() - t0
        assert lines[0].startswith("Ingested 1 article")
        assert f"http://127.0.0.1:{port}/" in lines[-1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
        loaded = time.perf_counter() - t0
        print(f"\nassistant serve: URL printed after {url_seen:.1f} s, "
              f"page loaded after {loaded:.1f} s (fresh store, ingest included)")
        assert loaded < 120
    finally:
        proc.send_signal(stop)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        err.close()
    assert code == 0, f"serve ended with {code}: {err_path.read_text()[-2000:]}"


def test_the_page_date_range_reaches_every_question_of_the_conversation() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    class DatedBot(_CountingBot):
        def ask(self, question: str, context: str | None = None, **kw: Any) -> Answer:
            seen.append((kw.get("since"), kw.get("until"), kw.get("as_of")))
            answer = super().ask(question, context)
            answer.scope = "Articles from 8 March 2024 onwards" if kw.get("since") else None
            return answer

    page = web._Page(DatedBot())  # type: ignore[arg-type]
    _, history, pending, conv = page.take_question("Who won?", [], None)
    history, conv = list(page.respond(pending, history, conv, " 2024-03-08 ", ""))[-1]
    assert seen[-1] == ("2024-03-08", "", "")
    assert "Articles from 8 March 2024 onwards" in history[-1]["content"]
    _, history, pending, conv = page.take_question("and who lost?", history, conv)
    history, conv = list(page.respond(pending, history, conv, "", "2024-03-31",
                                      "2024-03-20 "))[-1]
    assert seen[-1] == ("", "2024-03-31", "2024-03-20")  # the dates as the page shows them
    assert "qa-scope" not in history[-1]["content"]
