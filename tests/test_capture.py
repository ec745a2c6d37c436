"""capture.py: it really runs, matches eager attention, masks heads exactly, replays, cleans up."""
import pytest
import torch
from transformers import AutoModelForSequenceClassification

import attrtools
from attrtools.capture import ATTN_IMPLEMENTATION, CaptureNotInstalledError, active, capture
from attrtools.engine import Engine
from attrtools.architecture import get_layers, layer_module, num_layers_heads
from attrtools.errors import UnsupportedModelError

from conftest import PAIRS, SENTENCES


def _batch(model, tokenizer, texts=SENTENCES):
    return Engine(model, tokenizer).collate([Engine(model, tokenizer).encode(attrtools.Example(t)) for t in texts])


def test_capture_runs_in_every_layer(tiny):
    model, tokenizer = tiny
    inputs = _batch(model, tokenizer)
    assert model.config._attn_implementation == ATTN_IMPLEMENTATION
    with capture(model, record="all") as cap:
        model(**inputs)
    L, H = num_layers_heads(model)
    assert sorted(cap.calls) == list(range(L)) and all(c == 1 for c in cap.calls.values())
    attentions = cap.attention_list()
    assert len(attentions) == L and attentions[0].shape[:2] == (inputs["input_ids"].shape[0], H)
    # A silent no-op would leave nothing recorded: attention_list refuses that.
    with capture(model, record=[0]) as partial:
        model(**inputs)
    with pytest.raises(RuntimeError, match="not recorded"):
        partial.attention_list()



def test_block_recorder_keeps_each_layers_parts_and_removes_its_hooks(tiny):
    """The one block recorder (GlobEnc, Chefer LRP and the ALTI/DecompX trace use it): per layer, the
    input and/or output asked for, equal to the module applied to what entered it; hooks gone after."""
    from attrtools.capture import BlockRecorder

    model, tokenizer = tiny
    inputs = _batch(model, tokenizer)
    head = model.get_input_embeddings()
    with torch.no_grad(), BlockRecorder(model, {"value": "out", "ln_attention": "both"},
                                        {"embed": (head, "out")}) as rec:
        model(**inputs)
    L = num_layers_heads(model)[0]
    assert rec.missing(L) == [] and ("embed" in rec.outputs) and ("embed" not in rec.inputs)
    for l in range(L):
        assert (l, "value") in rec.outputs and (l, "value") not in rec.inputs
        norm = layer_module(model, l, "ln_attention")
        assert torch.allclose(norm(rec.inputs[l, "ln_attention"]), rec.outputs[l, "ln_attention"], atol=1e-6)
    assert torch.equal(rec.outputs["embed"], head(inputs["input_ids"]))
    assert all(not layer_module(model, l, "value")._forward_hooks for l in range(L)) and not head._forward_hooks
    with pytest.raises(ValueError, match="want must be"):
        BlockRecorder(model, {"value": "sideways"}).__enter__()
    assert all(not layer_module(model, l, "value")._forward_hooks for l in range(L))

def test_recorded_probabilities_equal_eager(tiny, tiny_dirs, arch):
    model, tokenizer = tiny
    eager = AutoModelForSequenceClassification.from_pretrained(tiny_dirs[arch], attn_implementation="eager").eval()
    inputs = _batch(model, tokenizer)  # padded: exercises the mask interface
    with torch.no_grad():
        reference = eager(**inputs, output_attentions=True)
        with capture(model, record="all") as cap:
            ours = model(**inputs)
        fused = model(**inputs)  # no capture: SDPA path everywhere
    for l, ref in enumerate(reference.attentions):
        torch.testing.assert_close(cap.attentions[l], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.logits, reference.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.logits, reference.logits, rtol=1e-5, atol=1e-5)


def test_padding_is_masked(tiny):
    """Batched logits equal one-at-a-time logits: the mask reached the attention function."""
    model, tokenizer = tiny
    with torch.no_grad():
        batched = model(**_batch(model, tokenizer)).logits
        single = torch.cat([model(**_batch(model, tokenizer, [t])).logits for t in SENTENCES])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_zero_head_mask_equals_zeroing_head_context(tiny):
    model, tokenizer = tiny
    inputs = _batch(model, tokenizer)
    L, H = num_layers_heads(model)
    layer, head = L - 1, 1
    mask = torch.ones(L, H)
    mask[layer, head] = 0
    head_dim = layer_module(model, layer, "output").in_features // H

    def zero_context(module, args):
        x = args[0].clone()
        x[..., head * head_dim:(head + 1) * head_dim] = 0
        return (x,)

    with torch.no_grad():
        with capture(model, head_mask=mask):
            masked = model(**inputs).logits
        handle = layer_module(model, layer, "output").register_forward_pre_hook(zero_context)
        try:
            zeroed = model(**inputs).logits
        finally:
            handle.remove()
        clean = model(**inputs).logits
    torch.testing.assert_close(masked, zeroed, rtol=1e-5, atol=1e-6)
    assert (masked - clean).abs().max() > 1e-4, "masking a head changed nothing: the mask did not apply"


def test_head_gate_gradient(tiny):
    """A head mask that requires grad receives a gradient (Taylor / head-gate importance)."""
    model, tokenizer = tiny
    L, H = num_layers_heads(model)
    gate = torch.ones(L, H, requires_grad=True)
    with capture(model, head_mask=gate):
        model(**_batch(model, tokenizer)).logits[:, 0].sum().backward()
    assert gate.grad is not None and gate.grad.abs().sum() > 0


def test_replay_reproduces_forward(tiny):
    model, tokenizer = tiny
    inputs = _batch(model, tokenizer)
    L, _ = num_layers_heads(model)
    with torch.no_grad():
        with capture(model, record_hidden=True) as rec:
            clean = model(**inputs).logits
        for layer in range(L):
            with capture(model, replay=(layer, rec.hidden_inputs[layer])) as cap:
                replayed = model(**inputs).logits
            torch.testing.assert_close(replayed, clean, rtol=1e-5, atol=1e-6)
            assert sorted(cap.calls) == list(range(layer, L)), "blocks below the replayed layer ran"


def test_override_replaces_probabilities(tiny):
    """Overriding a layer with its own probabilities changes nothing; with zeros it does."""
    model, tokenizer = tiny
    inputs = _batch(model, tokenizer)
    with torch.no_grad():
        with capture(model, record="all") as rec:
            clean = model(**inputs).logits
        with capture(model, override={0: rec.attentions[0]}):
            same = model(**inputs).logits
        with capture(model, override={0: torch.zeros_like(rec.attentions[0])}):
            zeroed = model(**inputs).logits
    torch.testing.assert_close(same, clean, rtol=1e-5, atol=1e-6)
    assert (zeroed - clean).abs().max() > 1e-4


def test_override_batch_must_match_inputs(tiny_models):
    """A batch-m override over a batch-1 input is refused with advice (transformers 5 reshapes the
    context with the input batch); repeating the inputs works and gives one row per scale."""
    model, tokenizer = tiny_models["bert"]
    inputs = _batch(model, tokenizer, SENTENCES[:1])
    with torch.no_grad(), capture(model, record="all") as rec:
        single = model(**inputs).logits
    scales = torch.tensor([0.0, 0.5, 1.0]).view(-1, 1, 1, 1)
    stacked = rec.attentions[1] * scales
    with pytest.raises(ValueError, match="repeat the inputs"):
        with torch.no_grad(), capture(model, override={1: stacked}):
            model(**inputs)
    with torch.no_grad(), capture(model, override={1: stacked}):
        rows = model(**{k: v.expand(3, -1) for k, v in inputs.items()}).logits
    torch.testing.assert_close(rows[2:], single, rtol=1e-5, atol=1e-6)
    assert (rows[0] - single[0]).abs().max() > 1e-4


def test_capture_cleans_up_on_error(tiny):
    model, tokenizer = tiny
    inputs = _batch(model, tokenizer)
    layers = get_layers(model)
    with torch.no_grad(), capture(model, record_hidden=True) as rec:
        model(**inputs)
    with pytest.raises(ZeroDivisionError):
        with capture(model, record="all", record_hidden=True, replay=(1, rec.hidden_inputs[1])):
            1 / 0
    assert active() is None
    assert all("forward" not in vars(block) for block in layers)
    assert all(not block._forward_pre_hooks for block in layers)
    with torch.no_grad(), capture(model, record="all") as cap:
        model(**inputs)
    assert sorted(cap.calls) == list(range(len(layers)))


def test_uninstalled_model_is_refused(tiny_dirs):
    eager = AutoModelForSequenceClassification.from_pretrained(tiny_dirs["bert"], attn_implementation="eager")
    with pytest.raises(CaptureNotInstalledError, match="load_model"):
        with capture(eager, record="all"):
            pass


def test_unsupported_architecture_names_model_type(tmp_path):
    from transformers import AutoConfig

    config = AutoConfig.for_model("roformer", num_hidden_layers=1, num_attention_heads=2, hidden_size=16,
                                  intermediate_size=32, vocab_size=50, num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "m")
    from attrtools.testing import write_tokenizer

    write_tokenizer(str(tmp_path / "m"))
    with pytest.raises(UnsupportedModelError, match="roformer.*supported: albert, bert"):
        attrtools.load_model(str(tmp_path / "m"))


def test_pairs_use_segments(tiny_models):
    model, tokenizer = tiny_models["bert"]
    engine = Engine(model, tokenizer)
    encoded = engine.encode(attrtools.Example(*PAIRS[0]))
    assert 1 in encoded.token_type_ids and encoded.tokens.count("[SEP]") == 2
