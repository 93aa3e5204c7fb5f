"""Same question, same store, same answer: whatever was asked before, in any process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "evals" / "gold" / "corpus.jsonl"

_SCRIPT = """
import json, sys
from assistant import Assistant
bot = Assistant(corpus=sys.argv[1], store=sys.argv[2])
out = {}
for q in json.loads(sys.argv[3]):
    d = bot.ask(q).to_dict()
    d.pop("latency_ms")
    out[q] = d
print(json.dumps(out))
"""


def _questions() -> list[str]:
    rows = [json.loads(line) for line in GOLD.read_text().splitlines() if line.strip()]
    return [r["question"] for r in rows[:16]]


def _ask_all(bot, questions: list[str]) -> dict[str, dict]:
    out = {}
    for q in questions:
        d = bot.ask(q).to_dict()
        d.pop("latency_ms")
        out[q] = d
    return out


@pytest.mark.slow
def test_answers_do_not_depend_on_order_process_or_hash_seed(tmp_path, corpus_dir) -> None:
    from assistant.core import Assistant

    store = tmp_path / "store"
    bot = Assistant(corpus=corpus_dir, store=store)
    bot.ingest()
    questions = _questions()
    forward = _ask_all(bot, questions)
    backward = _ask_all(bot, list(reversed(questions)))
    assert backward == forward
    fresh = Assistant(corpus=corpus_dir, store=store)
    assert _ask_all(fresh, list(reversed(questions))) == forward
    for seed, order in (("1", questions), ("4242", list(reversed(questions)))):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(corpus_dir), str(store), json.dumps(order)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == forward, seed
