"""Inter-process locks that a dead holder cannot keep: the run-directory lock and the disk cache's
eviction/clear lock, one rule for both.

The lock is the kernel's (``flock`` through the ``filelock`` package's ``FileLock``): the kernel
drops it when its holder process dies, however it dies (``SIGKILL``, a node that went down with
its NFS lease), so a lock whose holder died is free again on any host, and a live holder is never
overridden (there is no age or pid guess involved). The lock file stays in place when released
(waiters share one inode; deleting it would let two processes lock two different files).

Who holds a lock is written beside it (``<lock>.owner``: pid, host, start time, JSON), only to
name the holder in the refusal; it is never used to decide anything, so a record left by a dead
process, on this host or another, does not block.

Where the filesystem offers no ``flock`` (some FUSE mounts), ``filelock`` falls back to its own
soft lock file; a dead holder's soft lock is not taken over on another host there (see
docs/scale-out.md).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time

from .errors import AttrtoolsError

OWNER_SUFFIX = ".owner"


class LockBusy(AttrtoolsError):
    """A live process holds the lock. ``holder``: its owner record (``{}`` when unknown)."""

    def __init__(self, path: str, holder: dict):
        self.path, self.holder = path, holder
        who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
        super().__init__(f"{path} is held by {who}")


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


def acquire(path: str, wait: bool = False):
    """Take the lock file ``path`` (created if missing, mode ``0666 & ~umask``) and record this
    process as its owner. ``wait``: block until it is free; otherwise one attempt, raising
    ``LockBusy`` (naming the owner) when a live process holds it. Returns the ``filelock`` lock;
    pass it to :func:`release`. ``OSError`` when the folder cannot be written."""
    from filelock import FileLock, Timeout

    lock = FileLock(path, timeout=-1 if wait else 0, mode=0o666 & ~_umask())
    try:
        lock.acquire()
    except Timeout:
        holder = owner(path)
        if not holder:  # being written this instant by the new holder
            time.sleep(0.05)
            holder = owner(path)
        raise LockBusy(path, holder) from None
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        tmp = f"{path}{OWNER_SUFFIX}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(record))
        os.replace(tmp, path + OWNER_SUFFIX)
    except BaseException:
        lock.release()
        raise
    return lock


def release(lock) -> None:
    """Release a lock from :func:`acquire` (idempotent); its owner record goes first."""
    if lock is None or not lock.is_locked:
        return
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
