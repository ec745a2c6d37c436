"""The errors attrtools raises on purpose, under one base class.

Every error that means "this cannot be done as asked" derives from :class:`AttrtoolsError`; the
command line prints those as one line and exits with their ``exit_code`` (2: the request itself is
malformed, as click does for bad options; 1: the request was well formed but what it names cannot
be used: a missing file, an unsupported model, an unreadable cache), while any other exception is a
bug and keeps its traceback (see ``docs/architecture.md``, "Errors").

The concrete classes also derive from the built-in exception they used to be (``ValueError``,
``RuntimeError``, ``ImportError``), so code written against the older classes keeps working.

Hierarchy::

    AttrtoolsError (exit 1)
    ├── UsageError (exit 2)          the request itself is malformed
    │   └── ParameterError           a bad option or method parameter (also a TypeError)
    │       └── UnknownMethodError     a method name that is not registered (also a KeyError)
    ├── InputDataError               a dataset, file, column or row that cannot be used
    ├── UnsupportedModelError        an architecture attrtools (or one method) cannot handle
    │   ├── UnsupportedArchitecture  (a method refusing a model; old name kept)
    │   └── OneOutputError           class probabilities asked of a one-output model (num_labels=1)
    ├── CacheError                   the attribution cache cannot be opened, read or written
    ├── CaptureError                 attention capture is not installed or did not run
    ├── MissingDependencyError       an optional extra (textattack, ...) is not installed
    └── DistributedError             a multi-process job cannot run as asked (launcher, ranks, cache)

Subclasses kept beside the code that raises them (each under one of the classes above; importable
only from its module; ``tests/test_errors.py`` checks that this list is complete)::

    guard.ModelFolderError, guard.RemoteCodeError      UnsupportedModelError
    guard.DeviceError                                  ParameterError
    guard.InputFileError, guard.VocabularyError        InputDataError
    architecture.PoolingError, models.CheckpointMismatchError, pruned.UnsupportedPruningError
                                                       UnsupportedModelError
    capture.CaptureNotInstalledError                   CaptureError
    rundir.RunDirError, rundir.RunDirMismatch, rundir.RunDirBusy, rundir.RunDirNotWritable
                                                       AttrtoolsError (also ValueError)
    cli_kit.UserError                                  UsageError (also a click exception)
    adversarial.resources.RecipeError, adversarial.pipeline.AuditError
                                                       AttrtoolsError (also ValueError)
    heads.NoProbabilityError, models.DtypeError       UsageError
    inputs.InputTypeError                              InputDataError (also TypeError)
    words.WordAlignmentError                           AttrtoolsError (also ValueError)
    labels.LabelError, labels.LabelRangeError          InputDataError
    report.plots.FigureFormatError                     UsageError
    locks.LockBusy                                     AttrtoolsError
    precision.PrecisionError                           AttrtoolsError (also ArithmeticError)
    adversarial.textattack_compat.TextAttackUnavailable
                                                       MissingDependencyError

This module imports nothing, so any layer may raise these types.
"""
from __future__ import annotations

__all__ = ["AttrtoolsError", "UsageError", "ParameterError", "UnknownMethodError", "InputDataError", "UnsupportedModelError",
           "UnsupportedArchitecture", "CacheError", "CaptureError", "MissingDependencyError", "OneOutputError", "DistributedError",
           "exit_code_for", "did_you_mean"]


class AttrtoolsError(Exception):
    """Base of every deliberate attrtools error. ``exit_code``: what the command line exits with."""

    exit_code = 1


class UsageError(AttrtoolsError, ValueError):
    """The request itself is malformed (an option or parameter value that cannot be right): exit code 2."""

    exit_code = 2


class ParameterError(UsageError, TypeError):
    """A parameter that is unknown, of the wrong type or out of range (a method parameter, a
    target, a tool option). One line naming the parameter; raised before anything is computed.
    A ``TypeError`` and a ``ValueError``, so callers catching either keep working."""


class UnknownMethodError(ParameterError, KeyError):
    """A method name that is not registered (a ``KeyError`` too, as a registry lookup)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputDataError(AttrtoolsError, ValueError):
    """A dataset, file, column or row that cannot be used, with a message saying why."""


class UnsupportedModelError(AttrtoolsError, ValueError):
    """A model whose architecture attrtools cannot capture, or that a method does not apply to."""


class UnsupportedArchitecture(UnsupportedModelError):
    """A method that cannot run on this model's architecture (raised by ``Method.check_model``)."""


class OneOutputError(UnsupportedModelError):
    """Something that needs class probabilities was asked of a model with one output (``num_labels=1``).
    Raised by ``architecture.require_classes`` and ``methods.base.target_score`` (importable from both
    ``attrtools.models`` and ``attrtools.methods.base``, where it was defined before; still a ``ValueError``)."""


class DistributedError(AttrtoolsError, RuntimeError):
    """A distributed job cannot run as asked: an inconsistent launcher environment, ranks that
    disagree, no cache every rank can read (raised by ``attrtools.distributed`` and the engine;
    importable from ``attrtools.distributed`` as before; still a ``RuntimeError``)."""


class CacheError(AttrtoolsError, RuntimeError):
    """The attribution cache cannot be opened, read or written (permissions, full disk, ...)."""


class CaptureError(AttrtoolsError, RuntimeError):
    """Attention capture is not installed on a model, or did not run where it had to."""


class MissingDependencyError(AttrtoolsError, ImportError):
    """An optional dependency (an extra such as ``attack``) is not installed or cannot be imported."""


def did_you_mean(names, choices) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to each of ``names`` (a name or a
    list; the peers' spellings and typos: ``difflib`` similarity >= 0.6), or ``""`` when none is close.
    The one place every "unknown name" message (methods, parameters, recipes) gets its hint."""
    import difflib

    names = [names] if isinstance(names, str) else list(names)
    close = [m for n in names for m in difflib.get_close_matches(str(n), [str(c) for c in choices], n=1)]
    return f"; did you mean {', '.join(map(repr, dict.fromkeys(close)))}?" if close else ""


def exit_code_for(err: BaseException) -> int | None:
    """The command-line exit code of a deliberate error, or None for anything else (a bug)."""
    return getattr(err, "exit_code", 1) if isinstance(err, AttrtoolsError) else None
