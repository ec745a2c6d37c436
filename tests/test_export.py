"""What users take away (docs/export.md): figures written as PNG/SVG/PDF, the token table as a
DataFrame, stacked tensors with a mask, ferret's Explanation and bertviz's input (against the real
packages where they import), and the CLI's ``attribute --figures``."""
import csv
import os

import pytest
import torch

import attrtools
from attrtools.errors import AttrtoolsError, UsageError
from attrtools.report.plots import figure_format
from attrtools.types import Attribution, Attributions

TEXTS = ["the movie was great fun", "a dull and boring film that never ends"]


@pytest.fixture(scope="module")
def results(tiny_models):
    model, tokenizer = tiny_models["bert"]
    return {
        "attattr": attrtools.attribute(model, tokenizer, TEXTS, method="attattr", steps=4, cache=False),
        "rollout": attrtools.attribute(model, tokenizer, TEXTS, method="rollout", cache=False),
        "gradsam": attrtools.attribute(model, tokenizer, TEXTS, method="gradsam", cache=False),
    }


def _check_file(path, fmt):
    with open(path, "rb") as f:
        head = f.read(512)
    if fmt == "png":
        assert head.startswith(b"\x89PNG\r\n\x1a\n")
        import numpy as np
        from matplotlib.image import imread

        pixels = imread(path)[..., :3]
        # not blank: a good share of pixels is neither white nor one colour
        assert (pixels.reshape(-1, 3) < 0.95).any(axis=1).mean() > 0.02
        assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 20
    elif fmt == "pdf":
        assert head.startswith(b"%PDF-")
    else:
        assert b"<svg" in head or b"<svg" in open(path, "rb").read(4096)


@pytest.mark.parametrize("view", ["tokens", "heads", "matrix"])
def test_attribution_figures_save_each_format(results, view, tmp_path):
    a = results["attattr"][1]
    fig = a.plot(view=view)
    for fmt in ("png", "svg", "pdf"):
        path = fig.save(tmp_path / f"fig.{fmt}")
        _check_file(path, fmt)
    width, height = fig.get_size_inches()
    assert 3.0 <= width <= 7.0 and height < 9  # paper sizes: one column (or a bit more for labels)
    # a colour bar with a label saying what the numbers are
    labels = [ax.get_xlabel() + ax.get_ylabel() for ax in fig.axes]
    assert any("attattr" in label for label in labels)


def test_token_figure_colours_follow_the_scores(results):
    """Each token box carries the colour of its score on the signed scale (red > 0, blue < 0);
    special tokens are outlined and grey, left out of the scale."""
    from matplotlib.patches import FancyBboxPatch

    a = results["attattr"][0]
    fig = a.plot(view="tokens")
    boxes = [p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == a.n_tokens
    scores = a.token_scores().tolist()
    special = a.special_tokens_mask
    content = [abs(s) for s, m in zip(scores, special) if not m]
    for box, score, sp in zip(boxes, scores, special):
        r, g, b, _ = box.get_facecolor()
        if sp:
            assert box.get_linestyle() in ("--", "dashed")
        elif score > 0.2 * max(content):
            assert r > b
        elif score < -0.2 * max(content):
            assert b > r
    cbar = fig.axes[1]
    low, high = cbar.get_xlim()
    assert low == pytest.approx(-max(content)) and high == pytest.approx(max(content))


def test_unsigned_figure_starts_at_zero(results):
    fig = results["rollout"][0].plot(view="matrix", layer=-1)
    cbar = fig.axes[1]
    low, high = cbar.get_ylim()
    assert low == 0 and high > 0
    assert "layer 1" in fig.axes[0].get_xlabel()


def test_matrix_figure_picks_layer_and_head(results):
    a = results["attattr"][0]
    fig = a.plot(view="matrix", layer=0, head=2)
    image = fig.axes[0].images[0].get_array()
    assert torch.allclose(torch.as_tensor(image.data).float(), a.scores[0, 2].float(), atol=1e-7)
    summed = a.plot(view="matrix").axes[0].images[0].get_array()
    assert torch.allclose(torch.as_tensor(summed.data).float(), a.scores.sum((0, 1)).float(), atol=1e-6)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == a.tokens


@pytest.mark.parametrize("bad", [dict(view="matrix", layer=9), dict(view="matrix", head=-9), dict(view="bogus"),
                                 dict(view="tokens", level="sentence")])
def test_figure_refusals_are_usage_errors(results, bad):
    with pytest.raises(UsageError):
        results["attattr"][0].plot(**bad)


def test_tokens_payload_has_no_matrix_or_heads(results):
    a = results["gradsam"][0]
    for view in ("matrix", "heads"):
        with pytest.raises(AttrtoolsError, match="tokens"):
            a.plot(view=view)
    a.plot(view="tokens")  # works


@pytest.mark.parametrize("name", ["fig.jpg", "fig", "fig.png.txt"])
def test_figure_suffix_is_one_rule(name, results, tmp_path):
    with pytest.raises(UsageError, match=r"\.png"):
        results["attattr"][0].plot().save(tmp_path / name)
    assert not os.listdir(tmp_path)
    assert figure_format("X.PDF") == "pdf"


def test_list_figures(results, tmp_path):
    items = results["attattr"]
    fig = items.plot()
    boxes = fig.axes[0].patches
    assert len(boxes) == sum(a.n_tokens for a in items)
    heads = items.plot(view="heads")
    mean = torch.stack([a.head_importance() for a in items]).mean(0)
    assert torch.allclose(torch.as_tensor(heads.axes[0].images[0].get_array().data).float(), mean.float(), atol=1e-7)
    _check_file(heads.save(tmp_path / "h.png"), "png")
    with pytest.raises(UsageError, match="signed and unsigned"):
        Attributions([results["attattr"][0], results["rollout"][0]]).plot()


def test_to_dataframe_matches_token_scores_csv(results, tmp_path):
    from attrtools.commands.attribute import write_token_scores

    items = results["attattr"]
    frame = items.to_dataframe()
    path = write_token_scores(str(tmp_path / "t.csv"), items)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(frame.columns) == list(rows[0].keys())
    assert len(frame) == len(rows) == sum(a.n_tokens for a in items)
    for (_, got), want in zip(frame.iterrows(), rows):
        assert got["token"] == want["token"] and int(want["example"]) == got["example"]
        assert got["score"] == pytest.approx(float(want["score"]), rel=1e-5, abs=1e-12)
        assert bool(int(want["special"])) == got["special"]
    first = items[0].token_scores().tolist()
    assert frame[frame.example == 0].score.tolist() == pytest.approx(first)
    with pytest.raises(UsageError):
        items.to_dataframe(level="sentence")


def test_stack_pads_and_masks(results):
    items = results["attattr"]
    lengths = [a.n_tokens for a in items]
    assert lengths[0] != lengths[1]
    stacked = items.stack(pad=float("nan"))
    assert stacked.values.shape == (2, max(lengths))
    assert stacked.mask.sum(1).tolist() == lengths
    for b, a in enumerate(items):
        assert torch.equal(stacked.values[b, : a.n_tokens], a.token_scores().float())
        assert torch.isnan(stacked.values[b, a.n_tokens:]).all()
    full = items.stack(view="scores")
    L, H = items[0].scores.shape[:2]
    assert full.values.shape == (2, L, H, max(lengths), max(lengths))
    assert torch.equal(full.values[0, :, :, : lengths[0], : lengths[0]], items[0].scores.float())
    assert float(full.values[0, :, :, lengths[0]:].abs().sum()) == 0
    with pytest.raises(UsageError):
        Attributions([items[0], results["rollout"][0]]).stack(view="scores")
    with pytest.raises(UsageError):
        Attributions([]).stack()


def test_to_bertviz_shapes(results):
    a = results["attattr"][0]
    attention, tokens = a.to_bertviz()
    L, H, n = a.scores.shape[0], a.scores.shape[1], a.n_tokens
    assert tokens == a.tokens and len(attention) == L
    assert all(t.shape == (1, H, n, n) for t in attention)
    assert torch.equal(attention[1][0, 2], a.scores[1, 2].float())
    layered, _ = results["rollout"][0].to_bertviz()
    assert layered[0].shape == (1, 1, n, n)
    with pytest.raises(UsageError):
        results["gradsam"][0].to_bertviz()


def test_to_bertviz_real_head_view(results):
    bertviz = pytest.importorskip("bertviz", reason="bertviz not installed (pip install --no-deps bertviz)")
    attention, tokens = results["attattr"][0].to_bertviz()
    html = bertviz.head_view(attention, tokens, html_action="return")
    assert tokens[2] in html.data
    html = bertviz.model_view(attention, tokens, html_action="return")
    assert "[CLS]" in html.data


def test_to_ferret_real_explanation(results):
    try:
        from ferret.explainers.explanation import Explanation
    except Exception as err:  # ferret's package import pulls many optional modules
        pytest.skip(f"ferret-xai does not import here: {err}")
    a = results["gradsam"][1]
    explanation = a.to_ferret()
    assert isinstance(explanation, Explanation)
    assert explanation.tokens == a.tokens and explanation.text == TEXTS[1]
    assert explanation.scores.tolist() == pytest.approx(a.token_scores().tolist())
    assert explanation.explainer == "gradsam" and explanation.target == a.target
    from ferret.evaluators.plausibility_measures import AUPRC_PlausibilityEvaluation  # noqa: F401  real class


def test_to_ferret_missing_is_one_line(results, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ferret(name, *args, **kwargs):
        if name.startswith("ferret"):
            raise ImportError("No module named 'ferret'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ferret)
    with pytest.raises(AttrtoolsError, match="ferret-xai"):
        results["gradsam"][0].to_ferret()


def test_cli_attribute_figures(tiny_dirs, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["attribute", "--model", tiny_dirs["bert"], "--text", TEXTS[0], "--text", TEXTS[1],
                                       "--method", "attattr", "--param", "steps=4", "--no-cache",
                                       "--figures", "png,svg,pdf", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    run = out if (out / "figures").is_dir() else next(p for p in out.iterdir() if (p / "figures").is_dir())
    names = sorted(os.listdir(run / "figures"))
    for stem in ("000000-tokens", "000000-matrix", "000000-heads", "000001-tokens", "all-tokens", "all-heads"):
        for fmt in ("png", "svg", "pdf"):
            assert f"{stem}.{fmt}" in names
            _check_file(run / "figures" / f"{stem}.{fmt}", fmt)
    bad = CliRunner().invoke(main, ["attribute", "--model", tiny_dirs["bert"], "--text", "x", "--figures", "png,jpg",
                                    "--no-cache", "--output-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "jpg" in bad.output


# ------------------------------------------------------------------------------- evaluate on supplied explanations
def test_supplied_explanations_score_like_the_method(planted, tmp_path):
    """gradsam given back as objects, as content-token dicts and as a JSONL file scores exactly as the
    registered gradsam row, and its perturbed forwards come from the same memo (none run again)."""
    import json

    from attrtools.evaluate.run import evaluate_methods
    from attrtools.evaluate.supplied import load_explanations
    from attrtools.testing import planted_dataset
    from attrtools.types import Example

    model, tok = planted
    examples = [Example(t, label=y) for t, y in planted_dataset(6, seed=3)]
    attrs = attrtools.attribute(model, tok, examples, method="gradsam", cache=False)
    content = [{"tokens": [t for t, m in zip(a.tokens, a.special_tokens_mask) if not m],
                "scores": [s for s, m in zip(a.token_scores().tolist(), a.special_tokens_mask) if not m]} for a in attrs]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"tokens": a.tokens, "scores": a.token_scores().tolist(), "note": "x"})
                              for a in attrs) + "\n\n")
    forwards = []
    result = evaluate_methods(model, tok, examples, ["gradsam"], reference=None,
                              on_result=lambda ev: forwards.append(ev.forwards),
                              supplied={"objects": attrs, "content": content, "file": load_explanations(path)})
    assert len(forwards) == 5 and forwards[1] > forwards[0] and forwards[4] == forwards[1]  # memo: none run again
    by = {r.name: r for r in result.results}
    assert [r.name for r in result.results] == ["random", "gradsam", "objects", "content", "file"]
    for name in ("objects", "content", "file"):
        assert by[name].status == "ok" and by[name].n_examples == 6
        for key in ("aopc_comp", "aopc_suff", "deletion_auc", "insertion_auc"):
            assert by[name].summary[key] == pytest.approx(by["gradsam"].summary[key], abs=1e-6), (name, key)
    reversed_scores = [{"tokens": d["tokens"], "scores": [-s for s in d["scores"]]} for d in content]
    flipped = evaluate_methods(model, tok, examples, [], reference=None, supplied={"reversed": reversed_scores})
    flip = {r.name: r for r in flipped.results}["reversed"]
    assert flip.summary["aopc_comp"] < by["gradsam"].summary["aopc_comp"]


@pytest.mark.parametrize("bad, message", [
    ([{"tokens": ["the", "movie"], "scores": [1.0, 2.0]}], "explanation 0"),            # another text
    ([{"tokens": ["x"], "scores": [1.0, 2.0]}], "1 tokens but 2 scores"),
    ([{"tokens": ["[CLS]"], "scores": [float("nan")]}], "not a finite number"),
    (["just a string"], "give tokens and scores"),
    ([], "0 explanation"),                                                                # count differs
])
def test_supplied_explanations_refused_in_one_line(tiny_models, bad, message):
    from attrtools.errors import InputDataError
    from attrtools.evaluate.run import evaluate_methods

    model, tok = tiny_models["bert"]
    with pytest.raises(InputDataError, match=message):
        evaluate_methods(model, tok, ["a dull and boring film"], [], reference=None, supplied={"mine": bad})


def test_cli_evaluate_supplied_file(planted_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from attrtools.cli import main
    from attrtools.testing import planted_dataset

    rows = planted_dataset(4, seed=2)
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in rows) + "\n")
    model, tok = attrtools.load_model(planted_dir)
    attrs = attrtools.attribute(model, tok, [t for t, _ in rows], method="grad_input", cache=False)
    mine = tmp_path / "mine.jsonl"
    mine.write_text("\n".join(json.dumps({"tokens": a.tokens, "scores": a.token_scores().tolist()}) for a in attrs))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["evaluate", "--model", planted_dir, "--dataset", str(data), "--methods", "none",
                                       "--explanations", f"mine={mine}", "--reference", "none", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "faithfulness.csv").read_text().splitlines()
    assert {line.split(",")[0] for line in table[1:]} == {"random", "mine"}
    bad = CliRunner().invoke(main, ["evaluate", "--model", planted_dir, "--dataset", str(data), "--explanations",
                                    f"mine={tmp_path / 'nope.jsonl'}", "--output-dir", str(tmp_path / "r2")])
    assert bad.exit_code != 0 and "does not exist" in bad.output


def test_cli_prune_figures_and_report_named(planted_dir, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main
    from attrtools.testing import planted_dataset

    data = tmp_path / "planted.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in planted_dataset(16, seed=7)))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["prune", "--model", planted_dir, "--dataset", str(data), "--num-examples", "6",
                                       "--steps", "2", "--prune-fraction", "0.25", "--strategies", "attattr,random",
                                       "--fractions", "0,1", "--latency-repeats", "1", "--no-save-model",
                                       "--figures", "PNG, pdf", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out / "report.html") in result.output  # the summary names its report
    for strategy in ("attattr", "random"):
        _check_file(out / "figures" / f"head-importance-{strategy}.png", "png")
        _check_file(out / "figures" / f"head-importance-{strategy}.pdf", "pdf")
    import json

    plan = json.loads((out / "pruned_heads.json").read_text())["all_strategies"]["attattr"]
    from attrtools.pruning.report import importance_tables, _read_csv
    from attrtools.report.plots import heads_figure

    table = importance_tables(_read_csv(str(out / "head_importance.csv")))["attattr"]
    fig = heads_figure(table, False, "x", plan={int(k): v for k, v in plan.items()})
    assert len(fig.axes[0].collections[0].get_offsets()) == sum(len(v) for v in plan.values())
    bad = CliRunner().invoke(main, ["prune", "--model", planted_dir, "--dataset", str(data), "--figures", "gif",
                                    "--output-dir", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "gif" in bad.output and not (tmp_path / "bad").exists()


def test_cache_info_names_models_and_kinds(tiny_models, tiny_dirs, tmp_path):
    """`cache info` says which model a fingerprint is (its folder or hub id) and files entries of no
    method (evaluate's perturbed forwards) under their kind, never as `?`."""
    import json

    from click.testing import CliRunner

    from attrtools.cache import AttributionCache
    from attrtools.cli import main
    from attrtools.evaluate.run import evaluate_methods

    model, tok = tiny_models["bert"]
    cache = AttributionCache(str(tmp_path / "c"))
    evaluate_methods(model, tok, ["a dull and boring film", "the movie was great fun"], ["raw"], cache=cache,
                     reference=None, operator="mask")
    env = {"ATTRTOOLS_CACHE": str(tmp_path / "c")}
    info = json.loads(CliRunner().invoke(main, ["cache", "info", "--json"], env=env).output)
    assert set(info["by_method"]) == {"raw", "(forwards)"}
    assert list(info["model_names"].values()) == [tiny_dirs["bert"]]
    text = CliRunner().invoke(main, ["cache", "info"], env=env).output
    assert " ? " not in text and tiny_dirs["bert"] in text and "(forwards)" in text


def test_word_level_where_word_scores_exists(results):
    import copy

    a = copy.copy(results["gradsam"][0])
    # the real Attribution.word_scores (attrtools.words): the table and the figure follow its words
    real = a.word_scores()
    frame = Attributions([a]).to_dataframe(level="word")
    assert frame.word.tolist() == [w.word for w in real] and len(real) > 0
    assert frame.score.tolist() == pytest.approx([w.score for w in real])
    assert len(a.plot(level="word").axes[0].patches) == len(real)
    # any object whose word_scores() gives (word, score) pairs is drawn the same way
    words = [("the", 0.5), ("movie", -0.25), ("was", 0.0)]
    a.word_scores = lambda: words
    frame = Attributions([a]).to_dataframe(level="word")
    assert frame.word.tolist() == ["the", "movie", "was"] and frame.score.tolist() == [0.5, -0.25, 0.0]
    assert len(a.plot(level="word").axes[0].patches) == 3
