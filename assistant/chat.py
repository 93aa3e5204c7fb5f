"""A conversation: follow-up questions are answered in the context of earlier turns.

A follow-up ("where had some of them been taken?", "and in 2023?", "who vouched for
that?") leans on the previous turn: its words join the query and, with a lower weight, the
terms the answer must cover. A question that stands on its own is answered on its own, so
an old topic never overrides a new one.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from assistant.question import analyze
from assistant.types import Answer

if TYPE_CHECKING:
    from collections.abc import Callable

    from assistant.core import Assistant

_ANAPHORA = re.compile(
    r"\b(he|she|they|them|it|its|his|her|hers|their|theirs|this|that|these|those|there|"
    r"him|the same|such|one|ones|else|also|too|instead)\b",
    re.IGNORECASE,
)
_ELLIPSIS = re.compile(r"^\s*(and|but|so|or|what about|how about|and what|then)\b",
                       re.IGNORECASE)


def _refers_back(message: str) -> bool:
    """A pronoun ("it", "they", "that") or a leading "and …"."""
    return bool(_ELLIPSIS.match(message) or _ANAPHORA.search(message))


def is_follow_up(message: str) -> bool:
    """True when a message leans on the conversation: it refers back, or has too few
    words of its own."""
    return _refers_back(message) or len(analyze(message).terms) < 2


def needs_earlier_turn(message: str) -> bool:
    """True when a message cannot be answered without an earlier turn: it refers back
    and names at most one thing of its own ("In which year did it do that?"). Asked
    first, such a message is an abstention, never a guess."""
    return _refers_back(message) and len(analyze(message).terms) < 2


def _is_name(short_answer: str | None) -> bool:
    """True for a short answer a pronoun can stand for: a name, not a number or date."""
    if not short_answer or any(ch.isdigit() for ch in short_answer):
        return False
    return any(w[:1].isupper() for w in short_answer.split())


NO_EARLIER_TURN = "this question refers to an earlier one: ask it in full"


class ChatSession:
    """Keeps the turns of one conversation; ``send`` answers the next message."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.history: list[tuple[str, Answer]] = []
        self._topics: list[str] = []  # each turn's question with its inherited context
        # The date limits of every question of the conversation (see Assistant.ask).
        self.since: dt.date | str | None = None
        self.until: dt.date | str | None = None
        self.as_of: dt.date | str | None = None

    def context(self, message: str) -> str | None:
        """The earlier turn a follow-up leans on, as text (None for a new topic)."""
        if not self.history or not is_follow_up(message):
            return None
        return self._topics[-1]

    def send(self, message: str, on_token: Callable[[str], None] | None = None) -> Answer:
        """Answer ``message`` and remember the turn (``on_token`` as in ``Assistant.ask``)."""
        message = self.assistant.check_question(message)  # type, length, control characters
        context = self.context(message)
        avoid: list[tuple[str, int, int]] = []
        given: list[str] = []
        if context is not None:
            last = self.history[-1][1]
            avoid = [(c.doc_id, c.start, c.end) for c in last.citations
                     if c.role == "answer"]
            given = [last.short_answer] if last.short_answer and not last.abstained else []
        question = message
        if context is None and needs_earlier_turn(message):
            answer = self.assistant.abstain(message, NO_EARLIER_TURN)
            self._topics.append(message)
            self.history.append((message, answer))
            return answer
        if context is not None and self.assistant.settings.llm_enabled:
            # With a language model, the follow-up is rewritten as a standalone question.
            from assistant.llm import condense_question, format_history

            question = condense_question(self.assistant.settings,
                                         format_history(self.history), message)
        answer = self.assistant.ask(question, context=context, avoid=avoid, given=given,
                                    on_token=on_token, since=self.since, until=self.until,
                                    as_of=self.as_of)
        topic = message if context is None else f"{context} {message}"
        if not answer.abstained and answer.citations and _is_name(answer.short_answer):
            topic = f"{topic} {answer.short_answer}"  # what "she" or "it" may refer to
        self._topics.append(" ".join(topic.split()[-60:]))
        self.history.append((message, answer))
        return answer

    def truncate(self, keep: int) -> None:
        """Keep the first ``keep`` turns and forget the rest (undo, retry): what a follow-up
        leans on is then as it was after turn ``keep``, without asking anything again."""
        keep = max(0, keep)
        del self.history[keep:]
        del self._topics[keep:]

    def reset(self) -> None:
        """Forget the conversation."""
        self.history.clear()
        self._topics.clear()
