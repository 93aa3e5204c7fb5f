"""Tests of assistant/evals/command.py: ``assistant eval`` (ingest, summary table, exit codes
of the --fail-under gate, default gold files and input errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.evals import run_eval_command
from assistant.settings import AssistantError
from tests.test_evals import make_corpus, parse, scripted, write_jsonl


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A corpus directory with one article."""
    return make_corpus(tmp_path)


def test_run_eval_command_exit_codes(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot, gold = scripted(corpus)
    report = tmp_path / "r.md"
    args = parse([*map(str, gold), "--report", str(report), "--fail-under", "hit@5=0.5"])
    assert run_eval_command(args, bot) == 0
    assert bot.ingested == 1
    assert report.exists()
    out = capsys.readouterr().out
    table = out.splitlines()
    assert table[0].startswith("file") and "answer_" in table[0] and "accuracy" in table[1]
    assert any(line.startswith("qa.jsonl") for line in table)
    assert any(line.startswith("chat.jsonl") for line in table)
    assert table[-1].startswith("overall")

    bot, gold = scripted(corpus)
    args = parse(
        [*map(str, gold), "--fail-under", "answer_accuracy=0.95", "--fail-under", "f1=0.1"]
    )
    assert run_eval_command(args, bot) == 1
    err = capsys.readouterr().err
    assert "answer_accuracy = 0.500 < minimum 0.95" in err
    assert "f1" not in err.split("threshold missed")[-1]


def test_run_eval_command_default_gold_and_errors(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot, _ = scripted(corpus)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssistantError, match="none match evals/gold"):
        run_eval_command(parse([]), bot)
    unans = [{"id": "u", "question": "Who | is the keeper?", "answers": []}]
    write_jsonl(tmp_path / "evals" / "gold" / "a.jsonl", unans)
    assert run_eval_command(parse(["--fail-under", "answer_accuracy=1"]), bot) == 0

    (tmp_path / "evals" / "gold" / "b.jsonl").write_text("{oops\n")
    with pytest.raises(AssistantError, match=r"b\.jsonl:1"):
        run_eval_command(parse([]), bot)
    with pytest.raises(AssistantError, match="unknown metric"):
        run_eval_command(parse(["--fail-under", "nope=1"]), bot)
    assert bot.ingested == 1  # bad input is rejected before ingesting
