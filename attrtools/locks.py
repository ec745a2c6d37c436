"""Inter-process locks that a dead holder cannot keep: the run-directory lock and the disk cache's
eviction/clear lock, one rule for both (:func:`acquire`).

Two checks, both needed to take a lock:

1. **The kernel's lock** (``flock`` through the ``filelock`` package's ``FileLock``): the kernel
   drops it when its holder dies, however it dies (``SIGKILL``, a node that went down and lost its
   NFSv4 lease). The lock file stays in place when released (waiters share one inode; deleting it
   would let two processes lock two different files).
2. **A lease with a heartbeat**, for filesystems where ``flock`` does not reach across nodes (it is
   a silent no-op, or node-local, on some Lustre, GPFS and NFS mounts): the holder writes its owner
   record (``<lock>.owner``: pid, host, start and heartbeat times, JSON) when it takes the lock and
   refreshes the heartbeat every ``lease / 4`` seconds from a daemon thread. A record left by
   another process is obeyed only while it is live: on this host, while its pid is alive; on
   another host, while its heartbeat is younger than the lease (``$ATTRTOOLS_LOCK_LEASE``, default
   60 s; clocks of the nodes must agree to well within it).

So a live holder is never overridden (its kernel lock or its fresh heartbeat stops the taker), and
a holder that died is taken over on any host: at once on the same host or where ``flock`` works
across nodes and the record is stale; after at most one lease otherwise (a job requeued on another
node within a minute of the crash is told how long to wait).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from .errors import AttrtoolsError

OWNER_SUFFIX = ".owner"
LEASE_ENV = "ATTRTOOLS_LOCK_LEASE"
DEFAULT_LEASE = 60.0


class LockBusy(AttrtoolsError):
    """A live process holds the lock. ``holder``: its owner record (``{}`` when unknown);
    ``wait``: seconds until its lease runs out without a heartbeat (None: held by the kernel)."""

    def __init__(self, path: str, holder: dict, wait: float | None = None):
        self.path, self.holder, self.wait = path, holder, wait
        who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
        super().__init__(f"{path} is held by {who}")


def lease() -> float:
    """The lease in seconds (``$ATTRTOOLS_LOCK_LEASE``, default 60)."""
    try:
        value = float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE)
    except ValueError:
        value = DEFAULT_LEASE
    return value if value > 0 else DEFAULT_LEASE


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def owner(path: str) -> dict:
    """The owner record written beside the lock file ``path`` ({} when absent or unreadable)."""
    try:
        with open(path + OWNER_SUFFIX, encoding="utf-8") as f:
            record = json.loads(f.read() or "{}")
    except (OSError, ValueError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_for(record: dict, now: float | None = None) -> float | None:
    """None when the owner ``record`` binds no one (absent, this process, a dead pid on this host,
    a heartbeat older than the lease on another host); else the seconds it stays live without a
    new heartbeat (0 for a live pid on this host: as long as it lives)."""
    if not record or record.get("pid") == os.getpid() and record.get("host") == socket.gethostname():
        return None
    if record.get("host") == socket.gethostname():
        return 0.0 if _pid_alive(record.get("pid")) else None
    beat = record.get("heartbeat", record.get("started"))
    if not isinstance(beat, (int, float)):
        return None
    left = float(beat) + lease() - (time.time() if now is None else now)
    return left if left > 0 else None


def _write_owner(path: str, record: dict) -> None:
    tmp = f"{path}{OWNER_SUFFIX}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(record))
    os.replace(tmp, path + OWNER_SUFFIX)


class _Heartbeat(threading.Thread):
    """Refreshes the owner record's heartbeat every ``lease / 4`` seconds until stopped."""

    def __init__(self, path: str, record: dict):
        super().__init__(name="attrtools-lock-heartbeat", daemon=True)
        self.path, self.record, self.stopped = path, record, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(lease() / 4):
            if owner(self.path).get("pid") != os.getpid():
                return  # taken over (our lease ran out while we were stopped): never write it back
            with contextlib.suppress(OSError):
                _write_owner(self.path, dict(self.record, heartbeat=time.time()))


def acquire(path: str, wait: bool = False):
    """Take the lock file ``path`` (created if missing, mode ``0666 & ~umask``): the kernel's lock,
    then the lease (see the module docstring), then record this process as the owner and start its
    heartbeat. ``wait``: poll until it is free; otherwise one attempt, raising ``LockBusy`` (naming
    the owner, and how long its lease lasts) when a live process holds it. Returns a handle for
    :func:`release`. ``OSError`` when the folder cannot be written."""
    from filelock import FileLock, Timeout

    lock = FileLock(path, timeout=-1 if wait else 0, mode=0o666 & ~_umask())
    while True:
        try:
            lock.acquire()
        except Timeout:
            holder = owner(path)
            if not holder:  # being written this instant by the new holder
                time.sleep(0.05)
                holder = owner(path)
            raise LockBusy(path, holder) from None
        holder = owner(path)
        left = live_for(holder)
        if left is None:
            break
        lock.release()  # the kernel let us in, but a live holder's record says otherwise
        if not wait:
            raise LockBusy(path, holder, wait=left or None)
        time.sleep(min(max(left, 0.05), 1.0))
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        record["heartbeat"] = record["started"]
        _write_owner(path, record)
    except BaseException:
        lock.release()
        raise
    beat = _Heartbeat(path, record)
    beat.start()
    lock.attrtools_heartbeat = beat
    return lock


def release(lock) -> None:
    """Release a lock from :func:`acquire` (idempotent): the heartbeat stops, the owner record goes,
    then the kernel's lock."""
    if lock is None or not lock.is_locked:
        return
    beat = getattr(lock, "attrtools_heartbeat", None)
    if beat is not None:
        beat.stopped.set()
        beat.join()
    with contextlib.suppress(OSError):
        if owner(lock.lock_file).get("pid") == os.getpid():
            os.unlink(lock.lock_file + OWNER_SUFFIX)
    lock.release()


@contextlib.contextmanager
def held(path: str, wait: bool = True):
    """``with held(path):`` -- :func:`acquire` (waiting by default) and :func:`release`."""
    lock = acquire(path, wait=wait)
    try:
        yield lock
    finally:
        release(lock)
