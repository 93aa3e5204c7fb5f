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
  group of writes (:meth:`Lease.check`). A lease not renewed for :data:`LEASE_SECONDS`, or
  held by a process of this machine that no longer runs, is a killed run's: the next ingest
  deletes it (only while it is still that lease, by its id) and takes its own, which it
  trusts after :data:`SETTLE_SECONDS` (another machine that judged it dead at the same
  moment may have taken it instead).
- The lease's metadata names its store (``lease_of``): a collection of that name that is not
  this store's lease (another store's collections may be so named) is never deleted; the
  ingest stops and asks for it to be renamed.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from assistant.settings import AssistantError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

LEASE_SECONDS = 120.0
"""A lease not renewed for this long (by the clock of the machine that looks) is a killed
run's and may be taken over; machines sharing a server must agree on the time within it."""
RENEW_SECONDS = 10.0
"""How often the holder renews its lease while it ingests."""
POLL_SECONDS = 0.5
"""How often a waiting machine looks whether the lease is free."""
SETTLE_SECONDS = 1.0
"""How long a run that took over a dead run's lease waits before it trusts it: another
machine that judged it dead at the same moment deletes and creates within this time."""
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

    def __init__(self, client: ClientAPI, store: str, where: str) -> None:
        self.client = client
        self.store = store  # the store's collection name: the lease says whose it is
        self.name = lease_name(store)
        self.where = where  # the server, for messages
        self.run = uuid.uuid4().hex
        self.collection: Collection | None = None
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
            col = self._named()
            held = None if col is None else dict(col.metadata or {})
            if held is not None and held.get("lease_of") != self.store:
                raise AssistantError(
                    f"the collection {self.name!r} on the Chroma server is not this store's "
                    "ingest lease; rename it")
            if held is not None and (why := _dead(held)):
                # Deleted only while it is still the lease judged dead (by its id), then
                # taken: a run that took it meanwhile is left alone.
                now = self._named()
                if now is not None and now.id == col.id:
                    log.warning("taking over the ingest lease of %s (%s)", _describe(held), why)
                    self._delete_named()
                    if self._create() and self._settled():
                        break
            left = deadline - time.monotonic()
            if held is not None and left <= 0:
                age = time.time() - _number(held.get("renewed"))
                raise AssistantError(
                    f"another ingest is writing this store on the Chroma server at "
                    f"{self.where} ({_describe(held)}, renewed {age:.0f} s ago); waited "
                    f"{timeout:g} s: run the ingest again once it has finished")
            time.sleep(max(0.0, min(POLL_SECONDS, left)) if held is not None else 0.0)
        self._thread = threading.Thread(target=self._renew_loop, name="ingest-lease",
                                        daemon=True)
        self._thread.start()

    def _settled(self) -> bool:
        """After taking over a dead run's lease: True when no other machine that judged it
        dead at the same time took it from this run (they delete and create within
        :data:`SETTLE_SECONDS` of looking)."""
        time.sleep(SETTLE_SECONDS)
        self._renew()
        return not self._lost

    def release(self) -> None:
        """Stop renewing and delete the lease, if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RENEW_SECONDS)
        if self._lost or self.collection is None:
            return
        now = self._named()
        if now is not None and now.id == self.collection.id:
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
        failed: Exception | None = None
        try:
            self.collection.modify(metadata=self._metadata())  # by the collection's id
        except Exception as exc:
            if type(exc).__name__ == "NotFoundError":
                self._lost = True
                return
            failed = exc
        # A lease deleted and taken by another machine is another collection of that name
        # (a server refuses to modify a deleted one; an embedded client ignores it).
        now = self._named()
        self._lost = now is None or now.id != self.collection.id
        if failed is not None:
            raise failed

    # -- the server -------------------------------------------------------------------------
    def _metadata(self) -> dict[str, Any]:
        return {"lease_of": self.store, "run": self.run, "host": socket.gethostname(),
                "boot": BOOT_ID, "pid": os.getpid(), "started": self._started,
                "renewed": time.time()}

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
        self._lost = False
        return True

    def _named(self) -> Collection | None:
        """The lease collection as it is now (None: nobody holds the lease)."""
        try:
            return self.client.get_collection(self.name, embedding_function=None)
        except Exception as exc:
            if type(exc).__name__ != "NotFoundError":
                raise
            return None

    def _delete_named(self) -> None:
        try:
            self.client.delete_collection(self.name)
        except Exception as exc:
            if type(exc).__name__ != "NotFoundError":
                raise


def _boot_id() -> str:
    """This machine's boot (Linux); '' where unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


BOOT_ID = _boot_id()


def _dead(held: dict[str, Any]) -> str:
    """Why the holder of a lease with metadata ``held`` is gone ('' when it may be alive):
    not renewed for :data:`LEASE_SECONDS`, or a process of this machine's boot that no
    longer runs (a run killed here is taken over at once)."""
    age = time.time() - _number(held.get("renewed"))
    if age > LEASE_SECONDS:
        return f"not renewed for {age:.0f} s: a killed run's"
    pid = held.get("pid")
    if BOOT_ID and held.get("boot") == BOOT_ID and isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"process {pid} of this machine is gone"
        except OSError:
            return ""
    return ""


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _describe(held: dict[str, Any]) -> str:
    started = _number(held.get("started"))
    since = dt.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S") if started \
        else "an unknown time"
    return f"run on {held.get('host', '?')}, pid {held.get('pid', '?')}, since {since}"

