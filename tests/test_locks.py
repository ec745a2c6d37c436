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
