"""Option ranges checked once: each tool's ``Config`` checks its fields when it is built
(``attrtools.ranges``), so the command line and Python users get the same one-line error.

Before (issue 29): ``attrtools prune --fraction-step 0`` passed the CLI's check ([0, 1]), loaded the
model and ended in a raw ``ZeroDivisionError`` in ``pruning/plan.py:fraction_grid``; a Python user
calling ``run_pruning(..., fraction_step=0)`` or ``PruneConfig(num_examples=-1)`` got no check at all.
"""
import dataclasses
import math

import pytest
from click.testing import CliRunner

from attrtools.adversarial.config import AuditConfig
from attrtools.errors import ParameterError
from attrtools.evaluate.config import EvaluateConfig
from attrtools.pruning.config import PruneConfig
from attrtools.ranges import Rule, check_ranges, option, rule_of
from attrtools.tree.config import TreeConfig

CONFIGS = (PruneConfig, TreeConfig, AuditConfig, EvaluateConfig)


class _Other:
    def __repr__(self):
        return "<other>"


def bad_values(rule: Rule) -> list:
    """Values the rule must refuse, derived from the rule itself (so a new field is walked too)."""
    bad = [_Other()]
    if not rule.optional:
        bad.append(None)
    if rule.sequence:
        return bad + ["not-a-list", [_Other()]] + ([[]] if rule.nonempty else []) + \
            [[v] for v in _bad_items(rule)[:3]]
    if rule.values:
        return bad + [["not", "a", "dict"]] + [{"key": v} for v in _bad_items(rule)[:3]]
    return bad + _bad_items(rule)


def _bad_items(rule: Rule) -> list:
    if rule.kind == "bool":
        return [1, "yes"]
    if rule.kind == "dict":
        return [[], "x"]
    if rule.kind == "str":
        return [3, True] + (["no-such-choice"] if rule.choices else [])
    items = [True, "no-such-choice", math.nan, math.inf]
    if rule.kind == "int":
        items.append(1.5)
    if rule.low is not None:
        items.append(rule.low if rule.low_open else rule.low - 1)
    if rule.high is not None:
        items.append(rule.high if rule.high_open else rule.high + 1)
    return items


def good_values(rule: Rule) -> list:
    """Edge values the rule must accept."""
    good = [None] if rule.optional else []
    items = []
    if rule.kind in ("int", "float"):
        if rule.low is not None and not rule.low_open:
            items.append(int(rule.low) if rule.kind == "int" else float(rule.low))
        if rule.high is not None and not rule.high_open:
            items.append(int(rule.high) if rule.kind == "int" else float(rule.high))
        items += list(rule.choices)
    elif rule.kind == "str":
        items += list(rule.choices) or ["text"]
    elif rule.kind == "bool":
        items += [True, False]
    if rule.sequence:
        return good + [items, tuple(items)] + ([] if rule.nonempty else [[]])
    if rule.values:
        return good + [{}, {f"k{i}": v for i, v in enumerate(items)}]
    return good + items


FIELDS = [(cls, f) for cls in CONFIGS for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_declares_its_rule_and_the_defaults_pass(cls):
    assert [f.name for f in dataclasses.fields(cls) if rule_of(f) is None] == []
    check_ranges(cls())


@pytest.mark.parametrize("cls,field", FIELDS, ids=[f"{c.__name__}.{f.name}" for c, f in FIELDS])
def test_each_field_refuses_bad_values_in_one_line_naming_it(cls, field):
    rule = rule_of(field)
    for value in bad_values(rule):
        with pytest.raises(ParameterError) as err:
            cls(**{field.name: value})
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{cls.__name__}.{field.name}"), message
        assert message.endswith(f"got {value!r}"[:80]) or "..." in message, message
        with pytest.raises(ParameterError):  # through dataclasses.replace, as resolve_config builds it
            dataclasses.replace(cls(), **{field.name: value})
    for value in good_values(rule):
        assert getattr(cls(**{field.name: value}), field.name) == value


def test_messages_give_the_range_and_the_flag():
    with pytest.raises(ParameterError, match=r"^PruneConfig\.fraction_step \(--fraction-step\) must be a finite "
                                             r"number > 0 and <= 1, got 0$"):
        PruneConfig(fraction_step=0)
    with pytest.raises(ParameterError, match=r"TreeConfig\.target \(--target\) must be one of 'pred', 'predicted', "
                                             r"'gold' or a whole number >= 0 or None, got -1"):
        TreeConfig(target=-1)
    with pytest.raises(ParameterError, match=r"^AuditConfig\.query_batch_size \(--query-batch-size\) must be a whole "
                                             r"number >= 1, got 0$"):
        AuditConfig(query_batch_size=0)  # one name each: --batch-size is the attribution batch in every tool
    with pytest.raises(ParameterError, match=r"EvaluateConfig\.method_limits \(--method-limit\) must be a dict whose "
                                             r"values are each a whole number >= 1"):
        EvaluateConfig(method_limits={"flow": 0})


def test_python_pipeline_refuses_before_touching_the_model(tmp_path):
    from attrtools.pruning.pipeline import run_pruning

    with pytest.raises(ParameterError, match="fraction_step"):  # model None: nothing is touched before the check
        run_pruning(None, None, [], str(tmp_path / "run"), fraction_step=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,needle", [
    (["prune", "--fraction-step", "0"], "PruneConfig.fraction_step (--fraction-step) must be a finite number > 0"),
    (["prune", "--fractions", "0.5,1.5"], "--fractions"),
    (["tree", "--max-pictures", "-2"], "--max-pictures must be at least -1, got -2"),  # type from the field
    (["tree", "--top-patterns", "-1"], "--top-patterns must be at least 0, got -1"),
    (["tree", "--threshold", "1.5"], "--threshold must be a finite number in [0, 1], got 1.5"),
])
def test_cli_gives_the_config_error_before_anything_loads(args, needle, tmp_path):
    from attrtools.cli import main

    command, *rest = args
    extra = ["--dataset", str(tmp_path / "missing.tsv")]
    result = CliRunner().invoke(main, [command, "--model", str(tmp_path / "no-model"), *extra, *rest,
                                       "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"Error: {result.output.strip()[7:]}"]
    assert needle in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_rule_declared_with_option_is_read_back():
    @dataclasses.dataclass
    class Small:
        count: int = option(1, kind="int", low=1, high=3)
        names: tuple = option(("a",), kind="str", choices=("a", "b"), sequence=True, nonempty=True, flag=None)

        def __post_init__(self):
            check_ranges(self)

    assert Small(count=3, names=["b", "a"]).count == 3
    with pytest.raises(ParameterError, match=r"^Small\.count \(--count\) must be a whole number >= 1 and <= 3, got 4$"):
        Small(count=4)
    with pytest.raises(ParameterError, match=r"^Small\.names must be a non-empty list of items each one of 'a', 'b'"):
        Small(names=())
    with pytest.raises(ValueError):
        Rule(kind="complex")


def test_tree_options_take_flag_default_and_range_from_the_config_field():
    """The pattern of 'an option is one field': cli_kit.field_option builds the click option of a
    Config field (tree's --threshold, --root, --max-pictures, --top-patterns)."""
    import click

    from attrtools.cli_kit import AtLeast, Finite, field_option
    from attrtools.tree.cli import tree

    options = {p.name: p for p in tree.params if isinstance(p, click.Option)}
    defaults = TreeConfig()
    for name in ("threshold", "root", "max_pictures", "top_patterns"):
        assert options[name].default == getattr(defaults, name)
        assert options[name].opts == ["--" + name.replace("_", "-")]
    assert isinstance(options["max_pictures"].type, AtLeast) and options["max_pictures"].type.minimum == -1
    assert isinstance(options["threshold"].type, Finite) and (options["threshold"].type.low,
                                                               options["threshold"].type.high) == (0, 1)
    assert list(options["root"].type.choices) == ["top", "cls"]
    # an open bound or a mixed rule is left to the config's check (the type alone could not say it)
    step = field_option(PruneConfig, "fraction_step", help="x")(lambda **kw: kw)
    assert step.__click_params__[0].type is click.FLOAT and step.__click_params__[0].default == 0.1
    with pytest.raises(KeyError):
        field_option(PruneConfig, "no_such_field", help="x")


# ------------------------------------------------------------------------------------ the CLI, walked
def _commands():
    """Every command of the ``attrtools`` group, groups' subcommands included, as ``(path, command)``."""
    import click

    from attrtools.cli import main

    out, todo = [], [((), main)]
    while todo:
        path, cmd = todo.pop()
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            todo += [((*path, name), cmd.get_command(ctx, name)) for name in cmd.list_commands(ctx)]
    return out


#: each tool command and the config whose fields are its settings (triggers: the extraction's fields)
TOOL_COMMANDS = {("prune",): PruneConfig, ("tree",): TreeConfig, ("evaluate",): EvaluateConfig,
                 ("audit",): AuditConfig, ("triggers",): AuditConfig}


def test_every_command_help_runs():
    from attrtools.cli import main

    paths = [path for path, _ in _commands()]
    assert set(TOOL_COMMANDS) <= set(paths) and ("cache", "ls") in paths
    for path in paths:
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output and "Traceback" not in result.output, (path, result)


def test_every_config_field_is_exactly_one_option_generated_from_it():
    """An option is one field: each tool command's options named after a field are generated from it
    (flag, default, help), each field at most once per command, and every field reachable from a
    command (audit takes all of AuditConfig, triggers its extraction fields)."""
    import click

    from attrtools.adversarial.config import TRIGGER_FIELDS
    from attrtools.ranges import flag_of

    commands = dict(_commands())
    reached = {cls: set() for cls in CONFIGS}
    for path, cls in TOOL_COMMANDS.items():
        params = [p for p in commands[path].params if isinstance(p, click.Option)]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        names = [p.name for p in params if p.name in fields]
        assert len(names) == len(set(names)), (path, names)
        for param in params:
            if param.name not in fields:
                continue
            field, rule = fields[param.name], rule_of(fields[param.name])
            assert flag_of(field).split("/")[0] in param.opts + param.secondary_opts, (path, param.name)
            assert param.help == rule.help and rule.help, (path, param.name)
            if rule.official is None and rule.cli_default is None and not rule.multiple:
                default = getattr(cls(), param.name)
                shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
                assert param.default == shown, (path, param.name, param.default, shown)
        reached[cls] |= set(names)
        if path == ("triggers",):
            assert set(names) == set(TRIGGER_FIELDS)
    for cls in CONFIGS:
        assert reached[cls] == {f.name for f in dataclasses.fields(cls)}, cls.__name__


def test_config_docstring_lists_every_field_with_its_help():
    for cls in CONFIGS:
        for field in dataclasses.fields(cls):
            assert f"``{field.name}``" in cls.__doc__ and rule_of(field).help in cls.__doc__, field.name


@pytest.mark.parametrize("args,python", [
    (["audit", "--no-triggers", "--query-batch-size", "0"], lambda: AuditConfig(query_batch_size=0)),
    (["triggers", "--top2-ratio", "2"], lambda: AuditConfig(top2_ratio=2)),
    (["evaluate", "--method-limit", "flow=0"], lambda: EvaluateConfig(method_limits={"flow": 0})),
    (["prune", "--fraction-step", "0"], lambda: PruneConfig(fraction_step=0)),
    (["audit", "--no-triggers", "--pattern-threshold", "-1"], lambda: AuditConfig(pattern_threshold=-1)),
    (["tree", "--target", "-3"], lambda: TreeConfig(target=-3)),
])
def test_cli_and_python_users_get_the_same_one_line(args, python, tmp_path):
    """The range is the field's: the command line and a Python caller are refused alike, in one line
    naming the option, before anything loads. Where the option's click type already knows the range
    (a whole number with a lower bound, a number in closed bounds) it answers first, in its words
    (``--x must be at least N``); every other rule is the config's own message."""
    from attrtools.cli import main

    with pytest.raises(ParameterError) as err:
        python()
    message = str(err.value)
    flag = message.split("(")[1].split(")")[0]
    command, *rest = args
    result = CliRunner().invoke(main, [command, "--model", str(tmp_path / "no-model"), "--dataset",
                                       str(tmp_path / "missing.tsv"), *rest, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2 and flag in result.output and "must be" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    if result.output.strip().rsplit(", got", 1)[0] != f"Error: {message}".rsplit(", got", 1)[0]:  # 0.0 for 0
        assert result.output.startswith(f"Error: {flag} must be"), (result.output, message)


def test_tolerance_is_one_field_of_each_attattr_tool_and_reaches_the_method(tiny_models):
    """Issue 24: ``--tolerance`` existed only as ``attrtools attribute --param tolerance=...``; the tools
    that run AttAttr (prune, tree, triggers/audit) integrate with ``steps='auto'`` by default and now take
    its tolerance as one Config field (generated ``--tolerance``), checked once, passed to the method."""
    from attrtools.engine import Engine
    from attrtools.methods.integration import DEFAULT_TOLERANCE
    from attrtools.ranges import TOLERANCE
    from attrtools.tree.build import build_trees

    assert TOLERANCE == DEFAULT_TOLERANCE  # the torch-free copy the configs use agrees with the method's
    for cls in (PruneConfig, TreeConfig, AuditConfig):
        assert cls().tolerance == DEFAULT_TOLERANCE
        with pytest.raises(ParameterError, match=r"tolerance \(--tolerance\)"):
            cls(tolerance=0)
    model, tokenizer = tiny_models["bert"]
    _, (attribution,) = build_trees(Engine(model, tokenizer), ["the movie was good"], steps="auto", tolerance=0.05)
    assert attribution.params["tolerance"] == 0.05 and attribution.completeness["tolerance"] == [0.05] * 2
