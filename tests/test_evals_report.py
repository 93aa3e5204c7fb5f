"""Tests of assistant/evals/report.py: the Markdown report, table cells and metric values,
and the --fail-under thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.evals import check_thresholds, format_metric, md_cell, parse_thresholds, run_eval
from assistant.settings import AssistantError
from tests.test_evals import make_corpus, scripted


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A corpus directory with one article."""
    return make_corpus(tmp_path)


# ---------------------------------------------------------------------------
# the Markdown report
# ---------------------------------------------------------------------------


def test_report_escapes_cells_and_lists_failures_first(corpus: Path, tmp_path: Path) -> None:
    bot, gold = scripted(corpus)
    rep = tmp_path / "res" / "report.md"
    run_eval(bot, gold, report=rep)

    report = rep.read_text()
    assert "| answer_accuracy | 0.500 | 0.500 | 0.500 |" in report
    assert "Who \\| is the keeper?" in report  # pipes escaped
    assert "On Sunday<br>[1]." in report  # newlines escaped
    qa_section = report[report.index("## qa.jsonl") :]
    assert qa_section.index("| wrong |") < qa_section.index("| right |")  # failures first
    assert "expected: Saturday" in report


def test_report_counts_each_question_at_the_stage_it_was_lost(corpus: Path,
                                                               tmp_path: Path) -> None:
    bot, gold = scripted(corpus)
    rep = tmp_path / "report.md"
    run_eval(bot, gold, report=rep)
    report = rep.read_text()
    table = report[report.index("## Outcomes by question kind"):].split("\n\n")[2]
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    head = table.splitlines()[0]
    # Outcomes no question had are left out.
    assert head == ("| question kind | questions | right answer and short answer | "
                    "wrong sentence | false abstention | correct abstention | error |")
    assert rows["how"] == "| how | 1 | 1 | 0 | 0 | 0 | 0 |"  # how long: right
    assert rows["when"] == "| when | 1 | 0 | 1 | 0 | 0 | 0 |"  # wrong sentence
    assert rows["who"] == "| who | 1 | 0 | 0 | 0 | 1 | 0 |"  # abstained, rightly
    assert rows["what"] == "| what | 2 | 1 | 0 | 1 | 0 | 0 |"  # a chat turn abstained
    assert rows["other"] == "| other | 1 | 0 | 0 | 0 | 0 | 1 |"  # "boom?": an error
    assert rows["all"] == "| all | 6 | 2 | 1 | 1 | 1 | 1 |"


def test_outcome_names_a_retrieval_miss_before_the_sentence() -> None:
    from assistant.evals.gold import GoldQuestion
    from assistant.evals.report import outcome, question_kind
    from assistant.evals.runner import QuestionResult
    from assistant.types import Answer

    gold = GoldQuestion(id="q", question="Who won?", answers=["Ada"], doc_ids=["a.txt"],
                        file="f")
    wrong = Answer(question="Who won?", text="Bo won.", short_answer="Bo")
    missed = QuestionResult(gold, wrong, 1.0, False, "wrong", rank=None)
    assert outcome(missed) == "retrieval miss"
    assert outcome(QuestionResult(gold, wrong, 1.0, False, "wrong", rank=6)) == "retrieval miss"
    assert outcome(QuestionResult(gold, wrong, 1.0, False, "wrong", rank=2)) == "wrong sentence"
    assert question_kind("The storm killed how many people?") == "how many"
    assert question_kind("Whose plan passed?") == "who"
    assert question_kind("Name the winner.") == "other"


def test_metric_values_and_cells_as_shown() -> None:
    assert format_metric("answer_accuracy", 0.5) == "0.500"
    assert format_metric("questions", 6.0) == "6"
    assert format_metric("latency_p95_ms", 81.6) == "82"
    assert format_metric("hit@1", None) == "-"
    assert md_cell("a | b\r\nc <d>") == "a \\| b<br>c &lt;d&gt;"
    assert md_cell("x" * 10, limit=5) == "xxxx…"
    assert md_cell(None) == ""


# ---------------------------------------------------------------------------
# thresholds
# ---------------------------------------------------------------------------


def test_parse_thresholds() -> None:
    assert parse_thresholds(["answer_accuracy=0.95", "hit@5=90%", "latency_p95_ms=2500"]) == {
        "answer_accuracy": 0.95,
        "hit@5": pytest.approx(0.9),
        "latency_p95_ms": 2500.0,
    }
    assert parse_thresholds([]) == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("accuracy=0.9", "unknown metric 'accuracy'"),
        ("answer_accuracy=high", "is not a number"),
        ("answer_accuracy", "expected METRIC=VALUE"),
        ("answer_accuracy=", "expected METRIC=VALUE"),
        ("answer_accuracy=95", "between 0 and 1"),
        ("f1=-0.1", "non-negative"),
    ],
)
def test_parse_thresholds_errors(spec: str, message: str) -> None:
    with pytest.raises(AssistantError, match=message):
        parse_thresholds([spec])


def test_check_thresholds() -> None:
    metrics = {"answer_accuracy": 0.9, "f1": 0.8, "latency_p95_ms": 3000.0, "hit@1": None}
    thresholds = {"answer_accuracy": 0.95, "f1": 0.8, "latency_p95_ms": 2000.0, "hit@1": 0.5}
    missed = check_thresholds(metrics, thresholds)
    assert [m.metric for m in missed] == ["answer_accuracy", "latency_p95_ms", "hit@1"]
    assert str(missed[0]) == "answer_accuracy = 0.900 < minimum 0.95"
    assert str(missed[1]) == "latency_p95_ms = 3000 > maximum 2000"
    assert "not measured" in str(missed[2])
    assert check_thresholds({"f1": 0.8}, {"f1": 0.5}) == []


def test_the_report_counts_dated_widened_and_agreeing_answers() -> None:
    from assistant.evals.gold import GoldQuestion
    from assistant.evals.report import _scope_lines
    from assistant.evals.runner import EvalResult, QuestionResult
    from assistant.types import Answer

    def result(scope: str | None, agreement: str | None = None) -> QuestionResult:
        gold = GoldQuestion(id="q", question="q", answers=["x"])
        return QuestionResult(gold=gold, answer=Answer(question="q", text="x", scope=scope,
                                                       agreement=agreement),
                              latency_ms=1.0, correct=True, verdict="correct")

    res = EvalResult(results=[result("In articles from 4–10 March 2024 (…)"),
                              result("No article from 4–10 March 2024 (…) answers this; …",
                                     "Stated in 2 articles"),
                              result(None)], files={}, overall={}, labels={})
    assert _scope_lines(res) == [
        "- Answers limited by date: 1; widened to every article when nothing in the "
        "question's window answered: 1",
        "- Answers citing other articles that agree or differ: 1"]
    assert _scope_lines(EvalResult(results=[result(None)], files={}, overall={},
                                   labels={})) == []
