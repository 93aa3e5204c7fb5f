"""The command line, run as a user runs it: a new process each time."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.corpus import read_text

pytestmark = pytest.mark.e2e


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    from tests.conftest import ARTICLE

    root = tmp_path_factory.mktemp("cli")
    (root / "corpus").mkdir()
    shutil.copy(ARTICLE, root / "corpus" / ARTICLE.name)
    done = run("ingest", cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Ingested 1 article (1 new, 0 changed, 0 removed, 0 unchanged)")
    return root


def test_ask_prints_answer_and_source(workdir: Path) -> None:
    done = run("ask", "How many children were reunited with their families in the past 24 hours?",
               cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "Eight children have been rejoined" in done.stdout
    assert "[1] melania-trump-putin-letter-children.txt" in done.stdout
    assert done.stderr == ""


def test_ask_json_matches_the_contract(workdir: Path) -> None:
    done = run("ask", "--json", "How many children were reunited in the past 24 hours?",
               cwd=workdir)
    data = json.loads(done.stdout)
    assert set(data) >= {"question", "answer", "short_answer", "abstained", "citations",
                         "retrieved", "latency_ms"}
    assert data["short_answer"] == "Eight" and data["abstained"] is False
    assert data["retrieved"] == ["melania-trump-putin-letter-children.txt"]
    text = read_text(workdir / "corpus" / data["citations"][0]["path"])
    for c in data["citations"]:
        assert set(c) == {"n", "doc_id", "title", "path", "start", "end", "quote", "score",
                          "published", "source", "role"}
        assert text[c["start"] : c["end"]] == c["quote"]


def test_off_topic_abstains(workdir: Path) -> None:
    done = run("ask", "What is the capital of Australia?", cwd=workdir)
    assert done.returncode == 0
    assert done.stdout.startswith("The articles in the corpus do not answer this question.")


def test_reingest_is_incremental(workdir: Path) -> None:
    done = run("ingest", cwd=workdir)
    assert "(0 new, 0 changed, 0 removed, 1 unchanged)" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ask", ""), "the question is empty"),
        (("ask", "x" * 2001), "too long"),
        (("ask", "hello", "--store", "nowhere"),
         "the store is empty: run `assistant ingest --store nowhere` first"),
        (("ask", "hello", "--corpus", "other corpus", "--store", "nowhere"),
         "the store is empty: run `assistant ingest --corpus 'other corpus' --store nowhere` "
         "first"),
        (("ask", "hello", "--corpus", "other"),  # the store exists, not for this corpus
         "the store is empty: run `assistant ingest --corpus other` first"),
        (("ask", "--top-k", "0", "hello"), "top_k must be at least 1"),
        (("ask", "--topk", "3", "hello"),
         "unknown option --topk (did you mean --top-k?); see `assistant ask --help`"),
        (("ask", "hello", "--bogus"), "unknown option --bogus; see `assistant ask --help`"),
        (("ask", "--top", "3", "hello"),  # no abbreviations: a new flag would change them
         "unknown option --top (did you mean --top-k?); see `assistant ask --help`"),
        (("ask", "two", "questions"),
         "unexpected argument 'questions' (quote a question that has spaces); "
         "see `assistant ask --help`"),
        (("ask",), "the following arguments are required: question; see `assistant ask --help`"),
        (("ask", "--top-k", "many", "hello"),
         "argument --top-k: invalid int value: 'many'; see `assistant ask --help`"),
        (("--bogus",), "unknown option --bogus; see `assistant --help`"),
        (("ingest", "--corpus", "missing"), "corpus directory not found"),
        (("ask", "hi", "--chroma-url", "http://127.0.0.1:9"), "cannot reach the Chroma server"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir: Path, args: tuple, message: str) -> None:
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    done = run(*args, cwd=workdir)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""
    # A failed command leaves no trace: no store folders, nothing added to the store.
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before


def test_the_suggested_ingest_names_the_store_flags_given() -> None:
    from assistant.cli import build_parser, name_options

    args = build_parser().parse_args(
        ["chat", "--store", "/tmp/my store", "--chroma-url", "http://h:1", "--top-k", "3"])
    assert name_options("the store is empty: run `assistant ingest` first (x)", args) == (
        "the store is empty: run `assistant ingest --store '/tmp/my store' "
        "--chroma-url http://h:1` first (x)")
    plain = build_parser().parse_args(["chat"])
    assert name_options("run `assistant ingest` first", plain) == "run `assistant ingest` first"


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    from importlib.metadata import version

    done = run("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"assistant {version('assistant')}\n"


def test_bare_command_prints_the_usage_and_the_commands(tmp_path: Path) -> None:
    done = run(cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: assistant")
    for command in ("ingest", "ask", "chat", "serve", "eval"):
        assert f"\n    {command} " in done.stderr
    assert "`assistant <command> --help`" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_shows_each_option_with_its_variable_and_default(tmp_path: Path) -> None:
    done = run("ask", "--help", cwd=tmp_path)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--top-k N passages retrieved per question (ASSISTANT_TOP_K, default 5)" in text
    assert "--corpus DIR" in text and "(ASSISTANT_CORPUS, default ./corpus)" in text
    assert "--store DIR" in text and "(ASSISTANT_STORE, default ./.assistant)" in text
    assert "(ASSISTANT_LLM_TIMEOUT, default 30)" in text


def test_chat_on_an_empty_store_exits_2_like_ask(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "chat", "--store", "empty"], cwd=tmp_path,
        capture_output=True, text=True, timeout=300, input="Who confirmed the facts?\n")
    assert done.returncode == 2
    assert done.stderr == (
        "assistant: error: the store is empty: run `assistant ingest --store empty` first\n")
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_chat_with_piped_input_answers_each_line_without_prompts(workdir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "chat"], cwd=workdir, capture_output=True,
        text=True, timeout=300,
        input="How many children were reunited in the past 24 hours?\n"
              "What is the capital of Australia?\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert out.startswith("“Eight children have been rejoined"), out
    assert "\n\nThe articles in the corpus do not answer this question.\n" in out
    assert out.endswith("…\n"), out  # the last closest passage, no blank line after it
    assert "> " not in out and "Commands:" not in out


def test_chat_reads_questions_from_stdin(workdir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "chat"], cwd=workdir, capture_output=True,
        text=True, timeout=300,
        input="How many children were reunited in the past 24 hours?\n\n/reset\n/quit\n",
    )
    assert done.returncode == 0, done.stderr
    assert "Eight children" in done.stdout
    assert "(conversation cleared)" in done.stdout


def test_a_reader_that_goes_away_ends_the_command_quietly(workdir: Path) -> None:
    """`assistant ask … | head -1`: the pipe closes early; no error line, no traceback."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the answer is written
    try:
        done = subprocess.run([sys.executable, "-m", "assistant.cli", "ask",
                               "How many children were reunited in the past 24 hours?"],
                              cwd=workdir, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == ""


def test_each_source_line_shows_headline_and_date_and_stays_one_line() -> None:
    from assistant.cli import format_answer
    from assistant.types import Answer, Citation

    odd = "two\nlines.txt"
    c = Citation(n=1, doc_id=odd, title="Floods hit the valley", path=odd, start=24, end=40,
                 quote="Heavy rain fell.", published="2026-03-02")
    out = format_answer(Answer(question="q", text="Heavy rain fell. [1]", citations=[c]))
    lines = out.splitlines()
    assert lines[-1] == ('[1] two\\nlines.txt (24-40) · Floods hit the valley · 2026-03-02: '
                         '"Heavy rain fell."')


def test_the_command_caps_malloc_arenas_unless_the_user_set_them(monkeypatch) -> None:
    """`assistant` asks glibc for two malloc arenas (less fragmentation over a long
    ingest); a MALLOC_ARENA_MAX the user set is left to glibc."""
    import ctypes

    from assistant import cli

    calls: list[tuple[int, int]] = []

    class LibC:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: LibC())
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    cli.limit_malloc_arenas()
    assert calls == [(-8, cli.MALLOC_ARENAS)]  # M_ARENA_MAX
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    cli.limit_malloc_arenas()
    assert len(calls) == 1

    def no_libc(name: str) -> None:
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    cli.limit_malloc_arenas()  # another C library: nothing happens
