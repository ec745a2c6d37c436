"""The valid values of a tool option, declared on its ``Config`` field and checked when the config is built.

Each tool's settings are one dataclass (``PruneConfig``, ``TreeConfig``, ``AuditConfig``,
``EvaluateConfig``). A field declared with :func:`option` carries its rule (kind, range, choices,
whether ``None`` is allowed, its command-line spelling) in the field's metadata, and the config's
``__post_init__`` calls :func:`check_ranges`, the one place where these rules are enforced. So
``attrtools prune --fraction-step 0`` and ``PruneConfig(fraction_step=0)`` (or
``run_pruning(..., fraction_step=0)``, which builds the config through ``dataclasses.replace``)
give the same one-line :class:`~attrtools.errors.ParameterError` (exit code 2 on the command line)
before any model is loaded, instead of a ``ZeroDivisionError`` deep in the pipeline::

    PruneConfig.fraction_step (--fraction-step) must be a finite number > 0 and <= 1, got 0

Kinds: ``int`` (an integral number, never a bool), ``float`` (a finite real number, ints
included), ``bool``, ``str`` and ``dict``. ``sequence=True`` makes the field a list or tuple whose
items each follow the rule; ``values=True`` makes it a dict whose values each follow it. For an
``int`` or ``float`` rule, ``choices`` are extra string spellings allowed beside the numbers (a
tree ``target`` is 'pred', 'gold' or a class index >= 0); for a ``str`` rule they are the only
ones allowed. Bounds are inclusive unless ``low_open`` / ``high_open``.

A field assigned after the config is built is not checked again (the dataclasses are mutable);
pipelines receive configs built here or through ``dataclasses.replace``, which checks.

Torch-free; imports only :mod:`attrtools.errors`.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from .errors import ParameterError

__all__ = ["Rule", "option", "check_ranges", "rule_of"]

KINDS = ("int", "float", "bool", "str", "dict")
_KEY = "attrtools.rule"


@dataclass(frozen=True)
class Rule:
    """What one config field accepts (see the module docstring)."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    optional: bool = False
    sequence: bool = False
    values: bool = False
    nonempty: bool = False
    flag: str | None = ""  # the command-line spelling; "" derives it from the field name, None: no single flag

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}; kinds: {KINDS}")

    def describe(self) -> str:
        """What an accepted value is, in words (the tail of the error message)."""
        item = self._describe_item()
        if self.sequence:
            text = f"a {'non-empty ' if self.nonempty else ''}list of items each {item}"
        elif self.values:
            text = f"a dict whose values are each {item}"
        else:
            text = item
        return text + (" or None" if self.optional else "")

    def _describe_item(self) -> str:
        if self.kind == "bool":
            return "True or False"
        if self.kind == "dict":
            return "a dict"
        if self.kind == "str":
            return "one of " + ", ".join(map(repr, self.choices)) if self.choices else "a string"
        text = "a whole number" if self.kind == "int" else "a finite number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if bounds:
            text += " " + " and ".join(bounds)
        if self.choices:
            text = "one of " + ", ".join(map(repr, self.choices)) + " or " + text
        return text

    def accepts(self, value) -> bool:
        """Whether ``value`` is valid for this field (containers checked item by item)."""
        if value is None:
            return self.optional
        if self.sequence:
            return isinstance(value, (list, tuple)) and not (self.nonempty and not value) and \
                all(self._accepts_item(v) for v in value)
        if self.values:
            return isinstance(value, dict) and all(self._accepts_item(v) for v in value.values())
        return self._accepts_item(value)

    def _accepts_item(self, value) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "dict":
            return isinstance(value, dict)
        if isinstance(value, str):
            return value in self.choices if self.choices else self.kind == "str"
        if self.kind == "str":
            return False
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False
        number = float(value)
        if not math.isfinite(number):
            return False
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return False
        if self.high is not None and (number >= self.high if self.high_open else number > self.high):
            return False
        return True


def option(default=dataclasses.MISSING, *, kind: str, default_factory=dataclasses.MISSING, **rule) -> dataclasses.Field:
    """A dataclass field carrying its :class:`Rule` (``kind`` and the rule's other keywords).

    Example: ``fraction_step: float = option(0.1, kind="float", low=0, low_open=True, high=1)``.
    """
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_KEY: Rule(kind=kind, **rule)})


def rule_of(field: dataclasses.Field) -> Rule | None:
    """The rule a field was declared with (None for a field declared without :func:`option`)."""
    return field.metadata.get(_KEY)


def check_ranges(config) -> None:
    """Check every ruled field of the dataclass instance ``config``; raise a one-line
    ``ParameterError`` naming the first field out of its range (``Class.field (--flag) must be
    ..., got value``). Called by each tool config's ``__post_init__``."""
    for field in dataclasses.fields(config):
        rule = rule_of(field)
        if rule is None:
            continue
        value = getattr(config, field.name)
        if rule.accepts(value):
            continue
        flag = ("--" + field.name.replace("_", "-")) if rule.flag == "" else rule.flag
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ParameterError(f"{type(config).__name__}.{field.name}{f' ({flag})' if flag else ''} must be "
                             f"{rule.describe()}, got {shown}")
