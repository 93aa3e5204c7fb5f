"""The ingest lease on a Chroma server: one machine at a time writes a shared store.

The ingest lock (:meth:`assistant.layout.StoreLayout.ingest_lock`) is a file in one store
directory: it keeps two processes of one machine from writing at once, not two machines
pointed at the same ``chroma run`` server. On a server the lease does: an empty collection
named after the store (``<collection>-ingest``) whose metadata says which run holds it, on
which host, and when it last renewed it.

- Taking it is creating that collection, which the server does for one caller only ("already
  exists" for the others). A machine that finds it held waits, up to the same
  ``lock_timeout`` as the lock, then stops with an error that names the holder.
- The holder renews it every :data:`RENEW_SECONDS` (a background thread) and before each
  group of writes (:meth:`Lease.check`); a lease not renewed for :data:`LEASE_SECONDS` is a
  killed run's, and the next ingest deletes it and takes its own.
- Renewing looks whether the collection of that name is still the one this run created:
  when another machine has taken over the lease (it judged it expired), it is not, and the
  run stops before writing more. What it wrote is then in the state a killed run leaves,
  which the next ingest finishes (:func:`assistant.ingest.ingest`).

An embedded store needs no lease (:class:`NoLease`): only its own directory's lock.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Protocol

from assistant.settings import AssistantError

LEASE_SECONDS = 120.0
"""A lease not renewed for this long (by the clock of the machine that looks) is a killed
run's and may be taken over; machines sharing a server must agree on the time within it."""
RENEW_SECONDS = 10.0
"""How often the holder renews its lease while it ingests."""
POLL_SECONDS = 0.5
"""How often a waiting machine looks whether the lease is free."""
log = logging.getLogger(__name__)


def lease_name(collection: str) -> str:
    """The lease collection of the store whose collections are named ``collection``
    (Chroma names are at most 63 characters)."""
    return collection[: 63 - len("-ingest")].rstrip("-._") + "-ingest"


class IngestLease(Protocol):
    """What an ingest holds while it writes: :meth:`check` raises once it is lost."""

    def check(self) -> None:
        """Raise :class:`LeaseLost` when another machine holds the lease now."""


class LeaseLost(AssistantError):
    """Another machine took over this run's lease: the run must stop writing."""


class NoLease:
    """The lease of a store no other machine writes (embedded): never lost."""

    def check(self) -> None:
        """Nothing to check."""


class Lease:
    """The held ingest lease of a store on a Chroma server (see the module's docstring)."""

    def __init__(self, client: Any, name: str, where: str) -> None:
        self.client = client
        self.name = name
        self.where = where  # the server, for messages
        self.run = uuid.uuid4().hex
        self.collection: Any = None
        self._started = time.time()
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back ---------------------------------------------------------
    def acquire(self, timeout: float) -> None:
        """Take the lease, waiting up to ``timeout`` seconds while another live run holds
        it; AssistantError (naming the holder) when it is still held then."""
        deadline = time.monotonic() + timeout
        while True:
            if self._create():
                break
            held = self._holder()
            if held is None:
                continue  # given back meanwhile: try again at once
            age = time.time() - _number(held.get("renewed"))
            if age > LEASE_SECONDS:
                log.warning("taking over the ingest lease of %s, not renewed for %.0f s "
                            "(a killed run's)", _describe(held), age)
                self._delete_named()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssistantError(
                    f"another ingest is writing this store on the Chroma server at "
                    f"{self.where} ({_describe(held)}, renewed {age:.0f} s ago); waited "
                    f"{timeout:g} s: run the ingest again once it has finished")
            time.sleep(min(POLL_SECONDS, left))
        self._thread = threading.Thread(target=self._renew_loop, name="ingest-lease",
                                        daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete the lease, if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._lost or self.collection is None:
            return
        held = self._holder()
        if held is not None and held.get("run") == self.run:
            self._delete_named()

    # -- holding ----------------------------------------------------------------------------
    def check(self) -> None:
        """Renew the lease now; :class:`LeaseLost` when another machine holds it. A failure
        to reach the server is only logged: the writes that follow report it."""
        try:
            self._renew()
        except Exception as exc:
            log.warning("could not renew the ingest lease: %s", exc)
        if self._lost:
            raise LeaseLost(
                f"another ingest took over this ingest's lease on the Chroma server at "
                f"{self.where}; stopped before writing more: run the ingest again once it "
                "has finished")

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_SECONDS) and not self._lost:
            try:
                self._renew()
            except Exception as exc:  # a passing network failure: the next try may work
                log.warning("could not renew the ingest lease: %s", exc)

    def _renew(self) -> None:
        if self._lost:
            return
        try:
            self.collection.modify(metadata=self._metadata())  # by the collection's id
        except Exception as exc:
            if type(exc).__name__ != "NotFoundError":
                raise
            self._lost = True
            return
        # A lease deleted and taken by another machine is another collection of that name
        # (a server refuses to modify a deleted one; an embedded client ignores it).
        now = self._named()
        self._lost = now is None or now.id != self.collection.id

    # -- the server -------------------------------------------------------------------------
    def _metadata(self) -> dict[str, Any]:
        return {"run": self.run, "host": socket.gethostname(),
                "pid": os.getpid(), "started": self._started, "renewed": time.time()}

    def _create(self) -> bool:
        """Create the lease collection: True when this call made it (the lease is held)."""
        self._started = time.time()
        try:
            self.collection = self.client.create_collection(
                self.name, metadata=self._metadata(), embedding_function=None)
        except Exception as exc:
            if "already exists" not in str(exc):
                raise
            return False
        return True

    def _named(self) -> Any:
        """The lease collection as it is now (None: nobody holds the lease)."""
        try:
            return self.client.get_collection(self.name, embedding_function=None)
        except Exception as exc:
            if type(exc).__name__ != "NotFoundError":
                raise
            return None

    def _holder(self) -> dict[str, Any] | None:
        """The metadata of the lease as it is now (None: nobody holds it)."""
        col = self._named()
        return None if col is None else dict(col.metadata or {})

    def _delete_named(self) -> None:
        try:
            self.client.delete_collection(self.name)
        except Exception as exc:
            if type(exc).__name__ != "NotFoundError":
                raise


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _describe(held: dict[str, Any]) -> str:
    started = _number(held.get("started"))
    since = dt.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S") if started \
        else "an unknown time"
    return f"run on {held.get('host', '?')}, pid {held.get('pid', '?')}, since {since}"

