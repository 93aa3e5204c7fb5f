"""Train the answer layer's models on the real-news training sets (``make train``).

    python -m evals.train                 # fit on train-2022 + train-2023, write the model
    python -m evals.train --cv            # also report 5-fold cross-validated figures
    python -m evals.train --ablation      # cross-validated contribution of each feature
    python -m evals.train --refit span --cv   # fit the span ranker anew on top of the
                                              # shipped file's other models and policy

Reads ``../shared/news-qa`` (never copied into the repository) through the cached eval
stores of :mod:`evals.news` (ingested when missing), retrieves each question once over all
articles and each news question once more as on its quiz date (kept in a cache beside the
stores), then fits five logistic regressions stage by stage — base sentence ranker, full
sentence ranker, span ranker, two abstention classifiers — on the first retrieval, and
chooses the policy (abstention threshold, neighbour join, whether a short answer found in
an unquoted sentence moves the answer there) by cross-validation over questions, measured on
both. Deterministic: same data, same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.answer_model import MODEL_FILE, OUTSIDE, AnswerModel, Logistic, Policy
from assistant.answering import Analysis, ExtractiveAnswerer, quotes
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
from assistant.settings import AssistantError
from assistant.text import words
from assistant.types import MAX_ANSWER_WORDS
from evals.news import NEWS_DIR, available, cache_root, open_assistant, store_key

if TYPE_CHECKING:
    from assistant.core import Assistant

TRAIN_SETS = ("train-2022", "train-2023")
RETRIEVAL_VERSION = 4  # raise when retrieval changes in a way the store key does not show
ROOT = Path(__file__).resolve().parent.parent
# Our own sets (clean, single-topic articles): another kind of corpus to calibrate on.
OWN_SETS = {
    "own-gold": (ROOT / "evals" / "gold" / "corpus.jsonl", ROOT / "evals" / "gold" / "corpus"),
    "own-heldout": (ROOT / "evals" / "heldout" / "questions.jsonl",
                    ROOT / "evals" / "heldout" / "corpus"),
}
OWN_WEIGHT = 3.0  # each question of our sets counts this many times
FOLDS = 5
C = 1.0  # inverse regularisation strength of every logistic model
THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.05, 0.81, 0.05))
JOINS = (0.0, 0.03, 0.1)
# What a short answer found in a sentence the answer does not quote does to the answer
# (Policy.span_outside: move it there, keep it, add that sentence), chosen for each kind
# of corpus; the first of equals wins.
MOVES = OUTSIDE
# The abstention policy of each kind of corpus is the best accuracy within this share of
# false abstentions (news: the product target; our articles: their eval gate).
MAX_FALSE_ABSTENTIONS = {"news": 0.08, "own": 0.04}
# Feature groups whose contribution --ablation measures (names across the four models).
ABLATION_GROUPS: dict[str, tuple[str, ...]] = {
    "coverage": ("cover", "cover_gap", "cover_context", "cover_article", "proper_cover"),
    "dense similarity": ("dense", "dense_gap", "dense_context", "chunk_dense"),
    "answer type": ("typed", "neighbour_typed", "untyped", "pattern_type", "type_match",
                    "type_order", "person_q_x_typed", "number_q_x_typed", "date_q_x_typed",
                    "place_q_x_typed"),
    "redundancy": ("redundancy", "span_redundancy", "sentences"),
    "focus noun": ("focus_match", "focus", "has_focus", "focus_x_word"),
    "position": ("lead", "position", "header", "in_header"),
    "soft coverage": ("soft_cover",),
}
DROPPED: set[str] = set()  # features held at zero while fitting (for --ablation)
# Each news question is also retrieved as on its quiz date (later articles left out, the
# last weeks ranked first) and measured so in cross-validation. Fitting on those too
# (--fit-dated: both ways, each half) did not help: cross-validated on the training sets,
# 0.680 / 0.625 answer accuracy as of the date / with no date, against 0.684 / 0.633 fitted
# on the undated ones alone (and 0.684 / 0.616 with an article-age feature).
DATED = False
# The five models, in the order they are fitted (each on the outputs of those before).
STAGES = ("sentence_base", "sentence", "span", "answer", "answer_small")


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
    as_of: str | None = None  # asked as on this day (its retrieval kept to it)
    share: float = 1.0  # of the question's weight (a question asked both ways: ½ each)

    @property
    def answerable(self) -> bool:
        """True when the question has gold answers."""
        return bool(self.answers)

    @property
    def weight(self) -> float:
        """How much the question counts in fitting."""
        return (OWN_WEIGHT if self.set in OWN_SETS else 1.0) * self.share


def open_set(name: str) -> Assistant:
    """An Assistant over set ``name`` (a news set or one of ours) and its cached store."""
    if name not in OWN_SETS:
        return open_assistant(name)
    from assistant.core import Assistant

    return Assistant(corpus=OWN_SETS[name][1], store=cache_root() / f"{name}-{store_key()}")


def questions_file(name: str) -> Path:
    """The questions of set ``name``."""
    return OWN_SETS[name][0] if name in OWN_SETS else NEWS_DIR / name / "questions.jsonl"


def _corpus_digest(corpus: Path) -> bytes:
    h = hashlib.sha256()
    for f in sorted(corpus.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.digest()


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def collect(name: str, bot: Assistant | None = None, as_of: bool = False) -> list[Item]:
    """Retrieve every question of set ``name`` once: with ``as_of``, as ``ask`` does on the
    question's date (its ``as_of`` or ``question_date``: later articles left out, time words
    counted from it, the last weeks ranked first), else over all articles. Cached on disk,
    keyed by the questions, the corpus, the store's key and :data:`RETRIEVAL_VERSION`."""
    from assistant.core import retrieve_in
    from assistant.timeframe import parse_day, scope_for

    questions = questions_file(name)
    bot = bot or open_set(name)
    key = hashlib.sha256(questions.read_bytes() + store_key().encode()
                         + _corpus_digest(Path(bot.settings.corpus))
                         + f"{RETRIEVAL_VERSION}/{as_of}".encode()).hexdigest()[:12]
    cache = cache_root() / f"retrieved-{name}-{key}.pkl"
    if cache.exists():  # plain fields: the file must not depend on how this module was run
        return [Item(**row) for row in pickle.loads(cache.read_bytes())]
    print(f"train: {bot.ingest().summary()}", file=sys.stderr)
    retriever = bot._retriever_for_query()
    items = []
    for line in questions.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        text = bot.check_question(row["question"])
        day = row.get("as_of", row.get("question_date")) if as_of else None
        qvec = bot.embed_model.embed([text])[0]
        if day:  # kept to the question's date and its time words' window
            scope = scope_for(text, None, None, parse_day(str(day)[:10], "as_of"),
                              retriever.newest)
            hits = retrieve_in(retriever, text, qvec, scope.window,
                               scope.prefer(scope.window), scope.stating)
        else:  # every article: asked with no date, "this week" counts from the newest
            # article, and an answer not found in that week is looked for in all of them
            hits = retriever.retrieve(text, qvec)
        items.append(Item(name, row["id"], text, list(row.get("answers") or []), hits,
                          np.asarray(qvec, dtype=np.float32), bot._sentence_vectors(hits),
                          str(day)[:10] if day else None))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps([vars(it) for it in items]))
    return items


class Answerers:
    """One answerer per news set (each reads its own store's word vectors), sharing one
    entity cache, all running the model being trained."""

    def __init__(self, names: Iterable[str]) -> None:
        from assistant.entities import EntityTagger

        tagger = EntityTagger(cache_size=400_000)
        self.bots = {n: open_set(n) for n in names}
        self.by_set = {n: ExtractiveAnswerer(tagger, word_vectors=b._word_vectors,
                                             model=placeholder())
                       for n, b in self.bots.items()}
        for n, b in self.bots.items():
            b.ingest()
            self.by_set[n].corpus_articles = b._retriever_for_query().articles

    def use(self, model: AnswerModel) -> None:
        """Run ``model`` from now on."""
        for a in self.by_set.values():
            a.model = model

    def __getitem__(self, name: str) -> ExtractiveAnswerer:
        return self.by_set[name]


def _zero(features: Sequence[tuple[str, Feature]]) -> Logistic:
    n = len(features)
    return Logistic([f for f, _ in features], [0.0] * n, [1.0] * n, [0.0] * n, 0.0)


def placeholder(policy: Policy | None = None) -> AnswerModel:
    """A model that scores everything alike (the start of stage-wise training)."""
    return AnswerModel(_zero(SENTENCE_BASE), _zero(SENTENCE_FULL), _zero(SPAN_FEATURES),
                       _zero(ANSWER_FEATURES), _zero(ANSWER_FEATURES), policy or Policy())


def fit_logistic(x: np.ndarray, y: np.ndarray, names: list[str],
                 weights: np.ndarray | None = None) -> Logistic:
    """A standardised L2 logistic regression (scikit-learn, lbfgs: deterministic)."""
    from sklearn.linear_model import LogisticRegression

    x = _drop(x, names)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    if len(set(y.tolist())) < 2:  # nothing to learn: a constant
        p = min(max(float(y.mean()) if len(y) else 0.5, 1e-3), 1 - 1e-3)
        return Logistic(names, mean.tolist(), scale.tolist(), [0.0] * len(names),
                        float(np.log(p / (1 - p))))
    lr = LogisticRegression(C=C, max_iter=5000)
    lr.fit((x - mean) / scale, y, sample_weight=weights)
    return Logistic(names, [round(v, 6) for v in mean], [round(v, 6) for v in scale],
                    [round(float(v), 6) for v in lr.coef_[0]], round(float(lr.intercept_[0]), 6))


def fit_ranker(x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: list[str],
               weights: np.ndarray | None = None, l2: float = 1.0) -> Logistic:
    """A conditional logit (softmax over the candidates of each question): it learns what
    tells the answer apart from the other candidates *of the same question*, not what
    answers look like in general. Rows of a group are contiguous; groups without a positive
    are left out. L-BFGS from zero: deterministic."""
    from scipy.optimize import minimize

    x = _drop(x, names)
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    scale = x.std(axis=0) if len(x) else np.ones(x.shape[1])
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(groups) else []
    keep = np.zeros(len(y), dtype=bool)
    bounds = list(zip(starts, [*starts[1:], len(y)], strict=True))
    for a, b in bounds:
        if y[a:b].any():
            keep[a:b] = True
    w_row = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    z, y, groups, w_row = z[keep], y[keep].astype(float), groups[keep], w_row[keep]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(groups) else []
    if not len(starts):
        n = len(names)
        return Logistic(names, mean.tolist(), scale.tolist(), [0.0] * n, 0.0)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = z @ w
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - np.repeat(top, np.diff(np.r_[starts, len(s)])))
        den = np.add.reduceat(e, starts)
        num = np.add.reduceat(e * y, starts)
        sizes = np.diff(np.r_[starts, len(s)])
        p_all = e / np.repeat(den, sizes)
        p_pos = e * y / np.repeat(num, sizes)
        w_group = w_row[starts]
        value = float(np.sum(w_group * (np.log(den) - np.log(num)))) + 0.5 * l2 * float(w @ w)
        grad = z.T @ (w_row * (p_all - p_pos)) + l2 * w
        return value, grad

    w = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B",
                 options={"maxiter": 2000}).x
    return Logistic(names, [round(float(v), 6) for v in mean], [round(float(v), 6) for v in scale],
                    [round(float(v), 6) for v in w], 0.0)


def _drop(x: np.ndarray, names: list[str]) -> np.ndarray:
    if not DROPPED.intersection(names):
        return x
    x = x.copy()
    for i, n in enumerate(names):
        if n in DROPPED:
            x[:, i] = 0.0
    return x


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


class _Rows:
    """Feature rows of one stage with their labels, question groups and weights."""

    def __init__(self, features: Sequence[tuple[str, Feature]]) -> None:
        self.names = [n for n, _ in features]
        self.features = list(features)
        self.x: list[np.ndarray] = []
        self.y: list[bool] = []
        self.groups: list[int] = []
        self.weights: list[float] = []

    def add(self, ev: Evidence, candidates: list, labels: Iterable[bool], group: int,
            weight: float) -> None:
        """The rows of one question's candidates."""
        self.x.append(matrix(self.features, ev, candidates))
        self.y.extend(labels)
        self.groups.extend([group] * len(candidates))
        self.weights.extend([weight] * len(candidates))

    def ranker(self) -> Logistic:
        """A conditional logit over these rows."""
        return fit_ranker(_stack(self.x, len(self.names)), np.array(self.y),
                          np.array(self.groups), self.names, np.array(self.weights))


def fit(items: list[Item], answerers: Answerers, policy: Policy,
        start: AnswerModel | None = None, stages: Collection[str] = STAGES) -> AnswerModel:
    """The five models fitted on ``items``, each on the output of the ones before. With
    ``start``, only the models named in ``stages`` are fitted; the others are ``start``'s."""
    items = [it for it in items if DATED or it.as_of is None]
    model = placeholder(policy)
    answerers.use(model)

    if start is not None:  # the models not refitted are start's from the outset
        for stage in STAGES:
            if stage not in stages:
                setattr(model, stage, getattr(start, stage))

    def todo(stage: str) -> bool:
        return start is None or stage in stages

    base, full, span = _Rows(SENTENCE_BASE), _Rows(SENTENCE_FULL), _Rows(SPAN_FEATURES)
    if todo("sentence_base"):
        for g, it in enumerate(items):
            ev = _evidence(answerers[it.set], it)
            if ev.sentences and ev.question.terms and it.answerable:
                base.add(ev, ev.sentences,
                         (text_contains(s.text, it.answers) for s in ev.sentences), g,
                         it.weight)
        model.sentence_base = base.ranker()
    if todo("sentence"):
        for g, it in enumerate(items):
            a = answerers[it.set]
            ev = _evidence(a, it)
            if ev.sentences and ev.question.terms and it.answerable:
                shortlist = a.rank_base(ev)
                a.tag(ev, shortlist)
                full.add(ev, shortlist,
                         (text_contains(s.text, it.answers) for s in shortlist), g, it.weight)
        model.sentence = full.ranker()
    if todo("span"):
        for g, it in enumerate(items):
            a = answerers[it.set]
            ev = _evidence(a, it)
            if not (ev.sentences and ev.question.terms and it.answerable):
                continue
            ranked = a.rank_full(ev, a.rank_base(ev))
            spans = a.span_candidates(ev, ranked, a.choose(ev, ranked))
            if spans:
                span.add(ev, spans, (span_correct(sp.text, it.answers) for sp in spans), g,
                         it.weight)
        model.span = span.ranker()
    if not (todo("answer") or todo("answer_small")):
        return model
    xs, right, answerable, news, ws = [], [], [], [], []
    for it in items:
        an = answerers[it.set].analyse(analyze(it.question), it.hits, it.qvec, it.svecs)
        if an.choice is None:
            continue
        xs.append(matrix(ANSWER_FEATURES, an.evidence, [an.choice]))
        right.append(it.answerable and answer_correct(_text(an), it.answers))
        answerable.append(it.answerable)
        news.append(it.set not in OWN_SETS)
        ws.append(it.weight)
    x, w, on_news = _stack(xs, len(ANSWER_FEATURES)), np.array(ws), np.array(news, dtype=bool)
    feature_names = [n for n, _ in ANSWER_FEATURES]
    # News: does the corpus answer the question at all (fitted on news alone, where the
    # unanswerable questions are about events the articles do not cover). Small corpora:
    # is the chosen answer right (every question of a one-topic corpus looks answerable).
    if todo("answer"):
        model.answer = fit_logistic(x[on_news], np.array(answerable)[on_news], feature_names,
                                    w[on_news])
    if todo("answer_small"):
        model.answer_small = fit_logistic(x, np.array(right), feature_names, w)
    answerers.use(model)
    return model


def start_model(path: Path, stages: Collection[str]) -> AnswerModel:
    """The model in ``path`` to refit ``stages`` of: those stages may have other features
    than the code's (they are about to be refitted), the others must have the code's."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"train: cannot read {path}: {exc}") from exc
    fresh = placeholder()
    model = AnswerModel(**{stage: getattr(fresh, stage) if stage in stages
                           else Logistic(**data[stage]) for stage in STAGES},
                        policy=Policy(**data["policy"]), meta=data.get("meta", {}))
    try:
        model.check()
    except AssistantError as exc:
        raise SystemExit(f"train: {exc}; refit that stage too") from exc
    return model


def _text(an: Analysis) -> str:
    """The text the answer quotes (a long sentence cut as the answer cuts it)."""
    if an.choice is None:
        return ""
    return " ".join(q.shown for q in quotes(an.choice, an.evidence.question))


# ---------------------------------------------------------------------------------------
# Scoring and cross-validation
# ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the pipeline did with one question (before the abstention threshold)."""

    set: str
    answerable: bool
    prob: float  # P(answer right); -1 when there was nothing to answer with
    correct: bool  # the answer text holds a gold answer (within 60 words)
    short: bool  # the short answer holds or lies inside a gold answer
    sentence: bool  # the best sentence alone holds a gold answer
    ruled_out: tuple[str, ...] = ()  # the abstention rules that fire
    dated: bool = False  # asked as on the question's date

    def abstains(self, threshold: float, rules: Sequence[str]) -> bool:
        """True when the assistant abstains under this policy."""
        return self.prob < threshold or bool(set(rules).intersection(self.ruled_out))


def outcomes(items: list[Item], answerers: Answerers) -> list[Outcome]:
    """Run the current model on ``items``."""
    out = []
    for it in items:
        an = answerers[it.set].analyse(analyze(it.question), it.hits, it.qvec, it.svecs)
        if an.choice is None:
            out.append(Outcome(it.set, it.answerable, -1.0, False, False, False,
                               dated=it.as_of is not None))
            continue
        span = an.choice.span
        out.append(Outcome(
            it.set, it.answerable, an.answer_prob,
            it.answerable and answer_correct(_text(an), it.answers),
            it.answerable and span is not None and span_correct(span.text, it.answers),
            it.answerable and text_contains(an.choice.best.text, it.answers),
            tuple(an.ruled_out), it.as_of is not None))
    return out


def figures(results: list[Outcome], threshold: float, rules: Sequence[str] = ()
            ) -> dict[str, float]:
    """The eval suite's headline metrics under an abstention policy."""
    ans = [r for r in results if r.answerable]
    una = [r for r in results if not r.answerable]
    said = [r for r in ans if not r.abstains(threshold, rules)]
    right = sum(r.correct for r in said) + sum(r.abstains(threshold, rules) for r in una)
    return {
        "answer_accuracy": right / len(results),
        "short_answer_accuracy": sum(r.short for r in said) / len(ans),
        "answerable_accuracy": sum(r.correct for r in said) / len(ans),
        "sentence_accuracy": sum(r.sentence for r in ans) / len(ans),
        "abstention_recall": (sum(r.abstains(threshold, rules) for r in una) / len(una)
                              if una else float("nan")),
        "false_abstention_rate": 1 - len(said) / len(ans),
    }


def kinds(results: list[Outcome]) -> dict[str, list[Outcome]]:
    """Outcomes on real news and on our own sets, apart."""
    out = {"news": [r for r in results if r.set not in OWN_SETS],
           "own": [r for r in results if r.set in OWN_SETS]}
    return {k: v for k, v in out.items() if v}


def ways(results: list[Outcome]) -> dict[str, list[Outcome]]:
    """News outcomes asked with no date and as of the question's date, apart (reports)."""
    out = {"news, no date": [r for r in results if r.set not in OWN_SETS and not r.dated],
           "news, as of": [r for r in results if r.set not in OWN_SETS and r.dated]}
    return {k: v for k, v in out.items() if v}


RULE_SETS = tuple(tuple(c) for n in range(6)
                  for c in combinations(("number", "number_article", "name", "type",
                                         "uncovered"), n)
                  if not {"number", "number_article"} <= set(c))


def choose_policy(results: list[Outcome], kind: str) -> tuple[float, tuple[str, ...], float]:
    """The threshold and abstention rules of best answer accuracy on one kind of corpus
    whose false abstentions stay within :data:`MAX_FALSE_ABSTENTIONS`, and that accuracy.
    Between equally accurate policies the one that abstains more on unanswerable questions
    wins, then the one with fewer false abstentions, then the stricter one (more rules; a
    guess is worse than saying the corpus does not say), then the lower threshold."""
    group = kinds(results)[kind]
    best: tuple[float, tuple[str, ...], float] = (THRESHOLDS[0], (), -1.0)
    best_key: tuple[float, ...] | None = None
    for rules in RULE_SETS:
        for t in THRESHOLDS:
            f = figures(group, t, rules)
            if f["false_abstention_rate"] > MAX_FALSE_ABSTENTIONS[kind]:
                continue
            recall = f["abstention_recall"] if f["abstention_recall"] == f["abstention_recall"] \
                else 0.0
            key = (round(f["answer_accuracy"], 9), round(recall, 9),
                   -round(f["false_abstention_rate"], 9), len(rules), -t)
            if best_key is None or key > best_key:
                best, best_key = (float(t), rules, f["answer_accuracy"]), key
    return best


def with_choice(policy: Policy, by_move: dict[str, list[Outcome]]
                ) -> tuple[Policy, float, list[Outcome]]:
    """``policy`` with each kind's threshold, rules and ``span_outside`` chosen on the
    outcomes of each ``span_outside`` value (``by_move``), the mean answer accuracy
    over the kinds, and the outcomes of the chosen policy."""
    def best(kind: str) -> tuple[tuple[float, tuple[str, ...], float], str]:
        return max(((choose_policy(res, kind), move) for move, res in by_move.items()),
                   key=lambda c: c[0][2])  # the first of equals: MOVES order

    (t, rules, news), news_move = best("news")
    (st, srules, own), own_move = best("own")
    chosen = replace(policy, threshold=t, rules=list(rules), small_threshold=st,
                     small_rules=list(srules), span_outside=news_move,
                     small_span_outside=own_move)
    results = ([r for r in by_move[news_move] if r.set not in OWN_SETS]
               + [r for r in by_move[own_move] if r.set in OWN_SETS])
    return chosen, (news + own) / 2, results


def _report(label: str, results: list[Outcome], policy: Policy) -> dict[str, dict]:
    out = {}
    groups = kinds(results)
    if len(ways(results)) > 1:
        groups.update(ways(results))
    for kind, group in groups.items():
        t, rules = ((policy.small_threshold, policy.small_rules) if kind == "own"
                    else (policy.threshold, policy.rules))
        f = figures(group, t, rules)
        out[kind] = {k: round(v, 4) for k, v in f.items()}
        print(f"train: {label} [{kind}, {len(group)} questions]: {_fmt(f)}", file=sys.stderr)
    return out


def folds(items: list[Item], k: int = FOLDS) -> list[list[int]]:
    """``k`` folds of question indexes, by a hash of the question id (stable)."""
    out: list[list[int]] = [[] for _ in range(k)]
    for i, it in enumerate(items):
        h = int(hashlib.sha256(f"{it.set}/{it.id}".encode()).hexdigest(), 16)
        out[h % k].append(i)
    return out


def cross_validate(items: list[Item], answerers: Answerers, policy: Policy,
                   joins: Sequence[float] = JOINS, k: int = FOLDS,
                   moves: Sequence[str | None] = MOVES, start: AnswerModel | None = None,
                   stages: Collection[str] = STAGES
                   ) -> dict[tuple[float, str | None], list[Outcome]]:
    """Out-of-fold outcomes for each neighbour-join value and ``span_outside`` value
    (None: the policy's own for each kind): each question answered by a model fitted
    without it (join and move are applied to the fitted models; with ``start``, only
    ``stages`` are fitted, see :func:`fit`)."""
    variants = [(j, m) for j in joins for m in moves]
    results: dict[tuple[float, str | None], list[Outcome | None]] = {
        v: [None] * len(items) for v in variants}
    for fold in folds(items, k):
        held = set(fold)
        model = fit([it for i, it in enumerate(items) if i not in held], answerers, policy,
                    start, stages)
        for join, move in variants:
            model.policy = replace(policy, join=join) if move is None else replace(
                policy, join=join, span_outside=move, small_span_outside=move)
            answerers.use(model)
            for i, r in zip(fold, outcomes([items[i] for i in fold], answerers), strict=True):
                results[(join, move)][i] = r
    return {v: [r for r in rs if r is not None] for v, rs in results.items()}


def ablation(items: list[Item], answerers: Answerers, policy: Policy, k: int = 3
             ) -> dict[str, dict[str, float]]:
    """Cross-validated answer accuracy (``k`` folds) with each feature group held at zero,
    against all features, per kind of corpus, under a fixed policy."""
    def run() -> dict[str, float]:
        res = cross_validate(items, answerers, policy, (policy.join,), k,
                             (None,))[(policy.join, None)]
        got = _report("ablation run", res, policy)
        return {kind: f["answer_accuracy"] for kind, f in got.items()}

    DROPPED.clear()
    base = run()
    out = {"all features": {kd: round(v, 4) for kd, v in base.items()}}
    print(f"train: ablation, all features: {base}", file=sys.stderr)
    for group, names in ABLATION_GROUPS.items():
        DROPPED.clear()
        DROPPED.update(names)
        got = run()
        out[f"without {group}"] = {kd: round(got[kd] - base[kd], 4) for kd in base}
        print(f"train: ablation, without {group}: {out[f'without {group}']}", file=sys.stderr)
    DROPPED.clear()
    return out


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
    parser.add_argument("--fit-dated", action="store_true",
                        help="also fit on the news questions asked as on their date (each "
                        "way counting half); by default those are measured, not fitted on")
    parser.add_argument("--refit", metavar="STAGES",
                        help="fit only these models (comma-separated, of "
                        f"{', '.join(STAGES)}), keeping the others and the policy of --start")
    parser.add_argument("--start", type=Path, default=MODEL_FILE,
                        help="the model file --refit starts from (default: the shipped one)")
    parser.add_argument("--output", type=Path, default=MODEL_FILE)
    args = parser.parse_args(argv)
    stages = [x.strip() for x in (args.refit or "").split(",") if x.strip()]
    if args.refit is not None and (not stages or set(stages) - set(STAGES)):
        parser.error(f"--refit takes stages among {', '.join(STAGES)}")
    global DATED
    DATED = args.fit_dated
    missing = [n for n in TRAIN_SETS if not available(n)]
    if missing:
        print(f"train: skipped: {', '.join(missing)} not found in {NEWS_DIR}")
        return 0
    started = time.perf_counter()
    names = [*TRAIN_SETS, *OWN_SETS]
    answerers = Answerers(names)
    items = [it for n in names for it in collect(n, answerers.bots[n])]
    # Each news question also as on its date (measured; fitted on with --fit-dated, each
    # way then counting half).
    dated = [it for n in TRAIN_SETS for it in collect(n, answerers.bots[n], as_of=True)]
    if DATED:
        items = [replace(it, share=0.5) if it.set in TRAIN_SETS else it for it in items]
        dated = [replace(it, share=0.5) for it in dated]
    items += dated
    print(f"train: {len(items)} questions ({sum(not i.answerable for i in items)} "
          f"unanswerable) from {', '.join(names)}", file=sys.stderr)
    if stages:
        return refit(items, answerers, start_model(args.start, stages), stages, args.cv,
                     args.output, started)
    policy = Policy()
    meta: dict = {"trained_on": names, "questions": len(items), "own_weight": OWN_WEIGHT,
                  "folds": FOLDS, "news_asked": "with no date and as of their date"
                  if DATED else "with no date"}
    if args.cv:
        by_variant = cross_validate(items, answerers, policy)
        (cache_root() / "cv-outcomes.pkl").write_bytes(pickle.dumps(
            {v: [vars(r) for r in rs] for v, rs in by_variant.items()}))
        for (join, move), res in by_variant.items():
            _report(f"cv join={join} span_outside={move}", res,
                    with_choice(replace(policy, join=join), {move: res})[0])
        best = None
        for join in JOINS:
            chosen, acc, res = with_choice(replace(policy, join=join),
                                           {m: by_variant[(join, m)] for m in MOVES})
            print(f"train: cv {chosen}: mean answer accuracy {acc:.3f}", file=sys.stderr)
            if best is None or acc > best[1]:
                best = (chosen, acc, res)
        assert best is not None
        policy = best[0]
        meta["cv"] = _report(f"cv {policy}", best[2], policy)
        held_out = {}
        for held in names:
            fit([i for i in items if i.set != held], answerers, policy)
            res = outcomes([i for i in items if i.set == held], answerers)
            held_out[held] = _report(f"fitted without {held}, measured on it", res, policy)
        meta["leave_one_set_out"] = held_out
    if args.ablation:
        meta["ablation"] = ablation(items, answerers, policy)
    model = fit(items, answerers, policy)
    model.meta = meta
    meta["training_fit"] = _report("on the training questions themselves",
                                   outcomes(items, answerers), policy)
    model.save(args.output)
    print(f"train: wrote {args.output} ({args.output.stat().st_size:,} bytes) in "
          f"{time.perf_counter() - started:.0f} s; policy {policy}")
    return 0


def refit(items: list[Item], answerers: Answerers, start: AnswerModel, stages: list[str],
          cv: bool, output: Path, started: float) -> int:
    """Fit ``stages`` anew on top of ``start``'s other models and policy and write the
    result, its figures recorded in the file's ``meta["refits"]`` after ``start``'s."""
    policy = start.policy
    record: dict = {"stages": stages, "questions": len(items)}
    if cv:
        res = cross_validate(items, answerers, policy, (policy.join,), moves=(None,),
                             start=start, stages=stages)[(policy.join, None)]
        record["cv"] = _report(f"cv, {', '.join(stages)} refitted", res, policy)
        record["leave_one_set_out"] = {}
        for held in dict.fromkeys(it.set for it in items):
            fit([i for i in items if i.set != held], answerers, policy, start, stages)
            res = outcomes([i for i in items if i.set == held], answerers)
            record["leave_one_set_out"][held] = _report(
                f"{', '.join(stages)} fitted without {held}, measured on it", res, policy)
    model = fit(items, answerers, policy, start, stages)
    record["training_fit"] = _report("on the training questions themselves",
                                     outcomes(items, answerers), policy)
    model.meta = {**start.meta, "refits": [*start.meta.get("refits", []), record]}
    model.save(output)
    print(f"train: wrote {output} ({output.stat().st_size:,} bytes) in "
          f"{time.perf_counter() - started:.0f} s; {', '.join(stages)} refitted, the other "
          "models and the policy kept")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
