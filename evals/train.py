"""Train the answer layer's models on the real-news training sets (``make train``).

    python -m evals.train                 # fit on train-2022 + train-2023, write the model
    python -m evals.train --cv            # also report 5-fold cross-validated figures
    python -m evals.train --ablation      # cross-validated contribution of each feature

Reads ``../shared/news-qa`` (never copied into the repository) through the cached eval
stores of :mod:`evals.news` (ingested when missing), retrieves each question once (kept in
a cache beside the stores), then fits four logistic regressions stage by stage — base
sentence ranker, full sentence ranker, span ranker, abstention classifier — and chooses
the policy (abstention threshold, neighbour join) by cross-validation over questions.
Deterministic: same data, same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.answer_model import MODEL_FILE, AnswerModel, Logistic, Policy
from assistant.answering import MAX_ANSWER_WORDS, Analysis, ExtractiveAnswerer
from assistant.evals import normalize_answer, text_contains
from assistant.features import (
    ANSWER_FEATURES,
    SENTENCE_BASE,
    SENTENCE_FULL,
    SPAN_FEATURES,
    Evidence,
    Feature,
    matrix,
)
from assistant.question import analyze
from assistant.retrieval import Hit
from assistant.text import words
from evals.news import NEWS_DIR, available, cache_root, open_assistant, store_key

if TYPE_CHECKING:
    from assistant.core import Assistant

TRAIN_SETS = ("train-2022", "train-2023")
FOLDS = 5
C = 1.0  # inverse regularisation strength of every logistic model
THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.05, 0.81, 0.05))
JOINS = (0.25, 0.4, 0.55, 1.01)
MAX_FALSE_ABSTENTIONS = 0.08  # the threshold is the best accuracy within this


@dataclass
class Item:
    """One training question with what retrieval returned for it."""

    set: str
    id: str
    question: str
    answers: list[str]
    hits: list[Hit]
    qvec: np.ndarray
    svecs: dict[tuple[str, int, int], np.ndarray]

    @property
    def answerable(self) -> bool:
        """True when the question has gold answers."""
        return bool(self.answers)


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def collect(name: str, bot: Assistant | None = None) -> list[Item]:
    """Retrieve every question of news set ``name`` once (cached on disk)."""
    questions = NEWS_DIR / name / "questions.jsonl"
    key = hashlib.sha256(questions.read_bytes() + store_key().encode()).hexdigest()[:12]
    cache = cache_root() / f"retrieved-{name}-{key}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    bot = bot or open_assistant(name)
    print(f"train: {bot.ingest().summary()}", file=sys.stderr)
    retriever = bot._retriever_for_query()
    items = []
    for line in questions.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        text = bot.check_question(row["question"])
        qvec = bot.embed_model.embed([text])[0]
        hits = retriever.retrieve(text, qvec)
        items.append(Item(name, row["id"], text, list(row.get("answers") or []), hits,
                          np.asarray(qvec, dtype=np.float32), bot._sentence_vectors(hits)))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(items))
    return items


class Answerers:
    """One answerer per news set (each reads its own store's word vectors), sharing one
    entity cache, all running the model being trained."""

    def __init__(self, names: Iterable[str]) -> None:
        from assistant.entities import EntityTagger

        tagger = EntityTagger(cache_size=400_000)
        self.bots = {n: open_assistant(n) for n in names}
        self.by_set = {n: ExtractiveAnswerer(tagger, word_vectors=b._word_vectors,
                                             model=placeholder())
                       for n, b in self.bots.items()}

    def use(self, model: AnswerModel) -> None:
        """Run ``model`` from now on."""
        for a in self.by_set.values():
            a.model = model
            a.min_score = model.policy.threshold

    def __getitem__(self, name: str) -> ExtractiveAnswerer:
        return self.by_set[name]


def _zero(features: Sequence[tuple[str, Feature]]) -> Logistic:
    n = len(features)
    return Logistic([f for f, _ in features], [0.0] * n, [1.0] * n, [0.0] * n, 0.0)


def placeholder(policy: Policy | None = None) -> AnswerModel:
    """A model that scores everything alike (the start of stage-wise training)."""
    return AnswerModel(_zero(SENTENCE_BASE), _zero(SENTENCE_FULL), _zero(SPAN_FEATURES),
                       _zero(ANSWER_FEATURES), policy or Policy())


def fit_logistic(x: np.ndarray, y: np.ndarray, names: list[str]) -> Logistic:
    """A standardised L2 logistic regression (scikit-learn, lbfgs: deterministic)."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    if len(set(y.tolist())) < 2:  # nothing to learn: a constant
        p = min(max(float(y.mean()) if len(y) else 0.5, 1e-3), 1 - 1e-3)
        return Logistic(names, mean.tolist(), scale.tolist(), [0.0] * len(names),
                        float(np.log(p / (1 - p))))
    lr = LogisticRegression(C=C, max_iter=5000)
    lr.fit((x - mean) / scale, y)
    return Logistic(names, [round(v, 6) for v in mean], [round(v, 6) for v in scale],
                    [round(float(v), 6) for v in lr.coef_[0]], round(float(lr.intercept_[0]), 6))


def _stack(rows: list[np.ndarray], width: int) -> np.ndarray:
    return np.vstack(rows) if rows else np.zeros((0, width))


def span_correct(text: str, answers: Sequence[str]) -> bool:
    """The short-answer rule: the normalised span contains a gold answer or lies inside
    one (and is not empty)."""
    pred = normalize_answer(text)
    if not pred:
        return False
    padded = f" {pred} "
    return any(f" {g} " in padded or padded in f" {g} "
               for g in (normalize_answer(a) for a in answers) if g)


def answer_correct(sentences_text: str, answers: Sequence[str]) -> bool:
    """The answer rule: at most 60 words and a gold answer among them."""
    return len(words(sentences_text)) <= MAX_ANSWER_WORDS and text_contains(
        sentences_text, answers)


# ---------------------------------------------------------------------------------------
# Fitting, stage by stage
# ---------------------------------------------------------------------------------------


def _evidence(a: ExtractiveAnswerer, item: Item) -> Evidence:
    return a.evidence(analyze(item.question), item.hits, item.qvec, item.svecs)


def fit(items: list[Item], answerers: Answerers, policy: Policy) -> AnswerModel:
    """The four models fitted on ``items``, each on the output of the ones before."""
    model = placeholder(policy)
    answerers.use(model)
    xs, ys = [], []
    for it in items:
        ev = _evidence(answerers[it.set], it)
        if not ev.sentences or not ev.question.terms:
            continue
        xs.append(matrix(SENTENCE_BASE, ev, ev.sentences))
        ys.extend(text_contains(s.text, it.answers) for s in ev.sentences)
    model.sentence_base = fit_logistic(_stack(xs, len(SENTENCE_BASE)), np.array(ys),
                                       [n for n, _ in SENTENCE_BASE])
    xs, ys = [], []
    for it in items:
        a = answerers[it.set]
        ev = _evidence(a, it)
        if not ev.sentences or not ev.question.terms:
            continue
        shortlist = a.rank_base(ev)
        a.tag(ev, shortlist)
        xs.append(matrix(SENTENCE_FULL, ev, shortlist))
        ys.extend(text_contains(s.text, it.answers) for s in shortlist)
    model.sentence = fit_logistic(_stack(xs, len(SENTENCE_FULL)), np.array(ys),
                                  [n for n, _ in SENTENCE_FULL])
    xs, ys = [], []
    for it in items:
        if not it.answerable:
            continue
        a = answerers[it.set]
        ev = _evidence(a, it)
        if not ev.sentences or not ev.question.terms:
            continue
        ranked = a.rank_full(ev, a.rank_base(ev))
        choice = a.choose(ev, ranked)
        spans = a.span_candidates(ev, ranked, choice)
        if spans:
            xs.append(matrix(SPAN_FEATURES, ev, spans))
            ys.extend(span_correct(sp.text, it.answers) for sp in spans)
    model.span = fit_logistic(_stack(xs, len(SPAN_FEATURES)), np.array(ys),
                              [n for n, _ in SPAN_FEATURES])
    xs, ys = [], []
    for it in items:
        an = answerers[it.set].analyse(analyze(it.question), it.hits, it.qvec, it.svecs)
        if an.choice is None:
            continue
        xs.append(matrix(ANSWER_FEATURES, an.evidence, [an.choice]))
        ys.append(it.answerable and answer_correct(_text(an), it.answers))
    model.answer = fit_logistic(_stack(xs, len(ANSWER_FEATURES)), np.array(ys),
                                [n for n, _ in ANSWER_FEATURES])
    answerers.use(model)
    return model


def _text(an: Analysis) -> str:
    return " ".join(s.text for s in an.choice.sentences) if an.choice else ""


# ---------------------------------------------------------------------------------------
# Scoring and cross-validation
# ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the pipeline did with one question (before the abstention threshold)."""

    answerable: bool
    prob: float  # P(answer right); -1 when there was nothing to answer with
    correct: bool  # the answer text holds a gold answer (within 60 words)
    short: bool  # the short answer holds or lies inside a gold answer
    sentence: bool  # the best sentence alone holds a gold answer


def outcomes(items: list[Item], answerers: Answerers) -> list[Outcome]:
    """Run the current model on ``items``."""
    out = []
    for it in items:
        an = answerers[it.set].analyse(analyze(it.question), it.hits, it.qvec, it.svecs)
        if an.choice is None:
            out.append(Outcome(it.answerable, -1.0, False, False, False))
            continue
        span = an.choice.span
        out.append(Outcome(
            it.answerable, an.answer_prob,
            it.answerable and answer_correct(_text(an), it.answers),
            it.answerable and span is not None and span_correct(span.text, it.answers),
            it.answerable and text_contains(an.choice.best.text, it.answers)))
    return out


def figures(results: list[Outcome], threshold: float) -> dict[str, float]:
    """The eval suite's headline metrics at an abstention threshold."""
    ans = [r for r in results if r.answerable]
    una = [r for r in results if not r.answerable]
    kept = [r for r in results if r.prob >= threshold]
    right = sum(r.correct for r in kept) + sum(1 for r in una if r.prob < threshold)
    return {
        "answer_accuracy": right / len(results),
        "short_answer_accuracy": sum(r.short for r in ans if r.prob >= threshold) / len(ans),
        "answerable_accuracy": sum(r.correct for r in ans if r.prob >= threshold) / len(ans),
        "sentence_accuracy": sum(r.sentence for r in ans) / len(ans),
        "abstention_recall": (sum(1 for r in una if r.prob < threshold) / len(una)
                              if una else float("nan")),
        "false_abstention_rate": sum(1 for r in ans if r.prob < threshold) / len(ans),
    }


def choose_threshold(results: list[Outcome]) -> float:
    """The threshold of best answer accuracy whose false abstentions stay within
    :data:`MAX_FALSE_ABSTENTIONS` (the lowest such when several tie)."""
    best, best_acc = THRESHOLDS[0], -1.0
    for t in THRESHOLDS:
        f = figures(results, t)
        if f["false_abstention_rate"] <= MAX_FALSE_ABSTENTIONS and f["answer_accuracy"] > best_acc:
            best, best_acc = t, f["answer_accuracy"]
    return best


def folds(items: list[Item], k: int = FOLDS) -> list[list[int]]:
    """``k`` folds of question indexes, by a hash of the question id (stable)."""
    out: list[list[int]] = [[] for _ in range(k)]
    for i, it in enumerate(items):
        h = int(hashlib.sha256(f"{it.set}/{it.id}".encode()).hexdigest(), 16)
        out[h % k].append(i)
    return out


def cross_validate(items: list[Item], answerers: Answerers, policy: Policy
                   ) -> list[Outcome]:
    """Out-of-fold outcomes: each question answered by a model fitted without it."""
    results: list[Outcome | None] = [None] * len(items)
    for fold in folds(items):
        held = set(fold)
        fit([it for i, it in enumerate(items) if i not in held], answerers, policy)
        for i, r in zip(fold, outcomes([items[i] for i in fold], answerers), strict=True):
            results[i] = r
    return [r for r in results if r is not None]


def _fmt(f: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.3f}" for k, v in f.items())


def main(argv: list[str] | None = None) -> int:
    """Fit the models, choose the policy, write the model file."""
    parser = argparse.ArgumentParser(prog="python -m evals.train", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--cv", action="store_true",
                        help="choose the neighbour join by cross-validation and report it")
    parser.add_argument("--ablation", action="store_true",
                        help="cross-validated answer accuracy without each feature group")
    parser.add_argument("--output", type=Path, default=MODEL_FILE)
    args = parser.parse_args(argv)
    missing = [n for n in TRAIN_SETS if not available(n)]
    if missing:
        print(f"train: skipped: {', '.join(missing)} not found in {NEWS_DIR}")
        return 0
    started = time.perf_counter()
    answerers = Answerers(TRAIN_SETS)
    items = [it for n in TRAIN_SETS for it in collect(n, answerers.bots[n])]
    print(f"train: {len(items)} questions ({sum(not i.answerable for i in items)} "
          f"unanswerable) from {', '.join(TRAIN_SETS)}", file=sys.stderr)
    policy = Policy()
    meta: dict = {"trained_on": list(TRAIN_SETS), "questions": len(items), "C": C,
                  "folds": FOLDS}
    if args.cv:
        best_join, best = policy.join, None
        for join in JOINS:
            p = replace(policy, join=join)
            res = cross_validate(items, answerers, p)
            t = choose_threshold(res)
            f = figures(res, t)
            print(f"train: cv join={join} threshold={t}: {_fmt(f)}", file=sys.stderr)
            if best is None or f["answer_accuracy"] > best[1]["answer_accuracy"]:
                best_join, best = join, (t, f, res)
        assert best is not None
        policy = replace(policy, join=best_join, threshold=best[0])
        meta["cv"] = {k: round(v, 4) for k, v in best[1].items()}
        by_year = {}
        for held in TRAIN_SETS:
            fit([i for i in items if i.set != held], answerers, policy)
            f = figures(outcomes([i for i in items if i.set == held], answerers),
                        policy.threshold)
            by_year[held] = {k: round(v, 4) for k, v in f.items()}
            print(f"train: fitted without {held}, measured on it: {_fmt(f)}", file=sys.stderr)
        meta["cross_year"] = by_year
    model = fit(items, answerers, policy)
    model.meta = meta
    train_fig = figures(outcomes(items, answerers), policy.threshold)
    meta["training_fit"] = {k: round(v, 4) for k, v in train_fig.items()}
    print(f"train: on the training questions themselves: {_fmt(train_fig)}", file=sys.stderr)
    model.save(args.output)
    print(f"train: wrote {args.output} ({args.output.stat().st_size:,} bytes) in "
          f"{time.perf_counter() - started:.0f} s; policy {policy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
