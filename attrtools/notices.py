"""Warnings attrtools emits, attributed to the line of the caller's code.

A warning raised deep inside the engine (a truncation, an IG completeness gap, a cache that cannot
be written) would otherwise name an attrtools or torch frame (``torch.no_grad``'s wrapper sits
between the engine and the user). :func:`warn` names the frame that called into attrtools the
outermost time: the user's line in a script, notebook or test. Python 3.12's
``warnings.warn(skip_file_prefixes=...)`` stops at the first frame outside the prefixes, which
would be that torch wrapper, so the frame is found here (standard library only; importable by any
core module).
"""
from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn", "caller_stacklevel"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def caller_stacklevel(skip: int = 1) -> int:
    """The ``stacklevel`` for a ``warnings.warn`` called in the function ``skip`` frames out from
    this one (1: the direct caller) that names the frame just outside the outermost attrtools
    frame on the stack; 2 (that function's caller) when no attrtools frame is on it. When that
    frame is the interpreter's own (``<frozen runpy>``: ``python -m attrtools``, as launchers run
    ranks), the outermost attrtools frame itself (``attrtools/__main__.py``)."""
    frame = sys._getframe(skip)  # the frame that will call warnings.warn: stacklevel 1
    level, target, caller = 1, None, None
    while frame is not None:
        if frame.f_code.co_filename.startswith(_PACKAGE):
            target = level + 1  # the frame that called this attrtools frame
            caller = frame.f_back
        frame = frame.f_back
        level += 1
    if caller is not None and caller.f_code.co_filename.startswith("<frozen "):
        # ``python -m attrtools`` (torchrun and accelerate launch run ranks so): no user code on
        # the stack, only the interpreter's runpy; name the entry point the command line ran.
        return target - 1
    return target or 2


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the caller's line outside attrtools
    (``caller_stacklevel``), so a library user sees which of their calls it is about."""
    warnings.warn(message, category, stacklevel=caller_stacklevel(1))
