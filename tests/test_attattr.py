"""AttAttr equals the official-style computation; IG completeness; batching invariance."""
import pytest
import torch

import attrtools
from attrtools.capture import capture
from attrtools.engine import Engine
from attrtools.methods.attattr import quadrature
from attrtools.methods.base import target_score
from attrtools.architecture import num_layers_heads
from attrtools.testing import official_style_attattr

from conftest import PAIRS, SENTENCES


def official_attattr(model, tokenizer, example, steps, chunk=4, pad_to=40, target=None):
    return official_style_attattr(model, tokenizer, example, steps=steps, chunk=chunk, pad_to=pad_to, target=target)


def _rel_err(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("steps", [6])
def test_matches_official_reference(tiny, steps):
    model, tokenizer = tiny
    inputs = SENTENCES[:3] + PAIRS[:1]
    ours = attrtools.attribute(model, tokenizer, inputs, method="attattr", steps=steps, batch_size=4,
                               internal_batch_size=7)  # rows of a pass straddle examples
    for example, attribution in zip(inputs, ours):
        reference = official_attattr(model, tokenizer, example, steps)
        assert attribution.scores.shape == reference.shape
        assert _rel_err(attribution.scores, reference) < 1e-5


def test_batched_equals_unbatched(tiny):
    model, tokenizer = tiny
    inputs = SENTENCES + PAIRS
    batched = attrtools.attribute(model, tokenizer, inputs, method="attattr", steps=4, batch_size=6)
    for example, b in zip(inputs, batched):
        (single,) = attrtools.attribute(model, tokenizer, [example], method="attattr", steps=4, batch_size=1)
        assert _rel_err(b.scores, single.scores) < 1e-5
        assert b.predicted == single.predicted and b.target == single.target


def _completeness_error(model, tokenizer, text, steps, method="riemann_left"):
    (attribution,) = attrtools.attribute(model, tokenizer, [text], method="attattr", steps=steps,
                                         steps_method=method)
    engine = Engine(model, tokenizer)
    inputs = engine.collate([engine.encode(attrtools.Example(text))])
    target = torch.tensor([attribution.target])
    errors = []
    with torch.no_grad():
        with capture(model, record="all") as rec:
            full = target_score(model(**inputs).logits, target, "prob")
        for layer in range(attribution.scores.shape[0]):
            with capture(model, override={layer: torch.zeros_like(rec.attentions[layer])}):
                zeroed = target_score(model(**inputs).logits, target, "prob")
            errors.append(abs(attribution.scores[layer].sum().item() - (full - zeroed).item()))
    return max(errors), (full - zeroed).abs().item()


def test_completeness_per_layer(planted):
    model, tokenizer = planted
    text = "the alpha movie was good and beta"
    # The planted model is sharp: the integrand peaks near alpha = 0, so the left Riemann error is
    # large at few steps but must fall as the steps grow.
    errors = [_completeness_error(model, tokenizer, text, steps=m)[0] for m in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < errors[0] / 10, errors
    # Gauss-Legendre converges too, but its nodes avoid the endpoints: it needs more of them here.
    gauss = [_completeness_error(model, tokenizer, text, steps=m, method="gausslegendre")[0] for m in (4, 32)]
    assert gauss[1] < gauss[0] / 10, gauss


def test_gausslegendre_beats_riemann_on_smooth_paths(tiny_models):
    """On a smooth integrand (random tiny model) 4 Gauss-Legendre nodes beat 64 Riemann steps."""
    model, tokenizer = tiny_models["bert"]
    text = "the alpha movie was good and beta"
    riemann, _ = _completeness_error(model, tokenizer, text, steps=64)
    gauss, _ = _completeness_error(model, tokenizer, text, steps=4, method="gausslegendre")
    assert gauss < riemann / 5, (gauss, riemann)


def test_gold_and_given_targets(planted):
    model, tokenizer = planted
    ex = [attrtools.Example("alpha the beta", label=0), attrtools.Example("beta a alpha", label=1)]
    gold = attrtools.attribute(model, tokenizer, ex, method="attattr", steps=3, target="gold")
    assert [a.target for a in gold] == [0, 1]
    fixed = attrtools.attribute(model, tokenizer, ex, method="attattr", steps=3, target=1)
    assert [a.target for a in fixed] == [1, 1]
    torch.testing.assert_close(fixed[1].scores, gold[1].scores)
    with pytest.raises(ValueError, match="no label"):
        attrtools.attribute(model, tokenizer, ["alpha beta"], method="attattr", steps=2, target="gold")
    with pytest.raises(ValueError, match="out of range"):
        attrtools.attribute(model, tokenizer, ["alpha beta"], method="attattr", steps=2, target=5)


def test_quadrature_rules():
    alphas, weights = quadrature(4)
    assert alphas == [0.0, 0.25, 0.5, 0.75] and sum(weights) == pytest.approx(1.0)
    a, w = quadrature(5, "gausslegendre")
    assert sum(wi * ai ** 7 for ai, wi in zip(a, w)) == pytest.approx(1 / 8, rel=1e-12)
    with pytest.raises(ValueError, match="unknown steps_method"):
        quadrature(3, "simpson")


def test_unknown_parameter_is_refused(planted):
    model, tokenizer = planted
    with pytest.raises(TypeError, match="unknown parameter"):
        attrtools.attribute(model, tokenizer, ["alpha beta"], method="attattr", stepz=3)


def test_save_load_roundtrip(planted, tmp_path):
    model, tokenizer = planted
    (a,) = attrtools.attribute(model, tokenizer, [("alpha the", "beta movie")], method="attattr", steps=2)
    path = a.save(tmp_path / "a.safetensors")
    b = attrtools.Attribution.load(path)
    assert torch.equal(a.scores, b.scores)
    assert (b.tokens, b.target, b.kind, b.text_pair) == (a.tokens, a.target, "matrix", "beta movie")
    assert b.head_importance().shape == a.scores.shape[:2]
    raw = open(path, "rb").read()
    assert b"pickle" not in raw and raw[:8] != b"\x80\x04\x95"


# ------------------------------------------------------------------ decomposed schedule (speed path)
def _padded_batch(model, tokenizer, texts):
    from attrtools.methods.base import Batch

    engine = Engine(model, tokenizer)
    encoded = [engine.encode(attrtools.Example(t)) for t in texts]
    inputs = engine.collate(encoded)
    with torch.no_grad():
        logits = model(**inputs).logits
    return Batch(inputs=inputs, lengths=[e.length for e in encoded], targets=logits.argmax(-1), logits=logits)


def test_decomposed_schedule_equals_replay(tiny, arch):
    """Post-LN encoders take the decomposed schedule and give the replay numbers (padding included);
    Llama (pre-LN) is refused by it and served by replay under "auto"."""
    from attrtools.methods.attattr import attattr_layers

    model, tokenizer = tiny
    batch = _padded_batch(model, tokenizer, SENTENCES[:3])
    replay = attattr_layers(model, batch, steps=5, schedule="replay", internal_batch_size=4)
    auto = attattr_layers(model, batch, steps=5, internal_batch_size=4)
    for layer in replay:
        assert _rel_err(auto[layer], replay[layer]) < 1e-5
    if arch == "llama":
        with pytest.raises(ValueError, match="decomposed schedule"):
            attattr_layers(model, batch, steps=2, schedule="decomposed")
    else:
        last = num_layers_heads(model)[0] - 1
        only_last = attattr_layers(model, batch, layers=[last], steps=5, schedule="decomposed")
        assert set(only_last) == {last}
        assert _rel_err(only_last[last], replay[last]) < 1e-5
        # the last layer's rows other than the pooled one get exactly zero gradient
        assert torch.count_nonzero(only_last[last][:, :, 1:]) == 0


def test_block_outside_the_layout_falls_back_to_replay(tiny_models):
    """A block that does more than the post-LN layout (here: a hook rescaling block 0's output)
    fails the per-batch check; "auto" then replays, and the numbers still match replay."""
    from attrtools.methods import attattr as impl
    from attrtools.architecture import get_layers

    model, tokenizer = tiny_models["bert"]
    handle = get_layers(model)[0].register_forward_hook(lambda module, args, output: output * 1.5)
    try:
        batch = _padded_batch(model, tokenizer, SENTENCES[:2])
        with pytest.raises(ValueError, match="decomposed schedule"):
            impl.attattr_layers(model, batch, steps=2, schedule="decomposed")
        auto = impl.attattr_layers(model, batch, steps=3)
        replay = impl.attattr_layers(model, batch, steps=3, schedule="replay")
        for layer in replay:
            assert _rel_err(auto[layer], replay[layer]) < 1e-6
    finally:
        handle.remove()


class _MatmulFlops:
    """FLOPs of the matrix products run inside the block (torch's own per-op formulas)."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_map
        from torch.utils.flop_counter import flop_registry

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                formula = flop_registry.get(func._overloadpacket)
                if formula is not None:
                    shape = lambda x: x.shape if isinstance(x, torch.Tensor) else x  # noqa: E731
                    counter.total += formula(*tree_map(shape, args), **tree_map(shape, kwargs or {}),
                                             out_val=tree_map(shape, out))
                return out

        from torch.nn.attention import SDPBackend, sdpa_kernel

        self.total = 0
        self.kernel = sdpa_kernel(SDPBackend.MATH)  # CPU flash attention has no FLOP formula
        self.kernel.__enter__()
        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        self.kernel.__exit__(*exc)
        return False


@pytest.mark.parametrize("schedule", ["official-style", "replay", "decomposed"])
def test_cost_model_counts_the_products_that_run(tmp_path, schedule):
    """The benchmark's cost model equals the FLOPs torch counts for each schedule."""
    from transformers import AutoModelForSequenceClassification

    from attrtools.methods.attattr import schedule_flops
    from attrtools.testing import tiny_config, write_tokenizer

    tokenizer = write_tokenizer(str(tmp_path))
    config = tiny_config("bert", len(tokenizer), layers=3, heads=2, hidden=16)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(str(tmp_path))
    model, tokenizer = attrtools.load_model(str(tmp_path))
    text = "the movie was very good and the music was fun"
    n = len(tokenizer(text)["input_ids"])
    if schedule == "official-style":
        with _MatmulFlops() as counted:
            official_style_attattr(model, tokenizer, text, steps=3, chunk=3, pad_to=n + 4)
    else:
        from attrtools.methods import attattr as impl

        with _MatmulFlops() as counted:
            batch = _padded_batch(model, tokenizer, [text])  # the engine's clean forward
            impl.attattr_layers(model, batch, steps=3, schedule=schedule)
    expected = schedule_flops(schedule, 3, 16, config.intermediate_size, n, 3, pad_to=n + 4)
    assert counted.total == pytest.approx(expected, rel=1e-9)
