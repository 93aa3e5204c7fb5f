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
        assert set(c) == {"n", "doc_id", "title", "path", "start", "end", "quote", "score"}
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
        (("ask", "hello", "--store", "nowhere"), "run `assistant ingest` first"),
        (("ingest", "--corpus", "missing"), "corpus directory not found"),
        (("ask", "hi", "--chroma-url", "http://127.0.0.1:9"), "cannot reach the Chroma server"),
        (("frobnicate",), "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(workdir: Path, args: tuple, message: str) -> None:
    done = run(*args, cwd=workdir)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_chat_reads_questions_from_stdin(workdir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "chat"], cwd=workdir, capture_output=True,
        text=True, timeout=300,
        input="How many children were reunited in the past 24 hours?\n\n/reset\n/quit\n",
    )
    assert done.returncode == 0, done.stderr
    assert "Eight children" in done.stdout
    assert "(conversation cleared)" in done.stdout
