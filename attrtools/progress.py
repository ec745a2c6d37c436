"""Progress bars for every step that takes more than a few seconds: tqdm with a rate and an
estimate of the time left, on stderr. ``enabled=None`` means ``enabled_default()``: on in a
terminal and in a notebook kernel (Jupyter, VS Code, Colab: stderr is not a terminal there, but a
20-minute job must show it is alive), off in pipes, logs and CI (``$CI`` set)."""
from __future__ import annotations

import sys


class NullBar:
    """Stands in for a disabled bar: every call does nothing (``n`` counts, as tqdm's does)."""

    n = 0

    def update(self, n=1):
        self.n += n

    def refresh(self):
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


def in_notebook_kernel() -> bool:
    """Whether this process is an IPython kernel serving a notebook front end (Jupyter, VS Code,
    Colab): ipykernel imported and the running shell has a kernel (a terminal IPython has none)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def enabled_default(enabled: bool | None = None) -> bool:
    """The one rule for whether a progress bar shows: ``enabled`` when given; else off under CI
    (``$CI`` set to anything but "", "0", "false"), on in a notebook kernel or when stderr is a terminal."""
    import os

    if enabled is not None:
        return bool(enabled)
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    if in_notebook_kernel():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def tqdm_class():
    """tqdm's notebook widget where a kernel has ipywidgets, else the text bar (tqdm.auto would warn
    "IProgress not found" in a kernel without ipywidgets: the text bar renders there as well)."""
    if in_notebook_kernel():
        import importlib.util

        if importlib.util.find_spec("ipywidgets") is not None:
            from tqdm.notebook import tqdm

            return tqdm
    from tqdm.std import tqdm

    return tqdm


def bar(total: int | None, desc: str, unit: str = "it", enabled: bool | None = None, leave: bool = True):
    """A tqdm bar (rate and ETA) or a ``NullBar`` when disabled or when there is nothing to do."""
    if not enabled_default(enabled) or total == 0:
        return NullBar()
    tqdm = tqdm_class()
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
