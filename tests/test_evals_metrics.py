"""Tests of assistant/evals/metrics.py: normalisation, answer accuracy, exact match and F1,
abstention, latency and retrieval figures."""

from __future__ import annotations

import pytest

from assistant.evals import (
    abstention_scores,
    answer_correct,
    exact_match,
    hit_at_k,
    mean_reciprocal_rank,
    normalize_answer,
    percentile,
    retrieval_rank,
    short_answer_quoted,
    token_f1,
)
from tests.test_evals import answer

# ---------------------------------------------------------------------------
# normalisation and answer metrics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("eight", "8"),
        ("Eight children", "8 children"),
        ("twenty-four", "24"),
        ("twenty four hours", "24 hours"),
        ("19,500", "19500"),
        ("1,600", "1600"),
        ("1,600,000", "1600000"),
        ("one hundred and five", "105"),
        ("1.5 million", "1500000"),
        ("The “Peace Letter”—", "peace letter"),
        ("Children’s rights!", "children rights"),
        ("don't", "dont"),
        ("  An   apple ", "apple"),
    ],
)
def test_normalize_answer_equivalences(a: str, b: str) -> None:
    assert normalize_answer(a) == normalize_answer(b)


def test_normalize_answer_output() -> None:
    assert normalize_answer("The First Lady’s “peace letter”") == "first lady peace letter"
    assert normalize_answer("more than 19,500 children") == "more than 19500 children"
    assert normalize_answer("one two") == "1 2"  # separate numbers stay separate
    assert normalize_answer("3.14") == "3.14"  # a decimal point survives
    assert normalize_answer("Washington, D.C.") == "washington d c"


def test_answer_correct_whole_tokens() -> None:
    assert answer_correct(answer("Eight children were reunited."), ["8"])
    assert answer_correct(answer("It took 24 hours."), ["twenty-four hours"])
    assert not answer_correct(answer("28 children were reunited."), ["8"])
    assert not answer_correct(answer("A lighthouse keeper."), ["light"])
    assert answer_correct(answer("The First Lady’s advocacy."), ["the First Lady"])
    assert not answer_correct(answer("Eight children.", abstained=True), ["8"])


def test_answer_correct_unanswerable() -> None:
    assert answer_correct(answer("I could not find this.", abstained=True), [])
    assert not answer_correct(answer("Paris."), [])


def test_exact_match_and_f1() -> None:
    assert exact_match("Eight", ["8"]) == 1.0
    assert exact_match("the 19,500", ["19500", "x"]) == 1.0
    assert exact_match("eight children", ["8"]) == 0.0
    assert exact_match(None, ["8"]) == 0.0
    assert token_f1("eight children", ["8"]) == pytest.approx(2 / 3)
    assert token_f1("Maria Lvova-Belova", ["Lvova Belova", "nobody"]) == pytest.approx(0.8)
    assert token_f1("", ["8"]) == 0.0
    assert token_f1("nothing alike", ["8"]) == 0.0


def test_abstention_scores_counting() -> None:
    # (abstained, answerable)
    cases = [(True, False), (True, False), (False, False), (True, True)]
    cases += [(False, True)] * 3
    scores = abstention_scores(cases)
    assert scores["abstention_precision"] == pytest.approx(2 / 3)
    assert scores["abstention_recall"] == pytest.approx(2 / 3)
    assert scores["false_abstention_rate"] == pytest.approx(1 / 4)
    empty = abstention_scores([(False, True)])
    assert empty["abstention_precision"] is None
    assert empty["abstention_recall"] is None
    assert empty["false_abstention_rate"] == 0.0


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([float(i) for i in range(1, 101)], 95) == pytest.approx(95.05)


# ---------------------------------------------------------------------------
# retrieval
# ---------------------------------------------------------------------------


def test_retrieval_rank_hits_and_mrr() -> None:
    assert retrieval_rank(["a.txt", "b.txt", "c.txt"], ["c.txt"]) == 3
    assert retrieval_rank(["a.txt", "b.txt"], ["x.txt", "b.txt"]) == 2
    assert retrieval_rank(["a.txt"], ["./a.txt"]) == 1
    assert retrieval_rank([], ["a.txt"]) is None
    ranks = [1, 3, None, 6]
    assert hit_at_k(ranks, 1) == pytest.approx(0.25)
    assert hit_at_k(ranks, 5) == pytest.approx(0.5)
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 0 + 1 / 6) / 4)
    assert hit_at_k([], 1) is None
    assert mean_reciprocal_rank([]) is None


def test_only_the_sentences_the_answer_quotes_count_against_its_length() -> None:
    from assistant.types import Citation

    def cite(n: int, role: str = "answer") -> Citation:
        return Citation(n=n, doc_id="a", title="", path="a", start=0, end=1, quote="x",
                        role=role)

    two = answer("It took three years. [1] It was hard. [2]", citations=[cite(1), cite(2)])
    assert answer_correct(two, ["three years"])
    three = answer("It took three years. [1] It was hard. [2] And long. [3]",
                   citations=[cite(1), cite(2), cite(3)])
    assert not answer_correct(three, ["three years"])  # more than two cited sentences
    backed = answer("It took three years. [1] It was hard. [2]",
                    citations=[cite(1), cite(2), cite(3, "agrees"), cite(4, "differs")])
    assert answer_correct(backed, ["three years"])  # other articles' sources are not text


def test_a_short_answer_counts_as_quoted_only_in_the_answers_own_quotes() -> None:
    from assistant.types import Citation

    def cite(quote: str, role: str = "answer") -> Citation:
        return Citation(n=1, doc_id="a", title="", path="a", start=0, end=len(quote),
                        quote=quote, role=role)

    assert short_answer_quoted(answer("…", short="19,500",
                                      citations=[cite("About 19500 people left.")]))
    assert short_answer_quoted(answer("…", short="Eight",
                                      citations=[cite("It took 3 days."), cite("8 came back.")]))
    assert short_answer_quoted(answer("…", short="million",
                                      citations=[cite("It cost $312 million.")]))
    assert not short_answer_quoted(answer("…", short="8", citations=[cite("It took 18 days.")]))
    assert not short_answer_quoted(answer("…", short="27", citations=[
        cite("12 died."), cite("27 died.", "differs")]))  # another article's figure
    assert not short_answer_quoted(answer("…", short=None, citations=[cite("12 died.")]))
