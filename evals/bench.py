"""Performance benchmark: ingest and query from one article to 100,000 chunks, embedded
Chroma and a ``chroma run`` server, side by side with plain llama-index.

    python -m evals.bench --sizes real,1k,10k --out bench-results/

Each measurement runs in its own worker process (so peak RSS is per phase); the
orchestrator prints and saves a Markdown table, a JSON file and a PNG plot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REAL_CORPUS = ROOT / "corpus"
REAL_GOLD = ROOT / "evals" / "gold" / "corpus.jsonl"
SIZES = {"real": 0, "1k": 1_000, "10k": 10_000, "100k": 100_000}
# The modes a size can be measured in, with their label in the table.
MODES = {"embedded": "embedded", "pooled": "embedded, pooled chunk vectors",
         "q8": "embedded, minilm-q8", "fast": "embedded, minilm-q8 and pooled",
         "server": "server"}
# What each alternative to the default ingest changes (Settings fields).
VARIANTS: dict[str, dict[str, str]] = {
    "pooled": {"chunk_vectors": "pooled"}, "q8": {"embedding": "minilm-q8"},
    "fast": {"chunk_vectors": "pooled", "embedding": "minilm-q8"}}
SEED = 20261126
ENV = {"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1",
       "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"}
TARGETS = {
    "p50_ms@10k": 50, "p95_ms@10k": 150, "p50_ms@100k": 150, "cold_s@10k": 3.0,
    "reingest_s@10k": 2.0, "overhead_pct": 25, "rss_mib@100k": 2048,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- questions ---------------------------------------------------------------------------
def load_questions(work: Path, size: str) -> list[dict]:
    """The checked questions of a corpus: gold questions of the real article, planted
    facts of a generated corpus."""
    if size == "real":
        out = []
        for line in REAL_GOLD.read_text().splitlines():
            q = json.loads(line)
            if q.get("answers") and q.get("doc_ids"):
                out.append({"question": q["question"], "answers": q["answers"],
                            "doc_id": q["doc_ids"][0], "kind": q.get("kind", "")})
        return out
    meta = json.loads((work / "corpus" / ".bench.json").read_text())
    return [{"question": f["question"], "answers": f["answers"], "doc_id": f["doc_id"],
             "kind": f["kind"]} for f in meta["facts"]]


def pick(questions: list[dict], n: int, seed: int = SEED) -> list[dict]:
    """``n`` questions (a sample, or all of them repeated when there are fewer)."""
    rng = random.Random(seed)
    if len(questions) >= n:
        return rng.sample(questions, n)
    out = list(questions)
    while len(out) < n:
        out.extend(questions[: n - len(out)])
    return out


def _norm(text: str) -> str:
    return " ".join("".join(ch.lower() if ch.isalnum() else " " for ch in text).split())


def answer_ok(answer: dict, q: dict) -> bool:
    """A cited, non-abstaining answer from the right article whose quote holds the answer."""
    if answer["abstained"]:
        return False
    quotes = " ".join(c["quote"] for c in answer["citations"] if c["doc_id"] == q["doc_id"])
    return any(_norm(a) in _norm(quotes) for a in q["answers"])


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


# -- workers (each in its own process) ---------------------------------------------------
class TimedEmbedding:
    """Wraps the model's ``embed``: counts texts and seconds, keeps a sample of texts, and
    optionally reuses vectors computed earlier (``cache``)."""

    def __init__(self, model: Any, cache: dict | None = None, sample: int = 1500,
                 record: bool = False) -> None:
        self.model = model
        self.record = record
        self.recorded_texts: list[str] = []
        self.recorded_vecs: list[Any] = []
        self.orig = model.embed
        self.seconds = 0.0
        self.texts = 0
        self.cached = 0
        self.cache = cache
        self.sample: list[str] = []
        self.sample_size = sample
        self.rng = random.Random(SEED)
        object.__setattr__(model, "embed", self.embed)

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        for t in texts:  # reservoir sample of the texts embedded
            self.texts += 1
            if len(self.sample) < self.sample_size:
                self.sample.append(t)
            else:
                j = self.rng.randrange(self.texts)
                if j < self.sample_size:
                    self.sample[j] = t
        if self.cache is not None:
            todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
            self.cached += len(texts) - len(todo)
            if todo:
                started = time.perf_counter()
                vecs = self.orig(todo)
                self.seconds += time.perf_counter() - started
                self.cache.update(zip(todo, vecs, strict=True))
            return np.stack([self.cache[t] for t in texts]) if texts else self.orig([])
        started = time.perf_counter()
        out = self.orig(texts)
        self.seconds += time.perf_counter() - started
        if self.record:
            self.recorded_texts.extend(texts)
            self.recorded_vecs.append(out)
        return out


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stand_in_embed(self: Any, texts: list[str]) -> Any:
    """A cheap stand-in for the model (``--stand-in-embedding``): a fixed random projection
    of hashed words, unit length. Only for timing the store and query path at sizes the
    real model cannot embed in time; its retrieval quality means nothing."""
    import zlib

    import numpy as np

    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            h = zlib.crc32(w.encode())
            out[i, h % 384] += 1.0 if (h >> 9) & 1 else -1.0
    out += 1e-6
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _article_day(corpus: Path, doc_id: str) -> dt.date | None:
    """The publication date in the header of the bench article ``doc_id``."""
    from assistant.corpus import SkippedFile, load_article

    try:
        return load_article(corpus, corpus / doc_id).published_date
    except (OSError, SkippedFile):
        return None


def _bot(spec: dict) -> Any:
    from assistant.core import Assistant

    if spec.get("stand_in"):
        from assistant.embedding import MiniLMEncoder

        MiniLMEncoder.embed = stand_in_embed  # type: ignore[method-assign]

    over = {"chroma_url": spec.get("chroma_url"), "chunk_vectors": spec.get("chunk_vectors"),
            "embedding": spec.get("embedding")}
    return Assistant(corpus=spec["corpus"], store=spec["store"],
                     **{k: v for k, v in over.items() if v})


def worker_ingest(spec: dict) -> dict:
    """Full ingest, the embedding floor, re-ingest unchanged, incremental after 1 %."""
    bot = _bot(spec)
    cache: dict | None = None
    if spec.get("embed_cache"):
        import numpy as np

        data = np.load(spec["embed_cache"], allow_pickle=True)
        cache = dict(zip(data["texts"].tolist(), data["vecs"], strict=True))
    timed = TimedEmbedding(bot.embed_model, cache, record=bool(spec.get("save_cache")))
    out: dict[str, Any] = {}
    # Wall time of Assistant.ingest: includes what it does after the store is written
    # (the BM25 index, the vocabulary's word vectors).
    started = time.perf_counter()
    r = bot.ingest(rebuild=True)
    r.seconds = time.perf_counter() - started
    out.update(chunks=r.chunks, articles=r.articles, ingest_s=r.seconds,
               embed_in_ingest_s=timed.seconds, texts_embedded=timed.texts,
               texts_cached=timed.cached)
    if cache is not None:
        # Vectors reused from the embedded run: the embedding is not measured here.
        out["store_side_s"] = r.seconds - timed.seconds
    elif spec.get("save_cache"):
        import numpy as np

        np.savez(spec["save_cache"], texts=np.array(timed.recorded_texts, dtype=object),
                 vecs=np.concatenate(timed.recorded_vecs) if timed.recorded_vecs
                 else np.zeros((0, 384), dtype=np.float32))
        timed.recorded_texts, timed.recorded_vecs = [], []
    # The floor: the model alone on a sample of the same texts, same batch size.
    if cache is None:
        sample = timed.sample
        timed.orig(sample[:64])  # warm-up
        started = time.perf_counter()
        timed.orig(sample)
        rate = len(sample) / (time.perf_counter() - started)
        out.update(floor_texts_per_s=rate, floor_s=timed.texts / rate)
        out["chunks_per_s"] = r.chunks / r.seconds
        out["embed_share_pct"] = 100 * out["floor_s"] / r.seconds
        out["overhead_pct"] = 100 * (r.seconds - out["floor_s"]) / out["floor_s"]
        out["overhead_measured_pct"] = 100 * (r.seconds - timed.seconds) / timed.seconds
    before = timed.texts
    started = time.perf_counter()
    r2 = bot.ingest()
    r2.seconds = time.perf_counter() - started
    out.update(reingest_s=r2.seconds, reingest_embedded=r2.chunks_embedded,
               reingest_texts=timed.texts - before)
    from evals.synth import change_files

    changed = change_files(Path(spec["corpus"]), 0.01, SEED + 7)
    t0 = timed.seconds
    started = time.perf_counter()
    r3 = bot.ingest()
    r3.seconds = time.perf_counter() - started
    out.update(incr_files=len(changed), incr_s=r3.seconds, incr_embedded=r3.chunks_embedded,
               incr_embed_s=timed.seconds - t0, incr_changed=r3.changed)
    out["ingest_peak_rss_mib"] = _peak_rss_mib()
    return out


def worker_query(spec: dict) -> dict:
    """Warm query latency over the questions, answer accuracy and retrieval hit@5."""
    questions = spec["questions"]
    bot = _bot(spec)
    counted = TimedEmbedding(bot.embed_model)  # counts the texts the questions embed
    started = time.perf_counter()
    bot.prepare()  # as the chat page does at start: the index and the models
    prepare_s = time.perf_counter() - started
    started = time.perf_counter()
    bot.ask(questions[0]["question"])
    first_s = time.perf_counter() - started
    for q in questions[1:6]:
        bot.ask(q["question"])
    lat, cpu, retr_lat, hits, correct = [], [], [], 0, 0
    unchecked: list[float] = []  # the same questions without the citation check
    filtered: list[float] = []  # and with a date filter of a month around their article
    filtered_correct = 0
    as_of: list[float] = []  # and asked as on three days after their article's date
    as_of_correct = 0
    texts_before, asks = counted.texts, 0
    for i, q in enumerate(questions):
        # The check on and off in turn, each first every other question, so that
        # neither gains from the caches the other warmed.
        for check in ((True, False) if i % 2 == 0 else (False, True)):
            bot.check_files = check
            t, c = time.perf_counter(), time.process_time()
            a = bot.ask(q["question"]).to_dict()
            asks += 1
            if not check:
                unchecked.append((time.perf_counter() - t) * 1000)
                continue
            lat.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            correct += answer_ok(a, q)
        bot.check_files = True
        day = _article_day(Path(spec["corpus"]), q["doc_id"])
        if day is not None:
            t = time.perf_counter()
            a = bot.ask(q["question"], since=day - dt.timedelta(days=15),
                        until=day + dt.timedelta(days=15)).to_dict()
            asks += 1
            filtered.append((time.perf_counter() - t) * 1000)
            filtered_correct += answer_ok(a, q)
            t = time.perf_counter()
            a = bot.ask(q["question"], as_of=day + dt.timedelta(days=3)).to_dict()
            asks += 1
            as_of.append((time.perf_counter() - t) * 1000)
            as_of_correct += answer_ok(a, q)
        # Retrieval alone (query embedding + hybrid retrieval), the peer's unit of work.
        t = time.perf_counter()
        retriever = bot._retriever_for_query()
        vec = bot.embed_model.embed([q["question"]])[0]
        got = retriever.retrieve(q["question"], vec)
        retr_lat.append((time.perf_counter() - t) * 1000)
        hits += q["doc_id"] in {h.doc_id for h in got[:5]}
    n = len(questions)
    return {
        "questions": n, "prepare_s": prepare_s, "first_query_s": first_s,
        "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99), "mean_ms": statistics.fmean(lat),
        "unchecked_p50_ms": percentile(unchecked, 50),
        "filtered_p50_ms": percentile(filtered, 50) if filtered else None,
        "filtered_answer_acc": filtered_correct / len(filtered) if filtered else None,
        "as_of_p50_ms": percentile(as_of, 50) if as_of else None,
        "as_of_answer_acc": as_of_correct / len(as_of) if as_of else None,
        "cpu_p50_ms": percentile(cpu, 50), "cpu_p95_ms": percentile(cpu, 95),
        "retrieve_p50_ms": percentile(retr_lat, 50), "retrieve_p95_ms": percentile(retr_lat, 95),
        "hit5": hits / n, "answer_acc": correct / n,
        "query_peak_rss_mib": _peak_rss_mib(),
        # Texts the model embedded per question asked (retrieval alone left out): 1 is
        # the question itself; more means passages or words were embedded to answer it.
        "embedded_texts": (counted.texts - texts_before - n) / max(1, asks),
    }


def worker_peer(spec: dict) -> dict:
    """Plain llama-index: SentenceSplitter at the same chunk size, VectorStoreIndex over
    ChromaVectorStore, the same embedding model (``spec["embedding"]``, default
    ``minilm``), the default retriever, top-k 5."""
    import chromadb
    from llama_index.core import Settings as LISettings
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from assistant.embedding import MiniLMEmbedding
    from assistant.settings import Settings

    s = Settings()
    LISettings.llm = None
    embed = MiniLMEmbedding(variant=spec.get("embedding", "minilm"))
    corpus = Path(spec["corpus"])
    store = Path(spec["store"])
    shutil.rmtree(store, ignore_errors=True)
    started = time.perf_counter()
    docs = SimpleDirectoryReader(str(corpus), recursive=True, required_exts=[".txt", ".md"],
                                 filename_as_id=True).load_data(show_progress=False)
    for d in docs:
        d.metadata["doc_id"] = os.path.relpath(d.metadata["file_path"], corpus)
        d.excluded_embed_metadata_keys = list(d.metadata)
        d.excluded_llm_metadata_keys = list(d.metadata)
    nodes = SentenceSplitter(chunk_size=s.chunk_tokens,
                             chunk_overlap=s.chunk_overlap_tokens).get_nodes_from_documents(docs)
    client = chromadb.PersistentClient(path=str(store))
    col = client.get_or_create_collection("peer", embedding_function=None)
    ctx = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=col))
    index = VectorStoreIndex(nodes, storage_context=ctx, embed_model=embed,
                             insert_batch_size=2048)
    ingest_s = time.perf_counter() - started
    retriever = index.as_retriever(similarity_top_k=s.top_k)
    questions = spec["questions"]
    for q in questions[:5]:
        retriever.retrieve(q["question"])
    lat, hits = [], 0
    for q in questions:
        t = time.perf_counter()
        got = retriever.retrieve(q["question"])
        lat.append((time.perf_counter() - t) * 1000)
        hits += q["doc_id"] in {n.node.metadata.get("doc_id") for n in got}
    return {"peer_chunks": len(nodes), "peer_embedding": embed.variant,
            "peer_ingest_s": ingest_s,
            "peer_p50_ms": percentile(lat, 50), "peer_p95_ms": percentile(lat, 95),
            "peer_p99_ms": percentile(lat, 99), "peer_hit5": hits / len(questions),
            "peer_peak_rss_mib": _peak_rss_mib()}


INLINE = False
WORKERS = {"ingest": worker_ingest, "query": worker_query, "peer": worker_peer}


def run_worker(kind: str, spec: dict, timeout: float | None = None) -> dict:
    """Run one worker in a new process; returns its JSON result."""
    if INLINE:  # --inline (the smoke test): no new process, peak RSS is the whole run's
        return json.loads(json.dumps(WORKERS[kind](json.loads(json.dumps(spec)))))
    spec_path = Path(spec["work"]) / f"spec-{kind}-{spec.get('mode', 'peer')}.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, **ENV}
    proc = subprocess.run([sys.executable, "-m", "evals.bench", "--worker", kind,
                           str(spec_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- cold start, server, disk ---------------------------------------------------------------
def cold_start(spec: dict, question: dict, runs: int = 3) -> dict:
    """Wall time of ``assistant ask`` in a new process, import to printed answer."""
    exe = Path(sys.executable).parent / "assistant"
    cmd = [str(exe), "ask", "--json", "--corpus", spec["corpus"], "--store", spec["store"]]
    if spec.get("chroma_url"):
        cmd += ["--chroma-url", spec["chroma_url"]]
    cmd.append(question["question"])
    times, cpu, ok = [], [], True
    for _ in range(runs):
        t = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ENV},
                              cwd=ROOT, timeout=300)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(time.perf_counter() - t)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if proc.returncode != 0:
            raise RuntimeError(f"assistant ask failed: {proc.stderr[-2000:]}")
        ok = ok and answer_ok(json.loads(proc.stdout), question)
    return {"cold_start_s": statistics.median(times), "cold_start_runs": times,
            "cold_start_cpu_s": statistics.median(cpu),
            "cold_start_answer_ok": ok}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chroma_server(path: Path):
    """``chroma run`` on 127.0.0.1 and a free port; yields (url, pid)."""
    import urllib.request

    exe = Path(sys.executable).parent / "chroma"
    port = _free_port()
    path.mkdir(parents=True, exist_ok=True)
    logf = open(path.parent / "chroma-server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([str(exe), "run", "--path", str(path), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=logf, stderr=subprocess.STDOUT,
                            env={**os.environ, **ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chroma server did not start") from None
                time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()


def server_peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def du_mib(*paths: Path) -> float:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.exists():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total / 2**20


# -- orchestration --------------------------------------------------------------------------
def prepare_corpus(work: Path, size: str) -> Path:
    from evals.synth import generate

    pristine = work / "corpus"
    if size == "real":
        if not pristine.exists():
            shutil.copytree(REAL_CORPUS, pristine)
    else:
        generate(pristine, SIZES[size], seed=SEED)
    return pristine


def fresh_copy(pristine: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pristine, target)
    return target


def bench_size(size: str, out: Path, modes: list[str], n_questions: int, peer: bool,
               cold_runs: int, reuse: bool = False, stand_in: bool = False) -> dict:
    work = out / "work" / size
    work.mkdir(parents=True, exist_ok=True)
    log(f"{size}: preparing corpus")
    pristine = prepare_corpus(work, size)
    questions = pick(load_questions(work, size), n_questions)
    result: dict[str, Any] = {"size": size, "questions_distinct": len(
        {q["question"] for q in questions}), "stand_in_embedding": stand_in}
    for mode in [m for m in MODES if m in modes]:
        corpus = fresh_copy(pristine, work / f"corpus-{mode}")
        store = work / f"store-{mode}"
        shutil.rmtree(store, ignore_errors=True)
        spec: dict[str, Any] = {"work": str(work), "mode": mode, "corpus": str(corpus),
                                "store": str(store), "stand_in": stand_in}
        spec.update(VARIANTS.get(mode, {}))
        cache = work / "embeddings.npz"
        if reuse and mode == "embedded" and "server" in modes:
            spec["save_cache"] = str(cache)
        elif reuse and mode == "server" and cache.exists():
            spec["embed_cache"] = str(cache)
        row: dict[str, Any] = {}
        if mode == "server":
            server_dir = work / "chroma-server"
            shutil.rmtree(server_dir, ignore_errors=True)
            ctx = chroma_server(server_dir)
        else:
            server_dir = None
            ctx = _null()
        with ctx as server:
            if server:
                spec["chroma_url"] = server[0]
            log(f"{size}/{mode}: ingest")
            row.update(run_worker("ingest", spec))
            # Query on the pristine-equivalent store (1 % of files changed, facts intact).
            log(f"{size}/{mode}: {len(questions)} queries")
            row.update(run_worker("query", {**spec, "questions": questions}))
            log(f"{size}/{mode}: cold start")
            q24 = next((q for q in questions if "24 hours" in q["question"]), questions[0])
            row.update(cold_start(spec, q24, cold_runs))
            if server:
                # A second machine: a store directory of its own on the same server,
                # never ingested; its start (prepare) builds its lexical index.
                log(f"{size}/{mode}: a second machine's queries")
                second = work / "store-second-machine"
                shutil.rmtree(second, ignore_errors=True)
                got = run_worker("query", {**spec, "store": str(second),
                                           "questions": questions})
                row.update({f"second_{k}": got[k] for k in (
                    "prepare_s", "first_query_s", "p50_ms", "p95_ms", "hit5", "answer_acc",
                    "embedded_texts")})
                row["server_peak_rss_mib"] = server_peak_rss_mib(server[1])
        row["store_mib"] = du_mib(store, *(p for p in [server_dir] if p))
        result[mode] = row
        log(f"{size}/{mode}: {json.dumps(row)[:400]}")
    if peer:
        log(f"{size}: peer (plain llama-index)")
        # The modes' embedding model when they share one (else the default).
        from assistant.settings import Settings
        default = Settings().embedding  # ASSISTANT_EMBEDDING may set it
        models = {VARIANTS.get(m, {}).get("embedding", default) for m in MODES if m in modes}
        spec = {"work": str(work), "corpus": str(pristine), "store": str(work / "peer"),
                "questions": questions,
                "embedding": models.pop() if len(models) == 1 else "minilm"}
        result["peer"] = run_worker("peer", spec)
        log(f"{size}/peer: {json.dumps(result['peer'])}")
    return result


@contextmanager
def _null():
    yield None


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(results: list[dict], extrapolated: list[dict] | None = None) -> str:
    """The Markdown table of every measured size and mode."""
    head = ("| size | mode | chunks | ingest s | chunks/s | embed s in ingest / floor s | "
            "overhead % (vs floor) | "
            "re-ingest s | incr. 1% s | p50 ms (CPU) | p50 ms without citation check | "
            "p50 ms with a date filter (answer acc) | p50 ms asked as of a date (answer acc) | "
            "p95 ms | "
            "p99 ms | retrieve p50 ms | "
            "cold ask s (CPU s) | second machine: start s + first ask s / p50 ms / texts "
            "embedded per "
            "ask (ours) | peak RSS MiB (ingest/query/server) | store MiB | answer acc | "
            "hit@5 | peer hit@5 | peer p50 ms | p50 ours/peer (retrieval only) | hit@5 ours/peer |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        peer = r.get("peer", {})
        for mode in MODES:
            m = r.get(mode)
            if not m:
                continue
            ingest = m.get("ingest_s")
            if "store_side_s" in m:
                ingest_txt = f"{_f(m['store_side_s'])} store-side + embed reused"
                cps = "–"
            else:
                ingest_txt, cps = _f(ingest), _f(m.get("chunks_per_s"))
            rss = "/".join(_f(m.get(k), 0) for k in ("ingest_peak_rss_mib",
                                                     "query_peak_rss_mib"))
            if m.get("server_peak_rss_mib"):
                rss += "/" + _f(m["server_peak_rss_mib"], 0)
            ratio_p50 = (m["p50_ms"] / peer["peer_p50_ms"]) if peer else None
            ratio_retr = (m["retrieve_p50_ms"] / peer["peer_p50_ms"]) if peer else None
            ratio_hit = (m["hit5"] / peer["peer_hit5"]) if peer and peer["peer_hit5"] else None
            size = r["size"] + (" (stand-in model)" if r.get("stand_in_embedding") else "")
            lines.append("| " + " | ".join([
                size, MODES[mode], _f(m.get("chunks")), ingest_txt, cps,
                f"{_f(m.get('embed_in_ingest_s'))} / {_f(m.get('floor_s'))}",
                f"{_f(m.get('overhead_measured_pct'))} ({_f(m.get('overhead_pct'))})",
                _f(m.get("reingest_s"), 2), _f(m.get("incr_s")),
                f"{_f(m.get('p50_ms'))} ({_f(m.get('cpu_p50_ms'))})",
                _f(m.get("unchecked_p50_ms")),
                f"{_f(m.get('filtered_p50_ms'))} ({_f(m.get('filtered_answer_acc'), 3)})",
                f"{_f(m.get('as_of_p50_ms'))} ({_f(m.get('as_of_answer_acc'), 3)})",
                _f(m.get("p95_ms")),
                _f(m.get("p99_ms")),
                _f(m.get("retrieve_p50_ms")),
                f"{_f(m.get('cold_start_s'), 2)} ({_f(m.get('cold_start_cpu_s'), 2)})",
                (f"{_f(m.get('second_prepare_s'), 2)} + "
                 f"{_f(m.get('second_first_query_s'), 2)} / {_f(m.get('second_p50_ms'))} / "
                 f"{_f(m.get('second_embedded_texts'), 2)} "
                 f"({_f(m.get('embedded_texts'), 2)})") if "second_p50_ms" in m else "–",
                rss,
                _f(m.get("store_mib")), _f(m.get("answer_acc"), 3), _f(m.get("hit5"), 3),
                _f(peer.get("peer_hit5"), 3), _f(peer.get("peer_p50_ms")),
                f"{_f(ratio_p50, 2)} ({_f(ratio_retr, 2)})", _f(ratio_hit, 2),
            ]) + " |")
    for e in extrapolated or []:
        lines.append("| " + " | ".join(str(e.get(k, "–")) for k in (
            "size", "mode", "chunks", "ingest_s", "chunks_per_s", "floor_s", "overhead_pct",
            "reingest_s", "incr_s", "p50_ms", "unchecked_p50_ms", "filtered_p50_ms", "as_of_p50_ms",
            "p95_ms",
            "p99_ms",
            "retrieve_p50_ms",
            "cold_start_s", "second", "rss", "store_mib", "answer_acc", "hit5", "peer_hit5",
            "peer_p50_ms", "ratio_p50", "ratio_hit")) + " |")
    return "\n".join(lines)


def chunk_vector_comparison(results: list[dict]) -> str:
    """One line per size and alternative ingest (``VARIANTS``: pooled chunk vectors, the
    minilm-q8 model, both) measured beside the default in the same run: the ingest-time
    ratio, the texts embedded and the quality of each."""
    lines = []
    for r in results:
        for mode in VARIANTS:
            new, old = r.get(mode), r.get("embedded")
            if not (new and old and new.get("ingest_s") and old.get("ingest_s")):
                continue
            lines.append(_comparison_line(r["size"], MODES[mode], new, old))
    return "\n".join(lines)


def _comparison_line(size: str, label: str, new: dict, old: dict) -> str:
    return (f"- {size}: ingest {_f(new['ingest_s'])} s {label.removeprefix('embedded, ')}, "
            f"{_f(old['ingest_s'])} s by default: "
            f"{_f(old['ingest_s'] / new['ingest_s'], 2)}x faster "
            f"({_f(new.get('texts_embedded'))} texts embedded, was "
            f"{_f(old.get('texts_embedded'))}); hit@5 {_f(new.get('hit5'), 3)} vs "
            f"{_f(old.get('hit5'), 3)}, answer acc {_f(new.get('answer_acc'), 3)} vs "
            f"{_f(old.get('answer_acc'), 3)}")


def plot(results: list[dict], path: Path) -> bool:
    """Latency and ingest throughput against corpus size (log x)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing (pip install -e '.[bench]'): no plot")
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, style in (("embedded", "o-"), ("server", "s--")):
        rows = [r for r in results if r.get(mode)]
        if not rows:
            continue
        real = [r for r in rows if not r.get("stand_in_embedding")]
        stand_in = [r for r in rows if r.get("stand_in_embedding")]
        for key, label in (("p50_ms", "p50"), ("p95_ms", "p95")):
            line = a.plot([r[mode]["chunks"] for r in real], [r[mode][key] for r in real],
                          style, label=f"{mode} {label}")
            if stand_in:  # hollow: measured with the stand-in model
                a.plot([r[mode]["chunks"] for r in stand_in], [r[mode][key] for r in stand_in],
                       style[0], mfc="none", color=line[0].get_color(),
                       label=f"{mode} {label} (stand-in model)")
        tp = [(r[mode]["chunks"], r[mode].get("chunks_per_s")) for r in rows
              if not r.get("stand_in_embedding")]  # a stand-in's throughput means nothing
        tp = [t for t in tp if t[1]]
        if tp:
            b.plot(*zip(*tp, strict=True), style, label=f"{mode} ingest chunks/s")
    peer_rows = [r for r in results if r.get("peer") and r.get("embedded")]
    if peer_rows:
        a.plot([r["embedded"]["chunks"] for r in peer_rows],
               [r["peer"]["peer_p50_ms"] for r in peer_rows], "^:", label="llama-index p50")
    for ax, title, unit in ((a, "query latency (warm)", "ms"), (b, "ingest throughput",
                                                                "chunks/s")):
        ax.set_xscale("log")
        ax.set_xlabel("chunks in the store")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench", description=__doc__)
    parser.add_argument("--sizes", default="real,1k,10k,100k",
                        help="comma-separated: real, 1k, 10k, 100k (or a number of chunks)")
    parser.add_argument("--out", default="bench-results", type=Path)
    parser.add_argument("--modes", default="embedded,server",
                        help="embedded, pooled, q8, fast, server (comma-separated; 'none' "
                        "for the peer only); pooled is embedded with chunk vectors pooled "
                        "from the sentence vectors (chunk_vectors=pooled), q8 with the "
                        "minilm-q8 model, fast with both: each compared with embedded")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--no-peer", dest="peer", action="store_false")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--reuse-embeddings", action="store_true",
                        help="server mode reuses the embedded run's vectors: its full ingest "
                        "then measures the store side only (saves hours at 10k+)")
    parser.add_argument("--stand-in-embedding", action="store_true",
                        help="time the store and query path with a cheap stand-in for the "
                        "model (hashed words): latency, RSS and size only, quality meaningless")
    parser.add_argument("--inline", action="store_true",
                        help="run the phases in this process (fast smoke runs; RSS not per phase)")
    parser.add_argument("--combine", nargs="+", type=Path, metavar="RESULTS_JSON",
                        help="no run: the table and plot of results-SIZE.json files of "
                        "earlier runs (sizes are often run separately), written to --out")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        from assistant.cli import limit_malloc_arenas

        limit_malloc_arenas()  # as the assistant command does
        kind, spec_path = args.worker
        result = WORKERS[kind](json.loads(Path(spec_path).read_text()))
        print(json.dumps(result))
        return 0
    os.environ.update(ENV)
    global INLINE
    INLINE = args.inline
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    results = []
    if args.combine:
        results = [json.loads(p.read_text()) for p in args.combine]
        results.sort(key=lambda r: (r.get("embedded") or r.get("server") or {}).get("chunks", 0))
    for size in [] if args.combine else args.sizes.split(","):
        size = size.strip()
        if size not in SIZES:
            SIZES[size] = int(size.replace("k", "000"))
        started = time.perf_counter()
        r = bench_size(size, out, args.modes.split(","), args.questions, args.peer,
                       args.cold_runs, args.reuse_embeddings, args.stand_in_embedding)
        r["bench_s"] = time.perf_counter() - started
        results.append(r)
        (out / f"results-{size}.json").write_text(json.dumps(r, indent=2))
    md = table(results)
    if comparison := chunk_vector_comparison(results):
        md += "\n\n" + comparison
    (out / "results.md").write_text(md + "\n")
    (out / "results.json").write_text(json.dumps({"results": results, "targets": TARGETS,
                                                  "cpus": os.cpu_count()}, indent=2))
    plot(results, out / "results.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
