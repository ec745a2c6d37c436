"""Progress bars for every step that takes more than a few seconds: tqdm with a rate and an
estimate of the time left, on stderr, shown only when stderr is a terminal (so logs, CI and pipes
stay clean). ``enabled=None`` means "when stderr is a terminal"."""
from __future__ import annotations

import sys


class NullBar:
    """Stands in for a disabled bar: every call does nothing."""

    def update(self, n=1):
        pass

    def set_postfix_str(self, *args, **kwargs):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def enabled_default(enabled: bool | None = None) -> bool:
    if enabled is not None:
        return bool(enabled)
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(total: int | None, desc: str, unit: str = "it", enabled: bool | None = None, leave: bool = True):
    """A tqdm bar (rate and ETA) or a ``NullBar`` when disabled or when there is nothing to do."""
    if not enabled_default(enabled) or total == 0:
        return NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)


def track(iterable, desc: str, total: int | None = None, unit: str = "it", enabled: bool | None = None):
    """Iterate with a bar (see ``bar``)."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    progress = bar(total, desc, unit, enabled)
    try:
        for item in iterable:
            yield item
            progress.update(1)
    finally:
        progress.close()
