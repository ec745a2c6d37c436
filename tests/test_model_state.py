"""The model's state, one rule (attrtools/model_state.py): train mode, gradient checkpointing and
torch.compile'd models give the attributions of the plain eval-mode model, the caller's state comes
back unchanged, the cache never holds a dropout result, and pruning updates (or warns about) the
user's optimizer."""
import copy
import warnings

import pytest
import torch

import attrtools
from attrtools import methods
from attrtools.engine import Engine
from attrtools.errors import UnsupportedModelError
from attrtools.model_state import (ParametersReplacedWarning, checkpointing_modules, inference_state,
                                   unwrap_compiled)
from attrtools.pruned import prune_heads
from attrtools.testing import build_tiny_model

TEXTS = ["the movie alpha was good beta", "a dull plot and bad acting"]
DROPOUT = dict(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3, attention_dropout=0.3)


@pytest.fixture(scope="module")
def dropout_models(tmp_path_factory):
    """{arch: (model, tokenizer)}: tiny models whose dropout is on in train mode (p = 0.3)."""
    root = tmp_path_factory.mktemp("dropout")
    out = {}
    for arch in ("bert", "llama"):
        out[arch] = attrtools.load_model(build_tiny_model(arch, str(root / arch), **DROPOUT))
    return out


def _applicable(model):
    names = []
    for name in methods.list_methods():
        try:
            methods.get(name).check_model(model)
        except UnsupportedModelError:
            continue
        names.append(name)
    return names


def _reference(model, tokenizer, names):
    model.eval()
    return {name: [a.scores for a in Engine(model, tokenizer, cache=None).attribute(TEXTS, name)] for name in names}


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_train_mode_gives_the_eval_result_and_keeps_the_callers_flags(dropout_models, arch):
    model, tokenizer = dropout_models[arch]
    names = _applicable(model)
    reference = _reference(model, tokenizer, names)
    model.train()
    with torch.no_grad():  # the dropout is real: two train-mode forwards differ
        inputs = tokenizer(TEXTS[:1], return_tensors="pt")
        assert not torch.equal(model(**inputs).logits, model(**inputs).logits)
    list(model.modules())[3].eval()  # a mixed state (one submodule in eval), as a user may leave it
    flags = {name: m.training for name, m in model.named_modules()}
    try:
        for name in names:
            got = Engine(model, tokenizer, cache=None).attribute(TEXTS, name)
            for g, r in zip(got, reference[name]):
                torch.testing.assert_close(g.scores, r, rtol=1e-5, atol=1e-6, msg=f"{arch} {name}")
            assert {n: m.training for n, m in model.named_modules()} == flags
        logits = Engine(model, tokenizer, cache=None).logits(TEXTS)
        assert {n: m.training for n, m in model.named_modules()} == flags
    finally:
        model.eval()
    torch.testing.assert_close(logits, Engine(model, tokenizer, cache=None).logits(TEXTS))


def test_cache_never_serves_a_dropout_result(dropout_models, tmp_path):
    model, tokenizer = dropout_models["bert"]
    model.eval()
    clean = Engine(model, tokenizer, cache=None).attribute(TEXTS, "raw")
    model.train()
    try:
        engine = Engine(model, tokenizer, cache=str(tmp_path / "cache"))
        first = engine.attribute(TEXTS, "raw")  # computed in train mode, written to the cache
        assert engine.stats["computed"] == 2
    finally:
        model.eval()
    again = Engine(model, tokenizer, cache=str(tmp_path / "cache"))
    served = again.attribute(TEXTS, "raw")
    assert again.stats["hits"] == 2 and again.stats["computed"] == 0  # one entry serves both states
    for a, b, c in zip(first, served, clean):
        torch.testing.assert_close(a.scores, c.scores)
        torch.testing.assert_close(b.scores, c.scores)


def test_gradient_checkpointing_on_a_training_llama(dropout_models):
    model, tokenizer = dropout_models["llama"]
    names = ["attattr", "gradsam", "ig_embed", "alti_logit"]
    reference = _reference(model, tokenizer, names)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    model.train()
    on = checkpointing_modules(model)
    assert on  # transformers put the flag on the layers
    try:
        for name in names:
            got = Engine(model, tokenizer, cache=None).attribute(TEXTS, name)
            for g, r in zip(got, reference[name]):
                torch.testing.assert_close(g.scores, r, rtol=1e-5, atol=1e-6, msg=name)
        assert checkpointing_modules(model) == on and model.training  # restored
    finally:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
        model.eval()


def test_inference_state_restores_on_error(dropout_models):
    model, _ = dropout_models["bert"]
    model.train()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with inference_state(model):
                assert not any(m.training for m in model.modules())
                raise RuntimeError("boom")
        assert all(m.training for m in model.modules())
    finally:
        model.eval()


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_compiled_model_is_unwrapped(tiny_models, arch):
    model, tokenizer = tiny_models[arch]
    compiled = torch.compile(model)
    assert unwrap_compiled(compiled) is model
    assert unwrap_compiled(model) is model
    for name in _applicable(model):  # chefer_lrp, globenc, ig_embed, alti, decompx failed before
        plain = Engine(model, tokenizer, cache=None).attribute(TEXTS, name)
        got = attrtools.attribute(compiled, tokenizer, TEXTS, method=name)
        for g, p in zip(got, plain):
            torch.testing.assert_close(g.scores, p.scores, msg=name)


# ---------------------------------------------------------------------------------------- pruning
def _finetune_step(model, optimizer, tokenizer):
    model.train()
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    model(**enc, labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    model.eval()


def test_prune_heads_updates_a_given_optimizer(tiny_models):
    model, tokenizer = tiny_models["bert"]
    model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _finetune_step(model, optimizer, tokenizer)  # the old parameters have Adam state now
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParametersReplacedWarning)
        prune_heads(model, {0: [1], 1: [0, 2]}, optimizer=optimizer)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.parameters()}  # exactly the model's current tensors
    query = model.get_submodule("bert.encoder.layer.0.attention.self.query").weight
    assert query.shape[0] == 24 and query not in optimizer.state  # fresh state for a sliced tensor
    before = query.detach().clone()
    _finetune_step(model, optimizer, tokenizer)
    assert (query.detach() - before).abs().max() > 0  # the pruned layer still trains


def test_prune_heads_without_optimizer_names_the_replaced_parameters(tiny_models):
    model, tokenizer = tiny_models["bert"]
    model = copy.deepcopy(model)
    stale = torch.optim.SGD(model.parameters(), lr=1e-1)  # built before pruning: the trap
    with pytest.warns(ParametersReplacedWarning) as caught:
        prune_heads(model, {0: [1]})
    message = str(caught[0].message)
    assert "8 parameter tensor(s)" in message and "bert.encoder.layer.0.attention.self.query.weight" in message
    assert "attention.output.dense.weight" in message and "layer.1." not in message
    query = model.get_submodule("bert.encoder.layer.0.attention.self.query").weight
    assert all(p is not query for group in stale.param_groups for p in group["params"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParametersReplacedWarning)
        prune_heads(model, {1: [0]}, optimizer=False)  # the caller states no optimizer holds it
        prune_heads(model, {0: [1]}, optimizer=None)  # nothing new to prune: nothing replaced


# ---------------------------------------------------------------------------------------- long inputs
def test_flow_refuses_long_inputs_before_any_work(tiny_models, tmp_path):
    from attrtools.errors import ParameterError
    from attrtools.methods.flow import MAX_TOKENS

    model, tokenizer = tiny_models["bert"]
    short, long = "the movie was good", " ".join(["the movie was good"] * 15)  # 6 and 62 tokens
    engine = Engine(model, tokenizer, cache=str(tmp_path / "cache"))
    n_long = engine.encode(long).length
    assert engine.encode(short).length < MAX_TOKENS["networkx"] < n_long <= MAX_TOKENS["scipy"]
    with pytest.raises(ParameterError, match=rf"input of {n_long} tokens exceeds the cap of 48 tokens for solver "
                                             r"'networkx'.*solver='scipy'"):
        engine.attribute([short, long], "flow", solver="networkx")
    assert engine.stats["computed"] == 0  # refused before the short input ran
    with pytest.raises(ParameterError, match=r"cap of 10 tokens for solver 'scipy'"):
        engine.attribute([long], "flow", solver="scipy", max_tokens=10)
    capped = engine.attribute([short], "flow")[0]
    raised = engine.attribute([short], "flow", max_tokens=100)[0]  # the cap is not part of the cache key
    assert engine.stats["hits"] == 1
    torch.testing.assert_close(capped.scores, raised.scores)
    assert float(capped.scores.sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_post_ln_alti_in_receiver_chunks_equals_the_whole(tiny_models, arch):
    from attrtools.methods.decomposition import alti_layer_parts, alti_matrix, trace_layers

    model, tokenizer = tiny_models[arch]
    engine = Engine(model, tokenizer, cache=None)
    inputs = engine.collate([engine.encode(t) for t in TEXTS])
    trace = trace_layers(model, inputs)
    n = engine.encode(TEXTS[0]).length
    for layer in range(2):
        whole = alti_matrix(model, trace, layer, 0, n, max_elements=1 << 30)
        d = model.config.hidden_size
        chunked = alti_matrix(model, trace, layer, 0, n, max_elements=3 * n * d)  # 3 receivers per chunk
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(whole.sum(-1), torch.ones(n))
        parts, bias, y = alti_layer_parts(model, trace, layer, 0, n, slice(2, 5))
        assert parts.shape == (3, n, d)
        torch.testing.assert_close(parts.sum(1) + bias, y, rtol=1e-4, atol=1e-4)  # exact split per receiver


# ---------------------------------------------------------------------------------------- memory estimate
def test_memory_estimate_values(tiny_models):
    from attrtools.memory import estimate_bytes

    model, _ = tiny_models["bert"]  # L = 2, H = 4, d = 32, d_ff = 64
    n = 10
    activations, attention = n * 2 * (4 * 32 + 64), 2 * 4 * n * n
    assert estimate_bytes("raw", model, n, 3) == 4 * 3 * (activations + 2 * attention + attention)
    # decompx: the decomposition, plus chunk buffers (d_ff wide)
    assert estimate_bytes("decompx", model, n, 1) == \
        4 * (activations + attention + n * n * 32 + 5 * n * n * 64 + n)
    from attrtools.memory import DECOMPX_CHUNK
    from attrtools.methods.decompx import _CHUNK_FLOATS
    assert DECOMPX_CHUNK == _CHUNK_FLOATS
    assert estimate_bytes("attattr", model, n, 2, {"internal_batch_size": 5}) == \
        4 * (2 * (activations + attention + attention) + 3 * 5 * (activations + attention))
    for method in methods.list_methods():  # grows with the batch and the length
        assert estimate_bytes(method, model, 20, 2) > estimate_bytes(method, model, 20, 1) > 0
        assert estimate_bytes(method, model, 40, 1) > estimate_bytes(method, model, 20, 1)


def test_batch_lowered_to_fit_the_estimate(tiny_models, monkeypatch):
    from attrtools import memory

    model, tokenizer = tiny_models["bert"]
    n = max(Engine(model, tokenizer).encode(t).length for t in TEXTS)
    one = memory.estimate_bytes("raw", model, n, 1)
    assert memory.fit_batch("raw", model, [n], 8, available=10 ** 12) == 8  # fits: nothing said
    with pytest.warns(memory.MemoryEstimateWarning, match="batch size lowered to 2"):
        assert memory.fit_batch("raw", model, [n, 3, 3, 3], 8, available=int(2.5 * one / memory.SHARE)) == 2
    assert memory.fit_batch("raw", model, [n, 3], 8, available=int(2.5 * one / memory.SHARE)) == 8  # 2 inputs fit
    with pytest.warns(memory.MemoryEstimateWarning, match=rf"one input of {n} tokens exceeds"):
        assert memory.fit_batch("raw", model, [n], 8, available=one) == 1
    plain = Engine(model, tokenizer, cache=None, batch_size=8).attribute(TEXTS, "raw")
    monkeypatch.setattr(memory, "available_bytes", lambda m: int(1.5 * one / memory.SHARE))
    with pytest.warns(memory.MemoryEstimateWarning, match="lowered to 1"):
        low = Engine(model, tokenizer, cache=None, batch_size=8).attribute(TEXTS, "raw")
    for a, b in zip(low, plain):
        torch.testing.assert_close(a.scores, b.scores)


def test_estimate_announced_before_a_long_job(tiny_models, monkeypatch, capsys):
    """One line with the estimate on stderr before a job whose estimated peak per batch reaches
    ANNOUNCE_BYTES; one per new, larger peak on the same engine; nothing for a small job."""
    from attrtools import memory

    model, tokenizer = tiny_models["bert"]
    engine = Engine(model, tokenizer, cache=None, batch_size=2, progress=False)
    engine.attribute(TEXTS, "raw")
    assert "estimated peak" not in capsys.readouterr().err  # far below 1 GiB
    n = max(engine.encode(t).length for t in TEXTS)
    monkeypatch.setattr(memory, "ANNOUNCE_BYTES", memory.estimate_bytes("raw", model, n, 2))
    engine.attribute(TEXTS, "raw")
    engine.attribute(TEXTS, "raw")  # the same peak: not repeated
    lines = [line for line in capsys.readouterr().err.splitlines() if "estimated peak" in line]
    assert len(lines) == 1 and lines[0].startswith("raw: estimated peak memory ") and f"at {n} tokens" in lines[0]
    assert f"per batch of 2 at {n} tokens ({len(TEXTS)} input(s); " in lines[0]


def test_pruning_importance_of_a_training_model_is_its_eval_twins(dropout_models):
    from attrtools.pruning import head_importance

    model, tokenizer = dropout_models["bert"]
    examples = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS * 2)]
    model.eval()
    reference = {s: head_importance(model, tokenizer, examples, s) for s in ("taylor", "ablation", "attention")}
    model.train()
    try:
        for strategy, ref in reference.items():
            torch.testing.assert_close(head_importance(model, tokenizer, examples, strategy), ref, msg=strategy)
            assert all(m.training for m in model.modules())
    finally:
        model.eval()
