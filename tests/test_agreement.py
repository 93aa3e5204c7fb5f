"""What several articles say about the chosen answer (assistant/agreement.py), and how the
answer shows it: unit tests on hand-made sentences, then the whole path on a small corpus
written for the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.agreement import (
    agreement_line,
    find_agreement,
    same_story,
    states,
)
from assistant.corpus import read_text
from assistant.entities import Entity
from assistant.features import Choice, Sentence, Span, sentence_stems
from assistant.layout import ChunkRecord
from assistant.question import analyze
from assistant.retrieval import Hit
from assistant.types import Citation
from tests.conftest import corpus_bot


def _sentence(doc: str, text: str, prob: float, typed: list[str] = ()) -> Sentence:
    hit = Hit(id=f"{doc}::0", text=text,
              record=ChunkRecord(doc_id=doc, path=doc, start=0, end=len(text), sentences=()))
    ents = [Entity(t, "MONEY", text.index(t), text.index(t) + len(t)) for t in typed]
    return Sentence(doc_id=doc, path=doc, title=doc, start=0, end=len(text), text=text,
                    rank=0, hit=hit, typed=ents, entities=ents, prob=prob,
                    stems=sentence_stems(text))


def _choice(best: Sentence, short: str) -> Choice:
    span = Span(entity=Entity(short, "MONEY", 0, len(short)), sentence=best,
                sentence_rank=0, text=short)
    return Choice(sentences=[best], best=best, runner_up=None, span=span, span_prob=0.9)


COST = analyze("How much will the repairs cost?")
BEST = _sentence("a.txt", "The repairs will cost 19 million dollars, the council said.", 0.6,
                 ["19 million dollars"])


def test_other_articles_that_state_the_answer_agree_and_other_figures_differ() -> None:
    ranked = [
        BEST,
        _sentence("b.txt", "Officials say the repairs will cost 19 million dollars.", 0.2,
                  ["19 million dollars"]),
        _sentence("c.txt", "In March the repairs were to cost 12 million dollars.", 0.15,
                  ["12 million dollars"]),
        _sentence("e.txt", "The new stadium opened with 40,000 seats.", 0.3,
                  ["40,000"]),  # believed, but about something else
    ]
    found = find_agreement(ranked, _choice(BEST, "19 million dollars"), COST)
    assert [s.doc_id for s in found.agree] == ["b.txt"]
    assert [s.doc_id for s in found.differ] == ["c.txt"]
    assert found.articles == 2


def test_a_copy_of_one_story_counts_once_but_an_updated_figure_does_not() -> None:
    copy = _sentence("wire.txt", "The repairs will cost 19 million dollars, the council "
                     "said.", 0.3, ["19 million dollars"])
    update = _sentence("old.txt", "The repairs will cost 12 million dollars, the council "
                       "said.", 0.2, ["12 million dollars"])
    found = find_agreement([BEST, copy, update], _choice(BEST, "19 million dollars"), COST)
    assert found.agree == [] and [s.doc_id for s in found.differ] == ["old.txt"]
    assert same_story(BEST.text, copy.text) and not same_story(BEST.text, update.text)


def test_only_values_differ_a_different_name_is_not_an_update() -> None:
    other = _sentence("b.txt", "Maria Lopez won the vote.", 0.3, ["Maria Lopez"])
    best = _sentence("a.txt", "Ana Ruiz won the vote.", 0.6, ["Ana Ruiz"])
    found = find_agreement([best, other], _choice(best, "Ana Ruiz"), analyze("Who won the vote?"))
    assert found.agree == [] and found.differ == []
    # A short answer that is a common word is not "stated" by another sentence holding it.
    word = _sentence("c.txt", "The vote was won in a change of heart.", 0.3)
    found = find_agreement([best, word], _choice(best, "change"), analyze("Who won the vote?"))
    assert found.agree == []


@pytest.mark.parametrize(("sentence", "value", "expected"), [
    ("It cost 19,500 dollars.", "19500 dollars", True),
    ("It cost 119 million.", "19 million", False),  # whole words only
    ("Lopez won.", "", False),
])
def test_states_matches_whole_words(sentence: str, value: str, expected: bool) -> None:
    assert states(sentence, value) is expected


def test_the_agreement_line() -> None:
    def cite(doc: str, role: str) -> Citation:
        return Citation(n=1, doc_id=doc, title="", path=doc, start=0, end=1, quote="x",
                        role=role)

    assert agreement_line([cite("a", "answer"), cite("a", "answer")]) is None
    assert agreement_line([cite("a", "answer"), cite("b", "agrees"), cite("c", "agrees")]) \
        == "Stated in 3 articles"
    assert agreement_line([cite("a", "answer"), cite("b", "differs")]) == \
        "Stated in 1 article; 1 other article gives another figure"


ARTICLES = {
    "bridge-early.txt": "Harbour Bridge repairs priced\nPublished: 2024-03-04\n\n"
    "The Harbour Bridge repairs will cost 12 million dollars, the city council said on "
    "Monday. Work on the deck is to start in April.\n",
    "bridge-late.txt": "Bridge repair bill rises\nPublished: 2024-03-11\n\n"
    "The Harbour Bridge repairs will now cost 19 million dollars, the city council said "
    "on Monday. Rust found under the deck raised the price.\n\nSource: Coast Times\n",
    "bridge-wire.txt": "Bridge repair bill rises\nPublished: 2024-03-11\n\n"
    "The Harbour Bridge repairs will now cost 19 million dollars, the city council said "
    "on Monday. Rust found under the deck raised the price.\n\nSource: Wire Service\n",
    "council.txt": "Council meets on bridge\nPublished: 2024-03-12\n\n"
    "Councillors met on Tuesday. The repairs to the Harbour Bridge will cost 19 million "
    "dollars, the treasurer confirmed to the council.\n",
}


def test_the_answer_cites_agreeing_and_differing_articles_once_each(tmp_path: Path,
                                                                    embed_model) -> None:
    bot = corpus_bot(tmp_path, ARTICLES, embed_model)
    corpus = bot.settings.corpus
    answer = bot.ask("How much will the Harbour Bridge repairs cost?")
    assert "19 million" in (answer.short_answer or "")
    roles: dict[str, list[str]] = {}
    for c in answer.citations:
        roles.setdefault(c.role, []).append(c.path)
        assert read_text(corpus / c.path)[c.start : c.end] == c.quote
    # One of the two copies of the wire story is quoted; the other is not shown again.
    assert len({"bridge-late.txt", "bridge-wire.txt"} & set(roles["answer"])) == 1
    assert not {"bridge-late.txt", "bridge-wire.txt"} & set(roles.get("agrees", []))
    assert roles["agrees"] == ["council.txt"]
    assert roles["differs"] == ["bridge-early.txt"]
    assert answer.agreement == "Stated in 2 articles; 1 other article gives another figure"
    assert "[3]" not in answer.text and "[4]" not in answer.text  # only the answer's own
    data = answer.to_dict()
    assert data["agreement"] == answer.agreement
    assert [c["role"] for c in data["citations"]][-2:] == ["agrees", "differs"]


def test_a_newer_article_with_another_figure_is_preferred() -> None:
    from dataclasses import replace

    from assistant.agreement import newer_value

    old = replace(BEST, published="2024-03-04")
    newer = _sentence("n.txt", "The repairs will now cost 27 million dollars, officials "
                      "said.", 0.2, ["27 million dollars"])
    newer.published = "2024-03-11"
    older = _sentence("o.txt", "The repairs were to cost 9 million dollars.", 0.2,
                      ["9 million dollars"])
    older.published = "2024-02-01"
    found = find_agreement([old, newer, older], _choice(old, "19 million dollars"), COST)
    assert {s.doc_id for s in found.differ} == {"n.txt", "o.txt"}
    assert newer_value(found, _choice(old, "19 million dollars")) is newer
    undated = replace(BEST, published="")  # an undated answer is never overruled
    assert newer_value(find_agreement([undated, newer], _choice(undated, "19 million "
                                      "dollars"), COST), _choice(undated, "x")) is None
    latest = replace(BEST, published="2024-03-20")
    found = find_agreement([latest, newer, older], _choice(latest, "19 million dollars"), COST)
    assert newer_value(found, _choice(latest, "19 million dollars")) is None


def test_the_answer_moves_to_the_newest_figure(tmp_path: Path, embed_model) -> None:
    bot = corpus_bot(tmp_path, {
        "first.txt": "Flood deaths\nPublished: 2024-03-04\n\nAt least 12 people died in the "
        "Ashby valley floods, the regional police said on Monday.\n",
        "later.txt": "Toll rises\nPublished: 2024-03-08\n\nThe number of people who died in "
        "the floods in the Ashby valley rose to 27 on Thursday.\n"}, embed_model)
    question = "How many people died in the Ashby valley floods, according to the police?"
    answer = bot.ask(question)
    assert answer.short_answer == "27", answer.to_dict()
    assert [(c.path, c.role) for c in answer.citations] == [("later.txt", "answer"),
                                                             ("first.txt", "differs")]
    assert answer.agreement == "Stated in 1 article; 1 other article gives another figure"
    bot._answerer.prefer_newest = False  # the ranker alone prefers the police's sentence
    assert bot.ask(question).short_answer == "At least 12"
    bot._answerer.prefer_newest = True
    before = bot.ask(question, as_of="2024-03-05")  # as on the day the first was published
    assert before.short_answer == "At least 12" or "12" in (before.short_answer or "")
    assert [c.path for c in before.citations] == ["first.txt"]
