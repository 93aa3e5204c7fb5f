"""Shared fakes for the tests of assistant/evals/ (tests/test_evals_*.py, one per module), the
package's public names and layering, and the end-to-end run on the real core."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import assistant.evals
from assistant.evals import add_eval_arguments, run_eval
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


def make_corpus(tmp_path: Path) -> Path:
    """A corpus directory with one article (each test module's ``corpus`` fixture)."""
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


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse eval arguments as the CLI would."""
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------
# the package
# ---------------------------------------------------------------------------


def test_names_other_modules_import_stay_in_the_package() -> None:
    from assistant.evals import (  # the CLI, evals/news.py and evals/train.py use these
        add_eval_arguments,
        normalize_answer,
        run_eval_command,
        text_contains,
    )

    assert callable(add_eval_arguments) and callable(run_eval_command)
    assert normalize_answer("Eight") == "8"
    assert text_contains("Eight children were reunited.", ["8"])
    for name in assistant.evals.__all__:
        assert getattr(assistant.evals, name) is not None, name


def test_modules_import_only_the_ones_before_them() -> None:
    """metrics -> gold -> runner -> report -> command: no module reaches back."""
    order = ["metrics", "gold", "runner", "report", "command"]
    package = Path(assistant.evals.__file__).parent
    assert sorted(p.stem for p in package.glob("*.py")) == sorted([*order, "__init__"])
    for k, name in enumerate(order):
        tree = ast.parse((package / f"{name}.py").read_text(encoding="utf-8"))
        used = {
            node.module.rsplit(".", 1)[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("assistant.evals.")
        }
        assert used <= set(order[:k]), (name, used)



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
