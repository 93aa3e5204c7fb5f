"""Conversations: follow-ups lean on the earlier turn, new topics stand alone."""

import pytest

from assistant.chat import is_follow_up


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
