"""Every family in the adapter table, proven on a tiny classifier built from its config.

Per family (issue 12, "Done when"): the model goes through ``from_pretrained``; capture runs in
every layer; recorded probabilities equal eager attention; logits equal the model's own forward
(eager, and the fused path); AttAttr equals the slow whole-model reference within 1e-5 relative;
batched equals unbatched; every registered method runs or refuses with an error naming the
reason; masked equals physically pruned within 1e-5; a pruned model saves and reloads and
explains like the masked model. Decoder families also prove their pooling rule.

The tiny configs come from ``attrtools.testing.tiny_config`` (family extras in ``adapters.py``):
2 layers, 4 heads, hidden 32, grouped KV heads where the family has them.
"""
import copy
import re
import warnings

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import attrtools
from attrtools import adapters, architecture, models
from attrtools import capture as capture_module
from attrtools.capture import capture
from attrtools.engine import Engine
from attrtools.methods import get, list_methods
from attrtools.methods.base import UnsupportedArchitecture
from attrtools.pruning.importance import masked_copy
from attrtools.pruning.plan import make_plan, plan_to_mask
from attrtools.pruning.prune import load_pruned, prune_heads, save_pruned
from attrtools.testing import FAMILIES, build_tiny_model, official_style_attattr
from attrtools.types import Example

TEXTS = ["the movie was very good", "a dull story but the music was fun", "boring"]
STEPS = 4


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    built = {}

    def get_dir(family):
        if family not in built:
            built[family] = build_tiny_model(family, str(root / family))
        return built[family]
    return get_dir


@pytest.fixture(scope="module")
def family_models(family_dirs):
    loaded = {}

    def get_model(family):
        if family not in loaded:
            loaded[family] = attrtools.load_model(family_dirs(family))
        return loaded[family]
    return get_model


def _inputs(model, tokenizer, texts=TEXTS):
    engine = Engine(model, tokenizer)
    return engine.collate([engine.encode(Example(t)) for t in texts])


def _plan(model):
    """Layer 0 loses one KV group, layer 1 all its heads (whole groups for GQA families). Families
    whose layers share one block (ALBERT) lose heads 0 and 2 in every layer of a group instead: a
    head of a shared block can only be removed in all the layers that run it."""
    group = architecture.kv_group_size(model)
    heads = architecture.original_heads(model)
    if any(len(g) > 1 for g in architecture.tied_layers(model)):
        return {l: [0, 2] for l in range(architecture.num_layers_heads(model)[0])}
    return {0: list(range(group)), 1: list(range(heads))}


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_equals_eager_forward(family, family_dirs, family_models):
    model, tokenizer = family_models(family)
    assert model.config.model_type == family
    eager = AutoModelForSequenceClassification.from_pretrained(family_dirs(family), attn_implementation="eager").eval()
    inputs = _inputs(model, tokenizer)  # padded batch: the masks reach the attention function
    L, H = architecture.num_layers_heads(model)
    with torch.no_grad():
        reference = eager(**inputs, output_attentions=True)
        with capture(model, record="all") as cap:
            ours = model(**inputs).logits
        fused = model(**inputs).logits
        single = torch.cat([model(**_inputs(model, tokenizer, [t])).logits for t in TEXTS])
    assert sorted(cap.calls) == list(range(L)) and all(c == 1 for c in cap.calls.values()), cap.calls
    assert len(reference.attentions) == L
    for l in range(L):
        assert cap.attentions[l].shape[1] == H
        torch.testing.assert_close(cap.attentions[l], reference.attentions[l], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, reference.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, reference.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(single, reference.logits, rtol=1e-5, atol=1e-5)  # batched == unbatched
    assert (reference.logits[0] - reference.logits[1]).abs().max() > 1e-4  # outputs depend on the input


@pytest.mark.parametrize("family", FAMILIES)
def test_pooling_rule(family, family_models):
    """The position the methods treat as pooled is the one the model's own head reads."""
    model, tokenizer = family_models(family)
    inputs = _inputs(model, tokenizer)
    positions = architecture.pool_positions(model, inputs["input_ids"])
    lengths = inputs["attention_mask"].sum(1)
    if adapters.adapter_for(model).pooling == "first":
        assert positions.tolist() == [0] * len(TEXTS)
        return
    assert positions.tolist() == (lengths - 1).tolist()
    # the model's own head reads exactly that token's hidden state
    captured = {}
    handle = model.score.register_forward_hook(lambda m, a, o: captured.update(h=a[0]))
    try:
        with torch.no_grad():
            logits = model(**inputs).logits
    finally:
        handle.remove()
    rows = captured["h"][torch.arange(len(TEXTS)), positions]
    torch.testing.assert_close(model.score(rows), logits, rtol=1e-5, atol=1e-6)
    # no pad token: a clear error, never the logits of a pad position
    broken = copy.copy(model.config)
    broken.pad_token_id = None
    holder = type("M", (), {"config": broken})()
    with pytest.raises(architecture.PoolingError, match="pad_token_id"):
        architecture.check_pooling(holder)


@pytest.mark.parametrize("family", FAMILIES)
def test_attattr_equals_reference(family, family_models):
    model, tokenizer = family_models(family)
    text = TEXTS[1]
    ours = attrtools.attribute(model, tokenizer, [text, TEXTS[0]], method="attattr", steps=STEPS, batch_size=2)
    single = attrtools.attribute(model, tokenizer, text, method="attattr", steps=STEPS)[0]
    reference = official_style_attattr(model, tokenizer, Example(text), steps=STEPS, chunk=STEPS, pad_to=16)
    scale = reference.abs().max()
    assert scale > 0
    assert ((ours[0].scores - reference).abs().max() / scale).item() < 1e-5
    assert ((ours[0].scores - single.scores).abs().max() / scale).item() < 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_runs_or_refuses(family, family_models):
    model, tokenizer = family_models(family)
    fast = {"attattr": {"steps": 2}, "ig_embed": {"steps": 2}}
    ran, refused = [], []
    for name in list_methods():
        try:
            get(name).check_model(model)
        except UnsupportedArchitecture as err:
            assert family in str(err) and len(str(err)) > 40, str(err)
            refused.append(name)
            with pytest.raises(UnsupportedArchitecture):
                attrtools.attribute(model, tokenizer, TEXTS[:1], method=name)
            continue
        result = attrtools.attribute(model, tokenizer, TEXTS[:2], method=name, **fast.get(name, {}))
        for a in result:
            assert torch.isfinite(a.scores).all(), name
        ran.append(name)
    assert "attattr" in ran and "raw" in ran
    adapter = adapters.adapter_for(model)
    if adapter.pre_norm:  # no pre-LN form published; ALTI has one (and ALTI-Logit on decoder classifiers)
        assert {"globenc", "decompx", "chefer_lrp"} <= set(refused) and "alti" in ran
    assert ("alti_logit" in ran) == (adapter.pre_norm and adapter.pooling == "last_non_pad")


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_equals_pruned_and_reloads(family, family_dirs, tmp_path):
    model, tokenizer = attrtools.load_model(family_dirs(family))  # own copy: it gets pruned
    inputs = _inputs(model, tokenizer)
    plan = _plan(model)
    L, H = architecture.num_layers_heads(model)
    with torch.no_grad(), capture(model, record="all", head_mask=plan_to_mask(plan, L, H)) as masked_cap:
        masked = model(**inputs).logits
    with torch.no_grad():
        assert (masked - model(**inputs).logits).abs().max() > 1e-4  # the plan changes the model
    pruned = copy.deepcopy(model)
    reason = adapters.adapter_for(model).refusal("prune_heads")
    if reason:  # masking still works (above); physical pruning is refused with the adapter's reason
        with pytest.raises(ValueError, match=f"{family}.*cannot be pruned physically"):
            prune_heads(pruned, plan)
        return
    prune_heads(pruned, plan)
    assert architecture.heads_per_layer(pruned) == [H - len(plan.get(l, [])) for l in range(L)]
    with torch.no_grad(), capture(pruned, record="all") as cap:
        out = pruned(**inputs).logits
    assert ((out - masked).abs().max() / masked.abs().max()).item() < 1e-5
    for l in range(L):
        torch.testing.assert_close(cap.attentions[l], masked_cap.attentions[l], rtol=1e-5, atol=1e-6)
    directory = save_pruned(pruned, tokenizer, str(tmp_path / "pruned"))
    reloaded, tok = attrtools.load_model(directory)
    assert architecture.pruned_heads(reloaded) == plan
    with torch.no_grad():
        again = reloaded(**_inputs(reloaded, tok)).logits
    torch.testing.assert_close(again, out, rtol=1e-6, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attrtools.attribute(reloaded, tok, TEXTS[:2], method="raw")


def test_unknown_family_gets_a_checked_inferred_adapter(tmp_path):
    """StarCoder2 is not in the table but is built the common way (AttentionInterface, q/k/v/o_proj):
    its adapter is inferred, accepted after the self-check, and the family checks hold on it."""
    directory = build_tiny_model("starcoder2", str(tmp_path / "sc2"), num_key_value_heads=2, max_positions=64)
    model, tokenizer = attrtools.load_model(directory)
    adapter = adapters.adapter_for(model)
    assert adapter.family.startswith("inferred") and adapter.pooling == "last_non_pad"
    assert "starcoder2" not in adapters.supported_model_types()
    text = TEXTS[1]
    ours = attrtools.attribute(model, tokenizer, text, method="attattr", steps=STEPS)[0]
    reference = official_style_attattr(model, tokenizer, Example(text), steps=STEPS, chunk=STEPS, pad_to=16)
    assert ((ours.scores - reference).abs().max() / reference.abs().max()).item() < 1e-5
    with pytest.raises(UnsupportedArchitecture, match="inferred"):
        get("globenc").check_model(model)
    plan = {0: [0, 1]}
    inputs = _inputs(model, tokenizer)
    with torch.no_grad(), capture(model, head_mask=plan_to_mask(plan, *architecture.num_layers_heads(model))):
        masked = model(**inputs).logits
    prune_heads(model, plan)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, masked, rtol=1e-5, atol=1e-5)
    reloaded, _ = attrtools.load_model(save_pruned(model, tokenizer, str(tmp_path / "p")))
    assert architecture.pruned_heads(reloaded) == plan


def test_unknown_family_failing_the_self_check_is_refused(tmp_path):
    """RoFormer has BERT-like module names but computes attention in its own module, not through
    AttentionInterface: the inferred adapter fails its self-check and the refusal says why."""
    directory = build_tiny_model("roformer", str(tmp_path / "roformer"))
    with pytest.raises(models.UnsupportedModelError, match=r"'roformer'.*self-check failed.*AttentionInterface"):
        attrtools.load_model(directory)
    assert "roformer" not in adapters.ADAPTERS


@pytest.mark.parametrize("family", [f for f in FAMILIES if adapters.ADAPTERS[f].probs_hook])
def test_probability_step_mechanism(family, family_models):
    """capture.py's second mechanism (a hook on the family's own probability step) has the same
    record / override / mask / replay semantics as the attention function, against the model's own
    forward."""
    model, tokenizer = family_models(family)
    inputs = _inputs(model, tokenizer)
    L, H = architecture.num_layers_heads(model)
    with torch.no_grad():
        plain = model(**inputs).logits  # no capture active: the hook changes nothing
        with capture(model, record="all", record_hidden=True) as rec:
            recorded = model(**inputs).logits
        with capture(model, override={1: rec.attentions[1]}):
            same = model(**inputs).logits
        with capture(model, override={1: torch.zeros_like(rec.attentions[1])}):
            zeroed = model(**inputs).logits
        mask = torch.ones(L, H)
        mask[1, 2] = 0
        with capture(model, head_mask=mask):
            masked = model(**inputs).logits
        d = architecture.head_dim(model)
        hook = architecture.layer_module(model, 1, "output").register_forward_pre_hook(
            lambda m, a: (a[0].index_fill(-1, torch.arange(2 * d, 3 * d), 0.0),))
        try:
            zero_context = model(**inputs).logits
        finally:
            hook.remove()
        with capture(model, replay=(1, rec.hidden_inputs[1])) as cap:
            replayed = model(**inputs).logits
    torch.testing.assert_close(recorded, plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(same, plain, rtol=1e-5, atol=1e-6)
    assert (zeroed - plain).abs().max() > 1e-4
    torch.testing.assert_close(masked, zero_context, rtol=1e-5, atol=1e-6)
    assert (masked - plain).abs().max() > 1e-4
    torch.testing.assert_close(replayed, plain, rtol=1e-5, atol=1e-6)
    assert sorted(cap.calls) == [1]


# ------------------------------------------------------------------------ ALBERT: blocks shared across layers
def _albert(tmp_path, name="albert", **kwargs):
    return attrtools.load_model(build_tiny_model("albert", str(tmp_path / name), **kwargs))


@pytest.mark.parametrize("layers,groups", [(4, 2), (3, 2)])
def test_shared_blocks_capture_per_call(layers, groups, tmp_path):
    """ALBERT runs one block for every layer of its hidden group: capture takes the layer from the
    call. With several groups (also uneven: 3 layers in 2 groups = layers [0, 1] and [2]) recorded
    probabilities and logits equal the eager forward; replay from every layer equals the forward;
    override and head mask act on one layer's call, not on every call of the shared block."""
    directory = build_tiny_model("albert", str(tmp_path / "albert"), layers=layers, num_hidden_groups=groups)
    model, tokenizer = attrtools.load_model(directory)
    assert len({id(b) for b in architecture.get_layers(model)}) == groups
    assert architecture.tied_layers(model) == ([[0, 1], [2, 3]] if layers == 4 else [[0, 1], [2]])
    eager = AutoModelForSequenceClassification.from_pretrained(directory, attn_implementation="eager").eval()
    inputs = _inputs(model, tokenizer)
    L, H = architecture.num_layers_heads(model)
    assert L == layers
    d = architecture.head_dim(model)
    with torch.no_grad():
        reference = eager(**inputs, output_attentions=True)
        with capture(model, record="all", record_hidden=True) as rec:
            plain = model(**inputs).logits
        assert rec.calls == {l: 1 for l in range(L)}
        for l in range(L):
            torch.testing.assert_close(rec.attentions[l], reference.attentions[l], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(plain, reference.logits, rtol=1e-5, atol=1e-5)
        for start in range(L):
            with capture(model, replay=(start, rec.hidden_inputs[start])) as cap:
                replayed = model(**inputs).logits
            torch.testing.assert_close(replayed, plain, rtol=1e-5, atol=1e-6)
            assert sorted(cap.calls) == list(range(start, L))
        with capture(model, override={1: rec.attentions[1]}):
            same = model(**inputs).logits
        with capture(model, override={1: torch.zeros_like(rec.attentions[1])}) as zeroed_cap:
            zeroed = model(**inputs).logits
        mask = torch.ones(L, H)
        mask[1, 2] = 0
        with capture(model, head_mask=mask, record="all") as masked_cap:
            masked = model(**inputs).logits
        # reference: head 2's context slice set to 0 at layer 1's call only (the block is shared)
        hook = capture_module.layer_hook(model, 1, "output", lambda m, a: (a[0].index_fill(
            -1, torch.arange(2 * d, 3 * d), 0.0),), pre=True)
        try:
            zero_context = model(**inputs).logits
        finally:
            hook.remove()
    torch.testing.assert_close(same, plain, rtol=1e-5, atol=1e-6)
    assert (zeroed - plain).abs().max() > 1e-4 and zeroed_cap.calls == {l: 1 for l in range(L)}
    torch.testing.assert_close(masked, zero_context, rtol=1e-5, atol=1e-6)
    assert (masked - plain).abs().max() > 1e-4
    assert masked_cap.attentions[1][:, 2].abs().max() == 0 and masked_cap.attentions[0][:, 2].abs().max() > 0


def _unrolled(model, tokenizer, directory):
    """The same ALBERT with one group per layer, every group holding the shared weights: an
    architecture whose every layer has its own modules, computing the same function."""
    config = copy.deepcopy(model.config)
    config.num_hidden_groups = config.num_hidden_layers
    unrolled = AutoModelForSequenceClassification.from_config(config)
    state = {}
    for key, value in model.state_dict().items():
        state[key] = value
        if "albert_layer_groups.0." in key:
            for g in range(1, config.num_hidden_groups):
                state[key.replace("albert_layer_groups.0.", f"albert_layer_groups.{g}.")] = value
    unrolled.load_state_dict(state, strict=True)
    unrolled.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return attrtools.load_model(directory)


def test_shared_blocks_explain_like_their_unrolled_twin(tmp_path):
    """Every registered method gives the same result on ALBERT (one block shared by both layers) as
    on its unrolled twin (a block per layer, same weights): the hooks of the norm-based methods,
    Chefer LRP and AttAttr's decomposed schedule fire for their own layer's call."""
    model, tokenizer = _albert(tmp_path)
    assert len({id(b) for b in architecture.get_layers(model)}) == 1
    twin, _ = _unrolled(model, tokenizer, str(tmp_path / "unrolled"))
    assert len({id(b) for b in architecture.get_layers(twin)}) == 2
    fast = {"attattr": {"steps": 2}, "ig_embed": {"steps": 2}}
    texts = TEXTS[:2]
    with torch.no_grad():
        torch.testing.assert_close(model(**_inputs(model, tokenizer, texts)).logits,
                                   twin(**_inputs(twin, tokenizer, texts)).logits, rtol=1e-6, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # completeness at 2 steps
        for name in list_methods():
            if name == "alti_logit":  # decoder classifiers only: refused on both, for the same reason
                for each in (model, twin):
                    with pytest.raises(UnsupportedArchitecture, match="post-LN"):
                        get(name).check_model(each)
                continue
            get(name).check_model(model)  # nothing else is refused on ALBERT
            ours = attrtools.attribute(model, tokenizer, texts, method=name, **fast.get(name, {}))
            theirs = attrtools.attribute(twin, tokenizer, texts, method=name, **fast.get(name, {}))
            for a, b in zip(ours, theirs):
                assert torch.isfinite(a.scores).all(), name
                scale = b.scores.abs().max()
                assert scale > 0, name
                assert ((a.scores - b.scores).abs().max() / scale).item() < 1e-5, name


def test_shared_blocks_prune_a_head_in_every_layer_of_their_group(tmp_path):
    """Physical pruning of a shared block removes the head in all the layers that run it: a plan
    naming it in one layer only is refused; a tied plan equals masking those heads everywhere; the
    planner's tied units cost one head per layer and weigh the sum of their importances; the
    pipeline prunes tied plans, says so in its summary, and the pruned model reloads."""
    model, tokenizer = _albert(tmp_path, layers=4, num_hidden_groups=2)
    L, H = architecture.num_layers_heads(model)
    with pytest.raises(ValueError, match=r"layers \[0, 1\].*shared block.*same heads"):
        prune_heads(copy.deepcopy(model), {0: [1]})
    with pytest.raises(ValueError, match=r"layers \[0, 1\] run one shared block"):
        masked_copy(model, {0: [1]})  # importance under a base plan: W_O is shared too
    table = torch.tensor([[0.0, 5, 5, 5], [9, 5, 5, 1], [3, 3, 0, 3], [3, 3, 0, 3]])
    tied = architecture.tied_layers(model)
    plan = make_plan(table, count=4, tied_layers=tied)
    assert plan == {0: [3], 1: [3], 2: [2], 3: [2]}  # units (group 0, head 3) = 1 and (group 1, head 2) = 0
    assert make_plan(table, count=3, tied_layers=tied) == {2: [2], 3: [2]}  # a unit costs 2 heads
    assert make_plan(table, count=4, tied_layers=tied, per_layer=True) == plan
    inputs = _inputs(model, tokenizer)
    emptied = {0: list(range(H)), 1: list(range(H)), 2: [1], 3: [1]}  # group 0's block loses every head
    for each, remaining in ((plan, [H - 1] * L), (emptied, [0, 0, H - 1, H - 1])):
        with torch.no_grad(), capture(model, head_mask=plan_to_mask(each, L, H), record="all") as masked_cap:
            masked = model(**inputs).logits
        pruned = copy.deepcopy(model)
        prune_heads(pruned, each)
        assert architecture.heads_per_layer(pruned) == remaining
        with torch.no_grad(), capture(pruned, record="all") as cap:
            out = pruned(**inputs).logits
        with torch.no_grad():
            assert (out - model(**inputs).logits).abs().max() > 1e-4
        assert ((out - masked).abs().max() / masked.abs().max()).item() < 1e-5
        for l in range(L):
            torch.testing.assert_close(cap.attentions[l], masked_cap.attentions[l], rtol=1e-5, atol=1e-6)

    from attrtools.pruning.pipeline import run_pruning

    examples = [Example(t, label=i % 2) for i, t in enumerate(TEXTS * 2)]
    summary = run_pruning(model, tokenizer, examples, str(tmp_path / "run"), strategies=("attention",),
                          prune_count=5, fractions=(0.0, 0.5), latency_repeats=1, latency_batch=2, progress=False)
    assert summary["shared_layers"] == [[0, 1], [2, 3]] and "every layer" in summary["shared_layers_note"]
    assert summary["plan"]["masked_equals_pruned"] and summary["plan"]["heads_pruned"] == 4
    from attrtools.pruning.cli import summary_lines

    lines = summary_lines(summary)
    assert "every layer of its group" in lines["shared layers"]
    # both latencies with their times and direction (the pruned model can be slower on one example)
    assert re.fullmatch(r"batch 2: [\d.]+ -> [\d.]+ ms \([\d.]+x (faster|slower) pruned\); "
                        r"batch 1: [\d.]+ -> [\d.]+ ms \([\d.]+x (faster|slower) pruned\)", lines["latency"]), lines
    from attrtools.pruning.report import pruning_report

    page = pruning_report(str(tmp_path / "run"))._repr_html_()
    assert "layers 0, 1; 2, 3 run one shared block" in page  # the HTML report says it too
    reloaded, _ = attrtools.load_model(summary["pruned_model"])
    gone = architecture.pruned_heads(reloaded)
    assert gone.get(0) == gone.get(1) and gone.get(2) == gone.get(3) and sum(len(h) for h in gone.values()) == 4


def test_freezing_part_of_a_shared_block_is_refused(tmp_path):
    """Fine-tuning with ``freeze_layers=k`` freezes whole blocks: a k inside a group of layers that run
    one block would freeze the layers above k too, so it is refused naming the group; k at a group's
    edge freezes exactly the groups below."""
    from attrtools.errors import ParameterError
    from attrtools.training import _freeze

    model, _ = _albert(tmp_path, layers=4, num_hidden_groups=2)
    with pytest.raises(ParameterError, match=r"layers 0–1 together.*shared block.*choose 0 or 2"):
        _freeze(model, False, 1)
    assert _freeze(model, False, 2) == ["layer 0", "layer 1"]
    blocks = architecture.get_layers(model)
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert all(p.requires_grad for p in blocks[2].parameters())


def test_shared_blocks_refusals(tmp_path):
    """Several blocks per ALBERT group (inner_group_num > 1) are refused with the reason."""
    directory = build_tiny_model("albert", str(tmp_path / "albert"), inner_group_num=2)
    with pytest.raises(models.UnsupportedModelError, match=r"'albert'.*inner_group_num"):
        attrtools.load_model(directory)


def test_pipeline_refuses_unprunable_family_before_computing(family_models, tmp_path, monkeypatch):
    from attrtools.pruning.pipeline import run_pruning

    model, tokenizer = family_models("mpnet")
    # Every family can be pruned today: an adapter that refuses stands for the next one that cannot.
    refusal = adapters.Adapter.refusal
    monkeypatch.setattr(adapters.Adapter, "refusal", lambda self, method: "no way to slice it" if method == "prune_heads"
                        else refusal(self, method))
    with pytest.raises(ValueError, match="'mpnet' cannot be pruned physically: no way to slice it"):
        run_pruning(model, tokenizer, [Example("a b", label=0)], str(tmp_path / "run"), strategies=("random",))
    assert not (tmp_path / "run").exists()


def test_mpnet_pruned_layers_take_their_heads_of_the_shared_position_bias(family_models):
    """MPNet adds one relative position bias (a table shared by all layers) inside attention: a pruned
    layer takes only its remaining heads' rows of it, so pruning equals masking also for an emptied
    layer, for a layer pruned twice (original numbering), and in a deep copy; the table stays whole."""
    model, tokenizer = family_models("mpnet")
    L, H = architecture.num_layers_heads(model)
    inputs = _inputs(model, tokenizer)
    table = model.mpnet.encoder.relative_attention_bias.weight.detach().clone()
    pruned = copy.deepcopy(model)
    steps = [{0: [1], 1: list(range(H))}, {0: [3]}]  # layer 1 emptied; layer 0 pruned again later
    plan: dict = {}
    for step in steps:
        prune_heads(pruned, step)
        for layer, heads in step.items():
            plan[layer] = sorted(set(plan.get(layer, [])) | set(heads))
        with torch.no_grad(), capture(model, head_mask=plan_to_mask(plan, L, H)):
            masked = model(**inputs).logits
        for candidate in (pruned, copy.deepcopy(pruned)):
            with torch.no_grad():
                out = candidate(**inputs).logits
            assert ((out - masked).abs().max() / masked.abs().max()).item() < 1e-5, step
    assert architecture.heads_per_layer(pruned) == [H - 2, 0]
    torch.testing.assert_close(pruned.mpnet.encoder.relative_attention_bias.weight, table, rtol=0, atol=0)
