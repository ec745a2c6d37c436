"""Bytes `attrtools cache ls` reads per entry on a remote (fsspec) store: the header's ranged read
against the whole object.

    python scripts/bench_cache_ls.py                         # memory:// (what is read does not depend on the store)
    python scripts/bench_cache_ls.py --store s3://bucket/p   # a real S3 server (AWS_ENDPOINT_URL, credentials in env)

Writes ``--entries`` entries of shape (12, 128, 128) fp32 (one BERT-base layer at 128 tokens), lists
them through ``AttributionCache.ls`` counting the bytes every ``cat_file`` returns, and prints the
object size and the bytes read per entry. The store prefix is cleared first and afterwards.
"""
import argparse

import torch

from attrtools.cache import AttributionCache


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="memory://attrtools-bench-ls")
    parser.add_argument("--entries", type=int, default=20)
    args = parser.parse_args()
    cache = AttributionCache(args.store, memory_bytes=0)
    cache.clear()
    for i in range(args.entries):
        value = torch.randn(12, 128, 128, generator=torch.Generator().manual_seed(i))
        cache.put(f"{i:064x}", value, {"method": "attattr", "unit": i % 12, "model": "m" * 64})
    read = [0]
    original = cache.fs.cat_file

    def counting(path, start=None, end=None, **kw):
        data = original(path, start=start, end=end, **kw)
        read[0] += len(data)
        return data

    cache.fs.cat_file = counting
    rows = list(cache.ls())
    size = sum(r["bytes"] for r in rows) / len(rows)
    print(f"store {cache.directory}  entries {len(rows)}  object bytes {size:.0f}  "
          f"cache ls bytes read per entry {read[0] / len(rows):.0f}")
    del cache.fs.cat_file
    cache.clear()


if __name__ == "__main__":
    main()
