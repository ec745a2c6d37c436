"""The import contract (``.importlinter``, docs/architecture.md) holds, no module imports another
package's private name, and the CLI's error mapping."""
import os
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import attrtools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter (the dev extra) is not installed")
def test_import_contract_is_kept():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(["lint-imports"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _command(raise_):
    from attrtools.cli_kit import command

    @command()
    def cmd():
        raise_()

    return cmd


def test_user_error_exits_2_with_one_line():
    from attrtools.errors import ParameterError

    def fail():
        raise ParameterError("--steps must be at least 1\n(got 0)")

    result = CliRunner().invoke(_command(fail), [])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: --steps must be at least 1 (got 0)"
    assert "Traceback" not in result.output


def test_runtime_refusal_exits_1_and_old_user_error_still_works():
    from attrtools.cli_kit import UserError
    from attrtools.errors import InputDataError

    def missing():
        raise InputDataError("dataset file not found: x.tsv")

    result = CliRunner().invoke(_command(missing), [])
    assert result.exit_code == 1 and result.output.strip() == "Error: dataset file not found: x.tsv"

    @click.command()  # a plain click command: UserError is still a ClickException
    def plain():
        raise UserError("give either --text or --dataset")

    result = CliRunner().invoke(plain, [])
    assert result.exit_code == 2 and "give either --text or --dataset" in result.output


def test_internal_error_is_not_disguised():
    def bug():
        raise ValueError("shape mismatch in an internal helper")

    result = CliRunner().invoke(_command(bug), [])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)  # the bug itself, not a message
    assert "Error:" not in result.output
    # run as a real process, the traceback reaches the user
    code = ("from attrtools.cli_kit import command\n"
            "@command()\ndef cmd():\n    raise KeyError('internal')\ncmd()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "KeyError: 'internal'" in proc.stderr


def test_commands_map_bad_requests_to_exit_2(planted_dir, tmp_path):
    from attrtools.cli import main

    runner = CliRunner()
    bad_target = runner.invoke(main, ["attribute", "--model", planted_dir, "--text", "a", "--target", "best",
                                      "--output-dir", str(tmp_path / "a")])
    assert bad_target.exit_code == 2 and "--target" in bad_target.output and "Traceback" not in bad_target.output
    bad_method = runner.invoke(main, ["attribute", "--model", planted_dir, "--text", "a", "--method", "magic",
                                      "--output-dir", str(tmp_path / "b")])
    assert bad_method.exit_code == 2 and "unknown method 'magic'" in bad_method.output
    assert len(bad_method.output.strip().splitlines()) == 1
    bad_param = runner.invoke(main, ["attribute", "--model", planted_dir, "--text", "a", "--param", "nope=1",
                                     "--output-dir", str(tmp_path / "c")])
    assert bad_param.exit_code == 2 and "unknown parameter" in bad_param.output
    no_model = runner.invoke(main, ["attribute", "--model", str(tmp_path / "nothing"), "--text", "a",
                                    "--output-dir", str(tmp_path / "d")])
    assert no_model.exit_code == 1 and "cannot load model" in no_model.output and "Traceback" not in no_model.output


def test_every_option_has_help_and_scripts_take_h():
    from attrtools.cli import COMMANDS, main

    ctx = click.Context(main)
    for name in COMMANDS:
        cmd = main.get_command(ctx, name)
        commands = cmd.commands.values() if isinstance(cmd, click.Group) else [cmd]
        for c in commands:
            for param in c.params:
                if isinstance(param, click.Option) and not param.hidden:
                    assert param.help, (name, c.name, param.opts)
    for script in ("prune_model.py", "build_trees.py", "robustness_audit.py", "finetune.py", "make_sentiment_data.py"):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "-h"], capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), (script, proc.stderr[-500:])
    help_text = CliRunner().invoke(main, ["prune", "-h"]).output
    assert "%%" not in help_text and "[default: 200" in help_text


def _contract_modules() -> set:
    """Every module named by a contract of .importlinter (layers, source modules, containers)."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, ".importlinter"))
    named = set()
    for section in parser.sections():
        if not section.startswith("importlinter:contract:"):
            continue
        for key in ("layers", "source_modules", "containers", "modules"):
            for line in parser[section].get(key, "").splitlines():
                named |= {part.strip() for part in line.split("|") if part.strip()}
    return named


def test_every_module_of_the_package_is_in_a_contract():
    """A new module named in no contract could import any layer without CI noticing (issue 29:
    distributed, rundir, progress and report/ were in none). Each top-level module or subpackage
    of attrtools must be named by some contract (a subpackage covers its modules)."""
    import pkgutil

    import attrtools

    named = _contract_modules()
    top = {f"attrtools.{m.name}" for m in pkgutil.iter_modules(attrtools.__path__)}
    assert {"attrtools.engine", "attrtools.pruning", "attrtools.__main__"} <= top
    assert sorted(top - named) == []
    assert sorted(n for n in named if n.startswith("attrtools.") and n.split(".")[1] not in
                  {m.split(".")[1] for m in top}) == []  # no contract names a module that is gone


def test_architecture_map_names_every_module():
    """docs/architecture.md lists every module of the package, one line each."""
    import pkgutil

    import attrtools

    text = open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8").read()
    missing = []
    for info in pkgutil.walk_packages(attrtools.__path__, "attrtools."):
        path = info.name.replace(".", "/") + ("/" if info.ispkg else ".py")
        if f"`{path}`" not in text:
            missing.append(path)
    assert missing == []


# ------------------------------------------------------------------------------ private names
def test_no_module_imports_a_private_name_of_another_attrtools_package():
    """compare.py imported report.figures._figure (now the public blank_figure). The two imports
    listed are older ones this change leaves alone (named in its report)."""
    import ast
    import pathlib

    root = pathlib.Path(attrtools.__file__).parent
    known = {("tree/export.py", "_show"), ("commands/prune_audit.py", "_resources")}
    found = set()
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level >= 1 and (node.level > 1 or "/" not in rel):
                found |= {(rel, a.name) for a in node.names if a.name.startswith("_") and a.name != "__version__"}
    assert found <= known, found - known
    from attrtools.report.figures import blank_figure

    assert blank_figure(2.0, 1.0).get_size_inches().tolist() == [2.0, 1.0]


def _imported_package_modules(path: str, package: str) -> set:
    """Names of the modules of ``package`` (``attrtools.methods``) that the file at ``path`` imports,
    relative or absolute, as ``from . import x``, ``from .x import y`` or ``import attrtools.methods.x``."""
    import ast

    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # inside the package: from .x import ..., from . import x
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.level == 0 and (node.module or "").startswith(package + "."):
                found.add(node.module[len(package) + 1:].split(".")[0])
            elif node.level == 0 and node.module == package:
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name[len(package) + 1:].split(".")[0] for a in node.names if a.name.startswith(package + ".")}
    return found


def test_no_method_file_imports_another_method():
    """Each method file reads as its specification over helpers (base, shared, integration,
    decomposition): it imports no other method (issue 29: alti_logit and decompx imported eight helpers
    from alti.py, flow imported rollout's residual attention, ig_embed grad_input's aggregation)."""
    from attrtools import methods

    modules = methods.method_modules()
    assert {"alti", "alti_logit", "decompx", "flow", "rollout", "ig_embed", "grad_input"} <= set(modules)
    crossings = {}
    for name in modules:
        path = os.path.join(ROOT, "attrtools", "methods", name + ".py")
        others = sorted((_imported_package_modules(path, "attrtools.methods") & set(modules)) - {name})
        if others:
            crossings[name] = others
    assert crossings == {}


def test_the_method_import_check_sees_a_crossing(tmp_path):
    """The check above is not vacuous: a file importing another method by any spelling is caught."""
    path = tmp_path / "m.py"
    path.write_text("from . import register\nfrom .alti import trace_layers\nfrom .shared import pool_rows\n"
                    "import attrtools.methods.rollout\nfrom attrtools.methods import flow\n")
    assert _imported_package_modules(str(path), "attrtools.methods") == {"", "register", "alti", "shared", "rollout",
                                                                         "flow"} - {""}
