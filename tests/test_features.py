"""The answer layer's features: each a documented function of question and candidate."""


import numpy as np
import pytest

from assistant.answering import ExtractiveAnswerer, clean_span, word_candidates
from assistant.entities import Entity, EntityTagger
from assistant.features import (
    ANSWER_FEATURES,
    SENTENCE_BASE,
    SENTENCE_FULL,
    SPAN_FEATURES,
    describe,
    match_strength,
    matrix,
)
from assistant.layout import ChunkRecord
from assistant.question import analyze, focus_word
from assistant.retrieval import Hit


def make_hit(doc: str, text: str, rank_score: float = 0.5, start: int = 0) -> Hit:
    """A retrieved chunk whose sentences are split at '. '."""
    spans, pos = [], 0
    for part in text.split(". "):
        end = pos + len(part) + (1 if pos + len(part) < len(text) else 0)
        spans.append([start + pos, start + min(end, len(text))])
        pos = end + 1
    record = ChunkRecord(doc_id=doc, path=doc, title=doc, start=start, end=start + len(text),
                         sentences=tuple((s, e) for s, e in spans))
    return Hit(id=f"{doc}#0", text=text, record=record, score=rank_score, bm25=3.0,
               dense=0.5)


@pytest.mark.parametrize("features", [SENTENCE_BASE, SENTENCE_FULL, SPAN_FEATURES,
                                      ANSWER_FEATURES])
def test_every_feature_is_named_once_and_documented(features) -> None:
    names = [n for n, _ in features]
    assert len(names) == len(set(names))
    assert all(doc for _, doc in describe(features))


@pytest.mark.parametrize(
    ("question", "focus"),
    [("What sport do they play?", "sport"), ("Which music genre was she known for?", "genre"),
     ("Which state, after the vote, …", "state"), ("What was its destination?", None),
     ("Who won?", None), ("Twitter will be testing which new feature?", "feature"),
     # The phrase ends at the verb, an adverb or a function word, whatever follows.
     ("Which club won the regional cup last spring?", "club"),
     ("Which bakery chain recently closed its last shop?", "chain"),
     ("The head of which charity stepped down on Friday?", "charity"),
     ("Which small U.S. town held a festival for its oldest tree?", "town"),
     ("What rarely seen owl nested in the park?", "owl"),
     ("Which mayor said the bridge would reopen?", "mayor"),
     # An owner is what is asked for; a kind ("children's") is passed over.
     ("Which city's mayor resigned?", "city"), ("Which children's book won a prize?", "book"),
     ("Which children's author died?", "author"), ("Which seed grew fastest?", "seed"),
     # "type of" names a kind of what is asked for; a participle's object ends the phrase.
     ("Which type of boat belonging to the club was sold?", "boat"),
     ("What kind of tree fell?", "tree"), ("Which type was it?", None),
     ("Which Dutch painting in the museum was stolen?", "painting")],
)
def test_focus_word(question: str, focus: str | None) -> None:
    assert focus_word(question) == focus


def test_match_strength_exact_prefix_and_none() -> None:
    stems = frozenset({"reunit", "children", "famili"})
    assert match_strength("children", stems) == 1.0
    assert match_strength("childr", stems) == 0.7  # shares the 5-letter head
    assert match_strength("letter", stems) == 0.0


def _evidence(question: str, texts: list[str]):
    answerer = ExtractiveAnswerer(EntityTagger())
    hits = [make_hit(f"d{i}.txt", t, 1 / (i + 1)) for i, t in enumerate(texts)]
    q = analyze(question)
    qvec = np.ones(4) / 2
    svecs = {}
    for h in hits:
        for s, e in h.sentences:
            svecs[(h.doc_id, s, e)] = np.ones(4) / 2 if "reunited" in h.text[s:e] else \
                np.array([1.0, 0, 0, 0])
    return answerer, answerer.evidence(q, hits, qvec, svecs)


def test_sentence_features_see_coverage_similarity_and_type() -> None:
    answerer, ev = _evidence(
        "How many children were reunited with their families?",
        ["The weather was mild. Eight children were reunited with their families on Friday",
         "Officials met in Geneva. The talks lasted all day"])
    names = [n for n, _ in SENTENCE_BASE]
    x = matrix(SENTENCE_BASE, ev, ev.sentences)
    best = next(i for i, s in enumerate(ev.sentences) if "Eight" in s.text)
    other = next(i for i, s in enumerate(ev.sentences) if "Geneva" in s.text)
    for name in ("cover", "dense", "cover_context"):
        j = names.index(name)
        assert x[best, j] > x[other, j], name
    assert x[best, names.index("cover")] == pytest.approx(1.0)
    answerer.tag(ev, ev.sentences)
    full = [n for n, _ in SENTENCE_FULL]
    y = matrix(SENTENCE_FULL, ev, ev.sentences)
    assert y[best, full.index("typed")] == 1.0  # "Eight" answers "how many"
    assert y[other, full.index("typed")] == 0.0


def test_redundancy_counts_articles_stating_the_same_answer() -> None:
    answerer, ev = _evidence(
        "Which country won the cup?",
        ["Argentina won the cup after a final in Qatar",
         "Fans in Buenos Aires cheered as Argentina won",
         "The cup final drew a record audience"])
    answerer.tag(ev, ev.sentences)
    assert ev.docs_mentioning("Argentina") == 2
    assert ev.docs_mentioning("Qatar") == 1


def test_word_candidates_and_clean_spans() -> None:
    text = "American Hans Niemann plays chess, and Batgirl was shelved"
    found = {e.text: e.label for e in word_candidates(text, [Entity("Hans Niemann", "PERSON",
                                                                    9, 21)])}
    assert found["chess"] == "WORD"
    assert found["Batgirl"] == "CAPITAL"
    assert "Hans" not in found  # covered by the entity
    budget = "The council approved a $312 million budget"
    found = {e.text for e in word_candidates(budget, [Entity("$312 million", "MONEY", 22, 34)])}
    assert "million" not in found and "million budget" not in found  # inside the entity
    assert {"council", "budget", "approved"} <= found
    assert clean_span("“Ukraine’s Children of War,”") == "Children of War"
    assert clean_span("Mississippi’s") == "Mississippi"


def test_a_short_answer_keeps_its_owner_when_only_the_owner_is_new() -> None:
    from assistant.answering import span_text

    entity = Entity("Acme’s Bakery", "ORG", 0, 13)
    assert span_text(entity, analyze("Which bakery chain closed its shops?")) == "Acme’s Bakery"
    assert span_text(entity, analyze("Which company closed its shops?")) == "Bakery"


@pytest.mark.parametrize(
    ("sentence", "dateline"),
    [
        ("(CNN) The storm hit Garth on Monday.", "(CNN) "),
        ("New York (CNN Business) Sales rose.", "New York (CNN Business) "),
        ("LONDON, Jan 5 (Reuters) - Oil fell.", "LONDON, Jan 5 (Reuters) - "),
        ("WASHINGTON – The House met on Tuesday.", "WASHINGTON – "),
        ("Mayor Ann Lee (left) opened the bridge.", ""),
        ("The council met on Tuesday.", ""),
        ("A" * 1500, ""),  # a hostile "word": looked for in the first characters only
    ],
)
def test_a_dateline_is_no_answer(sentence: str, dateline: str) -> None:
    from assistant.answering import dateline_end

    assert sentence[:dateline_end(sentence)] == dateline


def test_no_short_answer_from_a_dateline() -> None:
    answerer, ev = _evidence("Which network reported the storm?",
                             ["(CNN) The storm hit Garth on Monday, Coast Radio reported."])
    ranked = answerer.rank_full(ev, list(ev.sentences))
    choice = answerer.choose(ev, ranked)
    texts = {sp.text for sp in answerer.span_candidates(ev, ranked, choice)}
    assert "CNN" not in texts and "Coast Radio" in texts


def test_rules_that_rule_an_answer_out() -> None:
    from assistant.features import Choice, missing_number, strict_type_missing

    answerer, ev = _evidence(
        "How many people were evacuated in 2019?",
        ["Officials evacuated the coast. The storm passed quickly"])
    answerer.tag(ev, ev.sentences)
    choice = Choice(sentences=[ev.sentences[0]], best=ev.sentences[0], runner_up=None,
                    span=None, span_prob=0.0)
    assert missing_number(ev, choice) == 1.0  # "2019" is not in the answer
    assert strict_type_missing(ev, choice) == 1.0  # "how many" and no number


def _span(ev, sentence_has: str, text: str):
    from assistant.features import Span

    sentence = next(s for s in ev.sentences if sentence_has in s.text)
    start = sentence.text.index(text)
    return Span(entity=Entity(text, "PERSON", start, start + len(text)), sentence=sentence,
                sentence_rank=0, text=text)


def test_span_features_read_where_the_question_words_sit_around_the_span() -> None:
    from assistant.features import span_adjacent, span_context, span_order, span_owner

    # The subject is asked for: the question's words follow its wh-word, and in the
    # sentence they follow the answer, not the player it names after them.
    _, ev = _evidence("Which striker became the club's record scorer on Saturday?",
                      ["Maria Lund became the club's record scorer on Saturday with her "
                       "84th goal in the league, one more than Anna Berg managed"])
    assert ev.wh_sides == {"becam": 1, "club": 1, "record": 1, "scorer": 1, "saturday": 1}
    lund, berg = _span(ev, "Lund", "Maria Lund"), _span(ev, "Lund", "Anna Berg")
    assert span_order(ev, lund) == 1.0
    assert span_order(ev, berg) == -1.0  # the question's words all lie before Berg
    assert span_context(ev, lund) > span_context(ev, berg)
    assert span_adjacent(ev, lund) == 0.5  # "became" follows the span, as the wh-word
    assert span_adjacent(ev, berg) == 0.0
    # The object is asked for: the words before and after the wh-word hug the answer.
    _, ev = _evidence("A juggler tried to balance what on his chin for an hour?",
                      ["A juggler balanced a ladder on his chin for an hour in Leeds"])
    ladder = _span(ev, "ladder", "a ladder")
    leeds = _span(ev, "ladder", "Leeds")
    assert span_adjacent(ev, ladder) == 1.0
    assert span_adjacent(ev, leeds) == 0.0
    assert span_order(ev, ladder) == 1.0 > span_order(ev, leeds)  # "chin", "hour" before it
    # The word a value belongs to: "a profit of" owns one sum, "sales of" the other.
    _, ev = _evidence("What profit did the mill make last year?",
                      ["The mill reported sales of $40 million and a profit of $3 million"])
    assert span_owner(ev, _span(ev, "mill", "$3 million")) == 1.0
    assert span_owner(ev, _span(ev, "mill", "$40 million")) == 0.0
    # An inverted question: its subject comes before the answer in the statement.
    _, ev = _evidence("What were the mill's sales last year?",
                      ["In a record year the mill reported sales of $40 million"])
    assert ev.inverted and ev.wh_neighbours == ("mill", None)
    sales, record = _span(ev, "mill", "$40 million"), _span(ev, "mill", "record")
    assert span_order(ev, sales) == 1.0 and span_order(ev, record) == -1.0
    assert span_adjacent(ev, sales) == 0.5  # the subject just before the answer
    assert span_adjacent(ev, record) == 0.0
    # "How many …": the counted noun follows the number in the statement.
    _, ev = _evidence("How many chairs does the new hall in Ardley seat?",
                      ["The hall seats 900 chairs and cost 4 million pounds"])
    assert ev.counted == "chair" and ev.wh_neighbours[1] == "chair"
    chairs, pounds = _span(ev, "hall", "900"), _span(ev, "hall", "4 million")
    assert span_adjacent(ev, chairs) > span_adjacent(ev, pounds)
    assert span_order(ev, chairs) == span_order(ev, pounds) == 1.0  # "chairs" left out
    _, ev = _evidence("Which firm was fined on Monday?", ["A firm was fined on Monday"])
    assert not ev.inverted  # a participle: the wh-phrase is the subject
    # No wh-word: no order to compare.
    _, ev = _evidence("Name the juggler", ["A juggler balanced a ladder on his chin"])
    assert span_order(ev, _span(ev, "ladder", "a ladder")) == 0.0



def test_span_features_read_the_headline_the_article_and_the_focus_noun() -> None:
    from assistant.features import span_article_mentions, span_focus_head, span_in_headline

    _, ev = _evidence(
        "A wildfire forced thousands to flee near which park?",
        ["Fire near Larchmoor Country Park forces thousands to flee\nA wildfire near Larchmoor "
         "Country Park forced 3,000 people from their homes. Crews from Ashby Parish "
         "fought the fire near Larchmoor Country Park all night",
         "Ashby Parish opened two shelters"])
    park = _span(ev, "Crews", "Larchmoor Country Park")
    county = _span(ev, "Crews", "Ashby Parish")
    assert ev.focus == "park"
    # The headline is the first line of an article's first chunk (or its title).
    assert span_in_headline(ev, park) == 1.0 and span_in_headline(ev, county) == 0.0
    # Counted in the span's own article only: the second article's county is not.
    assert span_article_mentions(ev, park) == pytest.approx(np.log1p(3))
    assert span_article_mentions(ev, county) == pytest.approx(np.log1p(1))
    assert span_focus_head(ev, park) == 1.0  # "Park" ends the span
    assert span_focus_head(ev, county) == 0.0
    _, ev = _evidence("The museum is selling which coin hoard?",
                      ["The museum is selling a Tarrow hoard found in Devon"])
    assert ev.focus == "hoard"
    _, ev = _evidence("Which hoard is the museum selling?",
                      ["The museum is selling a Tarrow hoard found in Devon"])
    bones, state = _span(ev, "museum", "Tarrow"), _span(ev, "museum", "Devon")
    assert span_focus_head(ev, bones) == 1.0  # the focus noun follows the span
    assert span_focus_head(ev, state) == 0.0
