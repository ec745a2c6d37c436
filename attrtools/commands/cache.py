"""``attrtools cache ls|info|verify|clear``: inspect and maintain the attribution cache.

The folder is ``--cache-dir``, else ``$ATTRTOOLS_CACHE``, else ``$XDG_CACHE_HOME/attrtools``.
``verify`` reads every entry and checks its checksum; it exits with status 1 when it finds bad
entries (``--fix`` removes them, and stale temporary files, and then exits 0).
"""
from __future__ import annotations

import datetime
import sys

import click

from ..cli_kit import Group, UserError, dump

cache_dir_option = click.option("--cache-dir", default=None, envvar="ATTRTOOLS_CACHE",
                                help="Cache folder (default: $ATTRTOOLS_CACHE, else $XDG_CACHE_HOME/attrtools).")


def _open(cache_dir):
    from ..cache import AttributionCache

    return AttributionCache(cache_dir, memory_bytes=0)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


@click.group(cls=Group)
def cache():
    """Inspect, verify and clear the attribution cache."""


@cache.command("ls")
@cache_dir_option
@click.option("--method", default=None, help="Only entries of this method.")
@click.option("--json", "as_json", is_flag=True, help="One JSON list instead of a table.")
def ls(cache_dir, method, as_json):
    """List entries: key, method, unit, shape, size, last use."""
    rows = [r for r in _open(cache_dir).ls() if method is None or r.get("method") == method]
    rows.sort(key=lambda r: r.get("mtime", 0), reverse=True)
    if as_json:
        click.echo(dump(rows))
        return
    for r in rows:
        if "error" in r:
            click.echo(f"{'UNREADABLE':<16} {r['path']}: {r['error']}")
            continue
        used = datetime.datetime.fromtimestamp(r["mtime"]).strftime("%Y-%m-%d %H:%M")
        unit = "-" if r["unit"] is None else r["unit"]
        click.echo(f"{r['key'][:16]}  {str(r['method']):<12} unit={unit!s:<3} {str(r['shape']):<18} "
                   f"{_size(r['bytes']):>10}  {used}")
    click.echo(f"{len(rows)} entries", err=True)


@cache.command()
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(cache_dir, as_json):
    """Folder, number of entries, bytes, and a breakdown by method and model."""
    summary = _open(cache_dir).info()
    for key in ("memory_entries", "memory_bytes_used", "memory_bytes_limit", "max_disk_bytes"):
        summary.pop(key, None)
    if as_json:
        click.echo(dump(summary))
        return
    click.echo(f"directory  {summary['directory']}")
    click.echo(f"entries    {summary['entries']}")
    click.echo(f"size       {_size(summary['bytes'])}")
    if summary.get("eviction_order"):
        click.echo(f"eviction   least recently {'used' if summary['eviction_order'] == 'last use' else 'created'} first")
    if summary["unreadable"]:
        click.echo(f"unreadable {summary['unreadable']} (run `attrtools cache verify --fix`)")
    for method, slot in sorted(summary["by_method"].items()):
        click.echo(f"  {method:<14} {slot['entries']:>8} entries  {_size(slot['bytes']):>10}")
    names = summary.get("model_names") or {}
    for model, count in sorted(summary["by_model"].items()):
        click.echo(f"  model {model}  {count:>6} entries  {names.get(model, '(name not recorded)')}")


@cache.command()
@cache_dir_option
@click.option("--fix", is_flag=True, help="Remove the bad entries (they are recomputed when next needed).")
def verify(cache_dir, fix):
    """Read every entry and check its header and checksum; exit 1 if any is bad (unless --fix)."""
    report = _open(cache_dir).verify(fix=fix)
    for path, reason in report["bad"]:
        click.echo(f"BAD  {path}: {reason}")
    for path in report["stale_tmp"]:
        click.echo(f"STALE TEMP  {path}")
    click.echo(f"checked {report['checked']} entries: {len(report['bad'])} bad, "
               f"{len(report['stale_tmp'])} stale temporary files" + (f", removed {report['removed']}" if fix else ""))
    if report["bad"] and not fix:
        sys.exit(1)


@cache.command()
@cache_dir_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def clear(cache_dir, yes):
    """Delete every cache entry (never during a distributed job)."""
    from ..distributed import is_distributed

    if is_distributed():
        raise UserError("cache clear does not run inside a distributed job (other ranks read and write the "
                        "cache); run it offline, without torchrun/accelerate")
    store = _open(cache_dir)
    if not yes:
        if not sys.stdin.isatty():  # no one to ask: never delete everything on a pipe's say-so
            raise UserError(f"cache clear would delete every entry under {store.directory}: pass --yes "
                            "(stdin is not a terminal, so it cannot ask)")
        click.confirm(f"Delete every entry under {store.directory}?", abort=True)
    try:
        removed = store.clear()
    except OSError as err:
        raise UserError(f"cannot clear {store.directory}: {err}") from None
    click.echo(f"removed {removed} entries from {store.directory}")
