"""Store generations: ``ingest --rebuild`` builds beside the index readers use and switches
with an atomic pointer; during any ingest a reader answers from the last complete index
(with a one-line notice of the ingest's progress), never "damaged", "empty" or an
abstention caused by a half-written store. Old stores without a pointer are generation 0.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from assistant.core import Assistant
from assistant.corpus import read_text
from assistant.layout import ingest_lock
from assistant.store import IngestRunning, write_json_atomically
from tests.test_reliability import close, new_bot

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "How many books does the new library in Quillmere hold?"
ANSWER = "48,000"
TARGET = ("library-quillmere.txt",
          "Quillmere opens its new library\nPublished: 2026-04-02\n\n"
          "The town of Quillmere opened its new public library on Monday. "
          "The library holds 48,000 books and cost 6 million euros. "
          "Librarian Odile Marchetti said it would open seven days a week. "
          "Schoolchildren from the valley were the first visitors.\n")
TOWNS = ["Arden", "Belcourt", "Carrow", "Dunmore", "Elsby", "Fennick", "Garrow", "Halden",
         "Ivesham", "Jarrow", "Kestley", "Lonsdale", "Marrick", "Norwell", "Oakhurst",
         "Penrith", "Radley", "Stanwick", "Thornby", "Upwell", "Varley", "Wexcombe",
         "Yarmby", "Zelham", "Ashcot", "Brinkley", "Coldridge", "Dalwick", "Edgecote",
         "Farleigh", "Gosford", "Hartwell", "Ilmore", "Kingsley", "Larkfield", "Milbury",
         "Netherby", "Orwick", "Pelham", "Rushden", "Selby", "Tadley", "Ulverby", "Wardle"]
TOPICS = [("ferry", "The ferry service to {town} resumed after {n} days of repairs, and the "
           "harbour master counted {m} passengers on the first crossing."),
          ("market", "Traders in {town} reopened the covered market, where {n} stalls now sell "
           "local produce to about {m} shoppers every Saturday."),
          ("bridge", "Engineers in {town} finished strengthening the stone bridge, which now "
           "carries {n} lorries a day, after {m} weeks of work."),
          ("school", "The new primary school in {town} welcomed {n} pupils, and the council "
           "hired {m} teachers for its first term."),
          ("orchard", "Growers around {town} picked {n} tonnes of apples this autumn, while "
           "{m} seasonal workers helped with the harvest.")]


def write_articles(corpus: Path, towns: list[str], seed: int = 11) -> None:
    """Small distinct reports, written here (one per town), about 6 sentences each."""
    rnd = random.Random(seed + len(towns))
    corpus.mkdir(parents=True, exist_ok=True)
    for i, town in enumerate(towns):
        topic, first = TOPICS[i % len(TOPICS)]
        lines = [first.format(town=town, n=rnd.randint(20, 900), m=rnd.randint(3, 90))]
        for _ in range(5):
            _, text = rnd.choice(TOPICS)
            lines.append(text.format(town=town, n=rnd.randint(20, 900), m=rnd.randint(3, 90))
                         .replace("The ", "Meanwhile the ", 1))
        (corpus / f"{topic}-{town.lower()}.txt").write_text(
            f"{town} {topic} report\nPublished: 2026-03-{i % 28 + 1:02d}\n\n" + " ".join(lines)
            + "\n")


def make_store(tmp_path: Path, embed_model, n: int = 30) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus"
    write_articles(corpus, TOWNS[:n])
    (corpus / TARGET[0]).write_text(TARGET[1])
    store = tmp_path / "store"
    bot = new_bot(corpus, store, embed_model)
    bot.ingest()
    answer = bot.ask(QUESTION)
    assert not answer.abstained and answer.short_answer == ANSWER, answer.text
    close(bot)
    return corpus, store


def assert_good(answer: dict, corpus: Path) -> None:
    """Answered, from the right article, with exact citations."""
    assert not answer["abstained"], answer
    assert answer["short_answer"] == ANSWER, answer
    assert answer["citations"], answer
    for c in answer["citations"]:
        assert read_text(corpus / c["path"])[c["start"] : c["end"]] == c["quote"]


def pointer(store: Path, bot: Assistant) -> dict:
    return json.loads((store / "generations" / f"{bot.store.base}.json").read_text())


# -- in-process -----------------------------------------------------------------------------------
def test_an_old_store_without_a_pointer_opens_as_generation_0(tmp_path: Path,
                                                              embed_model) -> None:
    """A store made before generations (no pointer) answers as it is and takes
    incremental ingests without a rebuild; its first rebuild moves it to generation 1."""
    corpus, store = make_store(tmp_path, embed_model, n=4)
    assert not (store / "generations" / "assistant-corpus.json").exists()
    (store / "generations").rmdir()  # as an older version left it: no such folder
    bot = new_bot(corpus, store, embed_model)
    assert bot.store.generation == 0 and bot.store.name == "assistant-corpus"
    assert bot.ask(QUESTION).short_answer == ANSWER
    write_articles(corpus, ["Wardle"], seed=3)
    report = bot.ingest()
    assert (report.new, report.unchanged) == (1, 5) and report.chunks_embedded > 0
    assert bot.store.name == "assistant-corpus"
    assert not (store / "generations" / "assistant-corpus.json").exists()
    assert bot.ingest(rebuild=True).new == 6
    assert bot.store.name == "assistant-corpus-g1"
    assert pointer(store, bot)["generation"] == 1
    assert bot.ask(QUESTION).short_answer == ANSWER
    # Generation 0 is gone: its collection, BM25 index, word and sentence vectors.
    names = {c.name for c in bot.store.client.list_collections()}
    assert names == {"assistant-corpus-g1"}
    for sub in ("bm25", "words"):
        assert sorted(p.name for p in (store / sub).iterdir()) == ["assistant-corpus-g1"]
    assert sorted(p.name for p in (store / "sentences").iterdir()
                  if p.suffix == ".sqlite3") == ["assistant-corpus-g1.sqlite3"]
    close(bot)


def test_an_interrupted_rebuild_leaves_the_old_generation_answering(
        tmp_path: Path, embed_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild that stops midway (here its second group of writes fails) leaves the
    current generation answering, untouched; the next ingest deletes the half-built one."""
    import assistant.ingest

    corpus, store = make_store(tmp_path, embed_model, n=12)
    bot = new_bot(corpus, store, embed_model)
    before = sorted(bot.store.chunks.get()["ids"])
    real_groups = assistant.ingest._groups
    monkeypatch.setattr(assistant.ingest, "_groups", lambda a: real_groups(a, chars=2000))
    real = assistant.ingest._write_group
    calls = []

    def dies_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise SystemExit("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(assistant.ingest, "_write_group", dies_on_the_second)
    with pytest.raises(SystemExit):
        bot.ingest(rebuild=True)
    monkeypatch.setattr(assistant.ingest, "_write_group", real)
    assert pointer(store, bot)["generation"] == 0
    assert pointer(store, bot)["building"] == 1
    reader = new_bot(corpus, store, embed_model)
    answer = reader.ask(QUESTION)
    assert not answer.abstained and answer.short_answer == ANSWER and answer.notice is None
    assert sorted(reader.store.chunks.get()["ids"]) == before
    names = {c.name for c in bot.store.client.list_collections()}
    assert names == {"assistant-corpus", "assistant-corpus-g1"}  # the half-built one

    report = new_bot(corpus, store, embed_model).ingest()
    assert report.chunks_embedded == 0 and report.unchanged == 13
    assert {c.name for c in bot.store.client.list_collections()} == {"assistant-corpus"}
    assert pointer(store, bot) | {"switched": 0} == {"generation": 0, "building": -1,
                                                      "previous": -1, "switched": 0}
    leftovers = [p for sub in ("bm25", "words", "sentences", "files")
                 for p in (store / sub).glob("*-g1*")]
    assert leftovers == []
    assert reader.ask(QUESTION).short_answer == ANSWER
    close(bot)
    close(reader)


def test_a_reader_sees_a_running_ingest_as_one_line(tmp_path: Path, embed_model) -> None:
    """Another process's ingest, as its lock and progress file show it: answers carry its
    progress and the time of the index they use; a progress file left by a killed run
    (no lock held) is ignored."""
    corpus, store = make_store(tmp_path, embed_model, n=3)
    bot = new_bot(corpus, store, embed_model)
    progress = store / "generations" / "assistant-corpus.progress.json"
    write_json_atomically(progress, {"pid": 1, "started": time.time(), "rebuild": False,
                                     "done": 12, "total": 60})
    assert bot.ask(QUESTION).notice is None  # no ingest holds the lock: left by a killed run
    with ingest_lock(store, timeout=1):
        answer = bot.ask(QUESTION)
        assert answer.short_answer == ANSWER
        at = time.strftime("%H:%M", time.localtime(bot.store.indexed_at()))
        assert answer.notice == ("an ingest is running: 12 of 60 files; answers use the "
                                 f"index from {at}")
        # A first ingest: no complete index to answer from. The question waits briefly.
        empty = new_bot(corpus, tmp_path / "empty-store", embed_model)
        empty_progress = tmp_path / "empty-store" / "generations" / progress.name
        write_json_atomically(empty_progress, {"done": 0, "total": 4})
        with ingest_lock(tmp_path / "empty-store", timeout=1):
            started = time.monotonic()
            with pytest.raises(IngestRunning) as err:
                empty.ask(QUESTION)
            assert time.monotonic() - started >= 2.5
        assert str(err.value) == ("an ingest is running: 0 of 4 files; there is no complete "
                                  "index yet: ask again when it has finished")
    progress.unlink()
    close(bot)


def test_questions_in_this_process_go_on_during_its_ingest(tmp_path: Path,
                                                           embed_model) -> None:
    """The page's case: an upload's ingest runs in one thread while questions are asked in
    another; they are answered from the index as it was, with the notice, not held back."""
    corpus, store = make_store(tmp_path, embed_model, n=6)
    bot = new_bot(corpus, store, embed_model)
    assert bot.ask(QUESTION).short_answer == ANSWER
    write_articles(corpus, TOWNS[20:44], seed=5)
    answers, errors = [], []
    ingest = threading.Thread(target=lambda: bot.ingest(), daemon=True)
    ingest.start()
    while ingest.is_alive():
        try:
            answers.append(bot.ask(QUESTION).to_dict())
        except Exception as exc:  # every failure is recorded
            errors.append(repr(exc))
        time.sleep(0.1)
    ingest.join()
    assert errors == []
    assert len(answers) >= 3
    for answer in answers:
        assert_good(answer, corpus)
    assert any("an ingest is running" in (a.get("notice") or "") for a in answers)
    assert bot.store.count() > 30 and bot.ask(QUESTION).notice is None
    close(bot)


# -- other processes ------------------------------------------------------------------------------
READER = """
import json, sys, time
from pathlib import Path
from assistant.core import Assistant
bot = Assistant(corpus=sys.argv[1], store=sys.argv[2])
stop = Path(sys.argv[3])
bot.ask(sys.argv[4])
print(json.dumps({"ready": True}), flush=True)
while not stop.exists():
    try:
        print(json.dumps(bot.ask(sys.argv[4]).to_dict()), flush=True)
    except BaseException as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    time.sleep(0.2)
"""


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    out.update(ANONYMIZED_TELEMETRY="False", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT) + os.pathsep + out.get("PYTHONPATH", ""))
    return out


def ask_during(corpus: Path, store: Path, tmp_path: Path, *ingest_args: str
               ) -> tuple[list[dict], list[dict], subprocess.CompletedProcess]:
    """Start ``assistant ingest *ingest_args`` in a process; while it runs, a reader
    process (the Python API, as the page uses it) asks every 0.2 s and ``assistant ask
    --json`` processes ask one after another. Returns both readers' answers and the
    ingest's outcome."""
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(corpus), str(store),
                               str(stop), QUESTION], cwd=ROOT, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    assert json.loads(reader.stdout.readline()) == {"ready": True}, reader.stderr
    where = ["--corpus", str(corpus), "--store", str(store)]
    ingest = subprocess.Popen([sys.executable, "-m", "assistant.cli", "ingest", *where,
                               *ingest_args], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    asked: list[dict] = []
    while ingest.poll() is None:
        done = subprocess.run([sys.executable, "-m", "assistant.cli", "ask", "--json",
                               QUESTION, *where], cwd=ROOT, env=env(), capture_output=True,
                              text=True, timeout=180)
        asked.append({"code": done.returncode, "stderr": done.stderr,
                      "answer": json.loads(done.stdout) if done.returncode == 0 else None})
    out, err = ingest.communicate(timeout=300)
    time.sleep(0.5)  # the reader's answers after the switch too
    stop.write_text("")
    lines, reader_err = reader.communicate(timeout=120)
    answers = [json.loads(line) for line in lines.splitlines() if line.strip()]
    return answers, asked, subprocess.CompletedProcess(ingest.args, ingest.returncode, out,
                                                       err + reader_err)


def check_readers(answers: list[dict], asked: list[dict], corpus: Path) -> None:
    text = json.dumps(answers + asked)
    assert "damaged" not in text and "empty" not in text, text[:2000]
    assert [a for a in answers if "error" in a] == []
    assert len(answers) >= 10, "the reader must have asked throughout the ingest"
    for answer in answers:
        assert_good(answer, corpus)
    assert asked and all(a["code"] == 0 for a in asked), asked
    for a in asked:
        assert "Traceback" not in a["stderr"]
        assert_good(a["answer"], corpus)


@pytest.mark.slow
def test_questions_during_a_rebuild_in_another_process(tmp_path: Path, embed_model) -> None:
    corpus, store = make_store(tmp_path, embed_model, n=40)
    answers, asked, ingest = ask_during(corpus, store, tmp_path, "--rebuild")
    assert ingest.returncode == 0, ingest.stderr
    assert "Ingested 41 articles (41 new" in ingest.stdout
    check_readers(answers, asked, corpus)
    notices = {a.get("notice") for a in answers + [x["answer"] for x in asked]}
    assert any(n and n.startswith("an ingest is running: ") and "answers use the index from "
               in n for n in notices), notices
    bot = new_bot(corpus, store, embed_model)
    assert bot.store.name == "assistant-corpus-g1"
    assert {c.name for c in bot.store.client.list_collections()} == {"assistant-corpus-g1"}
    close(bot)


@pytest.mark.slow
def test_questions_during_an_incremental_ingest_in_another_process(tmp_path: Path,
                                                                   embed_model) -> None:
    corpus, store = make_store(tmp_path, embed_model, n=6)
    write_articles(corpus, TOWNS[6:44], seed=9)  # 38 new articles
    answers, asked, ingest = ask_during(corpus, store, tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    assert "(38 new, 0 changed, 0 removed, 7 unchanged)" in ingest.stdout
    check_readers(answers, asked, corpus)
    assert any("an ingest is running: " in (a.get("notice") or "") for a in answers)
    bot = new_bot(corpus, store, embed_model)
    assert bot.store.name == "assistant-corpus" and bot.store.stored_docs().keys() == {
        p.name for p in corpus.iterdir()}
    close(bot)
