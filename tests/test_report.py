"""Reports and views: formatting, the attribution views (parsed HTML), notebook reprs, and the
headless-browser check (runs where Chromium and websocket-client are installed, skips otherwise)."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import torch

from attrtools.engine import Engine
from attrtools.report import Report, fmt_number, fmt_percent, fmt_seconds, model_label
from attrtools.report.colors import lut, scale_for
from attrtools.types import Attribution, Attributions, Example

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tree(HTMLParser):
    """A minimal DOM: elements with tag, attributes, children and text."""

    VOID = {"meta", "img", "br", "input", "link", "hr", "col"}

    def __init__(self):
        super().__init__()
        self.root = {"tag": "root", "attrs": {}, "children": [], "text": ""}
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = {"tag": tag, "attrs": dict(attrs), "children": [], "text": ""}
        self.stack[-1]["children"].append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i]["tag"] == tag:
                del self.stack[i:]
                return
        raise AssertionError(f"unbalanced </{tag}>")

    def handle_data(self, data):
        self.stack[-1]["text"] += data


def parse(markup):
    tree = Tree()
    tree.feed(markup)
    tree.close()
    assert len(tree.stack) == 1, f"unclosed elements: {[n['tag'] for n in tree.stack[1:]]}"
    return tree.root


def find(node, tag=None, cls=None):
    out = []
    for child in node["children"]:
        classes = child["attrs"].get("class", "") or ""
        if (tag is None or child["tag"] == tag) and (cls is None or cls in classes.split()):
            out.append(child)
        out += find(child, tag, cls)
    return out


def text_of(node):
    return node["text"] + "".join(text_of(c) for c in node["children"])


def background(span):
    match = re.search(r"background:(#[0-9a-f]{6})", span["attrs"]["style"])
    return match.group(1)


@pytest.fixture(scope="module")
def bert(tiny_models):
    return tiny_models["bert"]


def _attribute(model_tok, examples, method, **params):
    model, tokenizer = model_tok
    return Engine(model, tokenizer, cache=None, progress=False).attribute(examples, method=method, **params)


# --------------------------------------------------------------------------------------- formatting
def test_formatting_reads_like_text_not_reprs():
    assert fmt_seconds(0.042) == "42 ms"
    assert fmt_seconds(12.34) == "12.3 s"
    assert fmt_seconds(75) == "1 min 15 s"
    assert fmt_seconds(3720) == "1 h 02 min"
    assert fmt_seconds(None) == "–"
    assert fmt_number(12345) == "12,345"
    assert fmt_number(0.87312) == "0.873"
    assert fmt_number(True) == "yes"
    assert fmt_number(float("nan")) == "–"
    assert fmt_percent(0.8731) == "87.3 %"
    label = model_label("/root/.cache/attrtools/models/minilm-sentiment", "0123456789abcdef0123")
    assert label == "models/minilm-sentiment (local folder) · fingerprint 0123456789ab"
    assert model_label("prajjwal1/bert-tiny") == "prajjwal1/bert-tiny"


def test_colour_scales_sequential_for_unsigned_diverging_with_zero_for_signed():
    signed = scale_for([-0.5, 0.2, 1.0], signed=True)
    assert (signed.vmin, signed.vmax) == (-1.0, 1.0)
    assert signed.colour(0.0) == signed.colours[len(signed.colours) // 2] or signed.position(0.0) == 0.5
    assert "0" in [label for _, label in signed.ticks()]
    unsigned = scale_for([0.0, 0.3, 0.6], signed=False)
    assert (unsigned.vmin, unsigned.vmax) == (0.0, 0.6)
    assert unsigned.colour(0.0) == lut("Oranges")[0]  # white-ish at 0
    assert unsigned.colour(0.6) == lut("Oranges")[-1]
    assert "no direction" in unsigned.explanation() and "red raises" in signed.explanation()


# --------------------------------------------------------------------------------------- views
def test_attribution_repr_html_is_a_token_heatmap(bert):
    attribution = _attribute(bert, [Example("the movie was very good", label=1)], "grad_input", aggregate="sum")[0]  # the signed variant
    assert attribution.params["_signed"] is True
    root = parse(attribution._repr_html_())
    spans = find(root, "span", "tok")
    assert [text_of(s) for s in spans] == attribution.tokens
    scores = attribution.token_scores().tolist()
    special = attribution.special_tokens_mask
    scale = scale_for([s for s, m in zip(scores, special) if not m], signed=True)
    for span, score, is_special in zip(spans, scores, special):
        assert f"{score:.4g}" in span["attrs"]["title"]
        assert background(span) == scale.colour(score)
        assert ("special" in span["attrs"]["class"].split()) == bool(is_special)
    strongest = max((i for i in range(len(scores)) if not special[i]), key=lambda i: scores[i])
    red, green, blue = (int(background(spans[strongest])[k: k + 2], 16) for k in (1, 3, 5))
    if scores[strongest] > 0:
        assert red > blue  # positive on the diverging map is red
    legend = find(root, cls="legend")
    assert legend and "red raises" in text_of(legend[0])
    assert "gold class 1" in text_of(find(root, cls="attr-head")[0])
    assert not find(root, cls="matrix-view")  # a tokens payload has no matrices


def test_unsigned_method_uses_sequential_scale(bert):
    attribution = _attribute(bert, [Example("the movie was very good")], "rollout")[0]
    assert attribution.params["_signed"] is False
    root = parse(attribution._repr_html_())
    oranges = set(lut("Oranges"))
    assert all(background(s) in oranges for s in find(root, "span", "tok") if "special" not in s["attrs"]["class"])
    assert "no direction" in text_of(find(root, cls="legend")[0])


def test_matrix_view_embeds_every_layer_and_head(bert):
    attribution = _attribute(bert, [Example("a dull and long story", label=0)], "attattr", steps=3)[0]
    root = parse(attribution.to_html())
    view = find(root, cls="matrix-view")
    assert len(view) == 1
    selects = find(view[0], "select")
    L, H, n, _ = attribution.scores.shape
    layer_options = [o["attrs"]["value"] for o in find(selects[0], "option")]
    head_options = [o["attrs"]["value"] for o in find(selects[1], "option")]
    assert layer_options == ["sum"] + [str(l) for l in range(L)]
    assert head_options == ["sum"] + [str(h) for h in range(H)]
    payload = json.loads(text_of([s for s in find(view[0], "script") if s["attrs"].get("type") == "application/json"][0]))
    assert (payload["layers"], payload["heads"], payload["n"]) == (L, H, n)
    assert payload["tokens"] == attribution.tokens
    embedded = torch.tensor(payload["scores"]).reshape(L, H, n, n)
    assert torch.allclose(embedded, attribution.scores.float(), rtol=1e-3, atol=1e-9)
    scripts = [s for s in find(root, "script") if not s["attrs"].get("type")]
    assert scripts and not any(re.search(r"https?://(?!www\.w3\.org/2000/svg)", text_of(s)) for s in scripts)


def test_pair_shows_both_segments(bert):
    attribution = _attribute(bert, [Example("the plot was good", "the acting was bad")], "gradsam")[0]
    root = parse(attribution._repr_html_())
    lines = find(root, cls="tokens")
    assert [text_of(find(line, cls="seg")[0]) for line in lines] == ["A", "B"]
    first = " ".join(text_of(s) for s in find(lines[0], cls="tok"))
    second = " ".join(text_of(s) for s in find(lines[1], cls="tok"))
    assert "plot" in first and "acting" not in first
    assert "acting" in second and "plot" not in second


def test_attributions_list_shows_a_summary_table(bert):
    results = Attributions(_attribute(bert, [Example("good", label=1), Example("boring", label=0)], "grad_input"))
    root = parse(results._repr_html_())
    body_rows = find(find(root, "tbody")[0], "tr")
    assert len(body_rows) == 2
    assert "boring" in text_of(body_rows[1])
    assert len(find(root, cls="token-heatmap")) == 2


def test_label_names_come_from_id2label(bert):
    model, tokenizer = bert
    attribution = _attribute(bert, [Example("good", label=1)], "grad_input")[0]
    named = Attribution(**{**attribution.__dict__, "label_names": ["negative", "positive"]})
    head = text_of(find(parse(named._repr_html_()), cls="attr-head")[0])
    assert "gold positive (1)" in head


def test_saved_attribution_keeps_label_names(bert, tmp_path):
    attribution = _attribute(bert, [Example("good", label=1)], "grad_input")[0]
    attribution.label_names = ["neg", "pos"]
    back = Attribution.load(attribution.save(tmp_path / "a.safetensors"))
    assert back.label_names == ["neg", "pos"]


def test_report_page_is_self_contained_and_escaped(tmp_path):
    report = Report("T <script>", facts=[("model", "m"), ("time", fmt_seconds(3.2))])
    report.section("Numbers", "intro").table(["a", "b"], [[1, 0.5], [2, 0.25]], best={(0, 1)})
    page = report.to_html()
    root = parse(page)
    assert "<script>" not in text_of(find(root, "title")[0]) or "T <script>" == text_of(find(root, "title")[0])
    assert "&lt;script&gt;" in page
    cells = find(root, "td", "best")
    assert [text_of(c) for c in cells] == ["0.500"]
    assert not re.search(r"""(src|href)=["']https?:""", page)


# --------------------------------------------------------------------------------------- browser
def _browser_available():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import check_html
    finally:
        sys.path.pop(0)
    return check_html if check_html.find_chromium() and importlib.util.find_spec("websocket") else None


def test_browser_check_passes_views_and_catches_broken_pages(bert, tmp_path):
    check_html = _browser_available()
    if check_html is None:
        pytest.skip("headless Chromium or websocket-client not installed")
    good = tmp_path / "pages"
    good.mkdir()
    matrix, pair = _attribute(bert, [Example("a dull and long story", label=0), Example("the plot", "was bad")],
                              "attattr", steps=2)
    matrix.to_html(good / "matrix.html")
    pair.to_html(good / "pair.html")
    Attributions([matrix, pair]).to_html(good / "summary.html")
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><html><body><section><h2>Empty</h2></section><img src='gone.png' alt='x'>"
                   "<p>{\"accuracy\": 0.5}</p><script>nope();</script></body></html>")
    shots = tmp_path / "shots"
    results = check_html.check_files([str(good), str(bad)], str(shots), log=lambda *a: None)
    assert {os.path.basename(p): problems for p, problems in results.items() if "pages" in p} == \
        {"matrix.html": [], "pair.html": [], "summary.html": []}
    problems = " | ".join(results[str(bad)])
    for expected in ("JavaScript error", "image did not load", "empty section", "raw JSON"):
        assert expected in problems
    assert sorted(p.name for p in shots.iterdir()) == ["bad.png", "pages_matrix.png", "pages_pair.png",
                                                       "pages_summary.png"]
    assert all(p.stat().st_size > 1000 for p in shots.iterdir())


# --------------------------------------------------------------------------------------- tool reports
def _fake_pruning_run(run_dir):
    """The files run_pruning writes, for a 2-layer × 3-head model, two strategies."""
    run_dir.mkdir()
    rows = ["strategy,layer,head,importance,rank"]
    for s, base in (("attattr", 0.0), ("random", 10.0)):
        for l in range(2):
            for h in range(3):
                rows.append(f"{s},{l},{h},{base + l * 3 + h},{l * 3 + h}")
    (run_dir / "head_importance.csv").write_text("\n".join(rows) + "\n")
    curve = ["strategy,fraction,heads_pruned,accuracy,loss,n",
             "attattr,0.000000,0,0.900000,0.300000,10", "attattr,0.500000,3,0.800000,0.500000,10",
             "random,0.000000,0,0.900000,0.300000,10", "random,0.500000,3,0.600000,0.900000,10"]
    (run_dir / "pruning_curve.csv").write_text("\n".join(curve) + "\n")
    (run_dir / "pruned_heads.json").write_text(json.dumps({
        "strategy": "attattr", "pruned_heads": {"0": [0, 1, 2]},
        "all_strategies": {"attattr": {"0": [0, 1, 2]}, "random": {"1": [0], "0": [2, 1]}}}))
    (run_dir / "summary.json").write_text(json.dumps({
        "model": "/some/cache/path/models/my-model", "fingerprint": "ab" * 32, "layers": 2, "heads_per_layer": 3,
        "heads_total": 6, "strategies": ["attattr", "random"], "plan_strategy": "attattr", "importance_examples": 8,
        "eval_examples": 10, "accuracy_unpruned": 0.9, "loss_unpruned": 0.3,
        "plan": {"heads_pruned": 3, "fraction": 0.5, "accuracy_masked": 0.8, "accuracy_pruned": 0.8,
                 "loss_masked": 0.5, "loss_pruned": 0.5, "masked_equals_pruned": True},
        "parameters": {"before": 1000, "after": 800, "saving": 0.2},
        "latency": {"batch_size": 4, "repeats": 2, "median_s_before": 0.02, "median_s_after": 0.01, "speedup": 2.0,
                    "single_median_s_before": 0.004, "single_median_s_after": 0.005, "single_speedup": 0.8,
                    "device": "cpu", "threads": 1},
        "importance_seconds": {"attattr": 75.2, "random": 0.001}}))


def test_pruning_report_has_tables_and_figures_not_dumps(tmp_path):
    from attrtools.pruning.report import write_pruning_report

    run = tmp_path / "run"
    _fake_pruning_run(run)
    page = open(write_pruning_report(str(run)), encoding="utf-8").read()
    root = parse(page)
    sections = {text_of(find(s, "h2")[0]): s for s in find(root, "section")}
    assert list(sections) == ["Outcome", "Head importance (layer × head)", "Accuracy and loss as heads are pruned",
                              "The plan", "Time"]
    facts = text_of(find(root, "table", "facts")[0])
    assert "models/my-model (local folder) · fingerprint abababababab" in facts and "/some/cache" not in facts
    assert find(sections["Head importance (layer × head)"], "img")[0]["attrs"]["src"].startswith("data:image/png")
    tables = find(sections["Accuracy and loss as heads are pruned"], "table")
    accuracy = [[text_of(td) for td in find(tr, "td")] for tr in find(find(tables[0], "tbody")[0], "tr")]
    assert accuracy == [["0 %", "0", "0.900", "0.900"], ["50 %", "3", "0.800", "0.600"]]
    best = [text_of(td) for td in find(tables[0], "td", "best")]
    assert best == ["0.800"]  # marked only where strategies differ
    loss_best = [text_of(td) for td in find(tables[1], "td", "best")]
    assert loss_best == ["0.500"]
    outcome = text_of(sections["Outcome"])
    assert "×2.00 faster" in outcome and "×1.25 slower" in outcome and "−20.0 %" in outcome
    assert "1 min 15 s" in text_of(sections["Time"])
    plan_rows = [[text_of(td) for td in find(tr, "td")] for tr in find(find(sections["The plan"], "tbody")[0], "tr")]
    assert plan_rows == [["0", "0, 1, 2", "0"], ["1", "–", "3"]]
    assert not re.search(r"\{\s*(&#34;|&#39;|[\"'])\w+", re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page, flags=re.S))


def test_attribute_cli_prints_scores_writes_csv_and_views(tiny_dirs, tmp_path):
    from click.testing import CliRunner

    from attrtools.cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["attribute", "--model", tiny_dirs["bert"], "--text", "the movie was good",
                                       "--method", "attattr", "--param", "steps=2", "--html", "--no-cache",
                                       "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "'the movie was good' -> class" in result.output
    assert re.search(r"movie [+-]\d", result.output)
    rows = (out / "token_scores.csv").read_text().splitlines()
    attribution = Attribution.load(out / "attributions" / "000000.safetensors")
    assert rows[0] == "example,example_id,position,token,score,special"
    assert [r.split(",")[3] for r in rows[1:]] == attribution.tokens
    scores = [float(r.split(",")[4]) for r in rows[1:]]
    assert torch.allclose(torch.tensor(scores), attribution.token_scores().float(), rtol=1e-4, atol=1e-9)
    page = parse((out / "views" / "000000.html").read_text())
    assert find(page, cls="matrix-view") and find(page, cls="token-heatmap")
    assert find(parse((out / "views" / "index.html").read_text()), "tbody")
    assert sorted(os.listdir(out / "attributions")) == ["000000.safetensors"]


def test_tree_picture_routes_around_boxes_and_bounds_width(tmp_path):
    import numpy as np

    from attrtools.tree.build import build_tree
    from attrtools.tree.export import MAX_WIDTH_IN, _route, draw

    # a straight arrow from (0, 1) to (4, 1) would cross the box at (2, 1): it must bend
    rad, _ = _route((0, 1), (4, 1), [(2, 1, 0.3, 0.13)], (1.0, 0.75), 0.04)
    assert rad != 0.0
    assert _route((0, 1), (4, 1), [(2, 3, 0.3, 0.13)], (1.0, 0.75), 0.04)[0] == 0.0  # nothing in the way
    rng = np.random.default_rng(1)
    n = 60
    tokens = ["[CLS]"] + [f"word{i}" for i in range(n - 2)] + ["[SEP]"]
    graph = build_tree(rng.random((4, n, n)) ** 8, tokens, threshold=0.3)
    path = draw(graph, str(tmp_path / "long.png"), dpi=100)
    from matplotlib.image import imread

    height, width = imread(path).shape[:2]
    assert width <= MAX_WIDTH_IN * 100 + 1


def test_evaluate_html_report_sorted_with_best_marked(tmp_path):
    from attrtools.evaluate.report import html_report
    from attrtools.evaluate.run import Evaluation

    class R:
        def __init__(self, name, comp, suff):
            self.name, self.status, self.n_examples, self.reason = name, "ok", 5, None
            self.summary = {"aopc_comp": comp, "aopc_suff": suff, "deletion_auc": 0.5, "insertion_auc": 0.5,
                            "log_odds": -1.0, "accuracy": 0.5, "curves": {"bins": [0.1, 0.2],
                                                                          "accuracy": [0.9, 0.7],
                                                                          "comprehensiveness": [0.1, 0.2]}}
            self.spearman, self.spearman_std, self.seconds, self.from_cache, self.params = 0.5, 0.1, 2.0, 0, {}

    evaluation = Evaluation("decompx", "mask", None, 5, 0.8, [R("a", 0.1, 0.2), R("b", 0.3, 0.4)], forwards=40)
    root = parse(html_report(evaluation, model="m").to_html())
    body = find(find(root, "tbody")[0], "tr")
    assert [text_of(find(tr, "td")[0]) for tr in body] == ["b", "a"]  # sorted by AOPC comprehensiveness
    best = {text_of(td) for td in find(find(root, "table", "tbl")[1], "td", "best")}
    assert best == {"0.300", "0.200"}  # higher comp is better, lower suff is better; ties not marked


def test_tree_view_renders_in_a_notebook_iframe():
    import html as html_lib

    import numpy as np

    from attrtools.tree import build_tree, view

    graph = build_tree(np.random.default_rng(0).random((3, 6, 6)) ** 4, ["[CLS]", "a", "b", "c", "d", "[SEP]"])
    root = parse(view(graph)._repr_html_())
    frame = find(root, "iframe")[0]
    inner = parse(frame["attrs"]["srcdoc"])  # the parser unescapes the attribute: the whole page
    assert find(inner, "svg") and len(find(inner, "g", "node")) == graph.number_of_nodes()
    assert html_lib.escape("<svg") not in frame["attrs"]["srcdoc"]


def test_tool_report_displays_in_a_notebook(tmp_path):
    from attrtools.pruning.report import pruning_report

    run = tmp_path / "run"
    _fake_pruning_run(run)
    fragment = pruning_report(str(run))._repr_html_()
    root = parse(fragment)
    assert root["children"][0]["tag"] == "div" and "attrtools" in root["children"][0]["attrs"]["class"]
    assert "<html" not in fragment and len(find(root, "section")) == 5


def test_demo_says_what_it_will_do_and_how_long():
    from attrtools.commands.demo import DemoConfig, plan_text

    first = plan_text(DemoConfig(), needs_training=True, device="cpu", threads=2, train_rows=6000)
    again = plan_text(DemoConfig(), needs_training=False, device="cpu", threads=2)
    assert "fine-tune the default classifier" in first and "fine-tune" not in again
    assert "1. run every attribution method" in again
    assert re.search(r"Roughly \d+ min( \d+ s)? in all on this machine \(cpu, 2 CPU thread", first)
    faster = plan_text(DemoConfig(), needs_training=False, device="cpu", threads=8)
    assert faster != again  # scaled to the machine


def test_progress_bars_only_on_a_terminal(capsys):
    from attrtools.progress import NullBar, bar, track

    assert isinstance(bar(10, "x", enabled=False), NullBar)
    assert isinstance(bar(0, "x", enabled=True), NullBar)
    assert list(track([1, 2, 3], "x", enabled=False)) == [1, 2, 3]
    shown = bar(3, "work", unit="step", enabled=True)
    shown.update(3)
    shown.close()
    err = capsys.readouterr().err
    assert "work" in err and "3/3" in err and "step/s" in err  # a rate is shown
