"""Tool configurations: each tool's settings are one dataclass (``PruneConfig``, ``TreeConfig``,
``AuditConfig``, ``EvaluateConfig``, ``DemoConfig``) whose field defaults are the only defaults.

The command line builds the config from its options, the run directory records ``asdict(config)``
in ``run_config.json``, and Python users pass a config (or keyword overrides) to the tool's pipeline.
"""
from __future__ import annotations

import dataclasses

from .errors import ParameterError


def resolve_config(cls, config=None, options: dict | None = None):
    """``config`` (default ``cls()``) with ``options`` applied; an unknown option is an error."""
    config = config if config is not None else cls()
    if not isinstance(config, cls):
        raise ParameterError(f"expected a {cls.__name__}, got {type(config).__name__}")
    options = dict(options or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ParameterError(f"{cls.__name__} has no option(s) {unknown}; it takes {sorted(fields)}")
    return dataclasses.replace(config, **options) if options else config


def config_dict(config) -> dict:
    """``asdict(config)`` with tuples as lists (what ``run_config.json`` and reports record)."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}
