"""The rules the attribution cache follows on a remote (fsspec) store: ``s3://bucket/prefix`` with
``s3fs``, ``gs://`` with ``gcsfs``, ``memory://``, ``file://``. One function per rule, used by
``attrtools.cache.FsspecCache`` (standard library and fsspec only; no attrtools imports beyond
the errors).

- :func:`open_store` -- the one place a cache location becomes a filesystem. Credentials come only
  from the standard fsspec/boto mechanisms (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
  ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and ``~/.aws/credentials``, ``AWS_ENDPOINT_URL`` or
  ``FSSPEC_S3_ENDPOINT_URL`` for a non-AWS endpoint, instance roles, fsspec's config files): a
  location carrying a user name or password (``s3://key:secret@bucket/...``) or a query string
  (``az://c/p?sv=...&sig=...``) is refused, so no secret can reach a log line, a summary,
  ``run_config.json`` or an error message. A missing
  backend (``s3fs`` for ``s3://``) is a one-line ``CacheError`` naming the extra to install.
- :func:`read_head` -- the safetensors header of one entry by ranged reads (``HEAD_READ`` bytes,
  then the rest of the header only if it is longer): ``cache ls``/``info`` read about 4 KiB per
  entry instead of the whole object.
- :func:`fresh` -- drop the filesystem's listing cache for a folder before listing it or asking
  whether a file exists in it: s3fs keeps directory listings for the life of the process, so a
  rank (or any process) would otherwise not see entries another one wrote since it last listed.

Eviction on an object store: objects cannot be touched (s3fs refuses ``touch`` on an existing
object), so "least recently used" is by the object's last-modified time, which for the cache's
immutable entries is its creation time (a hit does not make an entry recent there). The cache
reports it in ``info()["eviction_order"]`` (``attrtools cache info``); a local folder whose entry
times cannot be refreshed switches to the same order and logs it once.
"""
from __future__ import annotations

import struct
from urllib.parse import urlsplit

from .errors import CacheError

HEAD_READ = 4096  # bytes of the first ranged read: the 8-byte length plus a typical header (~0.6 KiB)
MAX_HEADER = 1 << 24  # a longer header is corrupt (the same bound as the local tier)
EXTRAS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def check_location(location: str) -> str:
    """``location`` if it can carry no credentials, else ``CacheError`` (one line, the secret not
    repeated). Refused: a user or password (``scheme://user[:password]@...``) and a query string
    (``...?sig=...``, where SAS tokens and signed-URL secrets travel); a cache location needs
    neither, and either would be printed in summaries and written into ``run_config.json``."""
    parts = urlsplit(location)
    scheme = parts.scheme or "the"
    if "@" in parts.netloc:
        where = f"{scheme}://USER:SECRET@..."
    elif parts.query:
        where = f"{scheme}://...?QUERY"
    else:
        return location
    raise CacheError(
        f"the cache location may carry credentials ({where}); give them through the standard mechanisms "
        "instead (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE and ~/.aws/credentials, fsspec's "
        "config), so they never reach logs or run directories")


def open_store(location: str, storage_options: dict | None = None):
    """``(filesystem, root path)`` for a cache ``location`` URL (see :func:`check_location`).
    Raises ``CacheError`` when the protocol's fsspec backend is not installed or unknown."""
    import fsspec

    check_location(location)
    try:
        return fsspec.core.url_to_fs(location, **(storage_options or {}))
    except ImportError as err:
        scheme = urlsplit(location).scheme
        package = EXTRAS.get(scheme)
        hint = (f"pip install {package}" + (" (or attrtools[s3])" if package == "s3fs" else "")) if package \
            else f"install the fsspec backend for {scheme}://"
        raise CacheError(f"the cache location {scheme}://... needs a package that is not installed: {hint} "
                         f"({str(err).splitlines()[0][:120]})") from None
    except ValueError as err:
        if "protocol" in str(err).lower():
            raise CacheError(f"unknown storage protocol in the cache location: {str(err)[:160]}") from None
        raise


def fresh(fs, path: str) -> None:
    """Forget what ``fs`` cached about the listing of ``path`` (a no-op where nothing is cached)."""
    invalidate = getattr(fs, "invalidate_cache", None)
    if invalidate is not None:
        invalidate(path)


def read_head(fs, path: str) -> bytes:
    """The first bytes of the safetensors file at ``path`` on ``fs`` that hold its header: the
    8-byte little-endian length and that many bytes of JSON (fewer if the object is shorter, which
    ``attrtools.cache.read_header`` reports as corrupt). Ranged reads: ``HEAD_READ`` bytes first,
    then the rest of the header in one more read when it is longer. Raises ``FileNotFoundError``."""
    head = fs.cat_file(path, start=0, end=HEAD_READ)
    if len(head) < 8:
        return head
    (size,) = struct.unpack("<Q", head[:8])
    want = 8 + min(size, MAX_HEADER)
    if want > len(head) and len(head) == HEAD_READ:
        head += fs.cat_file(path, start=HEAD_READ, end=want)
    return head[:want]
