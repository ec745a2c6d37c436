"""Notebooks for real (docs/export.md): a small notebook is executed in a kernel (nbclient +
ipykernel), exported with nbconvert and opened in headless Chromium, with and without scripts
(a reopened, untrusted notebook runs none). Also the matrix view's size budget and the progress
bars' default. Skips cleanly without the notebook packages or Chromium."""
import importlib.util
import json
import os
import pathlib
import re
import sys
import types

import pytest
import torch

from attrtools import progress
from attrtools.report.views import CANVAS_ABOVE, MATRIX_BUDGET, matrix_payload, matrix_view
from attrtools.types import Attribution

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_MB = 1_000_000  # Jupyter's default iopub data rate limit (bytes/s) a cell's output must stay under


# ------------------------------------------------------------------------------- progress default
@pytest.mark.parametrize("ci, kernel, tty, expected", [
    ("", True, False, True),      # a notebook kernel: stderr is not a terminal, bars on
    ("", False, False, False),    # a pipe
    ("", False, True, True),      # a terminal
    ("true", True, True, False),  # CI: off everywhere
    ("0", False, True, True),
])
def test_progress_default(monkeypatch, ci, kernel, tty, expected):
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(progress, "in_notebook_kernel", lambda: kernel)
    monkeypatch.setattr(sys, "stderr", types.SimpleNamespace(isatty=lambda: tty))
    assert progress.enabled_default(None) is expected
    assert progress.enabled_default(False) is False and progress.enabled_default(True) is True


def test_terminal_ipython_is_not_a_kernel(monkeypatch):
    import IPython

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace())
    assert progress.in_notebook_kernel() is False
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object()))
    assert progress.in_notebook_kernel() is True


# ------------------------------------------------------------------------------- matrix budget
def _fake(L, H, n, signed=True, kind="matrix"):
    g = torch.Generator().manual_seed(n)
    shape = (L, H, n, n) if kind == "matrix" else (L, n, n)
    scores = torch.randn(shape, generator=g) if signed else torch.rand(shape, generator=g)
    special = [1] + [0] * (n - 2) + [1]
    return Attribution(tokens=[f"t{i}" for i in range(n)], input_ids=list(range(n)), scores=scores, kind=kind,
                       method="attattr" if signed else "rollout", params={"_signed": signed}, target=0, predicted=0,
                       probs=[0.5, 0.5], special_tokens_mask=special)


@pytest.mark.parametrize("L, H, n, heads, layers, encoding", [
    (2, 4, 20, 4, 2, "text"),         # small: everything, exact decimals
    (12, 12, 64, 0, 12, "text"),      # heads summed, every layer
    (12, 12, 160, 0, 12, "u8"),       # every layer as 8-bit codes
    (24, 16, 512, 0, 1, "u8"),        # n = 512: the sum only
])
def test_matrix_payload_budget(L, H, n, heads, layers, encoding):
    blocks, got_layers, got_heads, got_encoding, note = matrix_payload(_fake(L, H, n).scores, "matrix")
    assert (got_layers, got_heads, got_encoding) == (layers, heads, encoding)
    assert (note is None) == (heads == H and encoding == "text")
    if layers == 1:
        assert torch.allclose(blocks[0, 0], _fake(L, H, n).scores.sum((0, 1)), atol=1e-3)


def test_8bit_codes_keep_negative_values_of_an_unsigned_method():
    """A method declared unsigned whose maps still hold negative values is coded around 128, never clipped."""
    import base64

    from attrtools.report.views import _encode

    blocks = torch.tensor([[[[0.5, -0.25], [1.0, 0.0]]]])
    data, q = _encode(blocks, "u8", signed=False)
    codes = torch.tensor(list(base64.b64decode(json.loads(data))), dtype=torch.float32)
    assert q["signed"] is True
    assert torch.allclose((codes - 128) / 127 * q["scale"][0], blocks.reshape(-1), atol=1.0 / 127)


@pytest.mark.parametrize("signed", [True, False])
def test_large_matrix_view_is_a_canvas_under_1mb_and_decodes(signed):
    import base64

    n = CANVAS_ABOVE + 50
    a = _fake(4, 4, n, signed=signed)
    html = matrix_view(a)
    assert len(html.encode()) < ONE_MB
    start = html.index('<script type="application/json" data-role="data">') + len('<script type="application/json" data-role="data">')
    payload = json.loads(html[start: html.index("</script>", start)])
    assert payload["canvas"] is True and payload["encoding"] in ("text", "u8")
    assert "<img" in html and "data:image/png;base64," in html  # the static fallback
    assert "Static picture of the sum over layers and heads" in html  # says what it sums, heads included
    if payload["encoding"] == "u8":  # decode as the page does: each block within 1/254 of its range
        codes = torch.tensor(list(base64.b64decode(payload["scores"])), dtype=torch.float32)
        blocks = codes.reshape(payload["layers"], 1, n, n)
        top = torch.tensor(payload["qscale"]["scale"]).reshape(-1, 1, 1, 1)
        assert payload["qscale"]["signed"] is signed
        values = (blocks - 128) / 127 * top if signed else blocks / 255 * top
        want = a.scores.sum(1, keepdim=True) if payload["layers"] > 1 else a.scores.sum((0, 1))[None, None]
        assert torch.allclose(values, want, atol=float(top.max()) / 200)


# ------------------------------------------------------------------------------- executed notebook
def _tools():
    missing = [m for m in ("nbclient", "nbformat", "nbconvert", "ipykernel", "websocket") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"notebook test needs {', '.join(missing)} (the dev extra)")
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import check_html
    finally:
        sys.path.pop(0)
    if check_html.find_chromium() is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium)")
    return check_html


CELLS = [
    "import attrtools\nfrom attrtools.progress import enabled_default\nprint('progress', enabled_default())",
    "model, tokenizer = attrtools.load_model({model!r})\n"
    "res = attrtools.attribute(model, tokenizer, ['the movie was great fun', 'a dull and boring film'],"
    " method='attattr', steps=2, cache=False)",
    "res[0]",
    "res",
    "res[1]",
    "from attrtools.engine import Engine\n"
    "long = Engine(model, tokenizer, cache=None, max_length=160).attribute([' '.join(['good bad movie'] * 52)],"
    " method='raw')[0]\nlong",
]


def _dom_boxes(browser, selector):
    """Visible boxes (width, height) of the nodes matching ``selector``, through DOM (no page script)."""
    document = browser.call("DOM.getDocument", depth=-1)["root"]["nodeId"]
    nodes = browser.call("DOM.querySelectorAll", nodeId=document, selector=selector)["nodeIds"]
    boxes = []
    for node in nodes:
        try:
            model = browser.call("DOM.getBoxModel", nodeId=node)["model"]
        except RuntimeError:  # not rendered (display: none)
            continue
        boxes.append((model["width"], model["height"]))
    return [b for b in boxes if b[0] > 0 and b[1] > 0]


def test_executed_notebook_renders_with_and_without_scripts(tiny_dirs, tmp_path, monkeypatch):
    check_html = _tools()
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.format(model=tiny_dirs["bert"])) for c in CELLS]
    env_path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT] + ([env_path] if env_path else [])))  # the kernel imports this tree
    monkeypatch.delenv("CI", raising=False)  # a user's kernel: CI's own $CI turns the bars off (progress.enabled_default)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [cell.outputs for cell in nb.cells]
    assert any("progress True" in o.get("text", "") for o in outputs[0])  # bars on in a kernel
    shown = {}
    for index in (2, 3, 4, 5):
        html = [o["data"]["text/html"] for o in outputs[index] if "text/html" in o.get("data", {})]
        assert html, f"cell {index} shows no HTML"
        assert len(json.dumps(outputs[index]).encode()) < ONE_MB
        shown[index] = html[0]
    assert '"canvas": true' in shown[5] and '"canvas": false' in shown[2]

    page = tmp_path / "notebook.html"
    body, _ = HTMLExporter().from_notebook_node(nb)
    # nbconvert's page chrome loads require.js and MathJax from a CDN, which an offline machine cannot
    # reach: those tags go (the cells' own outputs load nothing, test_report checks that)
    body = re.sub(r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>", "", body)
    assert "attrtools" in body
    page.write_text(body, encoding="utf-8")
    shots = os.environ.get("ATTRTOOLS_SHOTS")  # set to keep the screenshots (docs/export.md)
    browser = check_html.Browser(check_html.find_chromium())
    try:
        assert browser.check(page, tmp_path / "with-scripts.png") == []
        views = browser.call("Runtime.evaluate", returnByValue=True, expression="""
          (() => { const v = Array.from(document.querySelectorAll('.matrix-view'));
            const hash = s => { let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0; return h; };
            const state = () => v.map(x => hash(x.querySelector('[data-role=box]').innerHTML) + ':' +
                                           x.querySelectorAll('[data-role=box] rect, [data-role=box] canvas').length);
            const before = state();
            const sel = v[0].querySelector('[data-role=layer]'); sel.value = '0'; sel.dispatchEvent(new Event('change'));
            const after = state();
            return {count: v.length, before, after, statics: document.querySelectorAll('.matrix-static').length,
                    canvases: document.querySelectorAll('canvas[data-role=canvas]').length}; })()""")["result"]["value"]
        assert views["count"] == 3 and views["statics"] == 0  # drawn: the static pictures replaced
        assert views["canvases"] == 1
        assert views["after"][0] != views["before"][0]  # the first view redrew its layer 0 ...
        assert views["after"][1:] == views["before"][1:]  # ... and the others did not move
        if shots:
            browser.check(page, pathlib.Path(shots, "notebook-scripts.png"))

        browser.call("Emulation.setScriptExecutionDisabled", value=True)
        browser.check(page, tmp_path / "no-scripts.png")
        statics = _dom_boxes(browser, ".matrix-static img")
        assert len(statics) == 3 and all(w > 100 and h > 100 for w, h in statics)
        assert len(_dom_boxes(browser, ".tok")) > 20  # the CSS heat-maps
        assert not _dom_boxes(browser, ".matrix-box svg")
        if shots:
            browser.check(page, pathlib.Path(shots, "notebook-no-scripts.png"))
    finally:
        browser.close()
    assert (tmp_path / "with-scripts.png").stat().st_size > 5000


# ------------------------------------------------------------------------------- the project's own views in a browser
def test_views_open_on_the_sum_and_never_scroll_sideways(tiny_models, tmp_path):
    """Long sentences wrap (no sideways scroll, index included), an unbreakable token too; the
    matrix view opens on the sum of layers (AttAttr's last layer is almost empty) and its last
    column label fits the drawing."""
    import attrtools
    from attrtools.types import Attributions

    model, tokenizer = tiny_models["bert"]
    texts = [" ".join(["the movie was great fun but boring and dull"] * 12), "a" * 300, "a dull film"]
    items = attrtools.attribute(model, tokenizer, texts, method="attattr", steps=2, cache=False)
    html = items[2].to_html()
    assert re.search(r'<option value="sum" selected>sum of layers</option>', html)
    assert not re.search(r'<option value="\d+" selected>', html)
    check_html = _tools()
    for i, a in enumerate(items):
        a.to_html(tmp_path / f"{i}.html")
    Attributions(items).to_html(tmp_path / "index.html")
    results = check_html.check_files([str(tmp_path)], None, log=lambda *a: None)
    assert results and all(problems == [] for problems in results.values()), results
    browser = check_html.Browser(check_html.find_chromium())
    try:
        browser.check(tmp_path / "2.html", None)
        fit = browser.call("Runtime.evaluate", returnByValue=True, expression="""
          (() => { const svg = document.querySelector('.matrix-box svg'); const box = svg.getBoundingClientRect();
                   const labels = Array.from(svg.querySelectorAll('text')).map(t => t.getBoundingClientRect());
                   return {layer: document.querySelector('[data-role=layer]').value,
                           right: Math.max(...labels.map(r => r.right)) - box.right}; })()""")["result"]["value"]
    finally:
        browser.close()
    assert fit["layer"] == "sum" and fit["right"] <= 0.5


def test_8bit_canvas_view_in_a_browser_shows_the_values(tmp_path):
    """A view too large for decimals (8-bit codes, canvas) decodes in the page to the right numbers:
    hovering a cell shows its summed value within the stated precision."""
    check_html = _tools()
    a = _fake(6, 12, CANVAS_ABOVE + 50)
    html_path = tmp_path / "big.html"
    html = a.to_html(html_path)
    assert '"encoding": "u8"' in html and len(html.encode()) < ONE_MB
    n = a.n_tokens
    browser = check_html.Browser(check_html.find_chromium())
    try:
        assert browser.check(html_path, None) == []
        cells = [(5, 7), (n - 2, 1), (100, 150)]
        shown = browser.call("Runtime.evaluate", returnByValue=True, expression="""
          (() => { const cv = document.querySelector('canvas[data-role=canvas]'); const r = cv.getBoundingClientRect();
                   const n = %d, out = [];
                   for (const [i, j] of %s) {
                     cv.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + (j + 0.5) * r.width / n,
                                                                   clientY: r.top + (i + 0.5) * r.height / n}));
                     out.push(document.querySelector('[data-role=info]').textContent); }
                   return out; })()""" % (n, json.dumps(cells)))["result"]["value"]
    finally:
        browser.close()
    summed = a.scores.sum(1)  # heads summed per layer, as embedded
    for (i, j), text in zip(cells, shown):
        assert f"({i})" in text and f"({j})" in text and "\u2248" in text
        value = float(text.rsplit("\u2248", 1)[1])
        tolerance = float(summed.abs().amax((1, 2)).sum()) / 254 + 0.01 * abs(float(summed[:, i, j].sum()))
        assert value == pytest.approx(float(summed[:, i, j].sum()), abs=tolerance)


def test_worst_case_cell_output_under_1mb():
    """BERT-base shape at n = 512 with incompressible (random) maps: the whole notebook output of one
    Attribution (heat-map, interactive view, static picture) stays under 1 MB."""
    a = _fake(12, 12, 512)
    assert len(a._repr_html_().encode()) < ONE_MB
