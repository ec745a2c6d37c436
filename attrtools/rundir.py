"""Run directories that never mix runs: resume only the same run, refuse (or ``overwrite``) another,
refuse a second concurrent writer, and publish whole folders atomically.

``prepare(path, command, config, overwrite=False) -> RunDir``, called before any output is written
(and before the model loads, so an unwritable folder fails in seconds):

- the folder is created (or must be a folder) and must be writable;
- the lock file ``.attrtools-run.lock`` is taken by ``attrtools.locks`` (the kernel's lock through
  ``filelock``, and a lease with a heartbeat in ``.attrtools-run.lock.owner``): while another live
  process holds it, the run is refused (``RunDirBusy``, naming its pid and host); a lock whose
  holder died is taken over whichever host it died on (a job requeued on another node resumes),
  and a live holder is never overridden; it is released when the process exits (``atexit``, or by
  the kernel when killed) or on ``RunDir.close()``. The lock file itself stays in the folder;
- ``run_config.json`` from an earlier run is compared with ``config`` (minus volatile settings:
  ``argv``, device, batch size, cache folder, progress, the launcher's world size): equal, the run resumes in place (its
  outputs are rewritten, the attribution cache spares the work); different, it is refused with
  the settings that differ (``RunDirMismatch``) unless ``overwrite``, which empties the folder
  first so no file of the old run survives. A folder holding nothing but ``run_config.json`` (a
  run that stopped before any output, e.g. on an option checked once the model had loaded) is
  taken over by the new configuration without ``overwrite``: nothing computed is lost. A non-empty folder without ``run_config.json`` is not
  a run directory and is never emptied.

``config`` should identify the run: the tool settings, ``model_identity(name)`` (a digest of a
local model folder's config, tokenizer and weight files, or the hub id) and
``data_identity(examples)`` (a digest of every example's text, pair and label).

``publish_dir(final)`` builds a folder aside (``.tmp-<name>-*`` next to ``final``) and renames it
into place only when complete (``save_pruned`` uses it), so a crash never leaves a half-written
folder under the final name.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile

from . import locks
from .errors import AttrtoolsError

CONFIG_FILE = "run_config.json"
LOCK_FILE = ".attrtools-run.lock"
LOCK_FILES = (LOCK_FILE, LOCK_FILE + locks.OWNER_SUFFIX)  # the lock and its owner record: not run outputs
VOLATILE = frozenset({"argv", "device", "batch_size", "eval_batch_size", "cache_dir", "no_cache", "use_cache", "progress",
                      "output_dir", "overwrite", "created", "command_line",
                      # how many processes ran it: the plan is rebuilt from what the cache lacks and the
                      # outputs do not depend on the partition, so a job may resume with another number
                      "world_size",
                      # derived from the model when it loads (cli_kit.record_input_rule), not asked for
                      "max_length_used", "max_length_option", "position_limit", "tokenizer_limit",
                      "max_length_by_model"})


class RunDirError(AttrtoolsError, ValueError):
    """A run directory that cannot be used as asked; the message says what to do (exit 1)."""


class RunDirMismatch(RunDirError):
    """The folder holds a run of another configuration (and ``overwrite`` was not given): exit 2."""

    exit_code = 2


class RunDirBusy(RunDirError):
    """Another live process is writing into the folder."""


class RunDirNotWritable(RunDirError):
    """The folder cannot be created or written (read-only, a file, no space)."""


def _digest_file(digest, path: str, chunk: int = 1 << 20) -> None:
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            digest.update(block)


def model_identity(name_or_path: str) -> str:
    """A digest identifying a model before it loads: for a local folder, sha256 over its config,
    tokenizer files and weight files (name, size and content of the small files; name, size and
    modification time of weight files, which are rewritten whenever the weights change); for a hub
    id, the id itself."""
    path = os.fspath(name_or_path)
    if not os.path.isdir(path):
        return f"id:{path}"
    digest = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if not os.path.isfile(full) or name.startswith("."):
            continue
        st = os.stat(full)
        digest.update(f"{name}\0{st.st_size}\0".encode())
        if st.st_size <= 16 * 2 ** 20:
            _digest_file(digest, full)
        else:
            digest.update(str(st.st_mtime_ns).encode())
    return "sha256:" + digest.hexdigest()


def data_identity(examples) -> str:
    """sha256 over every example's (text, text_pair, label, id), in order."""
    digest = hashlib.sha256()
    count = 0
    for e in examples:
        row = [getattr(e, "text", e), getattr(e, "text_pair", None), getattr(e, "label", None), getattr(e, "id", None)]
        digest.update(json.dumps(row, default=str).encode() + b"\n")
        count += 1
    return f"{count}:{digest.hexdigest()}"


def data_file_identity(path: str) -> str:
    """sha256 of a local data file's bytes."""
    digest = hashlib.sha256()
    _digest_file(digest, path)
    return "sha256:" + digest.hexdigest()


def identity(config: dict) -> dict:
    """The part of a run configuration that decides whether two runs are the same run."""
    return {k: v for k, v in config.items() if k not in VOLATILE}


def _normal(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class RunDir:
    """A locked run directory (see the module docstring). ``path``: the folder; ``resumed``:
    whether an earlier run of the same configuration was found there."""

    def __init__(self, path: str, resumed: bool, lock):
        self.path = path
        self.resumed = resumed
        self._lock = lock
        self._closed = False
        atexit.register(self.close)

    def __fspath__(self):
        return self.path

    def __str__(self):
        return self.path

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        locks.release(self._lock)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _take_lock(path: str):
    """The run directory's lock (``attrtools.locks``); ``RunDirBusy`` while a live process holds it."""
    lock = os.path.join(path, LOCK_FILE)
    try:
        return locks.acquire(lock, wait=False)
    except locks.LockBusy as busy:
        holder = busy.holder
        who = f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "another process"
        if busy.wait:  # known only by its heartbeat (another host): dead if it stops beating
            who += f"; taken over if it sends no heartbeat for {busy.wait:.0f} s more"
        raise RunDirBusy(f"{path} is in use by another attrtools run ({who}); wait for it, or choose another "
                         "--output-dir") from None
    except PermissionError:
        raise RunDirNotWritable(f"cannot write into {path}: permission denied") from None
    except OSError as err:
        raise RunDirNotWritable(f"cannot write into {path}: {err.strerror or err}") from None


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def _empty(path: str, keep: tuple) -> None:
    for entry in os.scandir(path):
        if entry.name in keep:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _holds_nothing_computed(path: str) -> bool:
    """Whether the folder holds only a run's ``run_config.json`` (and the lock): a run that stopped
    before writing any output, e.g. one that refused an option after its model loaded."""
    return all(e.name in (CONFIG_FILE, *LOCK_FILES) for e in os.scandir(path))


def prepare(path: str, command: str, config: dict, overwrite: bool = False) -> RunDir:
    """Create or reopen the run directory ``path`` for ``command`` with ``config`` and lock it;
    write ``run_config.json``. Raises ``RunDirNotWritable``, ``RunDirBusy``, ``RunDirMismatch``."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirNotWritable(f"--output-dir {path} is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise RunDirNotWritable(f"cannot create the run directory {path}: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirNotWritable(f"cannot write into {path}: permission denied")
    lock = _take_lock(path)
    try:
        record = _normal({"command": command, **config})
        config_path = os.path.join(path, CONFIG_FILE)
        resumed = False
        if os.path.exists(config_path):
            try:
                with open(config_path, encoding="utf-8") as f:
                    stored = json.loads(f.read())
                if not isinstance(stored, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError, RecursionError):
                stored = {"unreadable": True}
            differ = _differences(identity(stored), identity(record))
            if not differ:
                resumed = True
            elif overwrite or _holds_nothing_computed(path):
                _empty(path, keep=LOCK_FILES)
            else:
                shown = ", ".join(differ[:6]) + (" ..." if len(differ) > 6 else "")
                raise RunDirMismatch(
                    f"{path} holds another run ({stored.get('command', '?')}; differs in: {shown}); "
                    "use --overwrite to replace it, or choose another --output-dir")
        else:
            others = [e.name for e in os.scandir(path) if e.name not in LOCK_FILES]
            if others:
                raise RunDirMismatch(
                    f"{path} is not empty and holds no {CONFIG_FILE} (not an attrtools run directory): choose a new "
                    "or empty --output-dir")
        from .io import write_json

        write_json(config_path, {**record, "argv": sys.argv[1:]})
    except BaseException:
        locks.release(lock)
        raise
    return RunDir(path, resumed, lock)


@contextlib.contextmanager
def publish_dir(final: str):
    """Yield a fresh folder next to ``final``; when the block succeeds, it replaces ``final`` by
    renames (an existing ``final`` is moved aside first and deleted after), so ``final`` is always
    either the old complete folder or the new complete one. On error the new folder is removed."""
    final = os.path.abspath(os.fspath(final))
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(final) and not os.path.isdir(final):
        raise RunDirNotWritable(f"{final} is a file, not a folder")
    building = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(final)}-", dir=parent)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(building, 0o777 & ~mask)  # mkdtemp makes 0700; the published folder gets the usual mode
    try:
        yield building
        old = None
        if os.path.exists(final):
            old = tempfile.mkdtemp(prefix=f".old-{os.path.basename(final)}-", dir=parent)
            os.rmdir(old)
            os.rename(final, old)
        os.rename(building, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
