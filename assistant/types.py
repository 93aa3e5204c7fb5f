"""The answer contract shared by the API, the CLI, the page and the evals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_ANSWER_WORDS = 60
"""The longest answer text, in words, that the answer layer gives and the evals accept."""


CITATION_ROLES = {"agrees": "also states it", "differs": "says otherwise"}
"""How the CLI and the page label a citation not quoted in the answer text, by its role."""


@dataclass
class Citation:
    """A cited passage: the character span ``[start:end]`` of a corpus file.

    ``quote`` is always exactly ``read_text(path)[start:end]``. ``title`` is the article's
    headline (its first line, or a name made from the file name) and ``published`` its
    ``Published:``/``Date:`` header line's value ("" when it has none); both are metadata
    from the header, never part of a quoted span.
    """

    n: int
    doc_id: str
    title: str
    path: str
    start: int
    end: int
    quote: str
    score: float = 0.0
    published: str = ""
    source: str = ""  # the article's Source: line (its outlet), if any
    role: str = "answer"
    """``answer``: quoted in the answer text (its ``[n]``); ``agrees``: another article
    that states the same short answer; ``differs``: one that gives another figure."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the citation."""
        return asdict(self)


@dataclass
class Passage:
    """A retrieved chunk, shown as context (for instance beside an abstention)."""

    doc_id: str
    title: str
    path: str
    start: int
    end: int
    text: str
    score: float = 0.0
    published: str = ""  # the article's Published:/Date: header value, if any
    source: str = ""  # the article's Source: line (its outlet), if any

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the passage."""
        return asdict(self)


@dataclass
class Answer:
    """What the assistant says about one question."""

    question: str
    text: str
    short_answer: str | None = None
    abstained: bool = False
    citations: list[Citation] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    latency_ms: float = 0.0
    backend: str = "extractive"
    notice: str | None = None
    agreement: str | None = None
    """"Stated in 3 articles; 1 other article gives another figure" when other articles
    were found on the answer (their citations have role ``agrees`` / ``differs``)."""
    scope: str | None = None
    """Which articles were used when not all of them ("In articles from 4–10 March 2024
    (“last week”, as of 10 March 2024)"); None when every article was."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON that ``assistant ask --json`` prints."""
        data: dict[str, Any] = {
            "question": self.question,
            "answer": self.text,
            "short_answer": self.short_answer,
            "abstained": self.abstained,
            "citations": [c.to_dict() for c in self.citations],
            "retrieved": list(self.retrieved),
            "latency_ms": round(self.latency_ms, 1),
            "backend": self.backend,
        }
        if self.notice:
            data["notice"] = self.notice
        if self.scope:
            data["scope"] = self.scope
        if self.agreement:
            data["agreement"] = self.agreement
        return data


@dataclass
class IngestReport:
    """Counts of one ingest run."""

    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    added: list[str] = field(default_factory=list)  # paths of the new articles

    @property
    def articles(self) -> int:
        """Articles present in the store after the run."""
        return self.new + self.changed + self.unchanged

    def summary(self) -> str:
        """The one-line summary printed at the end of an ingest."""
        noun = "article" if self.articles == 1 else "articles"
        line = (
            f"Ingested {self.articles} {noun} ({self.new} new, {self.changed} changed, "
            f"{self.removed} removed, {self.unchanged} unchanged): "
            f"{self.chunks} chunks in {self.seconds:.1f} s"
        )
        if self.skipped:
            line += f"; skipped {len(self.skipped)} file(s)"
        return line

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the report."""
        data = asdict(self)
        data["articles"] = self.articles
        data["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return data
