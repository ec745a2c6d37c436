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
    attribution = _attribute(bert, [Example("the movie was very good", label=1)], "grad_input")[0]
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
