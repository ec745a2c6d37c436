"""Locks a dead holder cannot keep (``attrtools.locks``): the run directory's and the disk cache's.
A live holder is never overridden, whatever its owner record says; a holder that died (killed, or
recorded on another host: a SLURM job requeued on another node) is taken over without anyone
deleting a file."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from attrtools import locks, rundir
from attrtools.cache import AttributionCache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER = """
import sys, time
from attrtools import locks, rundir
if sys.argv[2] == "run":
    held = rundir.prepare(sys.argv[1], "attribute", {"n": 1})
else:
    held = locks.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def _holder(target, kind):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target), kind], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline().strip()
    if line != "locked":
        proc.kill()
        raise AssertionError(proc.stderr.read()[-2000:])
    return proc


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_run_dir_live_holder_refused_killed_holder_taken_over(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out, "run")
    try:
        with pytest.raises(rundir.RunDirBusy) as busy:
            rundir.prepare(str(out), "attribute", {"n": 1})
        assert f"pid {proc.pid} on {socket.gethostname()}" in str(busy.value)
        # an owner record rewritten to name another host changes nothing: the holder is alive
        (out / (rundir.LOCK_FILE + locks.OWNER_SUFFIX)).write_text(json.dumps({"pid": 4242, "host": "node-b"}))
        with pytest.raises(rundir.RunDirBusy, match="pid 4242 on node-b"):
            rundir.prepare(str(out), "attribute", {"n": 1})
    finally:
        _kill(proc)
    assert (out / rundir.LOCK_FILE).exists()  # the dead holder could not clean up ...
    run = rundir.prepare(str(out), "attribute", {"n": 1})  # ... and its lock is free all the same
    assert run.resumed  # the same run: its folder is resumed
    owner = locks.owner(str(out / rundir.LOCK_FILE))
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    run.close()
    assert locks.owner(str(out / rundir.LOCK_FILE)) == {}  # released: no owner recorded


def test_run_dir_holder_recorded_on_another_host_is_taken_over(tmp_path):
    """A job killed on node A and requeued on node B: the folder holds A's lock and owner record
    (an older attrtools wrote the record into the lock file itself); B resumes the run."""
    out = tmp_path / "run"
    first = rundir.prepare(str(out), "attribute", {"n": 1})
    first.close()
    record = json.dumps({"pid": 1, "host": "node-a.cluster", "started": 0})  # pid 1 is alive here
    (out / rundir.LOCK_FILE).write_text(record)
    (out / (rundir.LOCK_FILE + locks.OWNER_SUFFIX)).write_text(record)
    again = rundir.prepare(str(out), "attribute", {"n": 1})
    assert again.resumed and locks.owner(str(out / rundir.LOCK_FILE))["host"] == socket.gethostname()
    # while it is held, a second writer is refused (in this process too)
    with pytest.raises(rundir.RunDirBusy, match=f"pid {os.getpid()}"):
        rundir.prepare(str(out), "attribute", {"n": 1})
    again.close()
    assert sorted(os.listdir(out)) == sorted([rundir.CONFIG_FILE, rundir.LOCK_FILE])


def test_cache_lock_killed_holder_taken_over(tmp_path):
    cache = AttributionCache(tmp_path / "c", memory_bytes=0)
    cache.put("a" * 64, __import__("torch").ones(3))
    lock_path = os.path.join(cache.directory, ".lock")
    proc = _holder(lock_path, "cache")
    try:
        with pytest.raises(locks.LockBusy, match=f"pid {proc.pid}"):
            locks.acquire(lock_path, wait=False)
    finally:
        _kill(proc)
    assert cache.evict(0) == 1  # _exclusive() took the dead holder's lock without waiting
    assert cache.clear() == 0 and locks.owner(lock_path) == {}


def test_lease_binds_a_holder_on_another_host_while_its_heartbeat_is_fresh(tmp_path, monkeypatch):
    """Where flock does not reach across nodes (the kernel lets us in), the owner record's
    heartbeat still stops us while it is younger than the lease; an older one is a dead holder's."""
    import time

    monkeypatch.setenv(locks.LEASE_ENV, "60")
    out = tmp_path / "run"
    rundir.prepare(str(out), "attribute", {"n": 1}).close()
    record_path = out / (rundir.LOCK_FILE + locks.OWNER_SUFFIX)
    now = time.time()
    record_path.write_text(json.dumps({"pid": 77, "host": "node-b", "started": now - 600, "heartbeat": now - 15}))
    with pytest.raises(rundir.RunDirBusy, match=r"pid 77 on node-b; taken over if it sends no heartbeat for "
                                                r"(4[4-5]) s more"):
        rundir.prepare(str(out), "attribute", {"n": 1})
    assert locks.live_for({"pid": 77, "host": "node-b", "heartbeat": now - 15}, now=now) == pytest.approx(45)
    record_path.write_text(json.dumps({"pid": 77, "host": "node-b", "started": now - 600, "heartbeat": now - 61}))
    run = rundir.prepare(str(out), "attribute", {"n": 1})  # its lease ran out: a dead holder's record
    assert run.resumed and locks.owner(str(out / rundir.LOCK_FILE))["pid"] == os.getpid()
    run.close()
    # on this host the pid decides: alive binds (however old the heartbeat), dead does not
    assert locks.live_for({"pid": os.getppid(), "host": socket.gethostname(), "heartbeat": 0}) == 0.0
    assert locks.live_for({"pid": 2 ** 22 + 1, "host": socket.gethostname(), "heartbeat": time.time()}) is None


def test_holder_heartbeat_is_refreshed_until_release(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv(locks.LEASE_ENV, "0.4")  # a beat every 0.1 s
    path = str(tmp_path / "x.lock")
    lock = locks.acquire(path)
    first = locks.owner(path)
    assert first["pid"] == os.getpid() and first["heartbeat"] == first["started"]
    deadline = time.time() + 30
    while locks.owner(path).get("heartbeat") == first["heartbeat"] and time.time() < deadline:
        time.sleep(0.05)
    later = locks.owner(path)
    assert later["heartbeat"] > first["heartbeat"] and later["started"] == first["started"]
    locks.release(lock)
    assert locks.owner(path) == {} and not lock.attrtools_heartbeat.is_alive()
