"""A tool option declared once, on its ``Config`` field: its help, command-line spelling, kind and
valid values, checked when the config is built.

Each tool's settings are one dataclass (``PruneConfig``, ``TreeConfig``, ``AuditConfig``,
``EvaluateConfig``) made with :func:`tool_config`. A field declared with :func:`option` carries its
rule (kind, range, choices, whether ``None`` is allowed) and its face (help text, command-line
spelling, metavar) in the field's metadata. From that one declaration

- the config's ``__post_init__`` calls :func:`check_ranges`, the one place where the rules are enforced;
- ``cli_kit.config_options`` generates the command's click options (flag, type, default, help), and
  ``cli_kit.config_from_options`` builds the config from what the command line gave;
- :func:`tool_config` appends the fields' help to the class docstring (``help(PruneConfig)``).

So
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

Shared fields (``batch_size_field``, ``max_length_field``, ``progress_field``, ``steps_field``,
``seed_field``) hold the help text every tool gives them, once.

A new tool option is one field: ``option(default, kind=..., help=...)`` (and the line of the
pipeline that reads it); the command line and the docstring follow.

Torch- and click-free; imports only :mod:`attrtools.errors`.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from .errors import ParameterError

__all__ = ["Rule", "option", "check_ranges", "rule_of", "flag_of", "tool_config", "batch_size_field",
           "max_length_field", "progress_field", "steps_field", "tolerance_field", "TOLERANCE", "seed_field",
           "MAX_LENGTH_HELP", "PROGRESS_HELP", "steps_help"]

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
    # The option's face on the command line (cli_kit.config_options):
    flag: str | None = ""  # the spelling; "" derives it from the field name, None: no option; "--x/--no-x": a switch
    help: str = ""  # the --help text (also appended to the config's docstring)
    metavar: str | None = None
    multiple: bool = False  # a repeatable option (a dict field: KEY=VALUE items)
    cli_default: object = None  # the default as typed on the command line, where it differs from the field's
    official: int | None = None  # AttAttr steps: the official code's m, taken under --protocol official
    aliases: tuple = ()  # further spellings of the flag (old names kept working)

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
    """A dataclass field carrying its :class:`Rule` (``kind`` and the rule's other keywords,
    ``help`` and the command-line face included).

    Example: ``fraction_step: float = option(0.1, kind="float", low=0, low_open=True, high=1,
    help="Spacing of the pruning curve (fractions of heads).")``.
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
        flag = flag_of(field)
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ParameterError(f"{type(config).__name__}.{field.name}{f' ({flag})' if flag else ''} must be "
                             f"{rule.describe()}, got {shown}")


def flag_of(field: dataclasses.Field) -> str | None:
    """The command-line spelling of a ruled field (None: the field has no option)."""
    rule = rule_of(field)
    if rule is None or rule.flag is None:
        return None
    return ("--" + field.name.replace("_", "-")) if rule.flag == "" else rule.flag


def tool_config(cls):
    """Make ``cls`` a tool's settings: a dataclass whose ``__post_init__`` checks every ruled field
    (:func:`check_ranges`, before the class's own ``__post_init__`` if it has one) and whose
    docstring lists every field with its option, default and help."""
    own = cls.__dict__.get("__post_init__")

    def __post_init__(self):
        check_ranges(self)  # one line naming the field, before anything loads
        if own is not None:
            own(self)

    cls.__post_init__ = __post_init__
    cls = dataclass(cls)
    lines = []
    for field in dataclasses.fields(cls):
        rule = rule_of(field)
        if rule is None:
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        flag = flag_of(field)
        lines.append(f"    ``{field.name}`` ({flag or 'no option'}; default {default!r}): {rule.help}".rstrip())
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n    Fields:\n\n" + "\n".join(lines) + "\n"
    return cls


# ----------------------------------------------------------------------------- fields every tool has
MAX_LENGTH_HELP = ("Truncate inputs to this many tokens, special tokens included (default: the model's limit, "
                   "from its position table and the tokenizer).")
PROGRESS_HELP = "Progress bars (default: when stderr is a terminal)."


def steps_help(official: int, note: str = "") -> str:
    """The help of an AttAttr ``--steps`` option whose official m is ``official``."""
    return ("AttAttr integration: 'auto' (converged to 1e-3, the default) or m left-Riemann steps "
            f"(--protocol official: m = {official}" + (f"; {note}" if note else "") + ").")


def batch_size_field(default: int = 8, help: str = "Examples per attribution batch.", **face):
    return option(default, kind="int", low=1, help=help, **face)


def max_length_field():
    return option(None, kind="int", low=2, optional=True, help=MAX_LENGTH_HELP)


def progress_field():
    return option(None, kind="bool", optional=True, flag="--progress/--no-progress", help=PROGRESS_HELP)


def steps_field(official: int, note: str = "", **face):
    """AttAttr's integration steps: 'auto' (the nested rule to 1e-3) or m official left-Riemann steps;
    ``official``: the m of the official code, taken when unset under ``--protocol official``."""
    return option("auto", kind="int", low=1, choices=("auto",), official=official, help=steps_help(official, note),
                  **face)


# AttAttr's and ig_embed's default relative tolerance under steps="auto", declared here (torch-free, for the
# tools' configs) and read by methods.integration as DEFAULT_TOLERANCE
TOLERANCE = 1e-3


def tolerance_field(**face):
    """AttAttr's relative error target under ``steps='auto'`` (ignored, and left out of cache keys, with a
    fixed m: a fixed rule has no error estimate)."""
    return option(TOLERANCE, kind="float", low=0, low_open=True, high=1,
                  help="AttAttr with --steps auto: the relative error its integral is refined to "
                       "(default 1e-3; bf16/fp16 models stop at their precision floor; ignored with a fixed m).",
                  **face)


def seed_field(default: int, help: str):
    return option(default, kind="int", help=help)
