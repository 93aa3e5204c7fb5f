"""The lexical index: BM25 over the chunks, kept under the store and updated incrementally.

bm25s with the tokenisation of llama-index's ``BM25Retriever`` (English stopwords, Snowball
stemmer, its token pattern, the same content: the headline, then the text) gives the same
ranking and scores (``tests/test_retrieval.py`` checks it against ``BM25Retriever``), without
a copy of every node. Beside the bm25s files the index keeps, in index order, each chunk's
id, publication day and token ids (the tokenised corpus). An update then reads from Chroma
only the chunks added since — by this machine's ingest or by another machine writing to the
same Chroma server — drops the removed ones, and re-scores from the token ids: nothing else
is read or tokenised again.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.imports import import_bm25s
from assistant.layout import EMBED_METADATA, node_meta
from assistant.settings import AssistantError
from assistant.store import IngestRunning, Store
from assistant.timeframe import DayRange

if TYPE_CHECKING:
    from bm25s import BM25

IDS_FILE = "ids.json"
DAYS_FILE = "days.json"  # each indexed chunk's publication day, in index order
VOCAB_FILE = "vocab.json"  # the tokens, in token-id order
TOKENS_FILE = "tokens.npy"  # every chunk's token ids, one after the other (int32)
LENGTHS_FILE = "lengths.npy"  # how many token ids each chunk has
FINGERPRINT_FILE = "fingerprint"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # BM25Retriever's default
# Memory bounds of an update: chunks read from the store and tokenised at a time, and
# chunks whose term counts are computed at a time. A whole build of 100,000 chunks read and
# tokenised them all at once and counted all their terms in one array: 2 GB at its peak.
PAGE_CHUNKS = 5_000
BLOCK_CHUNKS = 10_000
log = logging.getLogger(__name__)


def _quiet_bm25() -> None:
    # bm25s sets its own logger to DEBUG when imported.
    logging.getLogger("bm25s").setLevel(logging.WARNING)


def bm25_content(text: str, meta: dict[str, Any]) -> str:
    """What BM25 indexes of a chunk: its node's content as llama-index gives it to the
    embedding model and to ``BM25Retriever`` (``TextNode.get_content(MetadataMode.EMBED)``:
    "title: …", a blank line, the text), made without building the node (at 100,000 chunks
    building them was most of a whole build)."""
    own = node_meta(meta)
    shown = "\n".join(f"{k}: {v}" for k, v in own.items() if k in EMBED_METADATA).strip()
    return f"{shown}\n\n{text}".strip() if shown else text


@dataclass
class TokenisedCorpus:
    """The chunks of an index as token ids, in index order: ``tokens`` holds every chunk's
    token ids one after the other, ``lengths`` how many each has."""

    ids: list[str]
    days: list[int]
    tokens: np.ndarray
    lengths: np.ndarray
    vocab: dict[str, int]

    @classmethod
    def empty(cls) -> TokenisedCorpus:
        """A corpus of no chunks."""
        return cls([], [], np.zeros(0, np.int32), np.zeros(0, np.int32), {})

    @classmethod
    def load(cls, folder: Path) -> TokenisedCorpus:
        """The tokenised corpus persisted in ``folder`` (OSError/ValueError when absent or
        inconsistent)."""
        ids = json.loads((folder / IDS_FILE).read_text())
        days = json.loads((folder / DAYS_FILE).read_text())
        words = json.loads((folder / VOCAB_FILE).read_text())
        tokens = np.load(folder / TOKENS_FILE).astype(np.int32, copy=False)
        lengths = np.load(folder / LENGTHS_FILE).astype(np.int32, copy=False)
        if not (len(ids) == len(days) == len(lengths)) or int(lengths.sum()) != len(tokens):
            raise ValueError("the tokenised corpus is inconsistent")
        if len(tokens) and (int(tokens.max()) >= len(words) or int(tokens.min()) < 0):
            raise ValueError("token ids beyond the vocabulary")
        return cls(ids, days, tokens, lengths, {w: i for i, w in enumerate(words)})

    def save(self, folder: Path) -> None:
        """Write the files into ``folder`` (the caller makes it appear atomically)."""
        (folder / IDS_FILE).write_text(json.dumps(self.ids))
        (folder / DAYS_FILE).write_text(json.dumps(self.days))
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / VOCAB_FILE).write_text(json.dumps(words))
        np.save(folder / TOKENS_FILE, self.tokens)
        np.save(folder / LENGTHS_FILE, self.lengths)

    def add(self, chunks: Iterable[tuple[str, str, dict]], page: int = PAGE_CHUNKS) -> int:
        """Tokenise ``(id, text, metadata)`` chunks and append them, ``page`` at a time
        (only one page's texts and word lists are held at once); returns how many."""
        bm25s = import_bm25s()
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
        ids: list[str] = []
        days: list[int] = []
        tokens, lengths = [self.tokens], [self.lengths]
        chunks = iter(chunks)
        while batch := list(itertools.islice(chunks, max(1, page))):
            contents = [bm25_content(text or "", meta or {}) for _, text, meta in batch]
            tokenised = bm25s.tokenize(contents, stopwords="en", stemmer=stemmer,
                                       token_pattern=TOKEN_PATTERN, show_progress=False,
                                       return_ids=False)
            new: list[int] = []
            for (cid, _, meta), words in zip(batch, tokenised, strict=True):
                ids.append(cid)
                days.append(int((meta or {}).get("day") or 0))
                new.extend(self.vocab.setdefault(w, len(self.vocab)) for w in words)
            tokens.append(np.asarray(new, dtype=np.int32))
            lengths.append(np.fromiter(map(len, tokenised), dtype=np.int32,
                                       count=len(tokenised)))
        if ids:  # all four together: a failed read leaves the corpus as it was
            self.tokens = np.concatenate(tokens)
            self.lengths = np.concatenate(lengths)
            self.ids += ids
            self.days += days
        return len(ids)

    def keep(self, wanted: set[str]) -> int:
        """Drop the chunks whose ids are not in ``wanted``; returns how many were dropped."""
        keep = np.fromiter((cid in wanted for cid in self.ids), dtype=bool,
                           count=len(self.ids))
        dropped = int((~keep).sum())
        if dropped:
            self.tokens = self.tokens[np.repeat(keep, self.lengths)]
            self.lengths = self.lengths[keep]
            self.ids = [cid for cid, k in zip(self.ids, keep, strict=True) if k]
            self.days = [day for day, k in zip(self.days, keep, strict=True) if k]
        return dropped

    def index(self, block: int = BLOCK_CHUNKS) -> BM25:
        """A bm25s index of these chunks, exactly as ``bm25s.BM25().index`` builds it from
        their token ids (default BM25: Lucene idf, k1 1.5, b 0.75), computed with numpy
        operations over ``block`` chunks at a time instead of bm25s's loop over the
        documents (at 100,000 chunks that loop took about 24 of the 25 seconds an update
        took)."""
        bm25s = import_bm25s()

        bm25 = bm25s.BM25()
        n_docs, n_vocab = len(self.lengths), max(1, len(self.vocab))
        starts = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])
        # Each chunk's distinct terms and their counts, in (chunk, term) order.
        doc_parts, voc_parts, tf_parts = [], [], []
        for first in range(0, n_docs, max(1, block)):
            last = min(n_docs, first + max(1, block))
            docs = np.repeat(np.arange(first, last, dtype=np.int64), self.lengths[first:last])
            pairs, tf = np.unique(docs * n_vocab + self.tokens[starts[first]:starts[last]],
                                  return_counts=True)
            doc_parts.append((pairs // n_vocab).astype(np.int32))
            voc_parts.append((pairs % n_vocab).astype(np.int32))
            tf_parts.append(tf.astype(np.float32))
        doc_idx = np.concatenate(doc_parts) if doc_parts else np.zeros(0, np.int32)
        voc_idx = np.concatenate(voc_parts) if voc_parts else np.zeros(0, np.int32)
        del doc_parts, voc_parts
        df = np.bincount(voc_idx, minlength=n_vocab)
        idf = np.zeros(n_vocab, dtype=np.float32)
        seen = df > 0
        idf[seen] = np.log(1 + (n_docs - df[seen] + 0.5) / (df[seen] + 0.5))
        # The term-frequency component as bm25s computes it, operation for operation.
        k1, b = bm25.k1, bm25.b
        l_avg = np.float64(self.lengths.mean()) if n_docs else np.float64(1.0)
        scores = np.empty(len(doc_idx), dtype=np.float32)
        at = 0
        for tf_array in tf_parts:
            part = slice(at, at + len(tf_array))
            l_d = self.lengths[doc_idx[part]].astype(np.float64)
            tfc = tf_array / (k1 * ((1 - b) + b * l_d / l_avg) + tf_array)
            scores[part] = (idf[voc_idx[part]] * tfc).astype(np.float32)
            at += len(tf_array)
        del tf_parts
        # Column-major (term, then chunk), as bm25s's own CSC builder orders it: the pairs
        # are in chunk order, so a stable sort on the term keeps each term's chunks in order.
        order = np.argsort(voc_idx, kind="stable")
        del voc_idx
        data = scores[order].astype(bm25.dtype, copy=False)
        del scores
        indices = doc_idx[order]
        del doc_idx, order
        indptr = np.zeros(n_vocab + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        bm25.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}
        vocab = dict(self.vocab)
        vocab.setdefault("", len(vocab))  # bm25s adds its empty token after scoring
        bm25.vocab_dict = vocab
        bm25.unique_token_ids_set = set(vocab.values())
        bm25.nonoccurrence_array = None
        return bm25


class SparseIndex:
    """A BM25 index over the chunks (bm25s), the chunk id of each of its documents and
    each one's publication day (``YYYYMMDD``, 0 when its article has no date)."""

    def __init__(self, ids: list[str], bm25: BM25, days: list[int] | None = None) -> None:
        import Stemmer

        if int(bm25.scores["num_docs"]) != len(ids):
            raise ValueError("BM25 index and chunk ids disagree")
        if days is not None and len(days) != len(ids):
            raise ValueError("BM25 index and chunk days disagree")
        self.ids = ids
        self.bm25 = bm25
        self.days = np.asarray(days if days is not None else [0] * len(ids), dtype=np.int64)
        self.stemmer = Stemmer.Stemmer("english")

    @classmethod
    def load(cls, path: Path) -> SparseIndex:
        """The persisted index, memory-mapped."""
        bm25s = import_bm25s()

        _quiet_bm25()
        ids = json.loads((path / IDS_FILE).read_text())
        days = json.loads((path / DAYS_FILE).read_text())
        return cls(ids, bm25s.BM25.load(str(path), load_corpus=False, mmap=True,
                                        show_progress=False), days)

    def search(self, query: str, k: int, window: DayRange | None = None
               ) -> list[tuple[str, float]]:
        """``(chunk id, score)`` of the best ``k`` chunks, as BM25Retriever ranks them;
        with ``window``, only chunks of articles published inside it score."""
        bm25s = import_bm25s()

        k = min(k, len(self.ids))
        tokens = bm25s.tokenize(query, stemmer=self.stemmer, token_pattern=TOKEN_PATTERN,
                                show_progress=False)
        mask = None
        if window is not None:
            mask = ((self.days >= window.first) & (self.days <= window.last)).astype(
                np.float32)
        indexes, scores = self.bm25.retrieve(tokens, k=k, show_progress=False,
                                             weight_mask=mask)
        return [(self.ids[int(i)], float(v)) for i, v in zip(indexes[0], scores[0],
                                                             strict=True)]


@dataclass
class UpdateReport:
    """What one update of the lexical index did."""

    chunks: int = 0
    added: int = 0
    removed: int = 0
    full: bool = False  # built from every stored chunk (no usable earlier index)


def bm25_dir(store: Store) -> Path:
    """The folder of the store generation's lexical index."""
    return store.layout.bm25(store.name)


def update_bm25(store: Store, fingerprint: str, report: UpdateReport | None = None
                ) -> SparseIndex | None:
    """Bring the persisted index up to date with the stored chunks and persist it
    atomically, recording ``fingerprint`` (the store's) with it; None when the store holds
    no chunk. Only chunks added since the persisted index are read from Chroma; with no
    usable index, every chunk is."""
    _quiet_bm25()
    report = report if report is not None else UpdateReport()
    target = bm25_dir(store)
    stored = store.all_chunk_ids()
    try:
        corpus = TokenisedCorpus.load(target)
    except (OSError, ValueError, KeyError) as exc:
        if target.exists():
            log.info("lexical index at %s not reusable (%s): building it whole", target, exc)
        corpus = TokenisedCorpus.empty()
        report.full = True
    report.removed = corpus.keep(set(stored))
    have = set(corpus.ids)
    new = [cid for cid in stored if cid not in have]
    # An id deleted meanwhile is left out. The next page is read while this one is
    # tokenised: a whole build of 100,000 chunks took 35-37 s instead of 51-74 (embedded)
    # and 33-34 s instead of 46-59 (from a server).
    report.added = corpus.add(store.get_chunks(new, page=PAGE_CHUNKS, ahead=True))
    report.chunks = len(corpus.ids)
    if not corpus.ids:
        return None
    bm25 = corpus.index()
    index = SparseIndex(corpus.ids, bm25, corpus.days)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".bm25-", dir=target.parent))
        bm25.save(str(tmp))
        corpus.save(tmp)
        (tmp / FINGERPRINT_FILE).write_text(fingerprint)
        old = target.with_name(target.name + ".old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        log.warning("could not persist the BM25 index: %s", exc)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return index


def bm25_fingerprint(store: Store) -> str | None:
    """The fingerprint the persisted index was made for (None when there is none)."""
    try:
        return (bm25_dir(store) / FINGERPRINT_FILE).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def load_bm25(store: Store, fingerprint: str, during_ingest: bool = False) -> SparseIndex:
    """The persisted index when it matches the store, else brought up to date with it
    (kept in memory when the store directory is read-only).

    ``during_ingest``: an ingest is writing the store, which then matches no index; the
    persisted one, the last complete ingest's, is used whatever its fingerprint, and none
    is built from the half-written store (:class:`IngestRunning` when there is none).
    """
    target = bm25_dir(store)
    try:
        have = (target / FINGERPRINT_FILE).read_text()
        if have and (have == fingerprint or during_ingest):
            return SparseIndex.load(target)
    except (OSError, ValueError, KeyError) as exc:
        log.info("BM25 index at %s unusable (%s); updating it", target, exc)
    if during_ingest:
        raise IngestRunning(store.ingest_notice(complete_index=False)
                            or "an ingest is running: ask again when it has finished")
    index = update_bm25(store, fingerprint)
    if index is None:
        raise AssistantError("the store is empty: run `assistant ingest` first")
    return index
