"""Running one attrtools job as several processes: PyTorch's own distributed layer.

The same CLI runs unchanged under a launcher that sets the usual environment variables:

- ``torchrun --nnodes N --nproc_per_node K -m attrtools <command> ...`` (sets ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``);
- ``accelerate launch [--cpu] --num_processes K -m attrtools <command> ...`` (multi-process
  launches go through torchrun and set the same variables);
- under SLURM, ``srun torchrun ...`` (one torchrun per node, see docs/scale-out.md).

``world()`` reads rank, world size and local rank from that environment without importing torch;
``init()`` joins the process group only when ``WORLD_SIZE > 1`` (gloo on CPU, NCCL when CUDA is
available, one device per rank: ``cuda:LOCAL_RANK`` modulo the visible device count). Without a
launcher every function here is a cheap no-op and the single-process path is untouched.

How the work is split: every rank builds the same plan of batches (the engine's), and
``assign(costs, world_size)`` gives each batch to a rank, longest-processing-time first over the
batches' estimated costs (ties broken by batch index, so the assignment depends on nothing but the
costs: not on ``PYTHONHASHSEED``, dict order or timing). The cache is where results meet; small
statistics travel through ``all_gather`` and a counter in the launcher's key-value store.
"""
from __future__ import annotations

import contextlib
import heapq
import os
import time
from dataclasses import dataclass
from typing import Sequence

ENV_TIMEOUT = "ATTRTOOLS_DIST_TIMEOUT"  # seconds a collective may wait (default 3 hours)


from .errors import DistributedError  # noqa: E402,F401  (defined in errors.py; importable from here as before)


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launcher: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r} is not an integer") from None


def world() -> World:
    """Rank, world size and local rank from the launcher's environment (torch not imported).

    torchrun and ``accelerate launch`` both set ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; without
    them this is rank 0 of 1. Raises ``DistributedError`` on inconsistent values."""
    size = _int_env("WORLD_SIZE", 1)
    rank = _int_env("RANK", 0)
    local = _int_env("LOCAL_RANK", rank if size > 1 else 0)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise DistributedError(f"launcher environment is inconsistent: RANK={rank} WORLD_SIZE={size} LOCAL_RANK={local}")
    launcher = None
    if size > 1:
        if os.environ.get("ACCELERATE_DYNAMO_BACKEND") is not None or os.environ.get("ACCELERATE_MIXED_PRECISION") is not None:
            launcher = "accelerate"
        elif os.environ.get("TORCHELASTIC_RUN_ID") is not None:
            launcher = "torchrun"
        else:
            launcher = "env"
    return World(rank, size, local, launcher)


def is_distributed() -> bool:
    """True when this process is one rank of a multi-process job (``WORLD_SIZE > 1``)."""
    return world().distributed


def is_main() -> bool:
    """True on rank 0, and always without a launcher."""
    return world().is_main


def _dist():
    import torch.distributed as dist

    return dist


_alone = [0]  # depth of nested ``alone()`` blocks


@contextlib.contextmanager
def alone():
    """A block in which this rank works on its own share of a job (e.g. the audit's attacks): the
    collectives here are no-ops and the engine computes whatever it is asked in this process,
    as without a launcher. Any collective call on one rank only would otherwise wait forever."""
    _alone[0] += 1
    try:
        yield
    finally:
        _alone[0] -= 1


def sharding() -> bool:
    """True when dataset work is split across ranks: under a launcher, outside ``alone()``."""
    return is_distributed() and not _alone[0]


def initialized() -> bool:
    """True when this rank is in a process group and collectives are live (not inside ``alone()``)."""
    if not sharding():
        return False
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def backend() -> str:
    """``nccl`` when CUDA is usable, else ``gloo``."""
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def device():
    """This rank's device: ``cuda:LOCAL_RANK`` (modulo the visible GPUs, so several ranks may share
    one) when CUDA is available, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", world().local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init() -> World:
    """Join the process group when launched with ``WORLD_SIZE > 1`` (idempotent); a no-op
    otherwise. Returns ``world()``."""
    here = world()
    if not here.distributed:
        return here
    dist = _dist()
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        import datetime

        import torch

        name = backend()
        kwargs = {}
        if name == "nccl":
            torch.cuda.set_device(device())
            kwargs["device_id"] = device()
        timeout = datetime.timedelta(seconds=float(os.environ.get(ENV_TIMEOUT, 3 * 3600)))
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is None:
            dist.init_process_group(name, timeout=timeout, **kwargs)
        else:
            # torchrun's agent keeps one TCP store across restarts, so a restarted worker can read
            # the address its dead predecessor published and time out connecting to it ("Gloo
            # connectFullMesh failed ... Connection refused"). A prefix per attempt keeps the
            # rounds apart.
            store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
            store = dist.PrefixStore(f"attrtools/attempt_{restart}", store)
            dist.init_process_group(name, store=store, rank=here.rank, world_size=here.size,
                                    timeout=timeout, **kwargs)
        if dist.get_world_size() != here.size or dist.get_rank() != here.rank:
            raise DistributedError(f"process group says rank {dist.get_rank()} of {dist.get_world_size()}, "
                                   f"the environment says {here.rank} of {here.size}")
    return here


def shutdown() -> None:
    """Leave the process group (after a final barrier); a no-op when not initialized."""
    if initialized():
        dist = _dist()
        barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not initialized():
        return
    dist = _dist()
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[device().index])
    else:
        dist.barrier()


def all_gather(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]``: small JSON-like statistics only (counts, digests,
    flags); ``[obj]`` in a single process. Tensors travel through the cache, not through here."""
    if not initialized():
        return [obj]
    dist = _dist()
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself in a single process)."""
    if not initialized():
        return obj
    dist = _dist()
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def agree(value, what: str):
    """Check that every rank holds the same ``value`` (a digest, a count); raise
    ``DistributedError`` naming the ranks that differ from rank 0 otherwise. Returns the value."""
    values = all_gather(value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ:
        raise DistributedError(f"ranks {differ} disagree with rank 0 about {what}: {values[differ[0]]!r} != {values[0]!r}")
    return value


# ---------------------------------------------------------------------------------- the plan
def assign(costs: Sequence[float], world_size: int) -> list[int]:
    """The rank of every batch: longest processing time first. Batches are taken in order of
    decreasing cost (ties: lower batch index first) and each goes to the rank with the least cost
    so far (ties: lower rank). Deterministic, disjoint and complete by construction; balanced:
    the most and least loaded ranks differ by at most the largest single cost.

    ``costs``: one non-negative number per batch (the engine's estimate, tokens² × steps).
    Returns a list as long as ``costs`` of ranks in ``range(world_size)``."""
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    ranks = [0] * len(costs)
    if world_size == 1:
        return ranks
    order = sorted(range(len(costs)), key=lambda b: (-float(costs[b]), b))
    loads = [(0.0, r) for r in range(world_size)]  # a heap of (load, rank)
    for b in order:
        load, rank = heapq.heappop(loads)
        ranks[b] = rank
        heapq.heappush(loads, (load + float(costs[b]), rank))
    return ranks


def shard(costs: Sequence[float], rank: int | None = None, world_size: int | None = None) -> list[int]:
    """The batch indices (in plan order) that ``rank`` computes; every batch in one process."""
    here = world()
    rank = here.rank if rank is None else rank
    world_size = here.size if world_size is None else world_size
    return [b for b, r in enumerate(assign(costs, world_size)) if r == rank]


# ---------------------------------------------------------------------------------- counters
class Counter:
    """A job-wide counter in the launcher's key-value store: every rank ``add``s what it finished,
    rank 0 reads the total for its one progress bar, and ``wait(total)`` blocks until all ranks
    are done (polling, so a long imbalance never hits a collective timeout). In one process it is
    a plain integer."""

    _calls = 0

    def __init__(self, name: str):
        Counter._calls += 1
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self.key = f"attrtools/{restart}/{Counter._calls}/{name}"
        self._local = 0
        self._store = None
        if initialized():
            try:
                from torch.distributed.distributed_c10d import _get_default_store

                self._store = _get_default_store()
            except Exception:  # pragma: no cover - older torch: fall back to a barrier in wait()
                self._store = None

    def add(self, n: int) -> int:
        """Add ``n`` (this rank's newly finished items); returns the job-wide total."""
        self._local += n
        if self._store is None:
            return self._local
        return int(self._store.add(self.key, int(n)))

    def total(self) -> int:
        return self._local if self._store is None else int(self._store.add(self.key, 0))

    def wait(self, total: int, on_progress=None, interval: float = 0.2) -> None:
        """Block until the job-wide count reaches ``total``; ``on_progress(count)`` is called on
        each change. Ends with a barrier."""
        if initialized() and self._store is not None:
            last = -1
            while True:
                count = self.total()
                if count != last and on_progress is not None:
                    on_progress(count)
                last = count
                if count >= total:
                    break
                time.sleep(interval)
        barrier()


# ---------------------------------------------------------------------------------- the shared cache
SENTINEL_PREFIX = ".attrtools-shared-"
_checked: set = set()


def _marker_io(cache):
    """(write, read, remove) for a small marker file beside the cache's entries: the cache's own
    when it has them (object-store tier), else plain files in ``cache.directory``."""
    if all(hasattr(cache, name) for name in ("write_marker", "read_marker", "remove_marker")):
        return cache.write_marker, cache.read_marker, cache.remove_marker
    directory = cache.directory

    def write(name, data: bytes):
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path + ".part", "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".part", path)

    def read(name):
        try:
            with open(os.path.join(directory, name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def remove(name):
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass

    return write, read, remove


def check_shared_cache(cache) -> None:
    """Fail fast unless every rank sees the same cache storage: rank 0 writes a sentinel with a
    random token, every rank reads it back, and a rank that cannot raises ``DistributedError``
    on every rank (naming the ranks and the directories they use). Done once per cache location
    and job; a no-op in a single process."""
    if not initialized() or cache is None:
        return
    location = str(getattr(cache, "directory", id(cache)))
    if location in _checked:
        return
    write, read, remove = _marker_io(cache)
    import uuid

    token = broadcast(uuid.uuid4().hex if is_main() else None)
    name = SENTINEL_PREFIX + token
    if is_main():
        write(name, token.encode())
    barrier()
    seen = read(name)
    reports = all_gather({"ok": seen == token.encode(), "where": location, "host": os.uname().nodename})
    barrier()
    if is_main():
        remove(name)
    bad = [r for r, rep in enumerate(reports) if not rep["ok"]]
    if bad:
        detail = "; ".join(f"rank {r} on {reports[r]['host']} uses {reports[r]['where']}" for r in bad)
        raise DistributedError(
            f"the attribution cache is not shared by every rank (rank 0 uses {reports[0]['where']} on "
            f"{reports[0]['host']}; {detail}): put --cache-dir (or $ATTRTOOLS_CACHE) on a filesystem "
            f"every node mounts, or an object store")
    _checked.add(location)


# ---------------------------------------------------------------------------------- the CLI
_deferred_eviction: list = []


def defer_eviction(cache) -> None:
    """Called by a cache that went over its size cap during a distributed job: eviction waits for
    the end of the job (rank 0, after the final barrier), so no rank loses an entry it is about
    to read back."""
    if all(c is not cache for c in _deferred_eviction):
        _deferred_eviction.append(cache)


def private_run_dir() -> str:
    """Where a rank other than 0 puts the outputs a command writes (a temporary folder removed at
    exit): every rank runs the same command, rank 0 alone writes the real outputs."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix=f"attrtools-rank{world().rank}-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


class _ErrorsOnly:
    """The standard error of a rank other than 0: what it writes while handling an exception (the
    CLI's one-line error, a traceback) reaches the real stream; everything else (progress lines,
    progress bars, warnings: rank 0 prints them once for the job) is dropped."""

    _attrtools_quiet = True

    def __init__(self, real):
        self._real = real
        self.failed = False  # set when a command ends with an error (click reports it after unwinding)

    def write(self, text: str) -> int:
        import sys

        if self.failed or sys.exc_info()[0] is not None:
            return self._real.write(text)
        return len(text)

    def flush(self) -> None:
        self._real.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # faulthandler and the like write crash reports there directly
        return self._real.fileno()

    def __getattr__(self, name):
        return getattr(self._real, name)


def quiet_rank() -> None:
    """The one rule for what a rank other than 0 prints: nothing on standard output, and on
    standard error only its errors (``_ErrorsOnly``: what is written while an exception is handled,
    everything once a command ended with an error, an uncaught exception's traceback).
    Rank 0 prints every line once for the job. Idempotent."""
    import sys

    if not getattr(sys.stdout, "_attrtools_quiet", False):
        sys.stdout = open(os.devnull, "w")
        sys.stdout._attrtools_quiet = True
    if not getattr(sys.stderr, "_attrtools_quiet", False):
        real = sys.stderr
        sys.stderr = _ErrorsOnly(real)
        hook = sys.excepthook

        def report(*exc_info):
            sys.stderr = real
            hook(*exc_info)

        sys.excepthook = report


def _note_failure() -> None:
    """Called when a command's context closes: if it closes on an exception, what follows (click's
    one-line error, reported after the exception unwound) reaches this rank's stderr."""
    import sys

    if sys.exc_info()[0] is not None and isinstance(sys.stderr, _ErrorsOnly):
        sys.stderr.failed = True


def setup_cli(ctx=None) -> World:
    """For the ``attrtools`` command group under a launcher: join the group, keep the output of
    ranks other than 0 off the terminal (``quiet_rank``: their errors still reach stderr), and at the end run the
    final barrier, then rank 0's deferred cache eviction, then leave the group."""
    owner = not initialized()  # whoever joined the group leaves it (a driver running commands)
    here = init()
    if not here.distributed:
        return here
    if not here.is_main:
        quiet_rank()
    if ctx is not None:
        ctx.call_on_close(finish if owner else _release_evictions)
        ctx.call_on_close(_note_failure)  # runs first (last registered)
    return here


def _release_evictions() -> None:
    barrier()
    if is_main():
        for cache in _deferred_eviction:
            cache.evict()
    _deferred_eviction.clear()


def finish() -> None:
    """End of a distributed command: barrier, rank 0 evicts what was deferred, leave the group."""
    if not initialized():
        return
    _release_evictions()
    shutdown()
