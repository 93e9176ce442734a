"""One build (or gc) of a prefix at a time, whatever starts it: a lease object in S3.

``{prefix}/_lease.json`` holds the holder's run id, host, pid and expiry. It is created with
``If-None-Match: *``; an expired lease is taken over with ``If-Match`` on the ETag that was read;
a live one refuses the newcomer with :class:`BuildInProgressError` naming the holder. The holder
refreshes it (``If-Match`` on its own last ETag) from a daemon thread every ``ttl / 3`` and
releases it by writing a released record, again with ``If-Match``, so a holder that lost its
lease never clobbers the new holder's. A SIGKILLed holder stops refreshing: its lease expires
after at most ``ttl_s`` and the next build takes over.

Expiry compares the holder's and the newcomer's wall clocks: keep hosts NTP-synchronised and
``ttl_s`` well above any skew.
"""

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType

import orjson

from dataset_assets.core.errors import (
    DatasetError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
)
from dataset_assets.core.layout import lease_key
from dataset_assets.storage import S3ObjectStore

log = logging.getLogger(__name__)
_ATTEMPTS = 3


class BuildInProgressError(DatasetError):
    """Another build (or gc) holds the lease of this prefix; the message names it."""


@dataclass(frozen=True)
class LeaseRecord:
    """The content of the lease object (``expires_at``: Unix seconds; 0 = released)."""

    owner: str
    host: str
    pid: int
    expires_at: float
    token: str

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> "LeaseRecord | None":
        """The record, or None when the object is not a lease record (treated as expired)."""
        try:
            body = orjson.loads(data)
            return cls(
                owner=str(body["owner"]),
                host=str(body["host"]),
                pid=int(body["pid"]),
                expires_at=float(body["expires_at"]),
                token=str(body["token"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def live(self, now: float) -> bool:
        return self.expires_at > now

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        return f"{self.owner} on {self.host} (pid {self.pid}), lease expires {until}"


class BuildLease:
    """Context manager holding the build lease of ``prefix`` while a build (or gc) runs.

    Args:
        store: the bucket.
        prefix: dataset prefix (the lease is ``{prefix}/_lease.json``).
        owner: who holds it, e.g. the Dagster run id (shown to refused builds).
        ttl_s: lease lifetime without a refresh; a killed holder blocks others at most this long.
        heartbeat: refresh from a daemon thread every ``ttl_s / 3`` (False: the caller calls
            :meth:`refresh`).
        hold_after_exit: leaving the ``with`` block *without* an exception stops the heartbeat
            but keeps the lease until its expiry, so the next step of the same build (same
            ``owner``, possibly another process) takes it back before anyone else can start; the
            last step leaves with the default (release). An exception always releases.
        clock: wall clock in Unix seconds.

    A live lease held by the same ``owner`` is taken back (re-entry by a later step of the same
    build, or a rerun of it under the same owner id).

    Raises:
        BuildInProgressError: on entry, when a live lease is held by someone else.
    """

    def __init__(
        self,
        store: S3ObjectStore,
        prefix: str,
        owner: str,
        ttl_s: float = 300.0,
        *,
        heartbeat: bool = True,
        hold_after_exit: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.store = store
        self.key = lease_key(prefix)
        self.owner = owner
        self.ttl_s = ttl_s
        self.clock = clock
        self._heartbeat = heartbeat
        self._hold_after_exit = hold_after_exit
        self._token = uuid.uuid4().hex
        self._etag: str | None = None
        self._lost = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state ----------------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        return self._etag is not None and not self._lost

    @property
    def lost(self) -> bool:
        """True once a refresh found the lease taken over (the holder stalled past its ttl)."""
        return self._lost

    def ensure_held(self) -> None:
        """Raise BuildInProgressError unless this holder still owns the lease (call before a
        step that must not overlap another build, e.g. the commit)."""
        if not self.held:
            raise BuildInProgressError(
                f"build lease {self.store.uri(self.key)} is no longer held by {self.owner}"
            )

    def _record(self, expires_at: float) -> LeaseRecord:
        return LeaseRecord(self.owner, socket.gethostname(), os.getpid(), expires_at, self._token)

    # -- acquire --------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Create or take over the lease, then start the heartbeat."""
        for _ in range(_ATTEMPTS):
            if self._try_acquire():
                self._start_heartbeat()
                return
        raise BuildInProgressError(
            f"build lease {self.store.uri(self.key)}: lost the takeover race {_ATTEMPTS} times"
        )

    def _try_acquire(self) -> bool:
        data = self._record(self.clock() + self.ttl_s).to_json()
        try:
            self._etag = self.store.put_bytes(self.key, data, if_none_match=True).etag
            return True
        except PreconditionFailedError:
            pass
        try:
            current, info = self.store.read(self.key)
        except ObjectNotFoundError:
            return False  # deleted meanwhile: create again
        holder = LeaseRecord.from_json(current)
        mine = holder is not None and holder.owner == self.owner
        if holder is not None and holder.live(self.clock()) and not mine:
            raise BuildInProgressError(
                f"another build is in progress: {self.store.uri(self.key)} is held by "
                f"{holder.describe()}"
            )
        try:
            self._etag = self.store.put_bytes(self.key, data, if_match=info.etag).etag
        except PreconditionFailedError:
            return False  # someone else took it over first: look again
        if holder is not None and holder.expires_at > 0 and not mine:
            log.warning("took over the expired build lease of %s", holder.describe())
        return True

    # -- refresh --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Extend the lease by ``ttl_s``; a lease taken over meanwhile marks this one lost."""
        with self._lock:
            if not self.held:
                return
            data = self._record(self.clock() + self.ttl_s).to_json()
            try:
                self._etag = self.store.put_bytes(self.key, data, if_match=self._etag).etag
            except PreconditionFailedError:
                self._lost = True
                log.error("build lease %s was taken over; this build no longer holds it", self.key)

    def _start_heartbeat(self) -> None:
        if not self._heartbeat:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="build-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.refresh()
            except StorageError as exc:  # transient: the next beat retries before the ttl
                log.warning("build lease refresh failed, retrying: %s", exc)
            if self._lost:
                return

    def detach(self) -> None:
        """Stop refreshing without releasing: the lease stays until its expiry."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._etag = None

    # -- release --------------------------------------------------------------------------------

    def release(self) -> None:
        """Stop the heartbeat and mark the lease released (only if this holder still has it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._lost:
                log.warning(
                    "build lease %s was taken over by another build; not released", self.key
                )
            if not self.held:
                return
            data = self._record(0.0).to_json()
            try:
                self.store.put_bytes(self.key, data, if_match=self._etag)
            except PreconditionFailedError:
                log.warning("build lease %s is held by another build; not released", self.key)
            self._etag = None

    def __enter__(self) -> "BuildLease":
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._hold_after_exit and exc_type is None:
            self.detach()
        else:
            self.release()
