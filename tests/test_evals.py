"""Tests of the evaluation metrics and runner (assistant/evals.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from assistant import evals
from assistant.evals import (
    CorpusTexts,
    abstention_scores,
    add_eval_arguments,
    answer_correct,
    check_thresholds,
    citation_supported,
    citation_valid,
    count_invalid_citations,
    exact_match,
    hit_at_k,
    load_gold,
    mean_reciprocal_rank,
    normalize_answer,
    parse_thresholds,
    percentile,
    retrieval_rank,
    run_eval,
    run_eval_command,
    token_f1,
)
from assistant.settings import AssistantError, Settings
from assistant.types import Answer, Citation

ARTICLE = (
    "Town Restores Lighthouse\n"
    "\n"
    "The town finished restoring its lighthouse on Saturday.\n"
    "The work took three years and cost “1,600” pounds per week.\n"
)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def cite(text: str, quote: str, path: str = "light.txt", n: int = 1, shift: int = 0) -> Citation:
    """A citation of ``quote`` in ``text``; ``shift`` moves the span to make it wrong."""
    start = text.index(quote) + shift
    return Citation(
        n=n, doc_id=path, title="t", path=path, start=start, end=start + len(quote), quote=quote
    )


def answer(
    text: str = "",
    short: str | None = None,
    abstained: bool = False,
    citations: list[Citation] | None = None,
    retrieved: list[str] | None = None,
    latency_ms: float = 10.0,
    question: str = "q",
) -> Answer:
    """A hand-made Answer."""
    return Answer(
        question=question,
        text=text,
        short_answer=short,
        abstained=abstained,
        citations=citations or [],
        retrieved=retrieved or [],
        latency_ms=latency_ms,
    )


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A corpus directory with one article."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "light.txt").write_text(ARTICLE, encoding="utf-8")
    return root


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as JSON Lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class FakeSession:
    """A scripted chat session."""

    def __init__(self, bot: FakeBot) -> None:
        self.bot = bot
        self.sent: list[str] = []

    def send(self, message: str) -> Answer:
        """Answer from the bot's script, remembering what was sent."""
        self.sent.append(message)
        return self.bot.script[message]

    def reset(self) -> None:
        """Forget the conversation."""
        self.sent.clear()


class FakeBot:
    """A scripted assistant: answers come from ``script`` (question -> Answer)."""

    def __init__(self, corpus: Path, script: dict[str, Answer]) -> None:
        self.settings = SimpleNamespace(corpus=corpus)
        self.script = script
        self.asked: list[str] = []
        self.sessions: list[FakeSession] = []
        self.ingested = 0

    def ingest(self) -> object:
        """Count ingests."""
        self.ingested += 1
        return SimpleNamespace(summary=lambda: "Ingested 1 article")

    def ask(self, question: str) -> Answer:
        """Answer from the script."""
        self.asked.append(question)
        if question == "boom?":
            raise AssistantError("question too long")
        return self.script[question]

    def chat(self) -> FakeSession:
        """A new scripted session."""
        session = FakeSession(self)
        self.sessions.append(session)
        return session


# ---------------------------------------------------------------------------
# normalisation and answer metrics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("eight", "8"),
        ("Eight children", "8 children"),
        ("twenty-four", "24"),
        ("twenty four hours", "24 hours"),
        ("19,500", "19500"),
        ("1,600", "1600"),
        ("1,600,000", "1600000"),
        ("one hundred and five", "105"),
        ("1.5 million", "1500000"),
        ("The “Peace Letter”—", "peace letter"),
        ("Children’s rights!", "children rights"),
        ("don't", "dont"),
        ("  An   apple ", "apple"),
    ],
)
def test_normalize_answer_equivalences(a: str, b: str) -> None:
    assert normalize_answer(a) == normalize_answer(b)


def test_normalize_answer_output() -> None:
    assert normalize_answer("The First Lady’s “peace letter”") == "first lady peace letter"
    assert normalize_answer("more than 19,500 children") == "more than 19500 children"
    assert normalize_answer("one two") == "1 2"  # separate numbers stay separate
    assert normalize_answer("3.14") == "3.14"  # a decimal point survives
    assert normalize_answer("Washington, D.C.") == "washington d c"


def test_answer_correct_whole_tokens() -> None:
    assert answer_correct(answer("Eight children were reunited."), ["8"])
    assert answer_correct(answer("It took 24 hours."), ["twenty-four hours"])
    assert not answer_correct(answer("28 children were reunited."), ["8"])
    assert not answer_correct(answer("A lighthouse keeper."), ["light"])
    assert answer_correct(answer("The First Lady’s advocacy."), ["the First Lady"])
    assert not answer_correct(answer("Eight children.", abstained=True), ["8"])


def test_answer_correct_unanswerable() -> None:
    assert answer_correct(answer("I could not find this.", abstained=True), [])
    assert not answer_correct(answer("Paris."), [])


def test_exact_match_and_f1() -> None:
    assert exact_match("Eight", ["8"]) == 1.0
    assert exact_match("the 19,500", ["19500", "x"]) == 1.0
    assert exact_match("eight children", ["8"]) == 0.0
    assert exact_match(None, ["8"]) == 0.0
    assert token_f1("eight children", ["8"]) == pytest.approx(2 / 3)
    assert token_f1("Maria Lvova-Belova", ["Lvova Belova", "nobody"]) == pytest.approx(0.8)
    assert token_f1("", ["8"]) == 0.0
    assert token_f1("nothing alike", ["8"]) == 0.0


def test_abstention_scores_counting() -> None:
    # (abstained, answerable)
    cases = [(True, False), (True, False), (False, False), (True, True)]
    cases += [(False, True)] * 3
    scores = abstention_scores(cases)
    assert scores["abstention_precision"] == pytest.approx(2 / 3)
    assert scores["abstention_recall"] == pytest.approx(2 / 3)
    assert scores["false_abstention_rate"] == pytest.approx(1 / 4)
    empty = abstention_scores([(False, True)])
    assert empty["abstention_precision"] is None
    assert empty["abstention_recall"] is None
    assert empty["false_abstention_rate"] == 0.0


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)


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
    real = evals.read_text

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(evals, "read_text", counting)
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
# retrieval
# ---------------------------------------------------------------------------


def test_retrieval_rank_hits_and_mrr() -> None:
    assert retrieval_rank(["a.txt", "b.txt", "c.txt"], ["c.txt"]) == 3
    assert retrieval_rank(["a.txt", "b.txt"], ["x.txt", "b.txt"]) == 2
    assert retrieval_rank(["a.txt"], ["./a.txt"]) == 1
    assert retrieval_rank([], ["a.txt"]) is None
    ranks = [1, 3, None, 6]
    assert hit_at_k(ranks, 1) == pytest.approx(0.25)
    assert hit_at_k(ranks, 5) == pytest.approx(0.5)
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 6) / 4)
    assert hit_at_k([], 1) is None
    assert mean_reciprocal_rank([]) is None


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


# ---------------------------------------------------------------------------
# gold files
# ---------------------------------------------------------------------------


def test_load_gold_questions_and_chats(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "g.jsonl",
        [
            {"id": "q1", "question": "Q?", "answers": ["b"], "doc_ids": ["x.txt"], "extra": 1},
            {
                "id": "c1",
                "turns": [{"user": "Hi?", "answers": []}, {"user": "And?", "answers": []}],
            },
        ],
    )
    items = load_gold(path)
    assert items[0].id == "q1" and items[0].doc_ids == ["x.txt"]
    assert [t.id for t in items[1].turns] == ["c1#1", "c1#2"]
    assert not items[1].turns[0].answerable


def test_load_gold_errors_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(AssistantError, match=r"gold file not found: .*missing\.jsonl"):
        load_gold(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1", "question": "Q?", "answers": []}\n\n{not json\n')
    with pytest.raises(AssistantError, match=r"bad\.jsonl:3: invalid JSON"):
        load_gold(bad)
    write_jsonl(bad, [{"id": "q1", "question": "Q?"}])
    with pytest.raises(AssistantError, match=r"bad\.jsonl:1: 'answers' must be a list"):
        load_gold(bad)
    write_jsonl(bad, [{"id": "c", "turns": [{"answers": []}]}])
    with pytest.raises(AssistantError, match=r"bad\.jsonl:1 turn 1: 'user'"):
        load_gold(bad)


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------


def scripted(corpus: Path) -> tuple[FakeBot, list[Path]]:
    """A fake bot and two gold files (questions and a chat) covering every verdict kind."""
    good = cite(ARTICLE, "The work took three years")
    qa = write_jsonl(
        corpus.parent / "gold" / "qa.jsonl",
        [
            {
                "id": "right",
                "question": "How long did the work take?",
                "answers": ["three years"],
                "doc_ids": ["light.txt"],
                "support": "took three years",
            },
            {
                "id": "wrong",
                "question": "When did it finish?",
                "answers": ["Saturday"],
                "doc_ids": ["light.txt"],
            },
            {"id": "unans", "question": "Who | is the keeper?", "answers": []},
            {"id": "err", "question": "boom?", "answers": ["x"]},
        ],
    )
    chat = write_jsonl(
        corpus.parent / "gold" / "chat.jsonl",
        [
            {
                "id": "c1",
                "turns": [
                    {"user": "What was restored?", "answers": ["lighthouse"]},
                    {"user": "What did it cost?", "answers": ["1,600 pounds per week"]},
                ],
            }
        ],
    )
    script = {
        "How long did the work take?": answer(
            "It took 3 years [1].", "3 years", citations=[good], retrieved=["light.txt"]
        ),
        "When did it finish?": answer(
            "On Sunday\n[1].",
            "Sunday",
            citations=[cite(ARTICLE, "finished restoring", shift=3)],
            retrieved=["other.txt", "light.txt"],
            latency_ms=30.0,
        ),
        "Who | is the keeper?": answer("I could not find that.", abstained=True),
        "What was restored?": answer(
            "The lighthouse [1].", "lighthouse", citations=[cite(ARTICLE, "its lighthouse")]
        ),
        "What did it cost?": answer("No idea.", abstained=True, latency_ms=0.0),
    }
    return FakeBot(corpus, script), [qa, chat]


def test_run_eval_outputs_metrics_and_report(corpus: Path, tmp_path: Path) -> None:
    bot, gold = scripted(corpus)
    out, rep = tmp_path / "res" / "answers.jsonl", tmp_path / "res" / "report.md"
    result = run_eval(bot, gold, output=out, report=rep)

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

    report = rep.read_text()
    assert "| answer_accuracy | 0.500 | 0.500 | 0.500 |" in report
    assert "Who \\| is the keeper?" in report  # pipes escaped
    assert "On Sunday<br>[1]." in report  # newlines escaped
    qa_section = report[report.index("## qa.jsonl") :]
    assert qa_section.index("| wrong |") < qa_section.index("| right |")  # failures first
    assert "expected: Saturday" in report


def test_run_eval_without_files(corpus: Path) -> None:
    bot, gold = scripted(corpus)
    result = run_eval(bot, gold[:1])
    assert result.overall["questions"] == 4
    assert list(result.files) == [str(gold[0])]


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse eval arguments as the CLI would."""
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    return parser.parse_args(argv)


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


# ---------------------------------------------------------------------------
# end to end (needs the real core)
# ---------------------------------------------------------------------------

E2E_ARTICLES = {
    "lighthouse.txt": (
        "Port Elwin Restores Its Lighthouse\n\n"
        "The town of Port Elwin finished restoring its old lighthouse on Saturday. "
        "The restoration took three years and was paid for by local fishermen. "
        "Mayor Ruth Calder said the lamp would be lit every night from June.\n"
    ),
    "bakery.txt": (
        "New Bakery Opens On Mill Street\n\n"
        "Baker Nadia Okafor opened a bakery called Golden Crust on Mill Street in March. "
        "The shop sells forty kinds of bread and opens at six in the morning.\n"
    ),
    "marathon.txt": (
        "Tomas Vik Wins City Marathon\n\n"
        "Runner Tomas Vik won the city marathon on Sunday in two hours and eleven minutes. "
        "More than 4,000 runners took part in the race, which started at the harbour.\n"
    ),
}


@pytest.mark.e2e
def test_e2e_real_assistant(tmp_path: Path) -> None:
    from assistant.core import Assistant

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in E2E_ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    qa = write_jsonl(
        tmp_path / "gold" / "qa.jsonl",
        [
            {
                "id": "bakery",
                "question": "What is the name of the bakery Nadia Okafor opened?",
                "answers": ["Golden Crust"],
                "doc_ids": ["bakery.txt"],
                "support": "a bakery called Golden Crust",
            },
            {
                "id": "lighthouse",
                "question": "How long did the restoration of the Port Elwin lighthouse take?",
                "answers": ["three years"],
                "doc_ids": ["lighthouse.txt"],
                "support": "The restoration took three years",
            },
            {
                "id": "runners",
                "question": "How many runners took part in the city marathon?",
                "answers": ["more than 4,000", "4000"],
                "doc_ids": ["marathon.txt"],
            },
            {
                "id": "unanswerable",
                "question": "What is the boiling point of liquid nitrogen in kelvin?",
                "answers": [],
            },
        ],
    )
    chat = write_jsonl(
        tmp_path / "gold" / "chat.jsonl",
        [
            {
                "id": "marathon",
                "turns": [
                    {"user": "Who won the city marathon?", "answers": ["Tomas Vik"]},
                    {"user": "What was his time?", "answers": ["two hours and eleven minutes"]},
                ],
            }
        ],
    )
    bot = Assistant(Settings(corpus=corpus, store=tmp_path / "store"))
    bot.ingest()
    out, rep = tmp_path / "out.jsonl", tmp_path / "report.md"
    result = run_eval(bot, [qa, chat], output=out, report=rep)

    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == ["bakery", "lighthouse", "runners", "unanswerable", "marathon#1", "marathon#2"]
    assert rep.read_text().startswith("# Evaluation report")
    assert not [r.gold.id for r in result.results if r.error]
    assert result.overall["invalid_citations"] == 0
    assert result.overall["citation_validity"] == 1.0
    metrics = result.files[str(qa)]
    assert metrics["answer_accuracy"] >= 0.75, [(r.gold.id, r.verdict) for r in result.results]
    assert metrics["hit@5"] == 1.0


def test_make_eval_reads_pinned_corpora_that_uploads_never_touch() -> None:
    """Uploads from the page land in the served corpus (`corpus/` by default); the evals of
    `make test` read copies of their own under evals/, holding every article they cite."""
    root = Path(__file__).resolve().parent.parent
    makefile = (root / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    runs = [line for line in makefile.splitlines() if "assistant eval" in line]
    assert len(runs) == 2
    for line in runs:
        corpus = line.split("--corpus", 1)[1].split()[0]
        assert corpus.startswith("evals/"), line
        assert any((root / corpus).iterdir())
    gold = root / "evals" / "gold"
    assert sorted(p.name for p in (gold / "corpus").iterdir()) == [
        "melania-trump-putin-letter-children.txt"]
