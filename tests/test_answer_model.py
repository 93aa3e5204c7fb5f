"""The learned answer model: its file, its arithmetic and its training helpers."""

import numpy as np
import pytest

from assistant import answer_model
from assistant.answer_model import AnswerModel, Logistic
from assistant.settings import AssistantError


def test_logistic_matches_scikit_learn() -> None:
    from sklearn.linear_model import LogisticRegression

    from evals.train import fit_logistic

    rng = np.random.default_rng(7)
    x = rng.normal(size=(400, 3)) * [1.0, 5.0, 0.1] + [0.0, 2.0, -1.0]
    y = (x[:, 0] + 0.2 * x[:, 1] + rng.normal(size=400) > 0.4).astype(int)
    model = fit_logistic(x, y, ["a", "b", "c"])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    ref = LogisticRegression(C=1.0, max_iter=5000).fit((x - mean) / scale, y)
    expected = ref.predict_proba((x - mean) / scale)[:, 1]
    assert np.allclose(model.prob(x), expected, atol=1e-4)
    # Deterministic: the same data gives the same numbers.
    assert fit_logistic(x, y, ["a", "b", "c"]).coef == model.coef


def test_shipped_model_loads_with_the_code_features_and_a_calibrated_policy() -> None:
    model = answer_model.load()
    model.check()
    assert 0.0 < model.policy.threshold < 1.0
    assert {"train-2022", "train-2023"} <= set(model.meta.get("trained_on", []))
    assert "cv" in model.meta, "the policy was chosen by cross-validation"
    assert answer_model.MODEL_FILE.stat().st_size < 100_000


def test_model_file_round_trip_and_feature_mismatch(tmp_path) -> None:
    model = answer_model.load()
    path = tmp_path / "m.json"
    model.save(path)
    again = answer_model.load(path)
    x = np.ones((2, len(again.answer.names)))
    assert np.allclose(again.answer.prob(x), model.answer.prob(x))
    data = again.to_dict()
    data["span"]["names"] = [*data["span"]["names"][:-1], "no_such_feature"]
    with pytest.raises(AssistantError, match="make train"):
        AnswerModel.from_dict(data)
    data = again.to_dict()
    data["policy"]["span_outside"] = "drop"
    with pytest.raises(AssistantError, match="span_outside 'drop'"):
        AnswerModel.from_dict(data)


def test_a_constant_label_gives_a_constant_model() -> None:
    from evals.train import fit_logistic

    model = fit_logistic(np.zeros((5, 2)), np.zeros(5, dtype=int), ["a", "b"])
    assert isinstance(model, Logistic)
    assert np.all(model.prob(np.ones((3, 2))) < 0.01)


def test_short_answer_and_answer_rules_of_the_trainer() -> None:
    from evals.train import answer_correct, span_correct

    assert span_correct("Tom Brady", ["Tom Brady"])
    assert span_correct("Brady", ["Tom Brady"])  # inside the gold answer
    assert span_correct("the 51.3%", ["51.3%"])
    assert not span_correct("Bradyville", ["Brady"])  # whole words only
    assert not span_correct("", ["x"])
    assert answer_correct("Eight children were reunited.", ["8"])
    assert not answer_correct("word " * 61 + "eight", ["eight"])


def test_a_small_corpus_has_its_own_abstainer() -> None:
    model = answer_model.load()
    small = model.policy.small_corpus
    assert model.abstainer(1) is model.answer_small
    assert model.abstainer(small) is model.answer_small
    assert model.abstainer(small + 1) is model.answer
    assert model.abstainer(0) is model.answer  # size unknown: the general (news) one
    assert model.answer.names == model.answer_small.names
    assert model.answer.coef != model.answer_small.coef, "two fitted models, not one copied"
