"""Training the answer layer (evals/train.py): refitting one stage of a model file keeps
the file's other models and policy."""

import json
from pathlib import Path

import pytest

from assistant import answer_model
from assistant.answering import ExtractiveAnswerer
from assistant.entities import EntityTagger
from assistant.features import SPAN_FEATURES
from evals import train

ROOT = Path(__file__).resolve().parent.parent


class _OneSet:
    """The part of ``train.Answerers`` that ``fit`` uses, over one store."""

    def __init__(self, answerer: ExtractiveAnswerer) -> None:
        self.answerer = answerer

    def use(self, model: answer_model.AnswerModel) -> None:
        self.answerer.model = model

    def __getitem__(self, name: str) -> ExtractiveAnswerer:
        return self.answerer


@pytest.fixture(scope="module")
def gold_items(article_bot) -> list[train.Item]:
    """The gold set's answerable questions on the article, retrieved once."""
    retriever = article_bot._retriever_for_query()
    items = []
    for line in (ROOT / "evals" / "gold" / "corpus.jsonl").read_text().splitlines()[:30]:
        row = json.loads(line)
        if not row["answers"]:
            continue
        text = article_bot.check_question(row["question"])
        qvec = article_bot.embed_model.embed([text])[0]
        hits = retriever.retrieve(text, qvec)
        items.append(train.Item("own-gold", row["id"], text, row["answers"], hits, qvec,
                                article_bot._sentence_vectors(hits)))
    return items


def test_refitting_one_stage_keeps_the_other_models_and_the_policy(article_bot,
                                                                    gold_items) -> None:
    start = answer_model.load()
    answerers = _OneSet(ExtractiveAnswerer(EntityTagger(), model=train.placeholder(),
                                           word_vectors=article_bot._word_vectors))
    model = train.fit(gold_items, answerers, start.policy, start, ["span"])
    for stage in ("sentence_base", "sentence", "answer", "answer_small"):
        assert getattr(model, stage) is getattr(start, stage), stage
    assert model.span.names == [n for n, _ in SPAN_FEATURES]
    assert model.span.coef != start.span.coef, "the span ranker was fitted on these questions"
    assert model.policy == start.policy
    model.check()
    # Stages fitted in turn, each on the ones before.
    rankers = train.fit(gold_items, answerers, start.policy, start,
                        ["sentence_base", "sentence", "span"])
    assert rankers.sentence_base.coef != start.sentence_base.coef
    assert rankers.sentence.coef != start.sentence.coef
    assert rankers.span.coef != model.span.coef, "fitted on the new sentence rankers' picks"
    assert rankers.answer is start.answer


def test_a_start_file_may_lack_only_the_refitted_stages_features(tmp_path: Path) -> None:
    data = json.loads(answer_model.MODEL_FILE.read_text())
    data["span"]["names"] = [*data["span"]["names"][:-1], "an_older_feature"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    start = train.start_model(path, ["span"])
    assert start.span.names == [n for n, _ in SPAN_FEATURES]
    assert start.answer.coef == data["answer"]["coef"]
    with pytest.raises(SystemExit, match=r"span features do not match.*refit that stage"):
        train.start_model(path, ["answer"])


def test_refit_names_known_stages_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        train.main(["--refit", "spans"])
    assert raised.value.code == 2
    assert "--refit takes stages among sentence_base, sentence, span" in capsys.readouterr().err
