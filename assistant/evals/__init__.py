"""Evaluation: answers gold questions with the assistant and scores them, with no LLM judge.

The modules, each using only the ones before it:

- :mod:`~assistant.evals.metrics`: answer normalisation, containment, exact match and F1,
  retrieval, abstention and latency figures, and the metric names (:data:`METRICS`);
- :mod:`~assistant.evals.gold`: the gold file format, loading and validation errors;
- :mod:`~assistant.evals.runner`: asking every question, citation validity, per-question
  results and their summaries;
- :mod:`~assistant.evals.report`: the answers file, the Markdown report, the summary table
  and the ``--fail-under`` thresholds;
- :mod:`~assistant.evals.command`: :func:`run_eval` and the ``assistant eval`` command.

Every public name is importable from ``assistant.evals`` itself.
"""

from assistant.evals.command import add_eval_arguments, run_eval, run_eval_command
from assistant.evals.gold import (
    DEFAULT_GOLD_GLOB,
    GoldConversation,
    GoldItem,
    GoldQuestion,
    load_gold,
    resolve_gold_paths,
)
from assistant.evals.metrics import (
    COUNT_METRICS,
    LOWER_IS_BETTER,
    MAX_ANSWER_SENTENCES,
    METRICS,
    MS_METRICS,
    Metrics,
    abstention_scores,
    answer_correct,
    answer_words,
    exact_match,
    hit_at_k,
    mean_reciprocal_rank,
    normalize_answer,
    normalize_tokens,
    percentile,
    retrieval_rank,
    short_answer_correct,
    short_answer_quoted,
    summarize,
    text_contains,
    token_f1,
)
from assistant.evals.report import (
    MissedThreshold,
    check_thresholds,
    format_metric,
    format_summary_table,
    md_cell,
    parse_thresholds,
    render_report,
)
from assistant.evals.runner import (
    PASSING_VERDICTS,
    BotLike,
    ChatLike,
    CorpusTexts,
    EvalResult,
    QuestionResult,
    citation_supported,
    citation_valid,
    count_invalid_citations,
    score_answer,
)

__all__ = [
    "COUNT_METRICS",
    "DEFAULT_GOLD_GLOB",
    "LOWER_IS_BETTER",
    "MAX_ANSWER_SENTENCES",
    "METRICS",
    "MS_METRICS",
    "PASSING_VERDICTS",
    "BotLike",
    "ChatLike",
    "CorpusTexts",
    "EvalResult",
    "GoldConversation",
    "GoldItem",
    "GoldQuestion",
    "Metrics",
    "MissedThreshold",
    "QuestionResult",
    "abstention_scores",
    "add_eval_arguments",
    "answer_correct",
    "answer_words",
    "check_thresholds",
    "citation_supported",
    "citation_valid",
    "count_invalid_citations",
    "exact_match",
    "format_metric",
    "format_summary_table",
    "hit_at_k",
    "load_gold",
    "md_cell",
    "mean_reciprocal_rank",
    "normalize_answer",
    "normalize_tokens",
    "parse_thresholds",
    "percentile",
    "render_report",
    "resolve_gold_paths",
    "retrieval_rank",
    "run_eval",
    "run_eval_command",
    "score_answer",
    "short_answer_correct",
    "short_answer_quoted",
    "summarize",
    "text_contains",
    "token_f1",
]
