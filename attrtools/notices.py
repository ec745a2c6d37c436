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

__all__ = ["warn", "caller_stacklevel", "cli_command"]

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


def cli_command() -> str | None:
    """The attrtools CLI command running now (``"prune"``, ``"demo"``, ...; the first subcommand
    under ``attrtools``), or None when attrtools is used from Python. Read from click's current
    context when click is already loaded (no import here), and only when that context's root
    command is attrtools' own (``attrtools.cli.main``), so a user's own click app counts as Python."""
    click = sys.modules.get("click")
    if click is None:
        return None
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    root = ctx.find_root()
    if not getattr(getattr(root.command, "callback", None), "__module__", "").startswith("attrtools."):
        return None
    names = []
    while ctx is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    names = [n for n in reversed(names) if n]
    return names[1] if len(names) > 1 else (names[0] if names else "attrtools")


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the caller's line outside attrtools
    (``caller_stacklevel``), so a library user sees which of their calls it is about. Inside an
    attrtools CLI command (:func:`cli_command`) the line outside attrtools would be click's (or
    ``<frozen runpy>`` under torchrun), which says nothing to the user: the warning names the
    command instead (``attrtools prune:0: ...``)."""
    command = cli_command()
    if command is not None:
        warnings.warn_explicit(message, category, f"attrtools {command}", 0, module="attrtools")
        return
    warnings.warn(message, category, stacklevel=caller_stacklevel(1))
