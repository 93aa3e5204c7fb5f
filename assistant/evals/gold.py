"""Gold files: the JSON Lines format, loading and validation.

A question line::

    {"id": "q1", "question": "...", "answers": ["8", "eight"], "doc_ids": ["a.txt"],
     "support": "Eight children have been rejoined"}

``"answers": []`` marks an unanswerable question (the assistant must abstain);
``doc_ids`` and ``support`` are optional; unknown fields are ignored. A chat line holds a
conversation whose turns are scored like questions (id ``<conv>#<n>``, ``n`` from 1),
all sent through one chat session::

    {"id": "c1", "turns": [{"user": "...", "answers": [...]}, {"user": "...", ...}]}

A malformed file raises AssistantError naming the file and line (and turn).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.corpus import SkippedFile, read_text
from assistant.evals.metrics import clean_doc_id, normalize_answer
from assistant.settings import AssistantError

DEFAULT_GOLD_GLOB = "evals/gold/*.jsonl"


@dataclass
class GoldQuestion:
    """One scored question (or one chat turn)."""

    id: str
    question: str
    answers: list[str]
    doc_ids: list[str] = field(default_factory=list)
    support: str | None = None
    file: str = ""
    line: int = 0
    as_of: str | None = None  # the day it was asked (``as_of``, else ``question_date``)

    @property
    def answerable(self) -> bool:
        """False when the assistant is expected to abstain."""
        return bool(self.answers)


@dataclass
class GoldConversation:
    """A chat conversation: its turns are answered in one session."""

    id: str
    turns: list[GoldQuestion]
    file: str = ""
    line: int = 0


GoldItem = GoldQuestion | GoldConversation


def load_gold(path: Path | str) -> list[GoldItem]:
    """Parse one gold JSONL file; raises AssistantError naming the file and line."""
    path = Path(path)
    try:
        raw = read_text(path)
    except FileNotFoundError:
        raise AssistantError(f"gold file not found: {path}") from None
    except (OSError, SkippedFile) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AssistantError(f"cannot read gold file {path}: {reason}") from None
    items: list[GoldItem] = []
    seen: set[str] = set()
    for lineno, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssistantError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise AssistantError(f"{where}: expected a JSON object")
        item = _parse_gold_object(obj, where, str(path), lineno)
        if item.id in seen:
            raise AssistantError(f"{where}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items


def _parse_gold_object(obj: dict[str, Any], where: str, file: str, lineno: int) -> GoldItem:
    """One gold line: a conversation when it has ``turns``, else a question."""
    item_id = obj.get("id", f"line{lineno}")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool) or str(item_id) == "":
        raise AssistantError(f"{where}: 'id' must be a non-empty string")
    item_id = str(item_id)
    if "turns" in obj:
        turns = obj["turns"]
        if not isinstance(turns, list) or not turns:
            raise AssistantError(f"{where}: 'turns' must be a non-empty list")
        parsed = []
        for n, turn in enumerate(turns, start=1):
            if not isinstance(turn, dict):
                raise AssistantError(f"{where}: turn {n} must be a JSON object")
            text = turn.get("user", turn.get("question"))
            qid, turn_where = f"{item_id}#{n}", f"{where} turn {n}"
            parsed.append(_gold_question(qid, text, "user", turn, turn_where, file, lineno))
        return GoldConversation(id=item_id, turns=parsed, file=file, line=lineno)
    return _gold_question(item_id, obj.get("question"), "question", obj, where, file, lineno)


def _gold_question(
    qid: str,
    text: Any,
    text_key: str,
    obj: dict[str, Any],
    where: str,
    file: str,
    lineno: int,
) -> GoldQuestion:
    """A validated question (or turn) whose text is under ``text_key``; ``where`` prefixes
    the error messages."""
    if not isinstance(text, str) or not text.strip():
        raise AssistantError(f"{where}: '{text_key}' must be a non-empty string")
    answers = obj.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise AssistantError(f"{where}: 'answers' must be a list of strings ([] = unanswerable)")
    for a in answers:
        if not normalize_answer(a):
            raise AssistantError(f"{where}: answer {a!r} is empty after normalisation")
    doc_ids = obj.get("doc_ids") or []
    if not isinstance(doc_ids, list) or not all(isinstance(d, str) for d in doc_ids):
        raise AssistantError(f"{where}: 'doc_ids' must be a list of strings")
    support = obj.get("support")
    if support is not None and not isinstance(support, str):
        raise AssistantError(f"{where}: 'support' must be a string")
    as_of = obj.get("as_of", obj.get("question_date"))
    if as_of is not None:
        try:
            as_of = dt.date.fromisoformat(str(as_of)[:10]).isoformat()
        except ValueError:
            raise AssistantError(f"{where}: 'as_of' must be a date (YYYY-MM-DD)") from None
    return GoldQuestion(
        as_of=as_of,
        id=qid,
        question=text,
        answers=list(answers),
        doc_ids=[clean_doc_id(d) for d in doc_ids],
        support=support if support and support.strip() else None,
        file=file,
        line=lineno,
    )


def resolve_gold_paths(paths: Sequence[Path | str] | None) -> list[Path]:
    """The gold files to run: the given files (a directory means its ``*.jsonl``), or
    every ``evals/gold/*.jsonl`` when none are given."""
    if not paths:
        found = sorted(Path().glob(DEFAULT_GOLD_GLOB))
        if not found:
            raise AssistantError(f"no gold files given and none match {DEFAULT_GOLD_GLOB}")
        return found
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise AssistantError(f"no *.jsonl gold files in {p}")
            out.extend(found)
        else:
            out.append(p)
    return out

