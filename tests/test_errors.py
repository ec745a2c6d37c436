"""Errors under one roof: every deliberate error derives from ``AttrtoolsError``, so each tool shows
it as one line with a non-zero exit code.

Before (issue 29): ``OneOutputError`` was a plain ``ValueError`` (models.py) and ``DistributedError``
a plain ``RuntimeError`` (distributed.py). ``attrtools evaluate``/``prune``/``audit`` on a one-output
model ended in a ``OneOutputError`` traceback (exit 1, ``result.exception`` set), and an
inconsistent launcher environment (``RANK=3 WORLD_SIZE=2``) gave a ``DistributedError`` traceback in
every command but ``attribute`` (which wrapped it by hand).
"""
import importlib
import inspect
import pkgutil

import pytest
from click.testing import CliRunner

import attrtools
from attrtools.errors import AttrtoolsError, DistributedError, OneOutputError
from attrtools.testing import build_tiny_model

# Exceptions that are deliberately not user-facing errors: a cache-internal signal (caught inside
# cache.py, where it becomes a miss or a CacheError) and the bridge that hands errors to click.
NOT_USER_ERRORS = {"attrtools.cache.CorruptEntry", "attrtools.cli_kit.CommandFailed"}


def _package_exceptions():
    for info in pkgutil.walk_packages(attrtools.__path__, "attrtools."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and not issubclass(obj, Warning) \
                    and obj.__module__ == info.name:
                yield f"{info.name}.{name}", obj


def test_every_error_class_of_the_package_derives_from_the_base():
    found = dict(_package_exceptions())
    assert "attrtools.errors.OneOutputError" in found and "attrtools.rundir.RunDirError" in found
    outside = sorted(name for name, cls in found.items()
                     if not issubclass(cls, AttrtoolsError) and name not in NOT_USER_ERRORS)
    assert outside == []


def test_errors_module_lists_every_subclass_kept_elsewhere():
    """One roof to read: the docstring of attrtools.errors names every error class of the package
    that lives in another module (the classes stay beside their code; the list says where)."""
    import attrtools.errors as errors

    elsewhere = sorted(name[len("attrtools."):] for name, cls in _package_exceptions()
                       if issubclass(cls, AttrtoolsError) and not name.startswith("attrtools.errors."))
    assert "rundir.RunDirBusy" in elsewhere
    assert [name for name in elsewhere if name not in errors.__doc__] == []


def test_moved_errors_keep_their_old_names_and_bases():
    from attrtools import distributed, models
    from attrtools.methods import base

    assert models.OneOutputError is OneOutputError is base.OneOutputError
    assert distributed.DistributedError is DistributedError
    assert issubclass(OneOutputError, ValueError) and issubclass(DistributedError, RuntimeError)


@pytest.fixture(scope="module")
def one_output_dir(tmp_path_factory):
    return build_tiny_model("bert", str(tmp_path_factory.mktemp("one-output") / "model"), num_labels=1)


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("text\tlabel\n" + "".join(f"alpha beta gamma {i}\t0\n" for i in range(4)))
    return str(path)


def _one_line_failure(result, code, needle):
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert lines and lines[-1].startswith("Error: ") and needle in lines[-1], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command,extra", [
    ("evaluate", ["--methods", "raw", "--reference", "none"]),
    ("prune", ["--strategies", "random", "--num-examples", "2", "--no-save-model", "--fractions", "0,0.5"]),
    ("audit", ["--no-triggers", "--recipes", "deepwordbug", "--num-examples", "2"]),
])
def test_one_output_model_is_one_line_in_every_tool(command, extra, one_output_dir, dataset, tmp_path):
    if command == "audit":
        pytest.importorskip("textattack", reason="the audit needs the attack extra")
    from attrtools.cli import main

    result = CliRunner().invoke(main, [command, "--model", one_output_dir, "--dataset", dataset, *extra,
                                       "--output-dir", str(tmp_path / "out"), "--no-cache"])
    _one_line_failure(result, 1, "single output (num_labels=1)")


@pytest.mark.parametrize("command", ["evaluate", "prune", "tree", "audit", "triggers"])
def test_launch_error_is_one_line_in_every_tool(command, one_output_dir, dataset, tmp_path, monkeypatch):
    """A launcher environment that cannot be right (rank 3 of 2) reaches the user as one line."""
    if command == "audit":
        pytest.importorskip("textattack", reason="the audit needs the attack extra")
    from attrtools.cli import main

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    extra = {"audit": ["--no-triggers", "--recipes", "deepwordbug"], "prune": ["--strategies", "random"],
             "evaluate": ["--methods", "raw"]}.get(command, [])
    result = CliRunner().invoke(main, [command, "--model", one_output_dir, "--dataset", dataset, *extra,
                                       "--output-dir", str(tmp_path / "out"), "--no-cache"])
    _one_line_failure(result, 1, "launcher environment is inconsistent: RANK=3 WORLD_SIZE=2")


def test_peers_spellings_and_typos_get_a_did_you_mean(tiny_models):
    """Issue 23, 'names people already type': Captum's and inseq's ``n_steps`` is ``steps``
    (giving both is refused), and an unknown method, parameter or recipe names the closest one."""
    from attrtools.adversarial.recipes import parse_recipes
    from attrtools.adversarial.resources import RecipeError
    from attrtools.errors import ParameterError, UnknownMethodError, did_you_mean

    model, tok = tiny_models["bert"]
    [aliased] = attrtools.attribute(model, tok, ["a fine film"], method="attattr", n_steps=4)
    [plain] = attrtools.attribute(model, tok, ["a fine film"], method="attattr", steps=4)
    assert aliased.params["steps"] == 4 and "n_steps" not in aliased.params
    assert (aliased.scores == plain.scores).all()
    with pytest.raises(ParameterError, match="give 'steps' or its alias 'n_steps', not both"):
        attrtools.attribute(model, tok, ["a fine film"], method="attattr", steps=4, n_steps=4)
    with pytest.raises(ParameterError, match=r"did you mean 'steps'\?"):
        attrtools.attribute(model, tok, ["a fine film"], method="attattr", step=4)
    with pytest.raises(UnknownMethodError, match=r"did you mean 'grad_input'\?"):
        attrtools.get_method("grad-input")
    with pytest.raises(RecipeError, match=r"did you mean 'deepwordbug'\?"):
        parse_recipes("deepwordbugs")
    assert did_you_mean("zzzz", ["attattr", "raw"]) == ""


def test_recipe_is_a_spelling_of_recipes():
    from attrtools.adversarial.cli import audit

    spellings = [o for p in audit.params if p.name == "recipes" for o in p.opts]
    assert spellings == ["--recipes", "--recipe"]
