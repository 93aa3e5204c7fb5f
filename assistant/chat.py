"""A conversation: questions answered in the context of the earlier turns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.types import Answer

if TYPE_CHECKING:
    from assistant.core import Assistant


class ChatSession:
    """Keeps the turns of one conversation; ``send`` answers the next message."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.history: list[tuple[str, Answer]] = []

    def send(self, message: str) -> Answer:
        """Answer ``message`` and remember the turn."""
        answer = self.assistant.ask(message)
        self.history.append((message, answer))
        return answer

    def reset(self) -> None:
        """Forget the conversation."""
        self.history.clear()
