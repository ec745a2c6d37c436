"""The command-line kit: what every attrtools command shares, defined once.

It sits below the tools' ``cli.py`` modules and above the core (see ``docs/architecture.md``): it
imports click and, lazily, the core (``api``, ``data``, ``cache``, ``io``, ``errors``), never a tool
or ``attrtools.commands``. It holds

- the shared options, one spelling and one help text each: ``--model``, ``--text/--text-pair``,
  ``--dataset`` with ``--text-column/--pair-column/--label-column/--label-names/--limit``,
  ``--cache-dir/--no-cache``, ``--device``, ``--output-dir``, ``--max-length``, ``--batch-size``,
  ``--progress/--no-progress``, ``--steps``, ``--target``, ``--seed``;
- parsing of targets, method parameters and comma lists;
- the run directory (``make_run_dir``) and the loaders that turn bad input into one-line errors;
- :class:`Command`, the click command class of every attrtools command: ``-h`` as well as
  ``--help``, every default shown, and the error mapping: an :class:`attrtools.errors.AttrtoolsError`
  becomes one line ``Error: ...`` and its ``exit_code`` (2 for a malformed request, 1 otherwise);
  any other exception is a bug and keeps its traceback.

Nothing here imports torch at import time, so ``attrtools --help`` stays fast.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import json
import os
from typing import Callable

import click

from .errors import AttrtoolsError, InputDataError, ParameterError, UsageError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


class UserError(UsageError, click.ClickException):
    """A malformed request found by a command's own checks: one line, exit code 2 (also when raised
    inside a plain click command, as a ``click.ClickException``)."""

    exit_code = 2

    def __init__(self, message: str):
        click.ClickException.__init__(self, message)

    def __str__(self) -> str:
        return self.message


class CommandFailed(click.ClickException):
    """How an ``AttrtoolsError`` reaches click: its message on one line, its exit code."""

    def __init__(self, err: AttrtoolsError):
        super().__init__(" ".join(str(err).split("\n")).strip() or type(err).__name__)
        self.exit_code = getattr(err, "exit_code", 1)


# Errors of the disk or the file system, not of attrtools: one line naming the file, exit 1.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                         errno.EISDIR, errno.EFBIG, errno.EIO})


def disk_failure(err: OSError) -> click.ClickException | None:
    """The one-line error for an ``OSError`` of the disk or file system (None for any other)."""
    if err.errno not in DISK_ERRNOS:
        return None
    where = f": {err.filename}" if err.filename else ""
    return click.ClickException(f"{err.strerror or err}{where} (results already computed stay in the "
                                "attribution cache: rerun to resume)")


@contextlib.contextmanager
def one_line_failures():
    """The one rule mapping failures to the command line: an ``AttrtoolsError`` becomes its message
    on one line with its exit code, a disk ``OSError`` one line naming the file (exit 1); anything
    else is a bug and keeps its traceback. Used by every command and group (also the group's own
    callback, where a launch error of ``distributed.setup_cli`` is raised)."""
    try:
        yield
    except AttrtoolsError as err:
        raise CommandFailed(err) from None
    except OSError as err:
        failure = disk_failure(err)
        if failure is None:
            raise
        raise failure from None


class Command(click.Command):
    """The click command of every attrtools command and script (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        settings = dict(CONTEXT_SETTINGS)
        settings.update(kwargs.pop("context_settings", None) or {})
        super().__init__(*args, context_settings=settings, **kwargs)

    def invoke(self, ctx):
        from . import runreport  # torch-free: what the input rules do in this command, for its summary

        runreport.reset()
        with one_line_failures():
            return super().invoke(ctx)


class Group(click.Group):
    """A click group whose subcommands are :class:`Command` (``attrtools cache ...``)."""

    command_class = Command

    def __init__(self, *args, **kwargs):
        settings = dict(CONTEXT_SETTINGS)
        settings.update(kwargs.pop("context_settings", None) or {})
        super().__init__(*args, context_settings=settings, **kwargs)

    def invoke(self, ctx):
        with one_line_failures():
            return super().invoke(ctx)


class AtLeast(click.ParamType):
    """An integer option of at least ``minimum``; anything else is one line, exit 2
    (``--limit must be at least 1, got 0``), not click's usage block."""

    name = "integer"

    def __init__(self, minimum: int = 1):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                raise UserError(f"{_option_name(param)} must be a whole number, got {value!r}") from None
        return at_least(_option_name(param), number, self.minimum)

    def get_metavar(self, param, *args, **kwargs):
        return f"N>={self.minimum}"


class Finite(click.ParamType):
    """A float option that must be finite and within ``[low, high]`` (one line, exit 2 otherwise)."""

    name = "float"

    def __init__(self, low: float | None = None, high: float | None = None):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{_option_name(param)} must be a number, got {value!r}") from None
        return finite(_option_name(param), number, self.low, self.high)


def _option_name(param) -> str:
    opts = getattr(param, "opts", None) or []
    return max(opts, key=len) if opts else "option"


def command(*args, **kwargs):
    """``click.command`` with :class:`Command` (use for every attrtools command and script)."""
    kwargs.setdefault("cls", Command)
    return click.command(*args, **kwargs)


def options(*decorators) -> Callable:
    """Apply several option decorators in the order they are listed (first = first in ``--help``)."""
    def decorate(f):
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return decorate


# ----------------------------------------------------------------------------------------- options
def model_option(required: bool = True, help: str | None = None):
    """``--model``, with ``--revision`` and ``--dtype`` for it (kept in ``ctx.meta``: read by
    ``load_model_or_fail`` and recorded in ``run_config.json`` by ``make_run_dir``)."""
    model = click.option("--model", "model_name", required=required, default=None,
                         help=help or "Hub id or local folder of a sequence classifier.")
    revision = click.option("--revision", default=None, expose_value=False, callback=_remember_model_option,
                            help="Hub branch, tag or commit of --model (model and tokenizer alike).")
    dtype = click.option("--dtype", default=None, expose_value=False, callback=_remember_model_option,
                         type=click.Choice(["fp32", "fp16", "bf16", "auto"]),
                         help="Weights dtype of --model on loading (default: the checkpoint's).")

    def decorate(f):
        return model(revision(dtype(f)))
    return decorate


def _remember_model_option(ctx, param, value):
    if value is not None:
        ctx.meta[f"attrtools.model_{param.name}"] = value
    return value


def model_load_options(ctx=None) -> dict:
    """``{"revision": ..., "dtype": ...}`` given with ``--model`` (only those given)."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return {}
    return {k: ctx.meta[f"attrtools.model_{k}"] for k in ("revision", "dtype") if f"attrtools.model_{k}" in ctx.meta}


def text_options(f):
    """``--text`` and ``--text-pair`` (repeatable): inputs given on the command line."""
    return options(
        click.option("--text", "texts", multiple=True, help="Text to explain (repeatable)."),
        click.option("--text-pair", "pairs", multiple=True, help="Second segment for each --text (repeatable)."),
    )(f)


label_names_option = click.option(
    "--label-names", default=None, metavar="NAME,NAME,...",
    help="Class names in class-id order, mapping string labels (e.g. negative,positive); default: the "
         "model's own label2id when it names its classes.")


def _data_option(ctx, param, value):
    """Callback of the data-reading options (``DATA_OPTIONS``): kept in ``ctx.meta`` for
    ``load_examples_or_fail``, so that no command's signature changes."""
    ctx.meta.setdefault("attrtools.data_options", {})[param.name] = value
    return value


#: Options of how ``--dataset`` is read, with the ``load_examples`` keyword each one sets (read by
#: ``load_examples_or_fail`` from ``ctx.meta``; config and split apply to ``--dataset`` only).
DATA_OPTIONS = {"dataset_config": "dataset_config", "dataset_split": "dataset_split", "no_header": "no_header",
                "column_names": "column_names", "one_based_labels": "one_based_labels"}


def data_reading_options(f):
    """``--dataset-config``, ``--dataset-split``, ``--no-header``, ``--column-names`` and ``--one-based-labels``
    (docs/datasets.md); their values reach ``load_examples_or_fail`` through ``ctx.meta``."""
    return options(
        click.option("--dataset-config", "--dataset-subset", "dataset_config", default=None, expose_value=False,
                     callback=_data_option,
                     help="Config (the hub viewer's 'subset') of a hub dataset, e.g. sst2 for nyu-mll/glue; the same "
                          "as owner/name:config:split."),
        click.option("--dataset-split", default=None, expose_value=False, callback=_data_option,
                     help="Split of a hub dataset or dataset folder (default: the spec's, else validation)."),
        click.option("--no-header", is_flag=True, expose_value=False, callback=_data_option,
                     help="The csv/tsv files have no header line: give columns by number, 1 = the first "
                          "(e.g. AG News: --label-column 1 --text-column 3)."),
        click.option("--column-names", default=None, metavar="NAME,NAME,...", expose_value=False,
                     callback=_data_option,
                     help="Names for the columns of csv/tsv files without a header line (implies --no-header), "
                          "e.g. label,title,description."),
        click.option("--one-based-labels", is_flag=True, expose_value=False, callback=_data_option,
                     help="Integer labels count classes from 1 (AG News 1..4): label k is class k-1."),
    )(f)


def data_options_given(what: str = "--dataset") -> dict:
    """The data-reading options of the running command (``data_reading_options``) as
    ``load_examples`` keywords; ``--dataset-config``/``--dataset-split`` only for ``--dataset``."""
    ctx = click.get_current_context(silent=True)
    given = dict(ctx.meta.get("attrtools.data_options", {})) if ctx is not None else {}
    if what != "--dataset":
        given.pop("dataset_config", None)
        given.pop("dataset_split", None)
    return {DATA_OPTIONS[k]: v for k, v in given.items() if k in DATA_OPTIONS and v}


def dataset_options(f=None, *, limit_help: str = "Read only the first N examples of --dataset."):
    """``--dataset`` and its column options, ``--label-names``, ``--limit`` and the data-reading
    options (``data_reading_options``)."""
    def decorate(f):
        return options(
            click.option("--dataset", default=None,
                         help="Hub id with split (stanfordnlp/imdb:test, nyu-mll/glue:sst2:validation, "
                              "glue/sst2:validation), a local csv/tsv/jsonl file or a parquet dataset folder."),
            click.option("--text-column", default=None, help="Column holding the text (default: guessed)."),
            click.option("--pair-column", default=None, help="Column holding the second segment (default: none)."),
            click.option("--label-column", default=None, help="Column holding the gold label (default: guessed)."),
            label_names_option,
            click.option("--limit", type=AtLeast(1), default=None, help=limit_help),
            data_reading_options,
        )(f)
    return decorate(f) if f is not None else decorate


def train_dataset_options(f=None, *, help: str = "Labelled training data to extract triggers from."):
    """``--train-dataset`` and its own column options (``--train-text-column``,
    ``--train-pair-column``, ``--train-label-column``): a training file whose columns are named
    otherwise than ``--dataset``'s; each left out takes the ``--dataset`` column option
    (``train_columns``)."""
    def decorate(f):
        return options(
            click.option("--train-dataset", default=None, help=help),
            click.option("--train-text-column", default=None,
                         help="Column of --train-dataset holding the text (default: --text-column's)."),
            click.option("--train-pair-column", default=None,
                         help="Column of --train-dataset holding the second segment (default: --pair-column's)."),
            click.option("--train-label-column", default=None,
                         help="Column of --train-dataset holding the gold label (default: --label-column's)."),
        )(f)
    return decorate(f) if f is not None else decorate


def train_columns(train: tuple, main: tuple) -> tuple:
    """``(text, pair, label)`` columns of ``--train-dataset``: each ``--train-*-column`` given, else
    the ``--dataset`` one (``main``)."""
    return tuple(t if t is not None else m for t, m in zip(train, main))


def _remember_cache_dtype(ctx, param, value):
    ctx.meta["attrtools.cache_dtype"] = value
    return value


def cache_options(f):
    """``--cache-dir``, ``--no-cache`` and ``--cache-dtype``: the shared attribution cache every command
    uses (``--cache-dtype`` is read by ``open_cache_or_fail`` from the click context)."""
    return options(
        click.option("--cache-dir", default=None,
                     help="Attribution cache folder (default: $ATTRTOOLS_CACHE, else $XDG_CACHE_HOME/attrtools)."),
        click.option("--no-cache", is_flag=True, help="Compute everything; read and write no cache."),
        click.option("--cache-dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
                     expose_value=False, callback=_remember_cache_dtype,
                     help="Precision the cache stores payloads in (default: $ATTRTOOLS_CACHE_DTYPE, else fp32); "
                          "bf16 halves the bytes at a relative error <= 2^-8, see docs/cache.md."),
    )(f)


def device_option(f):
    return click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")(f)


def _remember_overwrite(ctx, param, value):
    ctx.meta["attrtools.overwrite"] = bool(value)
    return value


def output_dir_option(f):
    """``--output-dir`` and ``--overwrite`` (read by ``make_run_dir`` from the click context)."""
    return options(
        click.option("--output-dir", type=click.Path(), default=None,
                     help="Run directory (default: runs/<command>-<timestamp>). Rerunning the same "
                          "configuration into it resumes; another configuration is refused."),
        click.option("--overwrite", is_flag=True, expose_value=False, callback=_remember_overwrite,
                     help="Replace what --output-dir holds when it is another run (default: refuse)."),
    )(f)


def max_length_option(default: int | None = None):
    from .ranges import MAX_LENGTH_HELP

    return click.option("--max-length", type=AtLeast(2), default=default, help=MAX_LENGTH_HELP)


def batch_size_option(default: int = 8, what: str = "Examples per attribution batch."):
    return click.option("--batch-size", type=AtLeast(1), default=default, help=what)


def progress_option(f):
    from .ranges import PROGRESS_HELP

    return click.option("--progress/--no-progress", default=None, help=PROGRESS_HELP)(f)


PROTOCOL_META = "attrtools.protocol"  # ctx.meta key: the --protocol of the running command


class StepsType(click.ParamType):
    """``--steps``: ``auto`` or a whole number >= 1 (one line, exit 2 otherwise)."""

    name = "steps"

    def convert(self, value, param, ctx):
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)):
            return value if value == "auto" else at_least(_option_name(param), value, 1)
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        try:
            number = int(text)
        except ValueError:
            raise UserError(f"{_option_name(param)} must be 'auto' or a whole number, got {value!r}") from None
        return at_least(_option_name(param), number, 1)

    def get_metavar(self, param, *args, **kwargs):
        return "auto|N"


def _remember_protocol(ctx, param, value):
    ctx.meta[PROTOCOL_META] = value
    return value


def protocol_option(f):
    """``--protocol converged|official`` (not passed to the command: read by the ``--steps``
    options, through ``ctx.meta``, and recorded in ``run_config.json`` by ``make_run_dir``)."""
    return click.option("--protocol", type=click.Choice(["converged", "official"]), default="converged",
                        is_eager=True, expose_value=False, callback=_remember_protocol,
                        help="converged (default): AttAttr integrals to 1e-3 relative error (steps=auto); "
                             "official: the official code's left Riemann sum (m as in its scripts).")(f)


def steps_option(official: int = 20, note: str = "", name: str = "--steps", protocol: bool = True):
    """``--steps``: AttAttr's integration steps: ``auto`` (the nested rule to the 1e-3 tolerance,
    ``attrtools.methods.integration``) or ``m`` (the official left Riemann sum with m steps).
    Unset: ``auto`` under ``--protocol converged`` (default), ``official`` under ``--protocol
    official``. ``protocol``: also add ``--protocol`` (once per command)."""
    def resolve(ctx, param, value):
        if value is not None:
            return value
        return official if ctx.meta.get(PROTOCOL_META, "converged") == "official" else "auto"

    from .ranges import steps_help

    option = click.option(name, type=StepsType(), default=None, callback=resolve, help=steps_help(official, note))
    return (lambda f: protocol_option(option(f))) if protocol else option


def target_option(default: str = "pred"):
    return click.option("--target", default=default,
                        help="Class explained: 'pred' (the predicted class), 'gold' (the label) or a class index.")


def field_option(cls, name: str, help: str | None = None, **kwargs):
    """``click.option`` for the field ``name`` of a tool's ``Config`` dataclass ``cls``: its flag,
    help, metavar, default and click type come from the field and its rule (:mod:`attrtools.ranges`),
    so they are declared once, on the field: ``AtLeast`` for a whole number with a lower bound,
    ``Finite`` for a number in closed bounds, ``click.Choice`` for a string with choices, a flag for
    a bool (``--x/--no-x`` a switch, ``--no-x`` the off flag of a field true by default), ``auto|N``
    for AttAttr steps (resolved through ``--protocol``), a comma list for a sequence, a repeatable
    ``KEY=VALUE`` option for a dict; any other rule is parsed as text and checked when the config is
    built (``config_from_options``). ``help`` and further ``kwargs`` override the field's. Raises
    ``KeyError`` for a field without a rule or without an option (a programming error)."""
    from .ranges import flag_of, rule_of

    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    rule = rule_of(field)
    flag = flag_of(field) if rule is not None else None
    if flag is None:
        raise KeyError(f"{cls.__name__}.{name} declares no option (attrtools.ranges.option)")
    kwargs.setdefault("help", help if help is not None else rule.help)
    if rule.metavar:
        kwargs.setdefault("metavar", rule.metavar)
    default = field.default if field.default is not dataclasses.MISSING else None
    if rule.cli_default is not None:
        default = rule.cli_default
    if rule.official is not None:  # AttAttr steps: unset means auto, or the official m under --protocol official
        official = rule.official

        def resolve(ctx, param, value):
            if value is not None:
                return value
            return official if ctx.meta.get(PROTOCOL_META, "converged") == "official" else "auto"

        return click.option(flag, name, type=StepsType(), default=None, callback=resolve, **kwargs)
    if rule.multiple:
        return click.option(flag, *rule.aliases, name, multiple=True, **kwargs)
    if rule.sequence:
        text = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return click.option(flag, *rule.aliases, name, default=text, **kwargs)
    kind = None
    if rule.kind == "bool":
        if "/" in flag:
            kwargs.setdefault("show_default", default is not None)
        elif flag.startswith("--no-") and default is True:
            kwargs.update(is_flag=True, flag_value=False, show_default=False)
        else:
            kwargs.setdefault("is_flag", True)
    elif rule.choices and rule.kind != "str":
        kind = str  # a number or a named choice ('pred'): read by config_from_options
    elif rule.kind == "str" and rule.choices:
        kind = click.Choice(list(rule.choices))
    elif rule.kind == "int" and rule.low is not None and rule.high is None:
        kind = AtLeast(int(rule.low) + (1 if rule.low_open else 0))
    elif rule.kind == "float" and not (rule.low_open or rule.high_open):
        kind = Finite(rule.low, rule.high)
    elif rule.kind in ("int", "float"):
        kind = int if rule.kind == "int" else float
    return click.option(flag, *rule.aliases, name, type=kind, default=default, **kwargs)


def config_options(cls, only=None, exclude=()) -> Callable:
    """The click options of the fields of ``cls`` (each through ``field_option``), in field order:
    every field with an option, or those named in ``only``, less ``exclude``. ``--protocol`` comes
    with the first AttAttr steps field. A command's parameters then include one keyword per field,
    which ``config_from_options`` turns into the config."""
    from .ranges import flag_of, rule_of

    decorators, protocol = [], False
    for field in dataclasses.fields(cls):
        if (only is not None and field.name not in only) or field.name in exclude or flag_of(field) is None:
            continue
        if rule_of(field).official is not None and not protocol:
            decorators.append(protocol_option)
            protocol = True
        decorators.append(field_option(cls, field.name))
    return options(*decorators)


def config_from_options(cls, values: dict, **given):
    """The ``cls`` config of a command: the values of its generated options (``config_options``),
    taken out of ``values`` (so what is left is the command's own), read as the fields' kinds (a comma
    list as a tuple of its items, repeated ``KEY=N`` items as a dict, '3' as 3 where a field takes a
    number or a name), then ``given`` (values the command read itself) on top. Values outside a
    field's range are the config's one-line ``ParameterError`` (exit 2)."""
    from .ranges import flag_of, rule_of

    fields = {}
    for field in dataclasses.fields(cls):
        if field.name not in values or flag_of(field) is None:
            continue
        value = values.pop(field.name)
        if field.name not in given:
            fields[field.name] = _read_field(rule_of(field), flag_of(field), value)
    fields.update(given)
    return cls(**fields)


def _read_field(rule, flag: str, value):
    """A command-line value as the field's kind (see ``config_from_options``)."""
    def number(text):
        text = str(text).strip()
        try:
            return int(text) if rule.kind == "int" or text.lstrip("-").isdigit() else float(text)
        except ValueError:
            if rule.choices and rule.kind != "str":
                return text
            raise UserError(f"{flag} must be {'a whole number' if rule.kind == 'int' else 'a number'}, "
                            f"got {text!r}") from None

    if value is None or not isinstance(value, (str, tuple, list)):
        return value
    if rule.values:  # repeated KEY=VALUE items
        out = {}
        for item in value:
            key, sep, text = str(item).partition("=")
            if not sep or not key.strip():
                raise UserError(f"{flag} {item!r} is not {rule.metavar or 'KEY=VALUE'}")
            out[key.strip()] = number(text) if rule.kind in ("int", "float") else parse_value(text)
        return out
    if rule.sequence:
        items = parse_list(value, flag) if isinstance(value, str) else list(value)
        return tuple(number(v) for v in items) if rule.kind in ("int", "float") else tuple(items)
    if rule.kind in ("int", "float") and isinstance(value, str):
        return number(value)
    return value


def seed_option(default: int = 0, what: str = "Random seed."):
    return click.option("--seed", type=int, default=default, help=what)


def run_options(f):
    """The options of every command that runs a model and are not tool settings: cache, output
    directory and device (a tool's ``--batch-size``, ``--max-length`` and ``--progress`` are fields
    of its config, ``config_options``)."""
    return options(cache_options, output_dir_option, device_option)(f)


def common_run_options(f=None, *, batch_size: int = 8, max_length: int | None = None,
                       batch_help: str = "Examples per attribution batch."):
    """The options of a command that runs a model without a tool config (``attribute``, ``demo``):
    cache, batch size, max length, progress, output directory and device."""
    def decorate(f):
        return options(cache_options, batch_size_option(batch_size, batch_help), max_length_option(max_length),
                       progress_option, output_dir_option, device_option)(f)
    return decorate(f) if f is not None else decorate


# ----------------------------------------------------------------------------------------- parsing
def parse_target(value):
    """``--target``: 'pred' (also 'predicted'), 'gold' or an integer class index."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text in ("pred", "predicted", "gold"):
        return "pred" if text == "predicted" else text
    raise UserError(f"--target must be 'pred', 'gold' or a class index, got {value!r}")


def parse_value(text: str):
    """A command-line value: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items, methods=None, option: str = "--param") -> dict:
    """``KEY=VALUE`` items -> ``{key: value}``; with ``methods``, ``METHOD:KEY=VALUE`` items ->
    ``{method: {key: value}}``, a plain ``KEY=VALUE`` applying to every one of ``methods`` that
    takes ``KEY`` (none: an error), a ``METHOD:`` not among ``methods`` an error (exit 2). Values are
    parsed as JSON when they parse."""
    flat: dict = {}
    per_method: dict = {}
    for item in items:
        head, sep, value = item.partition("=")
        if not sep or not head:
            raise UserError(f"{option} {item!r} is not {'METHOD:' if methods is not None else ''}KEY=VALUE")
        if methods is None:
            flat[head] = parse_value(value)
            continue
        method, colon, key = head.partition(":")
        if colon:
            if method not in methods:  # a parameter for a method that does not run would be ignored silently
                raise UserError(f"{option} {item!r}: method {method!r} is not among the chosen methods "
                                f"({', '.join(methods) or 'none'})")
            targets = [method]
        else:
            from . import methods as registry

            key = method
            targets = [m for m in methods if m in registry.list_methods() and key in registry.get(m).defaults]
            if not targets:
                raise UserError(f"{option} {item!r}: none of the chosen methods takes a parameter {key!r}")
        for m in targets:
            per_method.setdefault(m, {})[key] = parse_value(value)
    return per_method if methods is not None else flat


def check_method_params(method: str, params: dict, option: str = "--param") -> dict:
    """The method's parameters checked against its schema before anything loads (exit 2 on error)."""
    from . import methods as registry

    try:
        return registry.get(method).params(**params)
    except ParameterError as err:
        raise UserError(f"{option}: {err}") from None


def parse_list(value: str | None, option: str, choices=None) -> list[str]:
    """A comma-separated option value as a list (blanks dropped); checked against ``choices``."""
    names = [v.strip() for v in (value or "").split(",") if v.strip()]
    if choices is not None:
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise UserError(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
    return names


def at_least(option: str, value, minimum: int = 1):
    """``value`` (an int option) or a one-line usage error naming ``option``."""
    if value is not None and value < minimum:
        raise UserError(f"{option} must be at least {minimum}, got {value}")
    return value


def finite(option: str, value, low: float | None = None, high: float | None = None):
    """``value`` (a float option) finite and within [low, high], or a one-line usage error."""
    import math

    if value is None:
        return value
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        span = f" in [{low:g}, {high:g}]" if low is not None and high is not None else \
            (f" >= {low:g}" if low is not None else "")
        raise UserError(f"{option} must be a finite number{span}, got {value}")
    return value


def check_labels(examples, model, what: str = "--dataset", need: bool = False):
    """``labels.check_gold_labels`` (the one label rule) for a command: every gold label a class of
    ``model`` (the model or its config, ``model_config_for_labels``; None checks no range), 1-based
    labels named as such; ``need``: unlabeled rows left out with their reason, no label column an
    error. Returns the examples kept (an ``ExampleList``); errors are one line: exit 2 for a label
    outside the model's classes (``labels.LabelRangeError``), 1 for data without the labels needed."""
    from .labels import check_gold_labels, num_classes_of

    return check_gold_labels(examples, num_classes_of(model), need=need, what=what)


def parse_floats(value: str | None, option: str, low: float = 0.0, high: float = 1.0) -> list[float] | None:
    """Comma-separated numbers in ``[low, high]`` (None when not given)."""
    if not value:
        return None
    try:
        numbers = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated numbers, got {value!r}") from None
    if not numbers or any(not low <= x <= high for x in numbers):  # NaN fails every comparison
        raise UserError(f"{option} must lie in [{low:g}, {high:g}]")
    return numbers


# ----------------------------------------------------------------------------------------- run dirs
def _record_what_ran(config: dict, ctx) -> None:
    """Complete a run's record with what ran where options could read otherwise: the integration rule
    (a fixed ``--steps m`` is m left-Riemann steps under either ``--protocol``, and its ``--tolerance``
    plays no part, so none is recorded) and the stored precision of the cache (``--cache-dtype`` or
    ``$ATTRTOOLS_CACHE_DTYPE``)."""
    steps = config.get("steps")
    if isinstance(steps, int) and not isinstance(steps, bool):
        config["integration"] = f"left Riemann, m = {steps}"
        if "tolerance" in config:
            config["tolerance"] = None
    elif steps == "auto":
        from .ranges import TOLERANCE

        config["integration"] = f"auto (nested rule to a relative {config.get('tolerance') or TOLERANCE:g})"
    from .cache import DTYPE_ENV

    dtype = ctx.meta.get("attrtools.cache_dtype") if ctx is not None else None
    config.setdefault("cache_dtype", dtype or os.environ.get(DTYPE_ENV) or "fp32")


def make_run_dir(output_dir: str | None, command: str, config: dict, examples=None,
                 overwrite: bool | None = None) -> str:
    """Create (or resume) and lock the run directory through ``attrtools.rundir.prepare``; the one
    place run directories are made. Call it before loading the model.

    ``config``: the run's settings (a tool's ``asdict(config)`` plus what the command adds), written
    to ``run_config.json`` and completed with ``model_identity`` of ``config["model"]``, a digest of
    local ``dataset`` / ``train_dataset`` / ``eval_dataset`` files and, when given,
    ``data_identity(examples)``. The same configuration resumes; another one is refused
    (``RunDirMismatch``, exit 2) unless ``--overwrite`` (the folder is emptied first); a second live
    writer or an unwritable folder fails in one line (exit 1). The lock goes when the command ends.
    Under a launcher, ranks other than 0 get a private temporary folder instead (every rank runs the
    command; rank 0 alone writes the outputs). ``world_size`` is recorded (1 without a launcher)
    but does not decide the run: a run started with K ranks resumes with any other number."""
    from . import distributed, rundir

    here = distributed.world()
    if not here.is_main:
        output_dir = distributed.private_run_dir()
    # recorded, not compared (rundir.VOLATILE): a job may resume with another number of ranks
    config = dict(config, world_size=here.size)

    if output_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        output_dir = os.path.join("runs", f"{command}-{stamp}")
    ctx = click.get_current_context(silent=True)
    if overwrite is None:
        overwrite = bool(ctx.meta.get("attrtools.overwrite")) if ctx is not None else False
    config = dict(config)
    config.update({f"model_{k}": v for k, v in model_load_options(ctx).items()})  # --revision, --dtype
    if ctx is not None and PROTOCOL_META in ctx.meta:  # which integration protocol the run used
        config.setdefault("protocol", ctx.meta[PROTOCOL_META])
    _record_what_ran(config, ctx)
    for key in ("model", "model_name"):
        if isinstance(config.get(key), str):
            config[f"{key}_identity"] = rundir.model_identity(config[key])
    for key in ("dataset", "train_dataset", "eval_dataset"):
        if isinstance(config.get(key), str) and os.path.isfile(config[key]):
            config[f"{key}_identity"] = rundir.data_file_identity(config[key])
    if examples is not None:
        config["data_identity"] = rundir.data_identity(examples)
    config.update({k: v for k, v in data_options_given().items() if k not in config})  # how --dataset was read
    rule = ctx.meta.get("attrtools.input_rule") if ctx is not None else None
    if rule:  # a model loaded before the run directory: its input rule goes in at once
        config.update({k: rule[k] for k in INPUT_RULE_KEYS if k in rule})
    try:
        run = rundir.prepare(output_dir, command, config, overwrite=overwrite)
    except rundir.RunDirMismatch as err:  # a request that contradicts the folder: exit 2, one line
        raise UserError(str(err)) from None
    if ctx is not None:
        ctx.find_root().call_on_close(run.close)  # the lock goes when the command ends, however it ends
        ctx.meta["attrtools.run_dir"] = run.path  # record_input_rule adds the model's input rule here
    return run.path


# ----------------------------------------------------------------------------------------- loaders
def quiet_transformers():
    """Silence the load reports and progress bars of transformers and datasets (ours stay); the
    kit's loaders call it first, so a dataset load prints no bars of its own."""
    from .models import quiet_loaders

    quiet_loaders()


def load_model_or_fail(name: str, device=None):
    """``attrtools.load_model``; an unusable model becomes one line (exit 1), naming it; a device
    this machine lacks is a malformed request (exit 2)."""
    from .api import load_model
    from .errors import UnsupportedModelError
    from .guard import check_device

    from . import distributed

    if device is None and distributed.is_distributed():
        device = str(distributed.device())  # one device per rank
    check_device(device)
    quiet_transformers()
    try:
        ctx = click.get_current_context(silent=True)
        # --revision / --dtype belong to --model (not to a second model such as audit --compare-model)
        chosen = model_load_options(ctx) if ctx is not None and name == ctx.params.get("model_name") else {}
        model, tokenizer = load_model(name, device=device, **chosen)
    except AttrtoolsError:
        raise
    except (OSError, ValueError) as err:  # transformers' wording for a missing or broken checkpoint
        raise UnsupportedModelError(f"cannot load model {name!r}: {err}") from None
    record_input_rule(name, model, tokenizer)
    return model, tokenizer


#: run_config.json keys written by ``record_input_rule``: derived from the model, not asked for, so
#: ``rundir`` leaves them out of a run's identity (a resume compares only what was asked).
INPUT_RULE_KEYS = ("max_length_used", "max_length_option", "position_limit", "tokenizer_limit", "max_length_by_model")


def record_input_rule(name: str, model, tokenizer) -> int | None:
    """The truncation length this command uses for ``model``: ``models.max_input_length`` with the
    command's ``--max-length`` (an override beyond the position table is one line, exit 2). The
    first model of a command is recorded in its ``run_config.json`` as ``max_length_used`` (None:
    no limit known) next to ``max_length_option``, ``position_limit`` and ``tokenizer_limit``;
    further models (``audit --compare-model``) under ``max_length_by_model``. Shown by ``echo_summary``."""
    from .models import max_input_length, position_limit, tokenizer_limit

    ctx = click.get_current_context(silent=True)
    override = ctx.params.get("max_length") if ctx is not None else None
    try:
        used = max_input_length(model, tokenizer, override)
    except ValueError as err:
        raise UserError(f"--max-length: {err}") from None
    if ctx is None:
        return used
    rule = ctx.meta.get("attrtools.input_rule")
    if rule is None:
        rule = {"max_length_used": used, "max_length_option": override, "position_limit": position_limit(model),
                "tokenizer_limit": tokenizer_limit(tokenizer)}
        ctx.meta["attrtools.input_rule"] = rule
    else:
        rule.setdefault("max_length_by_model", {rule.get("model_name", "first"): rule["max_length_used"]})
        rule["max_length_by_model"][str(name)] = used
    rule.setdefault("model_name", str(name))
    run_dir = ctx.meta.get("attrtools.run_dir")
    if run_dir:
        update_run_config(run_dir, {k: rule[k] for k in INPUT_RULE_KEYS if k in rule})
    return used


def update_run_config(run_dir: str, values: dict) -> None:
    """Add ``values`` to ``run_dir/run_config.json`` (atomically)."""
    from .io import write_json
    from .rundir import CONFIG_FILE

    path = os.path.join(run_dir, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    config.update(values)
    write_json(path, config)


def label_names_list(label_names) -> list[str] | None:
    if label_names is None or isinstance(label_names, (list, tuple)):
        return list(label_names) if label_names else None
    return parse_list(label_names, "--label-names") or None


def model_config_for_labels(model_name):
    """The model's config, read without its weights, so that a dataset's string labels map through
    the model's own ``label2id`` before the model loads; None when it cannot be read here (the model
    load that follows reports why). Read once per command (``models.load_config``)."""
    return _peek("config", model_name)


def tokenizer_for_checks(model_name):
    """The model's tokenizer, loaded without the weights, so that options depending on it (e.g.
    ``evaluate --operator mask``) are checked before the model loads and before the run directory
    is written; None when it cannot be read here (the model load that follows reports why)."""
    return _peek("tokenizer", model_name)


def _peek(kind: str, model_name):
    if not model_name or not isinstance(model_name, str):
        return None
    ctx = click.get_current_context(silent=True)
    seen = ctx.meta.setdefault("attrtools.peeks", {}) if ctx is not None else {}
    if (kind, model_name) not in seen:
        from .guard import ModelFolderError, missing_local_folder
        from .models import load_config, load_tokenizer

        missing = missing_local_folder(model_name)
        if missing is not None:  # before any hub lookup
            raise ModelFolderError(missing)
        # --revision belongs to --model: the peek reads the same revision the load will
        revision = model_load_options(ctx).get("revision") if ctx is not None and \
            model_name == ctx.params.get("model_name") else None
        seen[(kind, model_name)] = (load_config if kind == "config" else load_tokenizer)(model_name, revision)
    return seen[(kind, model_name)]


def load_examples_or_fail(spec: str, text_column=None, pair_column=None, label_column=None, limit=None,
                          what: str = "--dataset", need_labels: bool = False, label_names=None, model=None,
                          infer_label_names: bool = False):
    """``data.load_examples`` for a command: errors name the option they come from.

    ``model``: the model's name or folder; string labels then map through its own non-generic
    ``label2id`` (and a conflicting ``--label-names`` is an error showing both maps), and every
    label is checked by the one label rule (``check_labels``; ``need_labels``: unlabeled rows are
    left out with their reason). The data-reading options (``--no-header``, ...) apply."""
    from .data import load_examples

    if not spec:
        raise UserError(f"{what}: give a dataset (hub name with split or a local csv/tsv/jsonl file)")
    at_least("--limit", limit)
    quiet_transformers()  # before the load: no progress bars of datasets' own
    config = model_config_for_labels(model)
    try:
        examples = load_examples(spec, text_column, pair_column, label_column, limit,
                                 label_names=label_names_list(label_names), model_config=config,
                                 infer_label_names=infer_label_names, **data_options_given(what))
    except InputDataError as err:
        raise InputDataError(f"{what}: {err}") from None
    if not examples:
        skipped = getattr(examples, "skipped", None)
        raise InputDataError(f"{what}: {spec} holds no examples" + (
            f" with content ({examples.skipped_summary()} row(s) skipped)" if skipped else ""))
    examples = check_labels(examples, config, what, need=need_labels)  # the one label rule, every command
    from . import runreport

    runreport.note_rows(examples)  # the summary counts truncations in these rows
    return examples


def keep_content_or_fail(examples, tokenizer, what: str = "--dataset"):
    """``data.keep_content(examples, tokenizer)``: the rows of which the model's tokenizer keeps no
    token are left out (with their reason, in the summary); none left is one line, exit 1."""
    from .data import keep_content

    kept = keep_content(examples, tokenizer)
    if not kept:
        raise InputDataError(f"{what}: no row has content for this model's tokenizer "
                             f"({kept.skipped_summary()} row(s) skipped)")
    return kept


def examples_from(texts, pairs, dataset, text_column=None, pair_column=None, label_column=None, limit=None,
                  label_names=None, model=None):
    """The examples of a command taking either ``--text`` (with ``--text-pair``) or ``--dataset``;
    ``model`` as in ``load_examples_or_fail``."""
    if bool(texts) == bool(dataset):
        raise UserError("give either --text (one or more) or --dataset")
    if pairs and len(pairs) != len(texts):
        raise UserError("give one --text-pair for every --text")
    if dataset:
        return load_examples_or_fail(dataset, text_column, pair_column, label_column, limit, label_names=label_names,
                                     model=model)
    from . import runreport
    from .types import Example

    examples = [Example(t, pairs[i] if pairs else None, id=str(i)) for i, t in enumerate(texts)]
    runreport.note_rows(examples)
    return examples


def open_cache_or_fail(cache_dir=None, enabled: bool = True):
    """The shared attribution cache (``--cache-dir`` or ``$ATTRTOOLS_CACHE``, stored at ``--cache-dtype``
    or ``$ATTRTOOLS_CACHE_DTYPE``), or None when disabled."""
    if not enabled:
        return None
    from .cache import AttributionCache
    from .errors import CacheError

    ctx = click.get_current_context(silent=True)
    dtype = ctx.meta.get("attrtools.cache_dtype") if ctx is not None else None
    try:
        return AttributionCache(cache_dir, dtype=dtype)
    except AttrtoolsError:
        raise
    except (OSError, ValueError) as err:
        from .cache import default_cache_dir

        where = cache_dir if cache_dir is not None else default_cache_dir()  # $ATTRTOOLS_CACHE or the default
        raise CacheError(f"cannot open the attribution cache {where!r}: {err}") from None


def resolve_progress(progress: bool | None) -> bool:
    """``--progress/--no-progress``; unset: ``progress.enabled_default`` (a terminal or a notebook kernel, not CI)."""
    from .progress import enabled_default

    return enabled_default(progress)


# ----------------------------------------------------------------------------------------- output
def run_report_lines() -> dict:
    """The summary lines of what attrtools' input rules did in this command (``attrtools.runreport``
    and the model's input rule): the max length used, inputs truncated, rows skipped and why, the
    worst integrated-gradients completeness gap. Empty keys are left out."""
    from . import runreport

    lines = {}
    ctx = click.get_current_context(silent=True)
    rule = ctx.meta.get("attrtools.input_rule") if ctx is not None else None
    if rule:
        used = rule.get("max_length_used")
        source = "--max-length" if rule.get("max_length_option") is not None else "the model's limit"
        lines["max length"] = f"{used} tokens ({source})" if used is not None else "none (the model states no limit)"
    report = runreport.report()
    if report.get("truncated") or report.get("truncated_derived"):
        unit = "data row(s)" if report.get("truncated_unit") == "row" else "input(s)"
        derived = report.get("truncated_derived")
        lines["inputs truncated"] = (f"{report['truncated']} {unit} longer than the max length (cut to it, see the "
                                     "TruncationWarning; --max-length changes it)"
                                     + (f"; besides, {derived} perturbed or trigger-inserted text(s) built from "
                                        "the data" if derived else ""))
    if report.get("skipped"):
        why = ", ".join(f"{kind}: {n}" for kind, n in report["skipped_reasons"].items())
        unlabeled = any(kind.startswith("unlabeled row") for kind in report["skipped_reasons"])  # labels.py's reason
        lines["rows skipped"] = (f"{report['skipped']}{'' if unlabeled else ' without content'} ({why}); not computed, "
                                 "not averaged")
    if report.get("worst_completeness_gap"):
        gap, method, example, unit = report["worst_completeness_gap"]
        where = f", layer {unit}" if unit is not None else ""
        lines["worst IG completeness gap"] = (f"{gap:.3g} relative ({method}, example {example!r}{where}; "
                                              "docs/integrated-gradients.md)")
    return lines


def echo_summary(lines: dict, report: bool = True):
    """Print ``key  value`` lines, then (``report``) what the input rules did in this command
    (``run_report_lines``); a command printing several summaries reports with its last one."""
    lines = {**lines, **(run_report_lines() if report else {})}
    width = max(len(k) for k in lines) if lines else 0
    for key, value in lines.items():
        click.echo(f"{key.ljust(width)}  {value}")


def dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


def log_to_stderr(message: str) -> None:
    click.echo(message, err=True)


__all__ = ["Command", "CommandFailed", "UserError", "ParameterError", "command", "options", "model_option",
           "text_options", "dataset_options", "train_dataset_options", "train_columns", "label_names_option",
           "cache_options", "device_option", "output_dir_option",
           "max_length_option", "batch_size_option", "progress_option", "steps_option", "protocol_option", "target_option",
           "seed_option", "common_run_options", "run_options", "field_option", "config_options", "config_from_options", "parse_target", "parse_value", "parse_params", "parse_list",
           "parse_floats", "at_least", "finite", "check_labels", "data_reading_options", "data_options_given", "disk_failure", "check_method_params", "make_run_dir", "quiet_transformers", "load_model_or_fail", "load_examples_or_fail", "model_config_for_labels",
           "tokenizer_for_checks", "examples_from", "keep_content_or_fail", "open_cache_or_fail", "resolve_progress", "echo_summary", "run_report_lines",
           "record_input_rule", "update_run_config", "dump", "log_to_stderr",
           "label_names_list"]
