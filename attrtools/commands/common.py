"""Old home of the shared CLI helpers, kept so older imports work: everything now lives in
``attrtools.cli_kit`` (below the tools). New code imports ``attrtools.cli_kit``."""
from __future__ import annotations

from ..cli_kit import (UserError, at_least, cache_options, check_labels, check_method_params, finite, dataset_options, device_option, dump, echo_summary,  # noqa: F401
                       load_examples_or_fail, load_model_or_fail, make_run_dir, model_option as _model_option,
                       model_config_for_labels, open_cache_or_fail, output_dir_option, quiet_transformers)


#: The old name of a malformed request (exit code 2): now ``cli_kit.UserError``.
BadUsage = UserError


def model_option(f):
    return _model_option()(f)
