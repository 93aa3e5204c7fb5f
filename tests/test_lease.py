"""The ingest lease: one holder at a time, a dead holder's lease taken over, a lost lease
noticed. Chroma's collection calls are the same embedded and on a server, so these run on an
embedded client; tests/test_chroma_server.py runs two machines' ingests on a real server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from assistant import lease as lease_module
from assistant.lease import LEASE_SECONDS, Lease, LeaseLost, lease_name
from assistant.settings import AssistantError


@pytest.fixture
def client(tmp_path: Path) -> Any:
    import chromadb

    return chromadb.PersistentClient(path=str(tmp_path / "chroma"))


def lease(client: Any) -> Lease:
    return Lease(client, "news-chunks", "http://chroma:8000")


def test_a_second_run_waits_then_names_the_holder(client: Any) -> None:
    first = lease(client)
    first.acquire(timeout=0)
    try:
        started = time.monotonic()
        with pytest.raises(AssistantError) as err:
            lease(client).acquire(timeout=0.6)
        assert time.monotonic() - started >= 0.6
        message = str(err.value)
        assert "another ingest is writing" in message and "http://chroma:8000" in message
        assert f"pid {__import__('os').getpid()}" in message and "\n" not in message
        first.check()  # still its own
    finally:
        first.release()
    second = lease(client)
    second.acquire(timeout=0)  # given back: free at once
    second.release()


def test_a_run_waiting_for_the_lease_gets_it_when_the_holder_gives_it_back(
        client: Any) -> None:
    import threading

    first = lease(client)
    first.acquire(timeout=0)
    threading.Timer(0.5, first.release).start()
    second = lease(client)
    second.acquire(timeout=10)
    second.check()
    second.release()


def test_a_lease_not_renewed_is_taken_over_and_its_holder_stops(
        client: Any, caplog: pytest.LogCaptureFixture) -> None:
    dead = lease(client)
    dead.acquire(timeout=0)
    dead._stop.set()  # its process is gone: nobody renews
    dead.collection.modify(metadata={**dead._metadata(),
                                     "renewed": time.time() - LEASE_SECONDS - 1})
    taker = lease(client)
    taker.acquire(timeout=0)  # no wait
    assert "taking over the ingest lease" in caplog.text
    taker.check()
    with pytest.raises(LeaseLost, match="took over this ingest's lease"):
        dead.check()  # had it come back, it would stop before writing more
    dead.release()  # leaves the other's lease alone
    held = client.get_collection(lease_name("news-chunks")).metadata
    assert held["run"] == taker.run
    taker.release()
    assert lease_name("news-chunks") not in [c.name for c in client.list_collections()]


def test_a_lease_of_a_process_gone_from_this_machine_is_taken_over_at_once(
        client: Any) -> None:
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    killed = lease(client)
    killed.acquire(timeout=0)
    killed._stop.set()
    killed.collection.modify(metadata={**killed._metadata(), "pid": int(gone.stdout)})
    taker = lease(client)
    started = time.monotonic()
    taker.acquire(timeout=0)  # renewed just now, but its process is gone
    assert time.monotonic() - started < LEASE_SECONDS
    taker.release()


def test_a_collection_of_that_name_that_is_no_lease_is_never_deleted(client: Any) -> None:
    # Another store's collections may be named so ("assistant-news-ingest" of a corpus
    # folder "news-ingest" beside "news").
    other = client.create_collection(lease_name("news-chunks"))
    other.add(ids=["a"], embeddings=[[0.1, 0.2]], documents=["kept"])
    with pytest.raises(AssistantError, match="not this store's ingest lease"):
        lease(client).acquire(timeout=0)
    assert client.get_collection(lease_name("news-chunks")).count() == 1


def test_a_held_lease_is_renewed_in_the_background(client: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease_module, "RENEW_SECONDS", 0.1)
    held = lease(client)
    held.acquire(timeout=0)
    first = client.get_collection(lease_name("news-chunks")).metadata["renewed"]
    time.sleep(0.5)
    later = client.get_collection(lease_name("news-chunks")).metadata["renewed"]
    held.release()
    assert later > first


def test_lease_names_fit_chroma() -> None:
    name = lease_name("x" * 70)
    assert len(name) <= 63 and name.endswith("-ingest")
