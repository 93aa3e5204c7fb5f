"""The learned answer layer's models, loaded from one small JSON file.

Five logistic models, each over one list of :mod:`assistant.features`:

- ``sentence_base`` ranks every candidate sentence (cheap features) to pick a shortlist;
- ``sentence`` ranks the shortlist (entities, meaning) — its probability is that the
  sentence holds the answer;
- ``span`` ranks the short-answer candidates;
- ``answer`` is the abstention classifier of a corpus of news (more than
  ``Policy.small_corpus`` articles): the probability that the corpus answers the question,
  given the chosen answer's features — fitted on the real-news training questions alone,
  where most unanswerable questions look answerable sentence by sentence;
- ``answer_small`` is the abstention classifier of a small corpus (a few articles on one
  topic): the probability that the chosen answer is right, fitted on all training questions.

The file also holds the policy chosen by cross-validation (the abstention threshold, when
to join a neighbouring sentence) and how the models were trained. It is written by
``make train`` (``python -m evals.train``) and read here with numpy alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from assistant.features import ANSWER_FEATURES, SENTENCE_BASE, SENTENCE_FULL, SPAN_FEATURES
from assistant.settings import AssistantError

MODEL_FILE = Path(__file__).parent / "resources" / "answer_model.json"
FORMAT = 2
# What becomes of the answer when the short answer lies in a sentence it does not quote.
OUTSIDE = ("move", "keep", "add")


@dataclass
class Logistic:
    """A standardised logistic regression: ``sigmoid(((x - mean) / scale) · coef + b)``."""

    names: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    def __post_init__(self) -> None:
        self._mean = np.asarray(self.mean, dtype=np.float64)
        self._scale = np.asarray(self.scale, dtype=np.float64)
        self._coef = np.asarray(self.coef, dtype=np.float64)

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of each row of ``x``."""
        if x.shape[0] == 0:
            return np.zeros(0)
        return ((x - self._mean) / self._scale) @ self._coef + self.intercept

    def prob(self, x: np.ndarray) -> np.ndarray:
        """Probability of each row of ``x``."""
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass
class Policy:
    """Decisions taken on the models' outputs (chosen by cross-validation)."""

    threshold: float = 0.3  # abstain when P(answer right) is below this
    join: float = 0.08  # join a neighbour whose sentence probability reaches this
    shortlist: int = 8  # sentences the full ranker sees (plus neighbours of the best three)
    spans_from: int = 3  # best sentences whose entities are short-answer candidates
    min_span: float = 0.05  # no short answer below this span probability
    # Checks that rule an answer out whatever its probability (see answering.RULES),
    # kept when cross-validation shows they help.
    rules: list[str] = field(default_factory=list)
    # A corpus of at most this many articles (a few articles on one topic, where every
    # question retrieves the same text) is calibrated apart: its own threshold and rules.
    small_corpus: int = 50
    small_threshold: float = 0.3
    small_rules: list[str] = field(default_factory=list)
    # When the span ranker's short answer lies in a sentence the answer does not quote (one
    # of :data:`OUTSIDE`): "move", that sentence becomes the answer; "keep", the short
    # answer is the best one the quoted sentences hold (none below ``min_span``); "add",
    # that sentence is quoted after the best one, in place of its neighbour ("move" when
    # the two exceed the answer's length). Either way what is quoted states the short
    # answer. One value per kind of corpus, chosen by cross-validation.
    span_outside: str = "move"
    small_span_outside: str = "keep"

    def __post_init__(self) -> None:
        for value in (self.span_outside, self.small_span_outside):
            if value not in OUTSIDE:
                raise AssistantError(f"the answer model's policy has an unknown span_outside "
                                     f"{value!r} (one of {', '.join(OUTSIDE)})")

    def is_small(self, corpus_articles: int) -> bool:
        """True for a corpus calibrated apart (1 to ``small_corpus`` articles)."""
        return 0 < corpus_articles <= self.small_corpus

    def outside(self, corpus_articles: int) -> str:
        """``span_outside`` for a corpus of ``corpus_articles`` articles."""
        if self.is_small(corpus_articles):
            return self.small_span_outside
        return self.span_outside

    def abstention(self, corpus_articles: int) -> tuple[float, list[str]]:
        """The threshold and rules for a corpus of ``corpus_articles`` articles."""
        if self.is_small(corpus_articles):
            return self.small_threshold, self.small_rules
        return self.threshold, self.rules


@dataclass
class AnswerModel:
    """The five models and the policy, as stored in the model file."""

    sentence_base: Logistic
    sentence: Logistic
    span: Logistic
    answer: Logistic
    answer_small: Logistic
    policy: Policy = field(default_factory=Policy)
    meta: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise AssistantError when the file's features are not the code's."""
        for name, model, features in (("sentence_base", self.sentence_base, SENTENCE_BASE),
                                      ("sentence", self.sentence, SENTENCE_FULL),
                                      ("span", self.span, SPAN_FEATURES),
                                      ("answer", self.answer, ANSWER_FEATURES),
                                      ("answer_small", self.answer_small, ANSWER_FEATURES)):
            expected = [n for n, _ in features]
            if model.names != expected:
                raise AssistantError(
                    f"the answer model's {name} features do not match this version "
                    "(run `make train`)")

    def abstainer(self, corpus_articles: int) -> Logistic:
        """The abstention classifier for a corpus of ``corpus_articles`` articles."""
        return self.answer_small if self.policy.is_small(corpus_articles) else self.answer

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"format": FORMAT, "sentence_base": self.sentence_base.to_dict(),
                "sentence": self.sentence.to_dict(), "span": self.span.to_dict(),
                "answer": self.answer.to_dict(), "answer_small": self.answer_small.to_dict(),
                "policy": asdict(self.policy),
                "meta": self.meta}

    def save(self, path: Path | str = MODEL_FILE) -> None:
        """Write the model file (stable key order, so a retrain diffs cleanly)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n",
                              encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnswerModel:
        """The model from its JSON form."""
        if data.get("format") != FORMAT:
            raise AssistantError("the answer model file has an unknown format")
        model = cls(sentence_base=Logistic(**data["sentence_base"]),
                    sentence=Logistic(**data["sentence"]), span=Logistic(**data["span"]),
                    answer=Logistic(**data["answer"]),
                    answer_small=Logistic(**data["answer_small"]), policy=Policy(**data["policy"]),
                    meta=data.get("meta", {}))
        model.check()
        return model


def load(path: Path | str | None = None) -> AnswerModel:
    """The answer model in ``path`` (default: the one shipped in the package)."""
    return _load(str(path or MODEL_FILE))


@lru_cache(maxsize=4)
def _load(path: str) -> AnswerModel:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AssistantError(f"cannot read the answer model {path}: {exc}") from exc
    return AnswerModel.from_dict(data)
