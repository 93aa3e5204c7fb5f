"""The answer layer: question reading, sentence choice, short answers, abstention."""

import pytest

from assistant.corpus import read_text
from assistant.question import analyze, answer_type
from assistant.text import stem
from tests.conftest import ARTICLE


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many children were reunited?", "NUMBER"),
        ("When was the letter delivered?", "DATE"),
        ("In which year did the initiative begin?", "DATE"),
        ("Where did Putin get the letter?", "PLACE"),
        ("Who issued the arrest warrants?", "PERSON"),
        ("What law did she champion?", "NAME"),
        ("Who is Maria Lvova-Belova?", None),
        ("Why were the children displaced?", None),
        # A time phrase after the noun is not what is asked for.
        ("Which city this week approved its budget?", "GPE"),
        ("Sales of what medicine rose last month?", None),
        ("Which day this week was the vote?", "DATE"),
        # A relative clause's wh-word is not the question's.
        ("The mayor, who resigned on Monday, moved to which city?", "GPE"),
        ("The band played the Bowl, where it first played in 1970. Who is it?", "PERSON"),
        ("Where did the mayor, who resigned, go?", "PLACE"),
        # So is the "when" of a time clause, with or without a comma.
        ("The crowd cheered when the mayor opened which bridge?", None),
        ("The crowd cheered when the council named which city?", "GPE"),
        ("Who was mayor when the bridge opened?", "PERSON"),
        ("Where and when did the storm hit?", "PLACE"),
        # A name asked for by "what was its name".
        ("A storm hit the coast. What was its name?", "NAME"),
        ("What is the band's new name?", "NAME"),
    ],
)
def test_expected_answer_type(question: str, kind: str | None) -> None:
    assert answer_type(question) == kind


def test_content_terms_drop_stopwords_and_stem() -> None:
    q = analyze("How many children were reunited with their families?")
    assert [t.stem for t in q.terms] == ["children", "reunit", "famili"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("question", "short", "in_quote"),
    [
        ("How many children were reunited with their families in the past 24 hours?",
         "Eight", "Eight children have been rejoined"),
        ("Where was the letter handed to Putin?", "Alaska", "hand-delivered"),
        ("What law did she champion?", "the Take It Down Act", "revenge porn"),
    ],
)
def test_article_answers(article_bot, question: str, short: str, in_quote: str) -> None:
    answer = article_bot.ask(question)
    assert not answer.abstained
    assert answer.short_answer == short
    text = read_text(ARTICLE)
    assert any(in_quote in c.quote for c in answer.citations)
    for c in answer.citations:
        assert c.quote == text[c.start : c.end]
        assert f"[{c.n}]" in answer.text


@pytest.mark.e2e
@pytest.mark.parametrize(
    "question",
    ["What is the capital of Australia?", "Who won the 2018 football World Cup?",
     "What is the recipe for banana bread?"],
)
def test_off_topic_questions_abstain(article_bot, question: str) -> None:
    answer = article_bot.ask(question)
    assert answer.abstained
    assert answer.citations == []
    assert answer.short_answer is None
    assert "do not answer" in answer.text
    assert answer.passages, "an abstention still shows the closest passages"


@pytest.mark.e2e
def test_entities_stored_at_ingest_answer_as_the_recogniser_does(
        article_bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Questions read the entities the ingest stored and never load the recogniser; the
    answers are those of tagging the same sentences when the question comes."""
    from assistant.core import Assistant
    from assistant.layout import ChunkRecord

    questions = ["How many children were reunited with their families in the past 24 hours?",
                 "Where was the letter handed to Putin?", "What law did she champion?",
                 "Who wrote the letter?", "When was the letter delivered?",
                 "What is the capital of Australia?"]

    def answers(bot: Assistant) -> list[tuple]:
        out = []
        for q in questions:
            a = bot.ask(q)
            out.append((a.text, a.short_answer, a.abstained,
                        [(c.start, c.end, c.role) for c in a.citations]))
        return out

    def fresh() -> Assistant:
        bot = Assistant(corpus=article_bot.settings.corpus, store=article_bot.settings.store)
        bot._embed = article_bot._embed
        return bot

    stored = fresh()
    from_store = answers(stored)
    assert not stored._tagger.loaded
    monkeypatch.setattr(ChunkRecord, "sentence_entities", lambda self, span: None)
    live = fresh()
    assert answers(live) == from_store
    assert live._tagger.loaded
    assert sum(1 for a in from_store if a[1]) >= 4  # short answers, which read entities


@pytest.mark.parametrize(
    ("question", "role"),
    [
        ("Who is the mayor of Millbrook?", "mayor"),
        ("Which judge decided the case?", "judge"),
        ("Who manages the club?", "manager"),
        ("What is the name of the utility's spokeswoman?", "spokeswoman"),
        ("Who wrote the letter?", None),
        ("Which country is the player from?", None),
        # An owner before the role is what a "which" question asks for; a kind is not.
        ("Which state's governor signed the bill?", None),
        ("Who is the club's coach?", "coach"),
        ("Which children's author won the prize?", "author"),
    ],
)
def test_asked_role(question: str, role: str | None) -> None:
    from assistant.question import asked_role

    assert asked_role(question) == role


@pytest.mark.parametrize(
    ("question", "asked"),
    [
        ("The bridge reopened on Monday. Since what year has it carried trams?",
         "Since what year has it carried trams?"),
        ("The museum reopened this week after a flood. It is best known for:",
         "It is best known for:"),
        ("Its new owners renamed the bakery. The shop now sells bread.",
         "The shop now sells bread."),
        ("Who won the race in Garth?", None),
        ("The Jan. 6 committee met. Who testified?", "Who testified?"),
        # The sentence that asks comes first: what follows it is no preamble.
        ("Who won the race? It was held in Garth.", None),
    ],
)
def test_the_sentence_that_asks(question: str, asked: str | None) -> None:
    from assistant.question import asked_sentence

    span = asked_sentence(question)
    assert (question[span[0]:span[1]] if span else None) == asked


def test_words_said_only_before_the_question_weigh_less() -> None:
    """A question that first states what happened ("The bridge reopened on Monday.") asks
    in its last sentence: the words only the preamble says count for less."""
    from assistant.question import PREAMBLE_WEIGHT

    alone = {t.stem: t.weight for t in analyze("Since what year has the bridge carried trams?"
                                               ).terms}
    q = {t.stem: t.weight for t in analyze(
        "The bridge reopened on Monday. Since what year has the bridge carried trams?").terms}
    assert 0 < PREAMBLE_WEIGHT < 1
    assert q[stem("reopened")] == PREAMBLE_WEIGHT * 1.0
    assert q[stem("Monday")] == PREAMBLE_WEIGHT * 1.5  # a name weighs more, and still less
    assert {k: q[k] for k in alone} == alone  # what the asking sentence says is unchanged


def test_a_preamble_neither_names_nor_types() -> None:
    """The capital that starts a later sentence of the question is no name, and the kind of
    answer is read from the sentence that asks, not from a "who" before it."""
    q = analyze("The man who founded the bakery died. Which city was he born in?")
    assert q.answer_type == "GPE"
    assert not any(t.proper for t in q.terms)
    assert not any(t.proper for t in analyze("Storms hit Garth. Since when has it flooded?"
                                             ).terms if t.word == "Since")


def test_typos_are_repaired_against_the_passages() -> None:
    from assistant.question import repair_typos, stem

    q = analyze("who else did the icc want arested besides putin")
    repair_typos(q, {stem("arrest"), stem("Putin"), "icc"})
    assert stem("arrest") in q.stems


def test_role_question_needs_the_role_holder(tmp_path, embed_model) -> None:
    from assistant.core import Assistant

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "vote.txt").write_text(
        "Council passes budget\n\nThe council approved the budget on Tuesday. "
        "Mayor Helen Varga called it fair. Councilman Tom Baker voted against it.")
    bot = Assistant(corpus=corpus, store=tmp_path / "store")
    bot._embed = embed_model
    bot.ingest()
    assert bot.ask("Who is the mayor?").short_answer == "Helen Varga"
    assert bot.ask("Who is the city's police chief?").abstained


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Which city did he visit?", "GPE"),
        ("How much did the flood cost her?", "MONEY"),
        ("How much are the libraries getting?", "AMOUNT"),
        ("How many employees does the company have?", "NUMBER"),
        ("What is the name of one of the reunited children?", "PERSON"),
        ("Which state’s governor signed the bill?", "GPE"),
    ],
)
def test_more_answer_types(question: str, kind: str) -> None:
    assert analyze(question).answer_type == kind


def test_numbers_inside_dates_and_sums_are_not_counts() -> None:
    from assistant.answering import expected_entities
    from assistant.entities import EntityTagger
    from assistant.question import TYPE_LABELS

    q = analyze("How many people were evacuated?")
    text = "A $7.5 million fund was set up in the past 24 hours; 4,300 people left."
    ents = EntityTagger().tag([text])[0]
    typed = [e.text for e in expected_entities(ents, TYPE_LABELS["NUMBER"], q)]
    assert "4,300" in typed
    assert not any("7.5" in t or "24" in t for t in typed)


def test_number_words_and_digits_share_a_stem() -> None:
    from assistant.question import stem

    assert stem("nine") == stem("9") and stem("Eight") == stem("8")


def test_misspelt_stopwords_are_dropped() -> None:
    from assistant.question import repair_typos

    q = analyze("who wore the shirt befor ferreira")
    repair_typos(q, {"wore", "shirt", "ferreira"})
    assert [t.word for t in q.terms] == ["wore", "shirt", "ferreira"]


@pytest.mark.e2e
def test_a_source_line_is_never_joined_to_an_answer(article_bot) -> None:
    # The sentence is followed by the article's "Source:…" line, a fragment of no answer.
    answer = article_bot.ask("Which court issued arrest warrants for Putin?")
    assert "International Criminal Court" in answer.citations[0].quote
    assert not any(c.quote.startswith("Source:") for c in answer.citations)


def test_a_sentence_longer_than_an_answer_is_quoted_around_its_short_answer() -> None:
    from assistant.answering import QUOTE_WORDS, ExtractiveAnswerer, quotes
    from assistant.entities import Entity
    from assistant.features import Choice, Span
    from tests.test_features import make_hit

    filler = " ".join(f"item{i}" for i in range(70))
    text = (f"The board met in the old hall and {filler} then elected Maria Kovacs as its "
            f"new chair, {filler}")
    s = ExtractiveAnswerer.candidates([make_hit("long.txt", text)])[0]
    a = s.text.index("Maria Kovacs")
    span = Span(Entity("Maria Kovacs", "PERSON", a, a + 12), s, 0, "Maria Kovacs")
    question = analyze("Who did the board elect as its chair?")
    [quote] = quotes(Choice([s], s, None, span, 0.9), question)
    assert "Maria Kovacs" in quote.text
    assert quote.text == text[quote.start : quote.end]  # still a span of the article
    assert len(quote.text.split()) <= QUOTE_WORDS
    assert quote.shown == f"…{quote.text}…"
    short = ExtractiveAnswerer.candidates([make_hit("short.txt", "The board elected Ann Lee")])[0]
    [whole] = quotes(Choice([short], short, None, None, 0.0), question)
    assert (whole.text, whole.shown) == (short.text, short.text)


LONG_ARTICLE = (
    "Council elects a chair\n\nThe regional council met on Thursday evening in the old town "
    "hall with residents from the valley and the coast and the members heard reports on roads "
    "and bridges and schools and parks and the long list of repairs and the budget for the "
    "coming year and after a long debate about the harbour and the ferry and the market the "
    "council elected Petra Novak as its new chair with nine votes and thanked the outgoing "
    "chair for six years of service to the towns and villages of the region and the many "
    "volunteers who helped with the flood relief last spring and the summer fairs\n")


def test_an_answer_from_a_run_on_sentence_quotes_a_checkable_part_of_it(tmp_path,
                                                                         embed_model) -> None:
    from tests.conftest import corpus_bot

    bot = corpus_bot(tmp_path, {"council.txt": LONG_ARTICLE}, embed_model)
    answer = bot.ask("Who did the regional council elect as its new chair?")
    assert not answer.abstained
    assert "Petra Novak" in answer.text
    assert len(answer.text.replace("[1]", "").split()) <= 60
    [c] = answer.citations
    assert c.quote == LONG_ARTICLE[c.start : c.end] and c.quote in answer.text
    assert answer.text.startswith("…")  # the sentence was cut before its quoted part


HARBOUR_ARTICLE = (
    "Harbour of Garth reopens\n\nThe harbour of Garth reopened on Monday after eight days of "
    "storms. Officials counted 14 damaged boats in the harbour of Garth on Tuesday. The mayor, "
    "Ann Lee, thanked 30 volunteers who cleared the harbour of Garth.\n")


@pytest.mark.parametrize("outside", ["move", "keep", "add"])
def test_the_short_answer_is_stated_in_what_the_answer_quotes(tmp_path, embed_model,
                                                              monkeypatch, outside) -> None:
    """When the span ranker prefers a value of another of the best sentences than those the
    answer quotes, that sentence becomes the answer, or is quoted after the best one, or
    the short answer is the best value of the quoted ones (the policy's
    ``span_outside``): a reader always finds the short answer in the quote it cites."""
    from assistant.answering import ExtractiveAnswerer
    from tests.conftest import corpus_bot

    bot = corpus_bot(tmp_path, {"harbour.txt": HARBOUR_ARTICLE}, embed_model)
    policy = bot._answerer.model.policy
    monkeypatch.setattr(policy, "span_outside", outside)
    monkeypatch.setattr(policy, "small_span_outside", outside)
    candidates, picked = ExtractiveAnswerer.span_candidates, ExtractiveAnswerer.pick_span
    chosen: list = []
    best: list = []
    forced: list[str] = []

    def remember_choice(self, ev, ranked, choice):
        chosen[:] = choice.sentences
        best[:] = [choice.best]
        return candidates(self, ev, ranked, choice)

    def prefer_another_sentence(self, ev, spans):  # a span ranker that believes it more
        probs = picked(self, ev, spans)
        other = next((i for i, sp in enumerate(spans)
                      if all(sp.sentence is not s for s in chosen)), None)
        if other is not None:
            probs = probs.copy()
            probs[other] = 2.0  # above every other candidate's, which stay as they were
            forced.append(spans[other].text)
        return probs

    monkeypatch.setattr(ExtractiveAnswerer, "span_candidates", remember_choice)
    monkeypatch.setattr(ExtractiveAnswerer, "pick_span", prefer_another_sentence)
    answer = bot.ask("How many damaged boats did officials count in the harbour of Garth?")
    assert forced and not answer.abstained
    assert (answer.short_answer == forced[-1]) is (outside != "keep")
    quoted = [c for c in answer.citations if c.role == "answer"]
    # "add" quotes the best sentence and, after it, the one stating the short answer (the
    # sentences here are short enough for both)
    if outside != "move":
        assert any(c.quote == best[0].text for c in quoted)
    if outside == "add":
        assert len(quoted) == 2
    assert any(answer.short_answer in c.quote for c in quoted), (answer.short_answer, quoted)
    assert all(c.quote == HARBOUR_ARTICLE[c.start : c.end] for c in quoted)
    assert answer.short_answer in answer.text
