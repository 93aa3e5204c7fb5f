"""Incremental ingest: corpus files → chunks and sentences → vectors → Chroma.

The store describes itself: every chunk carries its article's content hash and chunk
count, so an article is current only when all of its chunks with the current hash are
present. A crash at any point leaves at worst an incomplete article, which the next run
deletes and writes again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.chunking import chunk_article
from assistant.corpus import (
    MAX_FILE_BYTES,
    Article,
    SkippedFile,
    day_number,
    doc_id_for,
    iter_corpus_files,
    load_article,
)
from assistant.embedding import TextEncoder, pooled_chunk_vector
from assistant.entities import EntityTagger
from assistant.layout import (
    ChunkRecord,
    SentenceData,
    StoreLayout,
    chunk_id,
    ingest_lock,
    make_node,
)
from assistant.lexical import UpdateReport, bm25_fingerprint, update_bm25
from assistant.settings import AssistantError, Settings
from assistant.store import IngestProgress, Store, StoredDoc
from assistant.text import vocabulary
from assistant.types import IngestReport

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


def _unchanged_file(corpus: Path, path: Path, known: FileIndex,
                    stored: dict[str, Any]) -> Article | None:
    """The stored article of ``path`` (without its text) when its stamp is as the index
    noted and the store holds it complete with that content; else None."""
    rel = doc_id_for(os.path.relpath(path, corpus))
    try:
        entry = known.trusted(rel, os.stat(path))
    except OSError:
        return None
    have = stored.get(rel)
    if (entry is None or not entry[2] or have is None or not have.complete
            or have.sha256 != entry[2]):
        return None
    return Article(doc_id=rel, path=rel, text="", sha256=entry[2], title="", body_start=0,
                   body_end=0)


def corpus_fingerprint(docs: dict[str, str]) -> str:
    """A hash of every ``doc_id → content hash`` pair: names the store's state."""
    h = hashlib.sha256()
    for doc_id in sorted(docs):
        h.update(f"{doc_id}\0{docs[doc_id]}\n".encode())
    return h.hexdigest()


def scan(corpus: Path, report: IngestReport, stored: dict[str, Any] | None = None,
         keep: set[str] | None = None, max_bytes: int = MAX_FILE_BYTES,
         index: FileIndex | None = None, known: FileIndex | None = None) -> list[Article]:
    """Every readable article; unreadable or duplicate files are recorded as skipped.

    Of files with identical content, the one already stored is kept (else the first).
    Files and folders that could not be read this time (permissions, I/O errors) are
    added to ``keep`` (folders as ``"name/"`` prefixes): the store keeps what it has of
    them. Empty, binary, over-large and duplicate files are not kept.

    What was read of each file is noted in ``index`` for the next run. A file that the
    previous run's index (``known``) shows unchanged, and that the store holds complete
    with that content, is not read again: it is listed without its text.
    """
    if not corpus.exists():
        raise AssistantError(f"corpus directory not found: {corpus}")
    if not corpus.is_dir():
        raise AssistantError(f"corpus is not a directory: {corpus}")
    stored = stored or {}
    keep = set() if keep is None else keep
    loaded: list[Article] = []
    unlisted: list[tuple[Path, str]] = []
    for path in iter_corpus_files(corpus, errors=unlisted):
        if known is not None and index is not None:
            same = _unchanged_file(corpus, path, known, stored)
            if same is not None:
                loaded.append(same)
                index.files[same.doc_id] = known.files[same.doc_id]
                continue
        try:
            article = load_article(corpus, path, max_bytes)
            body = article.text[article.body_start :]
            if not body.strip():
                raise SkippedFile("no article text after the header lines")
            if not any(ch.isalnum() for ch in body):
                raise SkippedFile("no words in the article text, only punctuation or symbols")
        except SkippedFile as exc:
            rel = doc_id_for(os.path.relpath(path, corpus))
            report.skipped.append((rel, str(exc)))
            log.info("skipped %s: %s", rel, exc)
            if exc.transient:
                keep.add(rel)
            elif index is not None and exc.stamp:
                index.note(rel, exc.stamp, skipped=str(exc))
            continue
        loaded.append(article)
        if index is not None and article.stamp:
            index.note(article.doc_id, article.stamp, sha256=article.sha256)
    for folder, reason in unlisted:
        rel = doc_id_for(os.path.relpath(folder, corpus))
        if rel == ".":
            raise AssistantError(f"cannot read the corpus directory {corpus}: {reason}")
        report.skipped.append((rel + "/", f"folder not readable: {reason}"))
        log.info("skipped folder %s: %s", rel, reason)
        keep.add(rel + "/")
    keeper: dict[str, str] = {}
    for a in sorted(loaded, key=lambda a: (a.doc_id not in stored, a.doc_id)):
        keeper.setdefault(a.sha256, a.doc_id)
    articles = []
    for a in loaded:
        if keeper[a.sha256] == a.doc_id:
            articles.append(a)
        else:
            report.skipped.append((a.path, f"same content as {keeper[a.sha256]}"))
            log.info("skipped %s: same content as %s", a.path, keeper[a.sha256])
    return articles


class FileIndex:
    """What the last complete ingest read of each corpus file: its size and modification
    time then, and its content hash (or why it was skipped). Kept in the store directory,
    so that an unchanged corpus is recognised from ``stat`` alone, without reading files.

    It also keeps what that ingest left in the store (:attr:`held`: each article's content
    hash and chunk count, and their fingerprint), so that the next ingest need not read
    every chunk's metadata back from Chroma to learn it (10-25 s at 100,000 chunks): see
    :func:`stored_articles`.

    A file modified less than :attr:`SETTLE_NS` before it was read is noted as unsettled:
    a write in the same clock tick as the read would leave its stamp unchanged, so the
    next run reads it again and compares hashes instead.
    """

    SETTLE_NS = 2_000_000_000

    def __init__(self, path: Path, corpus: Path, max_bytes: int) -> None:
        self.path = path
        self.corpus = str(corpus.resolve())
        self.max_bytes = max_bytes  # what "too large" meant
        self.files: dict[str, list] = {}
        self.held: dict[str, list] = {}  # doc_id -> [sha256, chunks]
        self.fingerprint = ""  # corpus_fingerprint of ``held``

    def note(self, rel: str, stamp: tuple[int, int], sha256: str = "",
             skipped: str = "") -> None:
        """Record a file as read (``sha256``) or skipped for good (``skipped``)."""
        size, mtime_ns = stamp
        settled = time.time_ns() - mtime_ns >= self.SETTLE_NS
        self.files[rel] = [size, mtime_ns, sha256, skipped, settled]

    def trusted(self, rel: str, st: os.stat_result) -> list | None:
        """The entry of ``rel`` when its stamp shows the file as it was read."""
        entry = self.files.get(rel)
        if (entry is None or len(entry) != 5 or not entry[4]
                or entry[:2] != [st.st_size, st.st_mtime_ns]):
            return None
        return entry

    @classmethod
    def load(cls, path: Path, corpus: Path, max_bytes: int) -> FileIndex | None:
        """The index of the last run over ``corpus`` with the same file size limit (None
        when there is none)."""
        index = cls(path, corpus, max_bytes)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if (not isinstance(data, dict) or data.get("corpus") != index.corpus
                or data.get("max_bytes") != max_bytes):
            return None
        index.files = dict(data.get("files") or {})
        index.held = dict(data.get("held") or {})
        index.fingerprint = str(data.get("fingerprint") or "")
        return index

    def remember(self, held: dict[str, StoredDoc], fingerprint: str) -> None:
        """Note the complete articles ``held`` by the store and their fingerprint."""
        self.held = {d: [s.sha256, s.present] for d, s in held.items() if s.complete}
        self.fingerprint = fingerprint

    def save(self) -> None:
        """Write the index atomically (a failure only costs the next run its fast path)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"corpus": self.corpus, "max_bytes": self.max_bytes,
                                       "files": self.files, "held": self.held,
                                       "fingerprint": self.fingerprint}))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not save the file index: %s", exc)
            tmp.unlink(missing_ok=True)

    @staticmethod
    def drop(path: Path) -> None:
        """Forget the index (before the store changes)."""
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the file index: %s", exc)


def _index_path(settings: Settings, store: Store) -> Path:
    return store.layout.files_index(store.name)


def stored_articles(store: Store, known: FileIndex | None) -> dict[str, StoredDoc]:
    """What the store holds of each article. The last complete ingest's record of it
    (``known.held``) when the store is still as that ingest left it: the same fingerprint
    (the record's own hashes give it too) and as many chunks as the record counts, so no
    other article and no part of one is there. Otherwise it is read from the store."""
    if known is not None and known.fingerprint and known.held:
        try:
            held = {d: StoredDoc(str(sha), int(n), int(n))
                    for d, (sha, n) in known.held.items()}
        except (TypeError, ValueError):  # not a record this code wrote
            return store.stored_docs()
        if (store.fingerprint() == known.fingerprint
                and corpus_fingerprint({d: s.sha256 for d, s in held.items()})
                == known.fingerprint
                and store.count() == sum(s.present for s in held.values())
                == store.recorded_chunks()):
            return held
    return store.stored_docs()


def held_articles(settings: Settings, store: Store) -> dict[str, StoredDoc]:
    """What the store holds of each article (see :func:`stored_articles`), for a reader:
    the status line, whose count would otherwise read every chunk back."""
    max_bytes = math.ceil(settings.max_file_mb * 1024 * 1024)
    return stored_articles(store, FileIndex.load(_index_path(settings, store),
                                                 settings.corpus, max_bytes))


def unchanged_corpus(settings: Settings, store: Store, report: IngestReport,
                     max_bytes: int = MAX_FILE_BYTES) -> bool:
    """True when no corpus file changed since the last complete ingest and the store is
    that ingest's. Files whose stamp (size, modification time) is as recorded are not
    read; the others are read and must hash as recorded. The store, its BM25 index and
    its counts must all carry the recorded corpus. Any doubt returns False: the full path.
    """
    path = _index_path(settings, store)
    index = FileIndex.load(path, settings.corpus, max_bytes)
    if index is None or not settings.corpus.is_dir():
        return False
    fresh = FileIndex(path, settings.corpus, max_bytes)
    docs: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    errors: list[tuple[Path, str]] = []
    for file in iter_corpus_files(settings.corpus, errors=errors):
        rel = doc_id_for(os.path.relpath(file, settings.corpus))
        try:
            st = os.stat(file)
        except OSError:
            return False
        entry = index.trusted(rel, st)
        if entry is not None:
            fresh.files[rel] = entry
        else:
            old = index.files.get(rel)
            if old is None:
                return False  # a new file
            try:
                article = load_article(settings.corpus, file, max_bytes)
            except SkippedFile as exc:
                if exc.transient or not exc.stamp or old[3] != str(exc):
                    return False
                fresh.note(rel, exc.stamp, skipped=str(exc))
            else:
                if not article.stamp or article.sha256 != old[2]:
                    return False  # changed
                fresh.note(rel, article.stamp, sha256=article.sha256)
            entry = fresh.files[rel]
        if entry[2]:
            docs[rel] = entry[2]
        else:
            skipped.append((rel, entry[3]))
    if errors or len(set(docs.values())) != len(docs):
        return False  # unreadable folders and duplicates take the full path
    fingerprint = corpus_fingerprint(docs)
    if not docs or store.fingerprint() != fingerprint:
        return False
    chunks = store.count()
    if (store.recorded_chunks() != chunks or store.sentence_count() != chunks
            or bm25_fingerprint(store) != fingerprint):
        return False
    if fresh.files != index.files:
        fresh.held, fresh.fingerprint = index.held, index.fingerprint
        fresh.save()
    report.unchanged = len(docs)
    report.skipped = skipped
    report.chunks = chunks
    return True


def ingest(settings: Settings, store: Store, embed_model: TextEncoder, rebuild: bool = False,
           progress: Progress | None = None,
           on_complete: Callable[[str, set[str], bool, Store], None] | None = None,
           tagger: EntityTagger | None = None) -> IngestReport:
    """Bring the store up to date with the corpus, embedding only new or changed articles
    and storing with each chunk the entities ``tagger``'s recogniser finds in its sentences
    (a new :class:`EntityTagger` when None).

    ``on_complete(previous, new_words, complete, store)`` runs under the store's lock once
    ``store`` (the generation written) is complete: ``previous`` is the fingerprint the
    store had before, ``new_words`` the vocabulary of the chunks written, ``complete``
    whether they are all the store holds.

    ``rebuild`` writes a new generation beside the current one, which readers keep using
    until the new one is complete and the pointer names it; ``store`` then follows it.
    While the run lasts, its progress file tells readers how far it is. On a Chroma server
    the run holds the store's ingest lease (:mod:`assistant.lease`): another machine's
    ingest waits for it, and a run whose lease was taken over stops before writing more.
    """
    started = time.perf_counter()
    report = IngestReport()
    with (ingest_lock(settings.store, settings.lock_timeout),
          store.ingest_lease(settings.lock_timeout) as lease,
          IngestProgress(store, rebuild) as tracker):
        StoreLayout(settings.store).remove_leftovers()
        if not rebuild:
            store.drop_leftovers()
        max_bytes = math.ceil(settings.max_file_mb * 1024 * 1024)
        if not rebuild and unchanged_corpus(settings, store, report, max_bytes):
            if on_complete:
                on_complete(store.fingerprint(), set(), False, store)
            report.seconds = time.perf_counter() - started
            return report
        keep: set[str] = set()
        index_path = _index_path(settings, store)
        index = FileIndex(index_path, settings.corpus, max_bytes)
        serving = store  # the generation readers use until a rebuild switches
        if rebuild:
            # Scan first: a bad corpus must not cost the store. The store itself may be
            # damaged beyond opening: begin_rebuild() then starts it afresh.
            articles = scan(settings.corpus, report, keep=keep, max_bytes=max_bytes,
                            index=index)
            store = store.begin_rebuild()
            index_path = index.path = _index_path(settings, store)
            stored = {}
            previous = ""
        else:
            known = FileIndex.load(index_path, settings.corpus, max_bytes)
            stored = stored_articles(store, known)
            articles = scan(settings.corpus, report, stored, keep=keep, max_bytes=max_bytes,
                            index=index, known=known)
            previous = store.fingerprint()
        current = {a.doc_id for a in articles}

        def kept(doc_id: str) -> bool:
            # Files that could not be read this time keep what the store has of them.
            return doc_id in keep or any(doc_id.startswith(k) for k in keep if k[-1:] == "/")

        todo: list[Article] = []
        for article in articles:
            have = stored.get(article.doc_id)
            if have and have.sha256 == article.sha256 and have.complete:
                report.unchanged += 1
            else:
                todo.append(article)
                # An interrupted write of the same content is redone and counted as new.
                if have and have.sha256 != article.sha256:
                    report.changed += 1
                else:
                    report.new += 1
                    report.added.append(article.path)
        gone = [d for d in stored if d not in current and not kept(d)]
        run = uuid.uuid4().hex if (todo or gone) and not rebuild else ""
        if run:
            # Until this run completes the store matches no corpus: a run killed midway
            # is then noticed, and its leftovers cleaned up, by the next. Its token tells
            # it at the end whether another machine's ingest wrote meanwhile.
            FileIndex.drop(index_path)
            store.set_fingerprint("", writing=run)
        for doc_id in gone:
            log.info("removing %s", doc_id)
            store.delete_doc(doc_id)
            report.removed += 1
        total = sum(len(a.body) for a in todo)
        done = files = 0
        tracker.update(0, len(todo))
        new_words: set[str] = set()
        written: dict[str, int] = {}
        tagger = tagger or EntityTagger()
        for group in _groups(todo):
            lease.check()
            report.chunks_embedded += _write_group(settings, store, embed_model, tagger,
                                                   group, new_words, written)
            done += sum(len(a.body) for a in group)
            files += len(group)
            tracker.update(files, len(todo))
            if progress:
                progress(done, total)
        lease.check()  # another machine's run took over: leave the end to it
        # What the store holds now: what it held, less the articles removed or rewritten,
        # plus those written (each rewrite deleted its earlier chunks). Read back from the
        # store when another ingest wrote meanwhile or the chunk count says otherwise.
        removed = set(gone)
        held = {d: s for d, s in stored.items() if d not in written and d not in removed}
        sha = {a.doc_id: a.sha256 for a in todo}
        held.update({d: StoredDoc(sha[d], n, n) for d, n in written.items() if n})
        alone = (store.writing_run() == run) if run else (store.fingerprint() == previous)
        chunks = store.count()  # from here on this run writes no chunk
        if not alone or chunks != sum(s.present for s in held.values()):
            held = store.stored_docs()
        docs = {d: s.sha256 for d, s in held.items() if s.complete}
        fingerprint = corpus_fingerprint(docs)
        changed = bool(todo or report.removed or rebuild)
        # After a killed run the recorded fingerprint, the chunk count, the sentence
        # records or the BM25 index disagree with the store: finish that run's work.
        if (changed or store.fingerprint() != fingerprint or store.recorded_chunks() != chunks
                or store.sentence_count() != chunks or bm25_fingerprint(store) != fingerprint):
            if store.sentence_count() != chunks and (orphans := store.delete_orphan_sentences()):
                log.info("removed the sentence vectors of %d interrupted chunk(s)", orphans)
            lexical = UpdateReport()
            update_bm25(store, fingerprint, lexical)
            log.info("BM25 index of %d chunks: %d added, %d removed%s", lexical.chunks,
                     lexical.added, lexical.removed, " (built whole)" if lexical.full else "")
            lease.check()  # the BM25 update may take a while
            store.set_fingerprint(fingerprint, chunks=chunks)
        index.remember(held, fingerprint)
        index.save()
        if on_complete:
            on_complete(previous, new_words, report.unchanged == 0 and not keep, store)
        report.chunks = chunks
        if rebuild:
            lease.check()  # the switch deletes a generation: only while this run's
            serving.switch_to(store)  # readers move to the new generation
    report.seconds = time.perf_counter() - started
    return report


def _groups(articles: list[Article], chars: int = 200_000) -> list[list[Article]]:
    """Articles batched so that embedding runs on full batches across small files."""
    groups: list[list[Article]] = []
    size = chars
    for a in articles:
        if size >= chars:
            groups.append([])
            size = 0
        groups[-1].append(a)
        size += len(a.body)
    return groups


def _write_group(settings: Settings, store: Store, embed_model: TextEncoder, tagger: EntityTagger,
                 group: list[Article], new_words: set[str], written: dict[str, int]) -> int:
    """Chunk, embed, tag and write a group of articles; returns the chunks written, adds
    their vocabulary to ``new_words`` and each article's chunk count to ``written``.

    One delete and two adds for the whole group (each Chroma write is a transaction: per
    article they cost more than the writing itself). The chunks' sentence vectors go in
    before the chunks, so a stored chunk has them; a run killed in between leaves
    incomplete articles, which the next run redoes, and sentence records without a chunk,
    which it deletes.
    """
    pooled = store.chunk_vectors == "pooled"
    texts: list[str] = []
    plans = []
    for a in group:
        # From the body to the end of the file: a closing "Source:" line is citable too.
        chunks = chunk_article(a.text, a.body_start, len(a.text), settings.chunk_tokens,
                               settings.chunk_overlap_tokens)
        sentences = sorted({s for c in chunks for s in c.sentences})
        plans.append((a, chunks, sentences, len(texts)))
        if not pooled:
            prefix = f"{a.title}\n\n" if a.title else ""
            texts.extend(prefix + c.text for c in chunks)
        texts.extend(a.text[s:e] for s, e in sentences)
        if pooled and a.title:
            texts.append(a.title)
    spans = [(a, s) for a, _, sentences, _ in plans for s in sentences]
    log.info("embedding %d texts and recognising the entities of %d sentences of %d "
             "article(s)", len(texts), len(spans), len(group))
    # The two models run side by side: the embedding model releases the interpreter while
    # it computes and does not keep both cores busy.
    with ThreadPoolExecutor(max_workers=1) as pool:
        recognising = pool.submit(tagger.recognise, [a.text[s:e] for a, (s, e) in spans])
        vectors = embed_model.embed(texts) if texts else []
        found = recognising.result()
    recognised = (dict(zip([(a.doc_id, s) for a, s in spans], found, strict=True))
                  if found is not None else None)
    nodes = []
    doc_ids: list[str] = []
    encoded: list[str] = []
    for a, chunks, sentences, at in plans:
        day = day_number(d) if (d := a.published_date) else None
        s_from = at if pooled else at + len(chunks)
        these = np.asarray(vectors[s_from : s_from + len(sentences)])
        row = {span: i for i, span in enumerate(sentences)}
        if pooled:
            headline = vectors[s_from + len(sentences)] if a.title else None
            chunk_vectors = [pooled_chunk_vector(these[[row[s] for s in c.sentences]],
                                                 headline) for c in chunks]
        else:
            chunk_vectors = list(vectors[at : at + len(chunks)])
        for k, c in enumerate(chunks):
            record = ChunkRecord(
                doc_id=a.doc_id, path=a.path, start=c.start, end=c.end,
                sentences=c.sentences, title=a.title, sha256=a.sha256, index=c.index,
                n_chunks=len(chunks), published=a.published,
                source=a.meta.get("source", ""), day=day)
            nodes.append(make_node(chunk_id(a.doc_id, a.sha256, c.index), c.text,
                                   record.to_metadata(), chunk_vectors[k]))
            doc_ids.append(a.doc_id)
            encoded.append(SentenceData.of(
                c.sentences, these[[row[s] for s in c.sentences]],
                None if recognised is None else
                [recognised[(a.doc_id, s)] for s in c.sentences]).encoded)
            new_words |= vocabulary(c.text)
        written[a.doc_id] = len(chunks)
    # The new version goes in before the earlier one is deleted (ids carry the content
    # hash), so that a reader meanwhile finds one version of each article or both, never
    # none; an article holding both has more chunks than it says and is redone next time.
    earlier = store.chunk_ids([a.doc_id for a in group])
    new_ids = {n.node_id for n in nodes}
    store.delete_chunks([i for i in earlier if i in new_ids])  # an interrupted write's
    if nodes:
        log.info("writing %d chunks", len(nodes))
        store.add_sentence_vectors([n.node_id for n in nodes], doc_ids, encoded,
                                   [n.embedding for n in nodes])
        _add_nodes(store, nodes)
    log.info("clearing earlier records of %d article(s)", len(group))
    store.delete_chunks([i for i in earlier if i not in new_ids])
    return len(nodes)


def _add_nodes(store: Store, nodes: list[TextNode]) -> None:
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    metadatas = [node_to_metadata_dict(n, remove_text=True, flat_metadata=True) for n in nodes]
    store.add(store.chunks, ids=[n.node_id for n in nodes],
              embeddings=[n.embedding for n in nodes], metadatas=metadatas,
              documents=[n.text for n in nodes])


def terminal_progress() -> Progress | None:
    """A one-line progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\rIngesting [{bar:<30}] {frac:6.1%}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
