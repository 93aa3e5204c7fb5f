"""Tests of assistant/evals/runner.py: citation checks, the answers file and the metrics of
a run (through run_eval)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.evals import (
    CorpusTexts,
    citation_supported,
    citation_valid,
    count_invalid_citations,
    run_eval,
)
from assistant.evals import runner as evals_runner
from assistant.types import Citation
from tests.test_evals import ARTICLE, answer, cite, make_corpus, scripted


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A corpus directory with one article."""
    return make_corpus(tmp_path)


# ---------------------------------------------------------------------------
# citations
# ---------------------------------------------------------------------------


def test_citation_validity(corpus: Path) -> None:
    texts = CorpusTexts(corpus)
    good = cite(ARTICLE, "took three years")
    wrong_span = cite(ARTICLE, "took three years", shift=1)  # quote no longer matches
    missing = cite(ARTICLE, "took three years", path="nope.txt")
    past_end = Citation(1, "light.txt", "t", "light.txt", 10_000, 10_010, "")
    assert citation_valid(good, texts)
    assert not citation_valid(wrong_span, texts)
    assert not citation_valid(missing, texts)
    assert not citation_valid(past_end, texts)
    assert count_invalid_citations(answer("x", citations=[good, wrong_span, missing]), texts) == 2


def test_corpus_texts_reads_each_file_once(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = evals_runner.read_text

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(evals_runner, "read_text", counting)
    texts = CorpusTexts(corpus)
    for _ in range(5):
        assert citation_valid(cite(ARTICLE, "three years"), texts)
        texts.find("light.txt", "three years")
    assert len(calls) == 1


def test_citation_support(corpus: Path) -> None:
    texts = CorpusTexts(corpus)
    support = 'cost "1,600" pounds'  # straight quotes match the article's curly ones
    assert texts.find("light.txt", support)
    overlapping = answer("x", citations=[cite(ARTICLE, "The work took three years and cost")])
    elsewhere = answer("x", citations=[cite(ARTICLE, "finished restoring")])
    wrong_span = answer("x", citations=[cite(ARTICLE, "pounds per week", shift=2)])
    assert citation_supported(overlapping, support, texts)
    assert not citation_supported(elsewhere, support, texts)
    assert not citation_supported(wrong_span, support, texts)
    assert not citation_supported(answer("x"), support, texts)


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------


def test_run_eval_outputs_answers_and_metrics(corpus: Path, tmp_path: Path) -> None:
    bot, gold = scripted(corpus)
    out = tmp_path / "res" / "answers.jsonl"
    result = run_eval(bot, gold, output=out)

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["right", "wrong", "unans", "err", "c1#1", "c1#2"]
    by_id = {r["id"]: r for r in lines}
    for key in ("question", "answer", "short_answer", "abstained", "citations", "retrieved"):
        assert key in by_id["right"]
    assert by_id["right"]["gold_answers"] == ["three years"]
    assert {k: r["verdict"] for k, r in by_id.items()} == {
        "right": "correct",
        "wrong": "wrong",
        "unans": "correct abstention",
        "err": "error",
        "c1#1": "correct",
        "c1#2": "false abstention",
    }
    assert by_id["wrong"]["scores"]["invalid_citations"] == 1
    assert by_id["right"]["scores"]["supported"] is True
    assert by_id["c1#2"]["latency_ms"] >= 0.0  # measured wall time stands in for 0

    # one session per conversation, turns in order
    assert len(bot.sessions) == 1
    assert bot.sessions[0].sent == ["What was restored?", "What did it cost?"]

    qa = result.files[str(gold[0])]
    assert qa["questions"] == 4
    assert qa["answer_accuracy"] == pytest.approx(2 / 4)
    assert qa["exact_match"] == pytest.approx(1 / 3)  # right, wrong, err are answerable
    assert qa["citation_validity"] == pytest.approx(1 / 2)
    assert qa["invalid_citations"] == 1
    assert qa["citation_support"] == 1.0
    assert qa["hit@1"] == pytest.approx(1 / 2)
    assert qa["hit@5"] == 1.0
    assert qa["mrr"] == pytest.approx(0.75)
    assert qa["abstention_precision"] == 1.0
    assert qa["abstention_recall"] == 1.0
    assert qa["false_abstention_rate"] == 0.0
    overall = result.overall
    assert overall["questions"] == 6
    assert overall["answer_accuracy"] == pytest.approx(3 / 6)
    assert overall["false_abstention_rate"] == pytest.approx(1 / 5)
    assert overall["citation_validity"] == pytest.approx(2 / 3)
    assert [r.gold.id for r in result.failures] == ["wrong", "err", "c1#2"]


def test_run_eval_without_files(corpus: Path) -> None:
    bot, gold = scripted(corpus)
    result = run_eval(bot, gold[:1])
    assert result.overall["questions"] == 4
    assert list(result.files) == [str(gold[0])]


def test_as_of_asks_each_dated_question_as_on_its_date(corpus: Path, tmp_path: Path) -> None:
    from assistant.settings import AssistantError
    from assistant.types import Answer
    from tests.test_evals import FakeBot, write_jsonl

    class DatedBot(FakeBot):
        def ask(self, question: str, *, as_of: str | None = None) -> Answer:
            self.dates.append((question, as_of))
            return Answer(question=question, text="", abstained=True)

    bot = DatedBot(corpus, {})
    bot.dates = []  # type: ignore[attr-defined]
    gold = write_jsonl(tmp_path / "gold" / "dated.jsonl", [
        {"id": "a", "question": "Who won this week?", "answers": [], "as_of": "2024-03-05"},
        {"id": "b", "question": "Who lost?", "answers": [], "question_date": "2024-02-01"},
        {"id": "c", "question": "Who drew?", "answers": []},
    ])
    run_eval(bot, [gold], as_of=True)
    assert bot.dates == [("Who won this week?", "2024-03-05"),  # type: ignore[attr-defined]
                         ("Who lost?", "2024-02-01"), ("Who drew?", None)]
    bot.dates = []  # type: ignore[attr-defined]
    run_eval(bot, [gold])  # without the option, no question is dated
    assert [d for _, d in bot.dates] == [None, None, None]  # type: ignore[attr-defined]
    bad = write_jsonl(tmp_path / "gold" / "bad.jsonl", [
        {"id": "x", "question": "Who?", "answers": [], "as_of": "last Tuesday"}])
    with pytest.raises(AssistantError, match="'as_of' must be a date"):
        run_eval(bot, [bad])
