"""A question-answering assistant over a corpus of news articles, with cited answers."""

from assistant.settings import AssistantError, Settings
from assistant.types import Answer, Citation, IngestReport, Passage

__all__ = [
    "Answer",
    "Assistant",
    "AssistantError",
    "ChatSession",
    "Citation",
    "IngestReport",
    "Passage",
    "Settings",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Lazy: importing the package must stay cheap for the CLI.
    if name == "Assistant":
        from assistant.core import Assistant

        return Assistant
    if name == "ChatSession":
        from assistant.chat import ChatSession

        return ChatSession
    raise AttributeError(name)
