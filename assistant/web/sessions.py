"""Browser sessions: a conversation's visible turns kept in sync with its ChatSession, and
where the user's messages are in the chat history."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assistant.settings import AssistantError
from assistant.types import Answer
from assistant.web.locking import ReadWriteLock
from assistant.web.render import error_message

if TYPE_CHECKING:
    from assistant.core import Assistant

log = logging.getLogger(__name__)


@dataclass
class Turn:
    """One question of a browser conversation and its outcome."""

    question: str
    answer: Answer | None = None
    error: str | None = None


class Conversation:
    """The state of one browser session: a ChatSession kept in sync with the visible turns.

    Undo, retry and clear cut the visible turns; :meth:`trim` then cuts the ChatSession's
    turns to the same point (``ChatSession.truncate``), so whatever context it derives from
    its turns (follow-up topics, history) matches the page again, and nothing is asked twice.
    """

    def __init__(self, bot: Assistant) -> None:
        self.chat = bot.chat()
        self.turns: list[Turn] = []
        self.lock = threading.Lock()

    def send(self, question: str, guard: ReadWriteLock,
             on_token: Callable[[str], None] | None = None) -> Turn:
        """Answer ``question`` in context under ``guard``'s read lock; errors become a turn
        with a one-line ``error``. ``on_token`` receives the answer text piece by piece as
        the answer layer produces it (``ChatSession.send``, ``Assistant.ask``)."""
        with self.lock:
            turn = Turn(question)
            try:
                with guard.read():
                    turn.answer = self.chat.send(question, on_token=on_token)
            except Exception as exc:
                if not isinstance(exc, AssistantError):
                    log.exception("answering %r failed", question[:200])
                turn.error = error_message(exc)
            self.turns.append(turn)
            return turn

    def trim(self, keep: int) -> None:
        """Keep the first ``keep`` turns, and in the ChatSession the turns it holds of them
        (the answered ones: an error never entered it)."""
        with self.lock:
            self.turns = self.turns[: max(0, keep)]
            self.chat.truncate(sum(1 for turn in self.turns if turn.answer is not None))


def _user_count(history: Sequence[Any]) -> int:
    return sum(1 for m in history if _role(m) == "user")


def _role(message: Any) -> str | None:
    if isinstance(message, dict):
        return message.get("role")
    return getattr(message, "role", None)


def _last_user_index(history: Sequence[Any]) -> int:
    for i in range(len(history) - 1, -1, -1):
        if _role(history[i]) == "user":
            return i
    return -1
