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


def output_dir_option(f):
    return click.option("--output-dir", type=click.Path(file_okay=False), default=None,
                        help="Run directory (default: runs/<command>-<timestamp>).")(f)


def cache_options(f):
    """``--cache-dir`` and ``--no-cache``: the shared attribution cache every command uses."""
    f = click.option("--no-cache", is_flag=True, help="Compute everything, read and write no cache.")(f)
    return click.option("--cache-dir", default=None,
                        help="Attribution cache folder (default: $ATTRTOOLS_CACHE, else $XDG_CACHE_HOME/attrtools).")(f)


def device_option(f):
    return click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")(f)


def make_run_dir(output_dir: str | None, command: str, config: dict) -> str:
    """Create the run directory and write run_config.json into it (atomically)."""
    if output_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        output_dir = os.path.join("runs", f"{command}-{stamp}")
    os.makedirs(output_dir, exist_ok=True)
    from ..io import write_json

    write_json(os.path.join(output_dir, "run_config.json"),
               {"command": command, "argv": sys.argv[1:], **config})
    return output_dir


def load_model_or_fail(name: str, device=None):
    from ..api import load_model
    from ..guard import DeviceError, ModelFolderError, check_device
    from ..models import UnsupportedModelError

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


def load_examples_or_fail(spec: str, text_column=None, pair_column=None, label_column=None, limit=None,
                          what: str = "--dataset", need_labels: bool = False, label_names=None):
    """``data.load_examples`` for a command: errors become clean CLI errors naming the option."""
    from ..data import DataError, load_examples

    if not spec:
        raise UserError(f"{what}: give a dataset (hub name with split or a local csv/tsv/jsonl file)")
    try:
        examples = load_examples(spec, text_column, pair_column, label_column, limit, label_names=label_names)
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
