"""The Assistant: one object that owns the settings, the models, the store and the
answer layer. The CLI, the page and the evals all go through it."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.answering import ABSTAIN_TEXT, ExtractiveAnswerer
from assistant.entities import EntityTagger
from assistant.freshness import Changes, CorpusFiles, check_hits, confirm, merge_notices
from assistant.question import WH_WORD, Question, analyze
from assistant.retrieval import Hit, HybridRetriever
from assistant.settings import AssistantError, Settings
from assistant.text import clean_text, stem, vocabulary, words
from assistant.timeframe import DayRange, names_month, parse_day, scope_for
from assistant.types import Answer, IngestReport

if TYPE_CHECKING:
    from assistant.chat import ChatSession
    from assistant.embedding import TextEncoder, WordVectors
    from assistant.ingest import Progress
    from assistant.store import Store

INHERITED_WEIGHT = 0.4
"""A follow-up's words inherited from the earlier turn count this much of its own."""
CONTEXT_WEIGHT = 0.5
"""The earlier turn's share in a follow-up's query vector (its own words count 1)."""


class Assistant:
    """Answers questions about the articles of a corpus, citing the passages it used.

    >>> bot = Assistant(corpus="corpus", store=".assistant")
    >>> bot.ingest()                      # incremental
    >>> bot.ask("How many children were reunited in the past 24 hours?").short_answer
    'Eight'
    """

    def __init__(self, settings: Settings | None = None, *, corpus: str | Path | None = None,
                 store: str | Path | None = None, **overrides: Any) -> None:
        base = settings or Settings.from_env()
        values = {k: v for k, v in
                  {"corpus": corpus, "store": store, **overrides}.items() if v is not None}
        if values:
            base = Settings(**{**base.__dict__, **values}).normalised()
        self.settings = base
        self._embed: TextEncoder | None = None
        self._store: Store | None = None
        self._retriever: HybridRetriever | None = None
        self._key: tuple[str, str] | None = None  # (generation's name, fingerprint) of it
        self._tagger = EntityTagger()
        self._extractive: ExtractiveAnswerer | None = None
        self._words: OrderedDict[str, np.ndarray] = OrderedDict()
        self._word_file: WordVectors | None = None
        self._lock = threading.RLock()  # the retriever and store swaps: held briefly
        self._ingesting = threading.Lock()  # one ingest at a time; questions go on meanwhile
        self._files = CorpusFiles(self.settings.corpus,
                                  math.ceil(self.settings.max_file_mb * 1024 * 1024))
        self.check_files = True
        """Check retrieved passages and citations against the corpus files as they are
        now (:mod:`assistant.freshness`); off only to measure what the check costs."""

    # -- parts, created on first use ---------------------------------------------------------
    @property
    def _answerer(self) -> ExtractiveAnswerer:
        """The extractive answer layer with the shipped answer model."""
        if self._extractive is None:
            self._extractive = ExtractiveAnswerer(
                self._tagger, min_score=self.settings.min_score,
                word_vectors=self._word_vectors)
            if self._retriever is not None:
                self._extractive.corpus_articles = self._retriever.articles
        return self._extractive

    @property
    def embed_model(self) -> TextEncoder:
        """The bundled MiniLM in the variant that made the store's vectors
        (``.embed(texts)``; a store keeps the one it was built with, a new store gets
        ``Settings.embedding``)."""
        return self.encoder(self.store.embedding)

    def encoder(self, variant: str) -> TextEncoder:
        """The bundled MiniLM as ``variant`` (``Settings.embedding``), loaded once; no
        llama-index import (``assistant.embedding.MiniLMEmbedding`` is the same model as
        a llama-index BaseEmbedding)."""
        if self._embed is None or getattr(self._embed, "variant", "minilm") != variant:
            from assistant.embedding import MiniLMEncoder

            self._embed = MiniLMEncoder(embed_batch_size=self.settings.embed_batch_size,
                                        variant=variant)
        return self._embed

    @property
    def store(self) -> Store:
        """The Chroma store of this corpus."""
        if self._store is None:
            from assistant.embedding import MODEL_NAMES
            from assistant.store import Store

            self._store = Store(self.settings, MODEL_NAMES[self.settings.embedding])
        return self._store

    def _retriever_for_query(self) -> HybridRetriever:
        """The retriever of the store's current generation and fingerprint. While an
        ingest runs (here or in another process) it is the one of the last complete index:
        the one in use, or one over the persisted BM25 index; with none, the question waits
        briefly for the ingest to end, then :class:`IngestRunning` says how far it is."""
        from assistant.store import IngestRunning

        waited = False
        while True:
            with self._lock:
                store = self.store
                store.refresh()  # a rebuild switched generations: follow it
                fingerprint = store.fingerprint()
                key = (store.name, fingerprint)
                if self._retriever is not None and key == self._key:
                    return self._retriever
                running = store.ingest_progress() is not None
                if (running and self._retriever is not None and self._key is not None
                        and self._key[0] == store.name):
                    return self._retriever  # the ingest has not completed the store yet
                try:
                    retriever = HybridRetriever(store, self.embed_model, self.settings.top_k,
                                                during_ingest=running)
                except IngestRunning:
                    if waited:
                        raise
                else:
                    self._retriever, self._key = retriever, key
                    if self._extractive is not None:
                        self._extractive.corpus_articles = retriever.articles
                    return retriever
            waited = True
            store.wait_for_ingest()

    # -- public API ---------------------------------------------------------------------------
    def ingest(self, rebuild: bool = False, progress: Progress | None = None) -> IngestReport:
        """Bring the store up to date with the corpus (only new or changed files are
        embedded). Questions asked meanwhile are answered from the last complete index."""
        from assistant.ingest import ingest
        from assistant.layout import ingest_lock

        # The lock comes before the store is opened: two processes creating one embedded
        # Chroma database at once can fail ("table collections already exists").
        with self._ingesting, ingest_lock(self.settings.store, self.settings.lock_timeout):
            writer = self.store.writer()
            try:
                # A rebuild makes a generation with the settings' model.
                model = self.encoder(self.settings.embedding if rebuild else writer.embedding)
                return ingest(self.settings, writer, model, rebuild=rebuild,
                              progress=progress, on_complete=self._update_word_vectors,
                              tagger=self._tagger)
            finally:
                with self._lock:
                    self._store = writer  # at the generation it completed
                    self._retriever = self._key = None

    def _stored_words(self) -> WordVectors:
        from assistant.embedding import WordVectors

        folder = self.store.layout.words(self.store.name)
        if self._word_file is None or self._word_file.dir != folder:
            self._word_file = WordVectors(folder)
        return self._word_file

    def _update_word_vectors(self, previous: str = "", new_words: set[str] | None = None,
                             complete: bool = False, store: Store | None = None) -> None:
        """Embed the vocabulary of the stored chunks once, so that questions find their
        candidates' word vectors ready. After an ingest only the words of the chunks it
        wrote (``new_words``) are looked at, when the word file was up to date with the
        store before it (``previous``) or they are the whole corpus's (``complete``).
        ``store`` is the generation the ingest wrote (default: the current one)."""
        from assistant.embedding import WordVectors

        store = self.store if store is None else store
        fingerprint = store.fingerprint()
        words_file = WordVectors(store.layout.words(store.name))
        have = words_file.fingerprint()
        if not fingerprint or have == fingerprint:
            return
        if new_words is not None and (complete or (previous and have == previous)):
            vocab = new_words
        else:
            vocab = set()
            for _, text, _ in store.iter_chunks():
                vocab |= vocabulary(text or "")
        # For the machines that read a Chroma server without ingesting: the words new to
        # this generation's word file go to the server too.
        fresh = sorted(w for w in vocab if words_file.get(w) is None) if store.shares_words \
            else []
        try:
            words_file.update(vocab, self.encoder(store.embedding), fingerprint)
        except OSError as exc:  # a read-only store still answers, embedding words per query
            logging.getLogger(__name__).warning("could not save word vectors: %s", exc)
            return
        if fresh:
            store.add_word_vectors(fresh, np.stack([words_file.get(w) for w in fresh]))

    def prepare(self) -> None:
        """Load the index and the models now rather than on the first question: the
        retriever of the current store (its lexical index brought up to date with the
        store; on a machine that reads a Chroma server it did not ingest into, built from
        the server's contents), the embedding model, the entity recogniser when the store's
        chunks do not carry their entities, and the answer model. The chat page and
        ``assistant chat`` call it before their first question (sentence and word vectors
        are still read as questions reach them).
        :class:`AssistantError` when the store cannot answer (for instance, empty)."""
        self._retriever_for_query()
        if not self.store.keeps_entities():
            self._tagger.load()
        _ = self._answerer

    def status(self) -> dict[str, Any]:
        """Articles and chunks indexed, and the active answer backend."""
        from assistant.ingest import held_articles

        self.store.refresh()
        docs = held_articles(self.settings, self.store) if self.store.exists() else {}
        return {
            "articles": len(docs),
            "chunks": sum(d.present for d in docs.values()),
            "backend": "llm" if self.settings.llm_enabled else "extractive",
            "store": str(self.settings.chroma_url or self.settings.store),
            "collection": self.store.name,
        }

    def check_question(self, question: str) -> str:
        """The cleaned question; raises AssistantError for empty or over-long input."""
        if not isinstance(question, str):
            raise AssistantError("the question must be text")
        if len(question) > self.settings.max_question_chars:
            raise AssistantError(
                f"the question is too long ({len(question)} characters; the limit is "
                f"{self.settings.max_question_chars})"
            )
        text = clean_text(question)
        if not text:
            raise AssistantError("the question is empty")
        return text

    def ask(self, question: str, context: str | None = None,
            on_token: Callable[[str], None] | None = None,
            avoid: Collection[tuple[str, int, int]] = (),
            given: Collection[str] = (), since: dt.date | str | None = None,
            until: dt.date | str | None = None,
            as_of: dt.date | str | None = None) -> Answer:
        """Answer one question.

        ``since`` and ``until`` (dates or ``YYYY-MM-DD``, both included) keep to articles
        published in that range. ``as_of`` is the day the question is asked: articles
        published after it are left out, those of the last ``RECENT_DAYS`` (30) days up to
        it are ranked first (:meth:`assistant.timeframe.Scope.prefer`), and time words
        ("last week", "in March", "latest") count back from it; by default they count back
        from the newest article's date. ``Answer.scope`` says which articles were used.

        ``context`` is the earlier turn a follow-up leans on; ``avoid`` lists sentence spans
        ``(doc_id, start, end)`` already given as answers, which a follow-up rarely asks for
        again, and ``given`` the short answers already given, which a follow-up does not
        ask for again ("how many of them came back?" after "19,500"). ``on_token`` receives the
        answer text piece by piece as it is produced (a generative backend streams tokens).

        The answer is chosen only from retrieved text that still stands in the corpus files,
        and every citation returned is ``read_text(corpus / path)[start:end]`` as the file
        is now; when a retrieved file changed since the last ingest, ``notice`` says so.
        """
        started = time.perf_counter()
        text = self.check_question(question)
        limits = (parse_day(since, "--since"), parse_day(until, "--until"),
                  parse_day(as_of, "--as-of"))
        changes = Changes(self.settings.corpus)
        answer = self._answer(text, context, set(avoid), given, changes, limits)
        if self.settings.llm_enabled:  # streams as it generates, from checked passages
            answer = self._generate(text, answer, on_token)
        if self.check_files:  # a file may have changed while the answer was made
            answer = confirm(answer, self._files, changes, ABSTAIN_TEXT)
        if on_token is not None and not self.settings.llm_enabled:
            on_token(answer.text)
        answer.notice = merge_notices(self.store.ingest_notice(), answer.notice,
                                      changes.notice())
        answer.question = text
        answer.latency_ms = (time.perf_counter() - started) * 1000
        return answer

    def abstain(self, question: str, notice: str) -> Answer:
        """An abstention that needs no retrieval, with a one-line ``notice`` saying why."""
        text = self.check_question(question)
        return Answer(question=text, text=ABSTAIN_TEXT, abstained=True, notice=notice,
                      latency_ms=0.0)

    def _answer(self, text: str, context: str | None,
                avoid: set[tuple[str, int, int]], given: Collection[str],
                changes: Changes | None = None,
                limits: tuple[dt.date | None, dt.date | None, dt.date | None] = (None, None, None)
                ) -> Answer:
        q = analyze(text)
        q.given = {stem(w) for g in given for w, _, _ in words(g)}
        if context:
            # Earlier words count at INHERITED_WEIGHT, flagged as inherited; an elliptical
            # "and in 2023?" keeps the kind of answer the earlier question asked for.
            earlier = analyze(context, turns=True)
            own = q.stems
            for t in earlier.terms:
                if t.stem not in own:
                    t.weight *= INHERITED_WEIGHT
                    t.inherited = True
                    q.terms.append(t)
            if q.answer_type is None and not WH_WORD.search(text):
                q.answer_type = earlier.answer_type
        context = clean_text(context)[-2000:] if context else None
        query = f"{text} {context}" if context else text
        vectors = self.embed_model.embed([text, query] if context else [text])
        qvec = vectors[0]
        if context:  # the follow-up's meaning, leaning on the earlier turn's
            qvec = qvec + CONTEXT_WEIGHT * vectors[1]
            qvec = qvec / max(float(np.linalg.norm(qvec)), 1e-9)
        try:
            newest = self._retriever_for_query().newest
        except AssistantError:
            raise
        except Exception:  # _answer_in says what is wrong with the store
            newest = None
        since, until, as_of = limits
        scope = scope_for(text, since, until, as_of, newest)
        answer = self._answer_in(q, query, vectors[-1], qvec, scope.window, avoid, changes,
                                 scope.stating, scope.prefer(scope.window))
        if answer.abstained and scope.widens:
            wider = self._answer_in(q, query, vectors[-1], qvec, scope.fallback, avoid,
                                    changes, prefer=scope.prefer(scope.fallback))
            if not wider.abstained:
                wider.scope = scope.widened_label()
                return wider
        answer.scope = scope.label()
        return answer

    def _answer_in(self, q: Question, query: str, query_vector: np.ndarray, qvec: np.ndarray,
                   window: DayRange | None, avoid: set[tuple[str, int, int]],
                   changes: Changes | None,
                   stating: tuple[str, DayRange | None] | None = None,
                   prefer: DayRange | None = None) -> Answer:
        """The answer from the chunks of articles published in ``window`` (None: all).
        ``stating`` = (a month such as "September 2020", a wider range): chunks of that
        range that name the month count as inside the window too — a month the question
        names may be reported on later ("in September 2020" in an article of 2021).
        ``prefer``: the days of the window whose chunks retrieval ranks first."""
        for attempt in range(3):
            used = ""
            try:
                retriever = self._retriever_for_query()
                used = retriever.store.name
                hits = retrieve_in(retriever, query, query_vector, window, prefer, stating)
                if self.check_files:  # answer only from text that still stands in the files
                    hits = check_hits(hits, self._files, Changes(self.settings.corpus)
                                      if changes is None else changes)
                svecs = self._sentence_vectors(hits)
                break
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                # A rebuild in another process switched generations and deleted the one
                # this question was reading: ask the new one.
                if attempt < 2 and used and self._generation_moved(used):
                    continue
                if isinstance(exc, AssistantError):
                    raise
                where = self.settings.chroma_url or self.settings.store
                raise AssistantError(f"could not read the store at {where}: "
                                     f"{type(exc).__name__}") from exc
        return self._answerer.answer(q, hits, qvec, svecs, avoid=avoid)

    def _generation_moved(self, used: str) -> bool:
        """True when the pointer no longer names the generation ``used``."""
        try:
            with self._lock:
                self.store.refresh()
                return self.store.name != used
        except AssistantError:
            return False

    def _generate(self, question: str, extractive: Answer,
                  on_token: Callable[[str], None] | None) -> Answer:
        """The configured LLM's answer over the same passages (falls back to ``extractive``)."""
        from assistant.llm import generate_answer

        return generate_answer(self.settings, question, extractive, on_token)

    def _sentence_vectors(self, hits: list[Hit]) -> dict[tuple[str, int, int], np.ndarray]:
        """The vectors of the hits' sentences, by their spans in the hits, as each chunk's
        record holds them. A sentence that moved in its file since the ingest
        (:func:`assistant.freshness.relocate`) has its vector under its ingested span; one
        whose record holds none (a damaged record) is embedded now."""
        found: dict[tuple[str, int, int], np.ndarray] = {}
        missing: dict[tuple[str, int, int], str] = {}
        for h in hits:
            for (s, e), ingested in zip(h.sentences, h.record.stored_sentences, strict=True):
                key = (h.doc_id, s, e)
                vector = h.record.sentence_vector(ingested)
                if vector is not None:
                    found.setdefault(key, vector)
                elif key not in found:
                    missing[key] = h.text[s - h.start : e - h.start]
        missing = {k: t for k, t in missing.items() if k not in found}
        if missing:
            vectors = self.embed_model.embed(list(missing.values()))
            found.update(zip(missing, (np.asarray(v, dtype=np.float32) for v in vectors),
                             strict=True))
        return found

    def _word_vectors(self, words: list[str], cache_size: int = 50_000
                      ) -> dict[str, np.ndarray]:
        """Vectors of single words, cached: the answer layer matches words by meaning."""
        missing = [w for w in dict.fromkeys(words) if w not in self._words]
        if missing:
            stored = self._stored_words()
            found = {w: v for w in missing if (v := stored.get(w)) is not None}
            missing = [w for w in missing if w not in found]
            if missing:  # a machine that did not ingest: the server keeps them
                found.update((w, np.asarray(v, dtype=np.float32))
                             for w, v in self.store.word_vectors(missing).items())
                missing = [w for w in missing if w not in found]
            self._words.update(found)
            while len(self._words) > cache_size:
                self._words.popitem(last=False)
        for w in missing:
            # One word per call: a vector must not depend on which other words happened
            # to be missing (batch padding changes the last bits, and answers with them).
            self._words[w] = self.embed_model.embed([w])[0]
            while len(self._words) > cache_size:
                self._words.popitem(last=False)
        return {w: self._words[w] for w in words}

    def chat(self) -> ChatSession:
        """A new conversation (see :class:`assistant.chat.ChatSession`)."""
        from assistant.chat import ChatSession

        return ChatSession(self)


def retrieve_in(retriever: HybridRetriever, query: str, query_vector: np.ndarray,
                window: DayRange | None, prefer: DayRange | None = None,
                stating: tuple[str, DayRange | None] | None = None) -> list[Hit]:
    """The hits for ``query`` among the articles of ``window``, those of ``prefer`` ranked
    first; with ``stating`` (:attr:`assistant.timeframe.Scope.stating`), joined by the
    chunks of the wider range that name the month."""
    hits = retriever.retrieve(query, query_vector, window, prefer)
    if stating is not None:
        hits = _with_stated(hits, retriever.retrieve(query, query_vector, stating[1]),
                            stating[0])
    return hits


def _with_stated(hits: list[Hit], wider: list[Hit], month: str) -> list[Hit]:
    """``hits`` joined by the ``wider`` hits whose text names ``month`` (with or without a
    day: :func:`names_month`), best first, as many as ``hits`` had (or ``wider``, when the
    window held none)."""
    seen = {h.id for h in hits}
    extra = [h for h in wider if h.id not in seen and names_month(h.text, month)]
    if not extra:
        return hits
    size = len(hits) or len(wider)
    return sorted([*hits, *extra], key=lambda h: -h.score)[:size]
