"""The attribution cache: a memory LRU tier on the compute device in front of a content-addressed
disk tier of safetensors files. One cache is shared by every tool, run and process.

``AttributionCache(cache_dir=None, memory_bytes=256 MiB, max_disk_bytes=None, dtype="fp32", device=None)``

- ``get(key) -> (tensor, meta) | None`` and ``put(key, tensor, meta)``; ``key`` is the engine's
  sha256 hex digest (any other string is hashed to one), ``meta`` a JSON-serialisable dict.
- **Memory tier**: an LRU bounded in bytes (``memory_bytes``; 0 turns it off; each entry counts
  its tensor's bytes plus ``ENTRY_OVERHEAD`` for its key and metadata). Tensors stay on the
  device they were put from (the compute device), so a warm hit moves no data. ``get(key,
  device=...)`` moves a hit to the requested device.
- **Disk tier**: one file per entry, ``<dir>/<key[:2]>/<key>.safetensors``. The safetensors
  header holds the metadata as JSON: the format version, the key, the caller's ``meta``, the
  stored dtype/shape and a sha256 checksum over that whole record (canonical JSON) and the
  tensor's stored bytes, so a flipped bit in the header is caught as surely as one in the data. A file is written under a
  temporary name in its own folder and moved into place with ``os.replace`` (atomic), so readers
  and concurrent writers never see half a file, and a killed writer leaves at most a stray
  ``.tmp-*`` file (never read as an entry; ``verify --fix`` and ``clear`` remove old ones).
- A truncated or corrupt entry (unparseable header, any parse failure including a header nested
  too deeply, a record of the wrong structure, a tensor whose dtype or shape differs from the
  record, wrong key, unknown format, checksum mismatch) is reported (``warnings.warn`` + ``logging``), removed and treated as a miss, so the engine
  recomputes it.
- ``dtype="fp32"`` stores the tensor as given (bitwise exact for float32 payloads);
  ``dtype="fp16"`` or ``"bf16"`` halves disk and memory, and a hit returns the stored value upcast
  to float32 (both tiers, so the answer does not depend on which tier served it). Not given: the
  environment variable ``ATTRTOOLS_CACHE_DTYPE``, else fp32 (so every CLI command honours it).
  Entries are filed under ``storage_key(key, dtype)`` (a reduced-precision cache never serves or
  is served another precision's entries) and narrowed by ``narrow`` (a payload outside fp16's range
  stays fp32). Measured error: docs/precision-and-state.md.
- ``max_disk_bytes``: a soft cap. Each process counts what it wrote since it last scanned the
  folder; when that passes the cap it takes an exclusive lock on ``<dir>/.lock`` (``attrtools.locks``),
  rescans and deletes least recently used entries (file mtime, touched on every disk hit) down to
  90 % of the cap. Files that vanish meanwhile (another process evicting or clearing) are skipped.
- Maintenance: ``ls()``, ``info()``, ``verify(fix=False)``, ``clear()`` (and the CLI
  ``attrtools cache ls|info|verify|clear``).

No pickle anywhere: tensors go through safetensors, metadata through JSON.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import struct
import tempfile
import threading
import time
from collections import OrderedDict

import torch

from .notices import warn

CACHE_FORMAT = 2  # 2: the checksum covers the record (key, meta, dtype, shape) too
HEADER_KEY = "attrtools_cache"
SUFFIX = ".safetensors"
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 3600
DEFAULT_MEMORY_BYTES = 256 * 2 ** 20
ENTRY_OVERHEAD = 1024  # bytes a memory-tier entry costs besides its tensor (measured: about 0.8-1 KiB)
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
FP16_MIN_TOP = 2.0 ** -4  # see narrow
DTYPE_ENV = "ATTRTOOLS_CACHE_DTYPE"  # the stored dtype when ``dtype`` is not given (CLI commands)


def storage_key(key: str, dtype: str) -> str:
    """The key an entry is filed under: the engine's key for fp32, a digest of (key, dtype) for a
    reduced-precision cache, so a cache never serves a payload stored at another precision than its
    own (an fp16 entry to an fp32 reader, or the reverse) from a shared folder."""
    return key if dtype == "fp32" else hashlib.sha256(f"{key}|stored-as-{dtype}".encode()).hexdigest()


def narrow(tensor: torch.Tensor, dtype: str) -> torch.Tensor:
    """The tensor as stored by a ``dtype`` cache (one rule for every payload): fp32 as given; bf16
    rounded to nearest (fp32's range, relative error <= 2^-8); fp16 rounded to nearest only when its
    range fits the tensor, else stored in the tensor's own dtype (never ``inf``, never a flushed
    value: no silent wrong number). fp16 fits when the largest finite ``|x|`` is at most 65504 and at
    least ``FP16_MIN_TOP`` = 2^-4 (or the tensor is zero): every entry down to 2^-10 of the largest
    is then a normal fp16 number (relative error <= 2^-11), and smaller ones are off by at most
    2^-25 < 2^-21 of the largest. (Random-weight AttAttr matrices, max ~1e-5, stay fp32 under fp16.)"""
    target = _DTYPES[dtype]
    if target == torch.float32 or tensor.dtype == target:
        return tensor
    finite = tensor[torch.isfinite(tensor)]
    top = float(finite.abs().max()) if finite.numel() else 0.0
    if top > torch.finfo(target).max or (target == torch.float16 and 0.0 < top < FP16_MIN_TOP):
        return tensor
    return tensor.to(target)


log = logging.getLogger("attrtools.cache")


class CorruptEntry(Exception):
    """A cache file that cannot be trusted; the message says why."""


class CacheWarning(UserWarning):
    """Emitted when a corrupt cache entry is found and removed."""


def default_cache_dir() -> str:
    """``$ATTRTOOLS_CACHE``, else ``$XDG_CACHE_HOME/attrtools``, else ``~/.cache/attrtools``."""
    if os.environ.get("ATTRTOOLS_CACHE"):
        return os.path.expanduser(os.environ["ATTRTOOLS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "attrtools")


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


def _canonical(record: dict) -> bytes:
    """The bytes the checksum covers for a record (every field but the checksum itself)."""
    fields = {k: v for k, v in record.items() if k != "checksum"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _checksum(record: dict, tensor: torch.Tensor) -> str:
    """sha256 over the canonical record (format, key, meta, dtype, shape, created) and the
    tensor's stored bytes: a change to any of them is a mismatch."""
    digest = hashlib.sha256(_canonical(record))
    digest.update(b"\0")
    digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


# Parse failures of any kind (a header nested 200,000 deep raises RecursionError) mean corrupt.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError, struct.error)
_RECORD_FIELDS = {"format", "key", "meta", "dtype", "shape", "created", "checksum"}
_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def read_header(data: bytes) -> dict:
    """The header of a safetensors blob, parsed by hand (8-byte little-endian length, then JSON)
    so a truncated or hostile file fails with a clear reason (``CorruptEntry``)."""
    if len(data) < 8:
        raise CorruptEntry(f"file too short ({len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise CorruptEntry(f"header says {size} bytes but the file has {len(data) - 8} after the length")
    try:
        header = json.loads(data[8: 8 + size])
    except RecursionError:
        raise CorruptEntry("header is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise CorruptEntry(f"header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise CorruptEntry("header is not a JSON object")
    return header


def parse_record(header: dict) -> dict:
    """The attrtools record inside a parsed safetensors header, with its structure checked (field
    names and types); raises ``CorruptEntry``. The checksum is not checked here (no tensor)."""
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or not isinstance(metadata.get(HEADER_KEY), str):
        raise CorruptEntry("no attrtools_cache metadata in the header")
    try:
        record = json.loads(metadata[HEADER_KEY])
    except RecursionError:
        raise CorruptEntry("metadata is nested too deeply") from None
    except ValueError as err:
        raise CorruptEntry(f"metadata is not JSON: {err}") from None
    if not isinstance(record, dict):
        raise CorruptEntry("metadata is not a JSON object")
    if record.get("format") != CACHE_FORMAT:
        raise CorruptEntry(f"cache format {str(record.get('format'))[:20]!r}, this attrtools reads {CACHE_FORMAT}")
    if set(record) != _RECORD_FIELDS:
        raise CorruptEntry(f"record fields {sorted(record)[:10]}, expected {sorted(_RECORD_FIELDS)}")
    shape = record["shape"]
    problems = [
        (isinstance(record["key"], str), "key is not a string"),
        (isinstance(record["meta"], dict), "meta is not an object"),
        (record["dtype"] in _SAFETENSORS_DTYPES, f"dtype {str(record['dtype'])[:20]!r} is not float32/float16/bfloat16"),
        (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape), "shape is not a list of sizes"),
        (isinstance(record["checksum"], str) and _HEX_KEY.fullmatch(record["checksum"]) is not None,
         "checksum is not a sha256 digest"),
        (isinstance(record["created"], (int, float)), "created is not a time"),
    ]
    for ok, reason in problems:
        if not ok:
            raise CorruptEntry(reason)
    return record


def decode_entry(data: bytes, key: str | None = None) -> tuple[torch.Tensor, dict, dict]:
    """``(stored tensor, caller meta, record)`` from the bytes of one entry file; raises
    ``CorruptEntry`` on anything suspicious (truncation, bit rot, a forged or hostile header).

    Checked: the header parses (any failure, deep nesting included, is corruption); the record has
    exactly its fields with the right types; the tensor's safetensors dtype and shape equal the
    record's; the checksum over the canonical record and the tensor bytes matches; the key inside
    equals the key asked for."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    header = read_header(data)
    record = parse_record(header)
    if key is not None and record["key"] != key:
        raise CorruptEntry(f"entry holds key {record['key'][:16]}..., expected {key[:16]}...")
    entries = {name: value for name, value in header.items() if name != "__metadata__"}
    described = entries.get("scores")
    if set(entries) != {"scores"} or not isinstance(described, dict):
        raise CorruptEntry(f"expected one tensor 'scores', the header lists {sorted(entries)[:5]}")
    if described.get("dtype") != _SAFETENSORS_DTYPES[record["dtype"]] or described.get("shape") != record["shape"]:
        raise CorruptEntry(f"tensor is {str(described.get('dtype'))[:8]} {str(described.get('shape'))[:40]}, "
                           f"the record says {record['dtype']} {record['shape']}")
    try:
        tensor = load(data)["scores"]
    except (SafetensorError, *_PARSE_ERRORS, RuntimeError) as err:
        raise CorruptEntry(f"tensor data unreadable: {err}") from None
    if str(tensor.dtype).replace("torch.", "") != record["dtype"] or list(tensor.shape) != record["shape"]:
        raise CorruptEntry("tensor dtype or shape differs from the record")
    if _checksum(record, tensor) != record["checksum"]:
        raise CorruptEntry("checksum mismatch (record or tensor bytes changed)")
    return tensor, record["meta"], record


def encode_entry(key: str, tensor: torch.Tensor, meta: dict) -> bytes:
    """The bytes of one entry file (see ``decode_entry``); ``meta`` must be JSON-serialisable."""
    from safetensors.torch import save

    cpu = tensor.detach().cpu().contiguous()
    record = {"format": CACHE_FORMAT, "key": key, "meta": meta, "dtype": str(cpu.dtype).replace("torch.", ""),
              "shape": list(cpu.shape), "created": time.time()}
    record = json.loads(json.dumps(record))  # what a reader will see (tuples become lists, ...)
    record["checksum"] = _checksum(record, cpu)
    return save({"scores": cpu}, metadata={HEADER_KEY: json.dumps(record, sort_keys=True)})


class LocalFolder:
    """The disk tier's storage: every byte it reads or writes goes through these few methods (a
    local folder here; ``FsspecCache`` puts the same entry files on any fsspec filesystem). Uses
    the cache's ``directory`` and ``touches``."""

    def _read_blob(self, path: str) -> tuple[bytes, object]:
        """(bytes, identity) of one file; raises FileNotFoundError."""
        with open(path, "rb") as f:
            return f.read(), os.fstat(f.fileno()).st_ino

    def _read_head(self, path: str) -> bytes:
        """The safetensors header of a file (length prefix + JSON), without the tensor data."""
        with open(path, "rb") as f:
            head = f.read(8)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            return head + f.read(min(size, 1 << 24))

    def _identity(self, path: str):
        return os.stat(path).st_ino

    def _touch(self, path: str) -> None:
        if not self.touches:
            return
        try:
            os.utime(path)
        except FileNotFoundError:  # evicted or cleared by another process meanwhile
            pass
        except OSError as err:
            self._cannot_touch(err)

    def _cannot_touch(self, err: Exception) -> None:
        """A hit could not refresh its entry's time (an object store, a read-only folder): said
        once (``log``), then not tried again; eviction goes by creation time from then on, and
        ``info()["eviction_order"]`` says so (see ``attrtools.stores``)."""
        self.touches = False
        log.info("attrtools cache: cannot refresh entry times in %s (%s); eviction there is by creation "
                 "time, not last use", self.directory, str(err)[:160] or type(err).__name__)

    def _exists(self, path: str) -> bool:
        return os.path.isfile(path)

    def _unlink(self, path: str) -> None:
        os.unlink(path)

    def _store_blob(self, path: str, blob: bytes) -> None:
        """Write ``blob`` at ``path`` atomically: a temporary file in the same folder, written,
        fsynced (so a crash cannot leave a short file under the final name), made readable like
        any file the user creates (mkstemp makes 0600), then renamed over ``path``."""
        folder = os.path.dirname(path)
        for attempt in range(3):  # another process's clear() may remove the shard folder meanwhile
            os.makedirs(folder, exist_ok=True)
            try:
                fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=SUFFIX, dir=folder)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
                with contextlib.suppress(OSError):
                    os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _remove_shards(self) -> None:
        for shard in list(os.scandir(self.directory)):
            if shard.is_dir() and len(shard.name) == 2:
                with contextlib.suppress(OSError):
                    os.rmdir(shard.path)

    def _files(self, include_tmp: bool = False):
        """``os.DirEntry`` of every entry file (and temporary files when asked)."""
        try:
            shards = [d for d in os.scandir(self.directory) if d.is_dir() and len(d.name) == 2]
        except FileNotFoundError:
            return
        for shard in shards:
            try:
                entries = list(os.scandir(shard.path))
            except FileNotFoundError:
                continue
            for entry in entries:
                is_tmp = entry.name.startswith(TMP_PREFIX)
                if entry.name.endswith(SUFFIX) and (include_tmp or not is_tmp):
                    yield entry

    def _scan_bytes(self) -> int:
        total = 0
        for entry in self._files():
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
        return total

    @contextlib.contextmanager
    def _exclusive(self):
        """An exclusive lock on ``<dir>/.lock`` (``attrtools.locks``: the kernel's lock through
        ``filelock``, dropped when a holder dies, on any host)."""
        from .locks import held

        os.makedirs(self.directory, exist_ok=True)
        with held(os.path.join(self.directory, ".lock")):
            yield


class Maintenance:
    """The disk tier as a whole: eviction to a size cap, ``ls``, ``info``, ``verify`` and ``clear``
    (``attrtools cache ls|info|verify|clear``), over ``LocalFolder``'s storage methods."""

    def evict(self, target_bytes: int | None = None) -> int:
        """Delete least recently used disk entries until at most ``target_bytes`` remain (default:
        90 % of ``max_disk_bytes``). Returns the number of files removed."""
        if target_bytes is None:
            if self.max_disk_bytes is None:
                return 0
            target_bytes = int(self.max_disk_bytes * 0.9)
        removed = 0
        with self._exclusive():
            files = []
            for entry in self._files():
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime, entry.path, st.st_size))
            total = sum(size for _, _, size in files)
            for _, path, size in sorted(files):
                if total <= target_bytes:
                    break
                try:
                    self._unlink(path)
                    removed += 1
                except FileNotFoundError:
                    pass
                total -= size
        self._disk_estimate = total
        self.stats["evicted"] += removed
        return removed

    def ls(self):
        """One dict per disk entry (from the header only): key, path, bytes, mtime, method, model,
        unit, shape, dtype. Unreadable headers give ``{"path", "error"}``."""
        for entry in self._files():
            try:
                st = entry.stat()
                header = read_header(self._read_head(entry.path))
                record = parse_record(header)
                meta = record["meta"]
                yield {"key": record["key"], "path": entry.path, "bytes": st.st_size, "mtime": st.st_mtime,
                       "method": _text(meta.get("method")), "model": _text(meta.get("model")),
                       "kind": _text(meta.get("kind")), "model_name": _text(meta.get("model_name")),
                       "unit": meta.get("unit") if type(meta.get("unit")) is int else None,
                       "shape": record["shape"], "dtype": record["dtype"]}
            except FileNotFoundError:
                continue
            except (CorruptEntry, *_PARSE_ERRORS) as err:
                yield {"path": entry.path, "error": str(err) or type(err).__name__}

    def info(self) -> dict:
        """Totals: entries, bytes, by method (entries of no method by their kind, e.g. ``(forwards)``) and
        by model fingerprint (``model_names``: the hub id or folder of a fingerprint where an entry
        recorded it), plus memory-tier usage."""
        entries = total = 0
        by_method: dict = {}
        by_model: dict = {}
        model_names: dict = {}  # fingerprint -> the hub id or folder it was loaded from
        unreadable = 0
        for row in self.ls():
            if "error" in row:
                unreadable += 1
                continue
            entries += 1
            total += row["bytes"]
            # entries of no method (evaluate's perturbed forwards, prune's masked evaluations) by their kind
            method = row["method"] or (f"({row['kind']})" if row.get("kind") else "(unknown)")
            slot = by_method.setdefault(method, {"entries": 0, "bytes": 0})
            slot["entries"] += 1
            slot["bytes"] += row["bytes"]
            model = (row["model"] or "(unknown)")[:16]
            by_model[model] = by_model.get(model, 0) + 1
            if row.get("model_name"):
                model_names.setdefault(model, row["model_name"])
        return {"directory": self.directory, "entries": entries, "bytes": total, "by_method": by_method,
                "by_model": by_model, "model_names": model_names, "unreadable": unreadable, "max_disk_bytes": self.max_disk_bytes,
                "memory_entries": len(self._memory), "memory_bytes_used": self._memory_used,
                "memory_bytes_limit": self.memory_bytes, "format": CACHE_FORMAT,
                "eviction_order": "last use" if self.touches else "creation time"}

    def verify(self, fix: bool = False) -> dict:
        """Read every entry fully and check header, key and checksum. Returns ``{"checked", "bad":
        [(path, reason)], "stale_tmp": [paths], "removed"}``; with ``fix`` the bad entries and
        temporary files older than an hour are deleted."""
        checked, bad, stale = 0, [], []
        now = time.time()
        for entry in self._files(include_tmp=True):
            if entry.name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > STALE_TMP_SECONDS:
                        stale.append(entry.path)
                continue
            try:
                data, _ = self._read_blob(entry.path)
            except FileNotFoundError:
                continue
            checked += 1
            expected = entry.name[: -len(SUFFIX)]
            try:
                _, _, record = decode_entry(data)
                if self.filename_key(str(record.get("key"))) != expected:
                    raise CorruptEntry("file name does not match the key inside")
            except CorruptEntry as err:
                bad.append((entry.path, str(err)))
        removed = 0
        if fix:
            for path in [p for p, _ in bad] + stale:
                with contextlib.suppress(FileNotFoundError):
                    self._unlink(path)
                    removed += 1
        return {"checked": checked, "bad": bad, "stale_tmp": stale, "removed": removed}

    def clear(self) -> int:
        """Delete every entry (and temporary file) on disk and empty the memory tier; returns the
        number of entry files removed."""
        self.clear_memory()
        removed = 0
        with self._exclusive():
            for entry in list(self._files(include_tmp=True)):
                try:
                    self._unlink(entry.path)
                    removed += not entry.name.startswith(TMP_PREFIX)
                except FileNotFoundError:
                    pass
            self._remove_shards()
        self._disk_estimate = 0
        return removed


class AttributionCache(Maintenance, LocalFolder):
    """Two-tier (memory LRU on device + safetensors on disk) content-addressed attribution cache:
    the tiers, get/put and validation here; storage in ``LocalFolder``, upkeep in ``Maintenance``."""

    # The engine's interface (``attrtools.entries.EngineCache``): get(device=, remember=), put(remember=),
    # invalidate, ``in`` and ``disk``.

    def __new__(cls, cache_dir=None, *args, **kwargs):
        if cls is AttributionCache:
            location = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
            if is_url(location) or os.environ.get(STORAGE_ENV) == "fsspec":
                return super().__new__(FsspecCache)  # Python then runs FsspecCache.__init__
        return super().__new__(cls)

    def __init__(self, cache_dir: str | os.PathLike | None = None, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 max_disk_bytes: int | None = None, dtype: str | None = None, device=None, disk: bool = True):
        dtype = dtype if dtype is not None else (os.environ.get(DTYPE_ENV) or "fp32")
        if dtype not in _DTYPES:
            from .errors import ParameterError  # a ValueError too, as before; one line on the CLI

            raise ParameterError(f"cache dtype must be 'fp32', 'fp16' or 'bf16' (argument, --cache-dtype or ${DTYPE_ENV}), "
                             f"got {str(dtype)[:20]!r}")
        self.directory = os.path.abspath(os.fspath(cache_dir)) if cache_dir is not None else default_cache_dir()
        self.memory_bytes = int(memory_bytes or 0)
        self.max_disk_bytes = max_disk_bytes
        self.dtype = _DTYPE_NAMES[_DTYPES[dtype]]
        self.device = torch.device(device) if device is not None else None
        self.disk = disk
        self.writable = True  # False after a failed disk write (see _stop_writing)
        self._memory: OrderedDict[str, tuple[torch.Tensor, dict, int]] = OrderedDict()
        self._memory_used = 0
        self._lock = threading.RLock()
        self._disk_estimate: int | None = None  # bytes on disk as last scanned + written since
        self.touches = True  # False once a hit could not refresh an entry's time (_cannot_touch)
        self.stats = {"memory_hits": 0, "disk_hits": 0, "misses": 0, "puts": 0, "corrupt": 0, "evicted": 0}

    def __repr__(self):
        return (f"AttributionCache({self.directory!r}, memory_bytes={self.memory_bytes}, "
                f"max_disk_bytes={self.max_disk_bytes}, dtype={self.dtype!r})")

    # ------------------------------------------------------------------------------ paths
    @staticmethod
    def filename_key(key: str) -> str:
        """The sha256 hex digest that names the entry (the key itself when it already is one)."""
        return key if _HEX_KEY.fullmatch(key) else hashlib.sha256(key.encode()).hexdigest()

    def path(self, key: str) -> str:
        name = self.filename_key(key)
        return os.path.join(self.directory, name[:2], name + SUFFIX)

    # ------------------------------------------------------------------------------ get / put
    def get(self, key: str, device=None, remember: bool = True):
        """``(tensor, meta)`` or None. Memory first, then disk (a disk hit is promoted to memory
        unless ``remember`` is False: a one-pass reader would only push useful entries out)."""
        target = torch.device(device) if device is not None else self.device
        key = storage_key(self.filename_key(key), self.dtype)
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
                self.stats["memory_hits"] += 1
                return self._out(entry[0], target), dict(entry[1])
        if not self.disk:
            self.stats["misses"] += 1
            return None
        path = self.path(key)
        try:
            data, inode = self._read_blob(path)
        except (FileNotFoundError, NotADirectoryError):
            self.stats["misses"] += 1
            return None
        except OSError as err:  # unreadable (permissions, I/O error): a miss, said once
            if not getattr(self, "_read_warned", False):
                self._read_warned = True
                warn(f"attrtools cache: cannot read {path}: {err.strerror or err}", CacheWarning)
            self.stats["misses"] += 1
            return None
        try:
            stored, meta, _ = decode_entry(data, key)
        except CorruptEntry as err:
            self._discard(path, inode, str(err))
            self.stats["misses"] += 1
            return None
        self._touch(path)  # LRU on disk: a hit makes the entry recent
        self.stats["disk_hits"] += 1
        if target is not None:
            stored = stored.to(target)
        if remember:
            self._remember(key, stored, meta)
        return self._out(stored, target), dict(meta)

    def put(self, key: str, tensor: torch.Tensor, meta: dict | None = None, remember: bool = True) -> None:
        """Store ``tensor`` (any device) with JSON-serialisable ``meta`` in both tiers (on disk
        only when ``remember`` is False and there is a disk tier). The disk write is atomic; a
        concurrent put of the same key by another process is harmless."""
        meta = dict(meta or {})
        stored = tensor.detach()
        if not stored.is_floating_point():
            raise TypeError(f"cache entries are float tensors, got {stored.dtype}")
        key = storage_key(self.filename_key(key), self.dtype)
        stored = narrow(stored, self.dtype)
        stored = stored.clone().contiguous()
        self.stats["puts"] += 1
        if remember or not self.disk:
            self._remember(key, stored, meta)
        if self.disk and self.writable:
            try:
                self._write(key, stored, meta)
            except OSError as err:  # full disk, read-only or missing folder, a file in the way ...
                self._stop_writing(err)

    def _stop_writing(self, err: OSError) -> None:
        """The disk tier cannot take writes: warn once and go on without writing (reads continue;
        the memory tier keeps working), so a full disk costs caching, never the run."""
        self.writable = False
        self.stats["write_errors"] = self.stats.get("write_errors", 0) + 1
        reason = err.strerror or str(err)
        message = (f"attrtools cache: cannot write to {self.directory} ({reason}); continuing without "
                   "caching new results on disk")
        log.warning(message)
        warn(message, CacheWarning)

    def invalidate(self, key: str, reason: str) -> None:
        """Drop an entry the caller found inconsistent (e.g. metadata that does not fit the example):
        reported like a corrupt entry, removed from both tiers, recomputed when next needed."""
        key = storage_key(self.filename_key(key), self.dtype)
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._memory_used -= old[2]
        if self.disk:
            self._discard(self.path(key), None, reason)
        else:
            self.stats["corrupt"] += 1

    def __contains__(self, key: str) -> bool:
        key = storage_key(self.filename_key(key), self.dtype)
        with self._lock:
            if key in self._memory:
                return True
        return self.disk and self._exists(self.path(key))

    # ------------------------------------------------------------------------------ memory tier
    def _out(self, tensor: torch.Tensor, device) -> torch.Tensor:
        out = tensor.to(device) if device is not None else tensor
        out = out.float() if out.dtype in (torch.float16, torch.bfloat16) else out
        return out.clone() if out is tensor else out  # callers may modify what they get

    def _remember(self, key: str, tensor: torch.Tensor, meta: dict) -> None:
        # What an entry holds besides its tensor's bytes (key, metadata, objects) counts too, so
        # the budget bounds the tier's memory however small the tensors are.
        size = tensor.numel() * tensor.element_size() + ENTRY_OVERHEAD
        if size > self.memory_bytes:
            return
        with self._lock:
            old = self._memory.pop(key, None)
            if old is not None:
                self._memory_used -= old[2]
            self._memory[key] = (tensor, meta, size)
            self._memory_used += size
            while self._memory_used > self.memory_bytes:
                _, (_, _, freed) = self._memory.popitem(last=False)
                self._memory_used -= freed

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._memory_used = 0

    @property
    def memory_used(self) -> int:
        return self._memory_used

    # ------------------------------------------------------------------------------ disk tier
    def _write(self, key: str, stored: torch.Tensor, meta: dict) -> None:
        blob = encode_entry(key, stored, meta)
        self._store_blob(self.path(key), blob)
        if self.max_disk_bytes is not None:
            if self._disk_estimate is None:
                self._disk_estimate = self._scan_bytes()
            else:
                self._disk_estimate += len(blob)
            if self._disk_estimate > self.max_disk_bytes:
                from . import distributed

                if distributed.is_distributed():  # other ranks may be about to read what would go
                    distributed.defer_eviction(self)
                else:
                    self.evict()

    def _discard(self, path: str, inode: int | None, reason: str) -> None:
        """Report and remove a corrupt entry (only if the file is still the one that was read)."""
        self.stats["corrupt"] += 1
        message = f"attrtools cache: removed corrupt entry {path}: {reason}; it will be recomputed"
        log.warning(message)
        warn(message, CacheWarning)
        try:
            if inode is None or self._identity(path) == inode:
                self._unlink(path)
        except FileNotFoundError:
            pass



def _text(value):
    return value if isinstance(value, str) else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------- object stores
STORAGE_ENV = "ATTRTOOLS_CACHE_STORAGE"  # "fsspec": local folders too go through fsspec (tests)


def is_url(location) -> bool:
    return isinstance(location, str) and "://" in location


class _Entry:
    """What ``_files`` yields on an fsspec filesystem: the parts of ``os.DirEntry`` the cache uses."""

    __slots__ = ("name", "path", "_size", "_mtime")

    def __init__(self, path: str, size: int, mtime: float):
        self.path, self.name, self._size, self._mtime = path, path.rsplit("/", 1)[-1], size, mtime

    def stat(self):
        return os.stat_result((0, 0, 0, 0, 0, 0, self._size, self._mtime, self._mtime, self._mtime))


class FsspecCache(AttributionCache):
    """The same cache (same entry files, same checks) on any fsspec filesystem: an object store
    (``s3://bucket/prefix``, ``gs://...``, with s3fs/gcsfs installed), ``memory://`` or
    ``file://``. Each entry is one whole-object put (``pipe_file``), which object stores make
    atomic, so no rename and no temporary object is needed; entries are immutable and
    content-addressed, so concurrent writers of one key write the same bytes. There is no lock:
    a size-capped eviction and ``clear`` are for a quiet moment (never during a distributed job).
    Object stores cannot touch an object's time, so eviction order there is by creation time
    (``info()["eviction_order"]``, shown by ``attrtools cache info``). ``ls``/``info`` read each
    entry's header by ranged reads (about 4 KiB); ``verify`` reads entries whole (it checks the
    checksum over the tensor bytes). The location may not carry credentials (see
    ``attrtools.stores``).

    ``AttributionCache("s3://...")`` (and ``--cache-dir s3://...``) returns one of these."""

    def __init__(self, cache_dir=None, memory_bytes: int = DEFAULT_MEMORY_BYTES, max_disk_bytes: int | None = None,
                 dtype: str | None = None, device=None, disk: bool = True, storage_options: dict | None = None):
        from .stores import open_store

        location = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
        if not is_url(location):
            location = "file://" + os.path.abspath(location)
        self.fs, root = open_store(location, storage_options)
        super().__init__(None, memory_bytes=memory_bytes, max_disk_bytes=max_disk_bytes, dtype=dtype,
                         device=device, disk=disk)
        self.root = root.rstrip("/")
        protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, (tuple, list)) else self.fs.protocol
        # A local folder keeps its plain path (what users, tests and `cache ls` expect to see).
        self.directory = self.root if protocol in ("file", "local") else f"{protocol}://{self.root.lstrip('/')}"
        # Only a local folder can refresh an entry's time on a hit; elsewhere (object stores, whose
        # objects are immutable, and memory://) eviction is by creation time, said by info().
        self.touches = protocol in ("file", "local")

    def path(self, key: str) -> str:
        name = self.filename_key(key)
        return f"{self.root}/{name[:2]}/{name}{SUFFIX}"

    def _read_blob(self, path: str):
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            raise
        except OSError as err:  # some backends report a missing object differently
            if not self.fs.exists(path):
                raise FileNotFoundError(path) from err
            raise
        return data, None

    def _read_head(self, path: str) -> bytes:
        from .stores import read_head

        return read_head(self.fs, path)  # ranged reads: about 4 KiB per entry, not the whole object

    def _identity(self, path: str):
        return None

    def _touch(self, path: str) -> None:
        if not self.touches:
            return
        try:  # where the filesystem can (local); object stores cannot (s3fs raises ValueError)
            self.fs.touch(path, truncate=False)
        except FileNotFoundError:
            pass
        except Exception as err:  # noqa: BLE001 - any backend's refusal means the same: no touch
            self._cannot_touch(err)

    def _exists(self, path: str) -> bool:
        from .stores import fresh

        fresh(self.fs, path.rsplit("/", 1)[0])  # another process may have written it since we listed
        return self.fs.exists(path)

    def _unlink(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            raise
        except OSError:
            if self.fs.exists(path):
                raise
            raise FileNotFoundError(path) from None

    def _store_blob(self, path: str, blob: bytes) -> None:
        # One whole-object put: atomic on object stores. Local/memory filesystems write in
        # place, so a reader might see a short file there; the checksum turns that into a miss.
        folder = path.rsplit("/", 1)[0]
        with contextlib.suppress(OSError):
            self.fs.makedirs(folder, exist_ok=True)
        self.fs.pipe_file(path, blob)

    def _remove_shards(self) -> None:
        for info in self._listdir(self.root):
            name = info["name"].rstrip("/").rsplit("/", 1)[-1]
            if info.get("type") == "directory" and len(name) == 2:
                with contextlib.suppress(OSError):
                    self.fs.rmdir(info["name"])

    def _listdir(self, path: str) -> list:
        from .stores import fresh

        fresh(self.fs, path)  # see other processes' writes (s3fs keeps listings for the process's life)
        try:
            return self.fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _files(self, include_tmp: bool = False):
        for shard in self._listdir(self.root):
            name = shard["name"].rstrip("/").rsplit("/", 1)[-1]
            if shard.get("type") != "directory" or len(name) != 2:
                continue
            for info in self._listdir(shard["name"]):
                entry_name = info["name"].rsplit("/", 1)[-1]
                if info.get("type") == "directory" or not entry_name.endswith(SUFFIX):
                    continue
                if entry_name.startswith(TMP_PREFIX) and not include_tmp:
                    continue
                yield _Entry(info["name"], int(info.get("size") or 0), _mtime(info))

    @contextlib.contextmanager
    def _exclusive(self):
        yield  # no locks on object stores (see the class docstring)

    # markers (the distributed job's shared-storage sentinel)
    def write_marker(self, name: str, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.fs.makedirs(self.root, exist_ok=True)
        self.fs.pipe_file(f"{self.root}/{name}", data)

    def read_marker(self, name: str):
        try:
            return self.fs.cat_file(f"{self.root}/{name}")
        except OSError:
            return None

    def remove_marker(self, name: str) -> None:
        with contextlib.suppress(OSError):
            self.fs.rm_file(f"{self.root}/{name}")


def _mtime(info: dict) -> float:
    for field in ("mtime", "LastModified", "updated", "created", "last_modified"):
        value = info.get(field)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return 0.0


def open_cache(cache) -> AttributionCache | None:
    """What ``attrtools.attribute(cache=...)`` accepts: None/False (no cache), True (the default
    cache folder), a folder path, or a cache object (anything with ``get``/``put``), returned as is."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return AttributionCache()
    if isinstance(cache, (str, os.PathLike)):
        return AttributionCache(cache)
    if hasattr(cache, "get") and hasattr(cache, "put"):
        return cache
    raise TypeError(f"cache must be None, True, a folder or an AttributionCache, got {type(cache).__name__}")
