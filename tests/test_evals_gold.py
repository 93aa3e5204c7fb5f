"""Tests of assistant/evals/gold.py: reading gold files and their error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.evals import load_gold
from assistant.settings import AssistantError
from tests.test_evals import write_jsonl


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
