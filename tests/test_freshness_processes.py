"""Citations stay true while the corpus changes, checked with real processes over random
edits: after each round of edits (text added at the top, in the middle or at the end,
sentences changed, files deleted, renamed or restored), a long-running asker process and a
one-shot ``assistant ask --json`` answer the questions, and every quote they return must
equal the span of the file as it is now. Now and then an incremental ingest runs between
rounds, so both states are covered: a corpus ahead of its index, and one just ingested."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from assistant.corpus import read_text
from tests.conftest import ARTICLE

pytestmark = pytest.mark.slow

# Short articles written for this test, so that several files compete for each question.
ARTICLES = {
    "harbour.txt": "Harbour bridge repairs\n\nThe harbour bridge will close for repairs on "
    "Monday. The repairs will cost 12 million dollars, the council said. Ferries will run "
    "every twenty minutes while the bridge is closed.\n\nThe work should end in June.\n",
    "library.txt": "A new library opens\n\nThe city library reopened on Saturday after two "
    "years of building work. It holds 80,000 books and a room for children. The mayor cut "
    "the ribbon at ten in the morning.\n",
    "orchard.txt": "Apple harvest\n\nFarmers in the valley picked 4,300 tonnes of apples this "
    "autumn, more than last year. Dry weather in August helped the fruit ripen early. Prices "
    "at the market fell by a tenth.\n",
}
ROUNDS = 6
QUESTIONS = [
    "How many children were reunited with their families in the past 24 hours?",
    "How much will the harbour bridge repairs cost?",
    "How many books does the city library hold?",
    "How many tonnes of apples did the farmers pick?",
]
FILLER = ("Editor's note: this story was updated with comments from local officials.",
          "Correction: an earlier version gave the wrong day for the meeting.",
          "Residents were invited to a public meeting at the town hall.",
          "The figures were published in a report on Thursday.")
ASKER = textwrap.dedent("""
    import json, sys
    from assistant.core import Assistant
    bot = Assistant(corpus=sys.argv[1], store=sys.argv[2])
    for line in sys.stdin:
        answer = bot.ask(line.strip())
        data = answer.to_dict()
        data["passages"] = [p.to_dict() for p in answer.passages]
        print(json.dumps(data), flush=True)
""")


def _edit(corpus: Path, rng: random.Random, originals: dict[str, str]) -> str:
    """One random change to the corpus; returns what was done (for the failure message)."""
    files = sorted(p.name for p in corpus.glob("*.txt"))
    kind = rng.choice(["prepend", "prepend", "middle", "append", "change", "change",
                       "delete", "rename", "restore"])
    if kind == "restore" or not files:
        name = rng.choice(sorted(originals))
        for other in corpus.glob("*.txt"):  # a renamed copy goes: one file per article
            if other.name != name and read_text(other) in (originals[name],):
                other.unlink()
        (corpus / name).write_text(originals[name], encoding="utf-8")
        return f"restore {name}"
    name = rng.choice(files)
    path = corpus / name
    text = read_text(path)
    if kind == "delete" and len(files) > 2:
        path.unlink()
        return f"delete {name}"
    if kind == "rename":
        new = f"{path.stem}-{rng.randrange(1000)}.txt"
        path.rename(corpus / new)
        return f"rename {name} -> {new}"
    if kind == "change":
        words = text.split(" ")
        i = rng.randrange(len(words))
        words[i] = rng.choice(["nine", "4,900", "Tuesday", "several", words[i].upper()])
        path.write_text(" ".join(words), encoding="utf-8")
        return f"change word {i} of {name}"
    line = rng.choice(FILLER) + "\n\n"
    if kind == "prepend":
        path.write_text(line + text, encoding="utf-8")
    elif kind == "append":
        path.write_text(text + "\n" + line, encoding="utf-8")
    else:
        cut = text.find("\n\n", len(text) // 3)
        cut = cut + 2 if cut >= 0 else len(text)
        path.write_text(text[:cut] + line + text[cut:], encoding="utf-8")
    return f"{kind} {name}"


def _check(data: dict[str, Any], corpus: Path, history: list[str]) -> None:
    """Every quote and passage of ``data`` is the current span of an existing file."""
    for c in data["citations"]:
        path = corpus / c["path"]
        assert path.is_file(), (c, history)
        assert read_text(path)[c["start"] : c["end"]] == c["quote"], (c, history)
    for p in data.get("passages", []):
        path = corpus / p["path"]
        assert path.is_file(), (p, history)
        assert read_text(path)[p["start"] : p["end"]] == p["text"], (p, history)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_quote_equals_the_current_span_through_random_edits(tmp_path: Path,
                                                                  seed: int) -> None:
    rng = random.Random(seed)
    corpus, store = tmp_path / "corpus", tmp_path / "store"
    corpus.mkdir()
    shutil.copy(ARTICLE, corpus / ARTICLE.name)
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    originals = {p.name: read_text(p) for p in corpus.glob("*.txt")}
    cli = [sys.executable, "-m", "assistant.cli"]
    where = ["--corpus", str(corpus), "--store", str(store)]
    subprocess.run([*cli, "ingest", *where], check=True, capture_output=True, timeout=300)
    asker = subprocess.Popen([sys.executable, "-c", ASKER, str(corpus), str(store)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    history: list[str] = []
    answered = cited = 0
    try:
        for round_no in range(ROUNDS):
            history += [_edit(corpus, rng, originals) for _ in range(rng.randint(1, 2))]
            for question in QUESTIONS:
                assert asker.stdin is not None and asker.stdout is not None
                asker.stdin.write(question + "\n")
                asker.stdin.flush()
                data = json.loads(asker.stdout.readline())
                _check(data, corpus, history)
                answered += not data["abstained"]
                cited += len(data["citations"])
            one = subprocess.run([*cli, "ask", *where, "--json", rng.choice(QUESTIONS)],
                                 capture_output=True, text=True, timeout=300)
            assert one.returncode == 0, one.stderr
            _check(json.loads(one.stdout), corpus, history)
            if round_no % 3 == 2:
                subprocess.run([*cli, "ingest", *where], check=True, capture_output=True,
                               timeout=300)
                history.append("ingest")
    finally:
        asker.kill()
        asker.wait()
    # The edits leave most questions answerable: the check was exercised, not vacuous.
    assert answered >= len(QUESTIONS) * ROUNDS // 2 and cited >= answered
