"""Conversations: follow-ups lean on the earlier turn, new topics stand alone."""

import pytest

from assistant.chat import ChatSession, is_follow_up, needs_earlier_turn
from assistant.settings import Settings
from assistant.types import Answer


@pytest.mark.parametrize(
    ("message", "follow"),
    [
        ("where had some of them been taken?", True),
        ("and in 2023?", True),
        ("who vouched for that?", True),
        ("What does it ban?", True),
        ("What is the capital of Australia?", False),
        ("Which court issued arrest warrants for Putin?", False),
    ],
)
def test_is_follow_up(message: str, follow: bool) -> None:
    assert is_follow_up(message) is follow


@pytest.mark.e2e
def test_follow_up_uses_the_earlier_turn(article_bot) -> None:
    chat = article_bot.chat()
    first = chat.send("Which court issued arrest warrants for Putin?")
    assert first.short_answer == "the International Criminal Court"
    second = chat.send("In which year did it do that?")
    assert "In 2023, the International Criminal Court" in second.text
    # Alone, the follow-up has nothing to go on.
    alone = article_bot.ask("In which year did it do that?")
    assert alone.abstained or "International Criminal Court" not in alone.text


class _EchoAssistant:
    """Answers every question with its own text and records what it was asked."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.asked: list[tuple[str, str | None]] = []

    def check_question(self, question: str) -> str:
        return question.strip()

    def ask(self, question: str, context: str | None = None, **_: object) -> Answer:
        self.asked.append((question, context))
        return Answer(question=question, text=f"About {question}")


def test_truncate_keeps_the_first_turns_and_the_context_they_give() -> None:
    bot = _EchoAssistant()
    chat = ChatSession(bot)  # type: ignore[arg-type]
    for q in ("Which court issued arrest warrants?", "and for whom?",
              "Who wrote the letter to Putin?"):
        chat.send(q)
    topics = list(chat._topics)
    chat.truncate(2)
    assert [m for m, _ in chat.history] == ["Which court issued arrest warrants?",
                                            "and for whom?"]
    assert chat._topics == topics[:2]
    # A follow-up now leans on turn 2, as if turn 3 had never been asked.
    assert chat.context("and when?") == topics[1]
    chat.truncate(5)
    assert len(chat.history) == len(chat._topics) == 2
    chat.truncate(-1)
    assert chat.history == [] and chat._topics == []
    assert len(bot.asked) == 3  # nothing was asked again


@pytest.mark.parametrize(
    ("message", "needs"),
    [("In which year did it do that?", True), ("and when?", True), ("Who said it?", True),
     ("What did she write to Putin?", False), ("Which court issued the warrants?", False)],
)
def test_needs_earlier_turn(message: str, needs: bool) -> None:
    assert needs_earlier_turn(message) is needs


@pytest.mark.e2e
def test_a_follow_up_with_no_earlier_turn_abstains_after_a_reset(article_bot) -> None:
    chat = article_bot.chat()
    first = chat.send("Which court issued arrest warrants for Putin?")
    assert not first.abstained
    chat.reset()
    answer = chat.send("In which year did it do that?")
    assert answer.abstained and answer.citations == []
    assert answer.notice is not None and "earlier" in answer.notice
    # The conversation goes on from there: a full question is answered.
    again = chat.send("Which court issued arrest warrants for Putin?")
    assert again.short_answer == first.short_answer


@pytest.mark.e2e
def test_new_topic_is_not_dragged_by_the_old_one(article_bot) -> None:
    chat = article_bot.chat()
    chat.send("How many children were reunited in the past 24 hours?")
    answer = chat.send("What is the capital of Australia?")
    assert answer.abstained
    assert len(chat.history) == 2
    chat.reset()
    assert chat.history == []


@pytest.mark.e2e
def test_a_follow_up_never_adds_the_previous_answer_as_an_extra_citation(article_bot) -> None:
    chat = article_bot.chat()
    first = chat.send("How many children were reunited with their families in the past 24 hours?")
    second = chat.send("Who did she write the letter to?")
    earlier = {(c.doc_id, c.start, c.end) for c in first.citations}
    if len(second.citations) > 1:
        assert not earlier & {(c.doc_id, c.start, c.end) for c in second.citations}
    assert len(second.citations) <= 2


EARNINGS = (
    "Copperfield Tools reports record year\n\n"
    "Copperfield Tools, the Ohio maker of garden equipment, reported third-quarter sales of "
    "$412 million on Thursday, up 6% from a year earlier.\n\n"
    "For the full year 2024, the company reported sales of $1.7 billion and a profit of "
    "$96 million.\n\n"
    "Chief executive Dana Whitcombe said the company expects sales of $1.9 billion in 2025, "
    "helped by a new factory in Toledo that opens in the spring.\n"
)


@pytest.fixture(scope="module")
def earnings_chat(tmp_path_factory: pytest.TempPathFactory, embed_model):
    from tests.conftest import build_bot

    bot = build_bot(tmp_path_factory.mktemp("earnings"), embed_model,
                    {"copperfield-earnings.txt": EARNINGS})
    return bot


@pytest.mark.e2e
def test_a_follow_up_naming_its_own_year_is_answered_from_it(earnings_chat) -> None:
    chat = earnings_chat.chat()
    first = chat.send("What sales did Copperfield Tools report for the third quarter?")
    assert "$412 million" in first.text
    # The earlier turn's number ($412 million) is context, not a number this answer needs.
    second = chat.send("And for all of 2024?")
    assert not second.abstained
    assert "$1.7 billion" in second.text
    third = chat.send("What about 2025?")
    assert not third.abstained
    assert "$1.9 billion" in third.text


@pytest.mark.e2e
def test_a_follow_up_does_not_repeat_the_earlier_short_answer(earnings_chat) -> None:
    chat = earnings_chat.chat()
    first = chat.send("What profit did Copperfield Tools make in 2024?")
    assert first.short_answer == "$96 million"
    second = chat.send("And what were its sales that year?")
    assert second.short_answer == "$1.7 billion"
