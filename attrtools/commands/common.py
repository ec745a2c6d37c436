"""Options and helpers shared by the CLI commands: model/dataset options, run directories."""
from __future__ import annotations

import datetime
import json
import os
import sys

import click


class UserError(click.ClickException):
    """An error in what the user asked for: printed without a traceback, exit code 1."""


class BadUsage(UserError):
    """A request that is wrong in itself (a bad option or parameter value): one line, exit code 2."""

    exit_code = 2


def at_least(option: str, value, minimum: int = 1):
    """``value`` (an int option) or a one-line usage error naming ``option``."""
    if value is not None and value < minimum:
        raise BadUsage(f"{option} must be at least {minimum}, got {value}")
    return value


def finite(option: str, value, low: float | None = None, high: float | None = None):
    """``value`` (a float option) finite and within [low, high], or a one-line usage error."""
    import math

    if value is None:
        return value
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        span = f" in [{low:g}, {high:g}]" if low is not None and high is not None else \
            (f" >= {low:g}" if low is not None else "")
        raise BadUsage(f"{option} must be a finite number{span}, got {value}")
    return value


def check_labels(examples, model, what: str = "--dataset"):
    """Every gold label must be a class of the model (one line naming the row, else exit 2)."""
    classes = getattr(model.config, "num_labels", None)
    if not isinstance(classes, int):
        return
    for index, example in enumerate(examples):
        if example.label is not None and not 0 <= example.label < classes:
            raise BadUsage(f"{what}: row {index} has label {example.label}, but the model has {classes} classes "
                           f"(0..{classes - 1}); use --label-names or another dataset")


def check_method_params(method: str, params: dict, what: str = "--param") -> dict:
    """The method's parameters checked against its schema before anything loads (``BadUsage``)."""
    from .. import methods as registry
    from ..methods.base import ParameterError

    try:
        return registry.get(method).params(**params)
    except KeyError as err:
        raise BadUsage(str(err.args[0])) from None
    except ParameterError as err:
        raise BadUsage(f"{what}: {err}") from None


def model_option(f):
    return click.option("--model", "model_name", required=True,
                        help="Hub id or local folder of a sequence classifier.")(f)


def dataset_options(f):
    options = [
        click.option("--dataset", help="Hub name with split (glue/sst2:validation) or a local csv/tsv/jsonl file."),
        click.option("--text-column", default=None, help="Column holding the text (default: guessed)."),
        click.option("--pair-column", default=None, help="Column holding the second segment, if any."),
        click.option("--label-column", default=None, help="Column holding the gold label (default: guessed)."),
        click.option("--limit", type=int, default=None, help="Use only the first N examples."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _remember_overwrite(ctx, param, value):
    ctx.meta["attrtools.overwrite"] = bool(value)
    return value


def output_dir_option(f):
    """``--output-dir`` and ``--overwrite`` (read by ``make_run_dir`` from the click context)."""
    f = click.option("--overwrite", is_flag=True, expose_value=False, callback=_remember_overwrite,
                     help="Replace what --output-dir holds when it is another run (default: refuse).")(f)
    return click.option("--output-dir", type=click.Path(), default=None,
                        help="Run directory (default: runs/<command>-<timestamp>). Rerunning the same "
                             "configuration into it resumes; another configuration is refused.")(f)


def cache_options(f):
    """``--cache-dir`` and ``--no-cache``: the shared attribution cache every command uses."""
    f = click.option("--no-cache", is_flag=True, help="Compute everything, read and write no cache.")(f)
    return click.option("--cache-dir", default=None,
                        help="Attribution cache folder (default: $ATTRTOOLS_CACHE, else $XDG_CACHE_HOME/attrtools).")(f)


def device_option(f):
    return click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")(f)


def make_run_dir(output_dir: str | None, command: str, config: dict, examples=None,
                 overwrite: bool | None = None) -> str:
    """Create (or resume) and lock the run directory through ``attrtools.rundir.prepare``: the same
    configuration resumes, another one is refused unless ``--overwrite`` (then the folder is emptied
    first), a second concurrent writer is refused, an unwritable folder fails in one line. Call it
    before loading the model. The configuration is completed with ``model_identity`` of
    ``config["model"]``, a digest of a local ``config["dataset"]`` file and, when given,
    ``data_identity(examples)``. Under a launcher, ranks other than 0 get a private temporary
    folder instead (every rank runs the command; rank 0 alone writes the outputs)."""
    from .. import distributed, rundir

    here = distributed.world()
    if not here.is_main:
        output_dir = distributed.private_run_dir()
    elif here.distributed:
        config = dict(config, world_size=here.size)

    if output_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        output_dir = os.path.join("runs", f"{command}-{stamp}")
    if overwrite is None:
        ctx = click.get_current_context(silent=True)
        overwrite = bool(ctx.meta.get("attrtools.overwrite")) if ctx is not None else False
    config = dict(config)
    for key in ("model", "model_name"):
        if isinstance(config.get(key), str):
            config[f"{key}_identity"] = rundir.model_identity(config[key])
    for key in ("dataset", "train_dataset", "eval_dataset"):
        if isinstance(config.get(key), str) and os.path.isfile(config[key]):
            config[f"{key}_identity"] = rundir.data_file_identity(config[key])
    if examples is not None:
        config["data_identity"] = rundir.data_identity(examples)
    try:
        run = rundir.prepare(output_dir, command, config, overwrite=overwrite)
    except rundir.RunDirMismatch as err:
        raise BadUsage(str(err)) from None
    except rundir.RunDirError as err:
        raise UserError(str(err)) from None
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.find_root().call_on_close(run.close)  # the lock goes when the command ends, however it ends
    return run.path


def load_model_or_fail(name: str, device=None):
    from ..api import load_model
    from ..guard import DeviceError, ModelFolderError, check_device
    from ..models import UnsupportedModelError

    from .. import distributed

    if device is None and distributed.is_distributed():
        device = str(distributed.device())  # one device per rank
    try:
        check_device(device)
    except DeviceError as err:
        raise BadUsage(str(err)) from None
    try:
        return load_model(name, device=device)
    except ModelFolderError as err:
        raise UserError(str(err)) from None
    except UnsupportedModelError as err:
        raise UserError(str(err)) from None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load model {name!r}: {err}") from None


def quiet_transformers():
    """Silence the load reports and progress bars of transformers and datasets (ours stay)."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()


def echo_summary(lines: dict):
    width = max(len(k) for k in lines) if lines else 0
    for key, value in lines.items():
        click.echo(f"{key.ljust(width)}  {value}")


def dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


def model_config_for_labels(model_name):
    """The model's config, read without its weights, so that a dataset's string labels map through
    the model's own ``label2id`` before the model loads; None when it cannot be read here (the model
    load that follows reports why)."""
    if not model_name:
        return None
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model_name, trust_remote_code=False)
    except Exception:  # noqa: BLE001 - a peek only; load_model_or_fail gives the real error
        return None


def load_examples_or_fail(spec: str, text_column=None, pair_column=None, label_column=None, limit=None,
                          what: str = "--dataset", need_labels: bool = False, label_names=None, model=None):
    """``data.load_examples`` for a command: errors become clean CLI errors naming the option.

    ``model``: the model's name or folder; string labels then map through its own non-generic
    ``label2id`` (and a conflicting ``label_names`` is an error showing both maps)."""
    from ..data import DataError, load_examples

    if not spec:
        raise UserError(f"{what}: give a dataset (hub name with split or a local csv/tsv/jsonl file)")
    at_least("--limit", limit)
    try:
        examples = load_examples(spec, text_column, pair_column, label_column, limit, label_names=label_names,
                                 model_config=model_config_for_labels(model))
    except DataError as err:
        raise UserError(f"{what}: {err}") from None
    if not examples:
        raise UserError(f"{what}: {spec} holds no examples")
    if need_labels and any(e.label is None for e in examples):
        raise UserError(f"{what}: {spec} has no gold labels (pass --label-column)")
    return examples


def open_cache_or_fail(cache_dir=None, enabled: bool = True):
    """The shared attribution cache (``--cache-dir`` or ``$ATTRTOOLS_CACHE``), or None when disabled."""
    if not enabled:
        return None
    from ..cache import AttributionCache

    try:
        return AttributionCache(cache_dir)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot open the attribution cache {cache_dir!r}: {err}") from None
