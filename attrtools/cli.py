"""The ``attrtools`` command line: one click group whose subcommands load lazily.

Each subcommand lives in its own module (``attrtools/commands/*.py`` or a tool's ``cli.py``) and
imports torch only when it runs, so ``attrtools --help`` stays fast and torch-free.
"""
from __future__ import annotations

import importlib
import os
import sys

import click

from .cli_kit import one_line_failures

# name -> (module:function, short help). The help text is here so listing commands imports nothing.
COMMANDS = {
    "attribute": ("attrtools.commands.attribute:attribute", "Attribute texts or a dataset with one method."),
    "methods": ("attrtools.commands.attribute:methods", "List the attribution methods and their papers."),
    "cache": ("attrtools.commands.cache:cache", "Inspect, verify and clear the attribution cache."),
    "evaluate": ("attrtools.evaluate.cli:evaluate", "Faithfulness of methods: AOPC, deletion/insertion, log-odds."),
    "prune": ("attrtools.commands.prune_audit:prune",
              "Rank heads, draw the pruning curve, prune and save a smaller model (--audit: robustness too)."),
    "tree": ("attrtools.tree.cli:tree", "Build AttAttr attribution trees (NetworkX) and dataset statistics."),
    "triggers": ("attrtools.adversarial.cli:triggers", "Extract adversarial trigger patterns from attributions."),
    "audit": ("attrtools.adversarial.cli:audit", "Robustness audit: every TextAttack recipe, triggers; compare models."),
    "finetune": ("attrtools.commands.finetune:finetune",
                 "Fine-tune a classifier on your labelled data; writes a model folder every command takes."),
    "demo": ("attrtools.commands.demo:demo", "Run everything end to end on the embedded default model."),
}


class LazyGroup(click.Group):
    def invoke(self, ctx):
        with one_line_failures():  # the group's own callback (a launch error) and resolving a command
            return super().invoke(ctx)

    def list_commands(self, ctx):
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx, name):
        if name not in COMMANDS or not _available(name):
            return None
        target, _ = COMMANDS[name]
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(name: str) -> bool:
    """Whether the command's module exists, checked on disk so nothing is imported."""
    module = COMMANDS[name][0].split(":")[0]
    relative = module.split(".")[1:]
    base = os.path.join(os.path.dirname(os.path.abspath(__file__)), *relative)
    return os.path.exists(base + ".py") or os.path.exists(os.path.join(base, "__init__.py"))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="attrtools")
@click.pass_context
def main(ctx):
    """attrtools: explain transformer classifiers through their self-attention, and use the
    explanations to prune heads, draw attribution trees and audit robustness.

    Under torchrun or accelerate launch (WORLD_SIZE > 1) every dataset command splits its work
    across the ranks; see docs/scale-out.md."""
    if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):
        from .distributed import setup_cli

        setup_cli(ctx)


def run():  # pragma: no cover - console entry for `python -m attrtools`
    sys.exit(main())
