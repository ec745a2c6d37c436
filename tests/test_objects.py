"""Issue 23, findings 2-4: what comes in (objects), what a probability is (heads), where the model reads
(pooling). Each finding is a test with the right value, on tiny models built from configs (offline)."""
import pytest
import torch

import attrtools
from attrtools import adapters, architecture, heads, models
from attrtools.errors import AttrtoolsError, InputDataError, UsageError
from attrtools.testing import build_tiny_model

TEXTS = ["the movie was very good", "a dull story but the music was fun", "boring"]
DECODERS = [f for f, a in adapters.ADAPTERS.items() if a.pooling == "last_non_pad"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return attrtools.load_model(build_tiny_model("bert", str(tmp_path_factory.mktemp("objects-bert"))))


def _same(results, reference):
    assert len(results) == len(reference)
    for got, want in zip(results, reference):
        assert got.tokens == want.tokens
        torch.testing.assert_close(got.scores, want.scores)
        assert got.probs == pytest.approx(want.probs)


# ------------------------------------------------------------------------------------ objects in
def test_dataframe_is_its_rows_not_its_column_names(bert):
    pd = pytest.importorskip("pandas")
    model, tok = bert
    reference = attrtools.attribute(model, tok, TEXTS, method="grad_input")
    frame = pd.DataFrame({"sentence": TEXTS, "label": [1, 0, 0]})  # GLUE's column name, guessed as for files
    got = attrtools.attribute(model, tok, frame, method="grad_input")
    _same(got, reference)
    assert [a.text for a in got] == TEXTS and [a.label for a in got] == [1, 0, 0]
    # named columns, a pair column, and target="gold" from the label column
    frame = pd.DataFrame({"a": TEXTS, "b": ["x"] * 3, "y": [1, 0, 1]})
    pairs = attrtools.attribute(model, tok, frame, method="grad_input", text_column="a", pair_column="b",
                                label_column="y", target="gold")
    _same(pairs, attrtools.attribute(model, tok, [(t, "x") for t in TEXTS], method="grad_input", target=[1, 0, 1]))
    assert [a.target for a in pairs] == [1, 0, 1]
    # pandas keeps an integer column with a missing value as floats: 1.0 is class 1, NaN unknown
    floats = attrtools.attribute(model, tok, pd.DataFrame({"text": TEXTS, "label": [1.0, float("nan"), 0.0]}),
                                 method="grad_input")
    assert [a.label for a in floats] == [1, None, 0] and isinstance(floats[0].label, int)
    with pytest.raises(InputDataError, match=r"label 0.5 \(float\) is not an integer"):
        attrtools.attribute(model, tok, pd.DataFrame({"text": TEXTS, "label": [0.5, 1.0, 0.0]}), method="grad_input")
    with pytest.raises(InputDataError, match="text column 'nope' not found"):
        attrtools.attribute(model, tok, frame, method="grad_input", text_column="nope")


def test_datasets_split_and_dict(bert):
    datasets = pytest.importorskip("datasets")
    model, tok = bert
    table = datasets.Dataset.from_dict({"premise": TEXTS, "hypothesis": ["it was"] * 3, "label": [0, 1, 0]})
    reference = attrtools.attribute(model, tok, [(t, "it was") for t in TEXTS], method="grad_input")
    _same(attrtools.attribute(model, tok, table, method="grad_input"), reference)
    both = datasets.DatasetDict({"train": table, "validation": table.select([2])})
    with pytest.raises(InputDataError, match=r"splits \['train', 'validation'\]: pass split="):
        attrtools.attribute(model, tok, both, method="grad_input")
    got = attrtools.attribute(model, tok, both, method="grad_input", split="validation")
    _same(got, reference[2:])
    with pytest.raises(InputDataError, match="split 'test' is not in"):
        attrtools.attribute(model, tok, both, method="grad_input", split="test")


def test_list_of_dicts_and_series(bert):
    pd = pytest.importorskip("pandas")
    model, tok = bert
    reference = attrtools.attribute(model, tok, TEXTS, method="grad_input")
    _same(attrtools.attribute(model, tok, [{"sentence": t, "label": 0} for t in TEXTS], method="grad_input"),
          reference)
    _same(attrtools.attribute(model, tok, pd.Series(TEXTS), method="grad_input"), reference)
    # a lazy iterable of dicts goes row by row through the same column rule
    _same(attrtools.attribute(model, tok, ({"review": t} for t in TEXTS), method="grad_input"), reference)


def test_token_ids_left_and_right_padding(bert):
    model, tok = bert
    reference = attrtools.attribute(model, tok, TEXTS, method="grad_input")
    for side in ("right", "left"):
        tok.padding_side = side
        try:
            enc = tok(TEXTS, padding=True, return_tensors="pt")
        finally:
            tok.padding_side = "right"
        _same(attrtools.attribute(model, tok, enc, method="grad_input"), reference)
    ids = tok(TEXTS[0])["input_ids"]
    _same(attrtools.attribute(model, tok, torch.tensor(ids), method="grad_input"), reference[:1])
    _same(attrtools.attribute(model, tok, [ids], method="grad_input"), reference[:1])
    long = torch.tensor([ids[:1] + ids[1:-1] * 200 + ids[-1:]])
    with pytest.raises(InputDataError, match="more than the model's limit of 128: tokenize with truncation=True"):
        attrtools.attribute(model, tok, long, method="grad_input")


@pytest.mark.parametrize("bad", [3.5, [1.5, 2.5], b"bytes", object(), {1, 2}])
def test_anything_else_is_refused_in_one_line(bert, bad):
    model, tok = bert
    with pytest.raises(InputDataError) as err:
        attrtools.attribute(model, tok, bad, method="grad_input")
    assert "\n" not in str(err.value) and "DataFrame" in str(err.value)
    with pytest.raises(InputDataError, match="cannot guess the text column among") as err:
        attrtools.attribute(model, tok, {"foo": "a text"}, method="grad_input")
    assert "text_column= in Python" in str(err.value)  # a Python user was told only of --text-column


# ------------------------------------------------------------------------------------ load_model
def test_loaded_model_and_pipeline(bert, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model, tok = bert
    reference = attrtools.attribute(model, tok, TEXTS, method="grad_input")
    folder = build_tiny_model("bert", str(tmp_path / "m"))
    raw = AutoModelForSequenceClassification.from_pretrained(folder)
    raw_tok = AutoTokenizer.from_pretrained(folder)
    loaded, loaded_tok = attrtools.load_model(raw, tokenizer=raw_tok)
    assert loaded is raw and loaded_tok is raw_tok and not loaded.training
    _same(attrtools.attribute(loaded, loaded_tok, TEXTS, method="grad_input"), reference)
    pipe = pipeline("text-classification", model=AutoModelForSequenceClassification.from_pretrained(folder),
                    tokenizer=raw_tok)
    from_pipe, pipe_tok = attrtools.load_model(pipe)
    assert from_pipe is pipe.model and pipe_tok is pipe.tokenizer
    _same(attrtools.attribute(pipe, TEXTS, method="grad_input"), reference)
    _same(attrtools.attribute(pipe, inputs=TEXTS, method="grad_input"), reference)
    with pytest.raises(UsageError, match="needs its tokenizer"):
        attrtools.load_model(raw)
    with pytest.raises(UsageError, match="cannot use int as a model"):
        attrtools.load_model(3, tokenizer=raw_tok)
    with pytest.raises(UsageError, match="revision apply to loading a model by name"):
        attrtools.load_model(pipe, revision="v1")


def test_hub_arguments_reach_model_and_tokenizer(tmp_path, monkeypatch):
    import transformers

    folder = build_tiny_model("bert", str(tmp_path / "m"))
    seen = {}
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        real = cls.from_pretrained.__func__

        def record(klass, name, *args, _real=real, _cls=cls, **kwargs):
            seen[_cls.__name__] = dict(kwargs)
            kwargs.pop("revision"), kwargs.pop("cache_dir"), kwargs.pop("token")
            return _real(klass, name, *args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(record))
    attrtools.load_model(folder, revision="v1", token="t0k", cache_dir=str(tmp_path / "c"))
    for name in ("AutoTokenizer", "AutoModelForSequenceClassification"):
        assert seen[name]["revision"] == "v1" and seen[name]["token"] == "t0k"
        assert seen[name]["cache_dir"] == str(tmp_path / "c")


@pytest.mark.parametrize("spelling, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16),
                                             (torch.bfloat16, torch.bfloat16), ("fp32", torch.float32)])
def test_dtype_on_load(tmp_path, spelling, dtype):
    folder = build_tiny_model("bert", str(tmp_path / "m"))
    model, _ = attrtools.load_model(folder, dtype=spelling)
    assert next(model.parameters()).dtype == dtype
    assert models.resolve_dtype(spelling) == dtype


def test_unknown_dtype_is_refused():
    with pytest.raises(models.DtypeError, match="unknown dtype 'fp8'"):
        models.resolve_dtype("fp8")
    with pytest.raises(models.DtypeError):
        models.resolve_dtype(torch.int64)


# ------------------------------------------------------------------------------------ heads
@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    folder = build_tiny_model("bert", str(tmp_path_factory.mktemp("multi")), num_labels=3,
                              problem_type="multi_label_classification")
    return attrtools.load_model(folder)


def test_multi_label_probabilities_are_a_sigmoid_per_label(multi_label):
    model, tok = multi_label
    assert heads.head_kind(model) == "multi_label"
    results = attrtools.attribute(model, tok, TEXTS, method="grad_input", target_kind="prob")
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    expected = torch.sigmoid(logits)
    for r, a in enumerate(results):
        torch.testing.assert_close(torch.tensor(a.probs), expected[r], rtol=1e-5, atol=1e-6)
        assert a.multi_label and a.predicted_labels == [k for k in range(3) if expected[r, k] > 0.5]
        assert a.predicted == int(logits[r].argmax())


def test_multi_label_target_score_and_any_label(multi_label):
    from attrtools.methods.base import target_score

    model, tok = multi_label
    logits = torch.tensor([[0.3, -1.0, 2.0]])
    for label in range(3):
        score = target_score(logits, torch.tensor([label]), "prob", model)
        torch.testing.assert_close(score, torch.sigmoid(logits[:, label]))
    # target may name any label, predicted or not; the explained score is that label's sigmoid
    got = attrtools.attribute(model, tok, TEXTS[:1], method="attattr", target=2, steps=4)
    assert got[0].target == 2
    completeness = got[0].completeness
    with torch.no_grad():
        enc = tok(TEXTS[:1], return_tensors="pt")
        prob = torch.sigmoid(model(**enc).logits)[0, 2]
    # AttAttr's layer delta is F(x) - F(0-attention) of the sigmoid probability: at most prob itself
    assert all(abs(d) <= float(prob) + 1e-6 for d in completeness["delta"])


def test_probability_rule_per_head_kind():
    logits = torch.tensor([[1.0, 2.0, -1.0]])
    single = type("C", (), {"problem_type": None, "num_labels": 3})()
    multi = type("C", (), {"problem_type": "multi_label_classification", "num_labels": 3})()
    regression = type("C", (), {"problem_type": "regression", "num_labels": 1})()
    torch.testing.assert_close(heads.probabilities(logits, single), torch.softmax(logits, -1))
    torch.testing.assert_close(heads.probabilities(logits, multi), torch.sigmoid(logits))
    with pytest.raises(heads.NoProbabilityError, match="regression") as err:
        heads.probabilities(logits[:, :1], regression)
    assert isinstance(err.value, AttrtoolsError) and "\n" not in str(err.value)
    assert heads.stored_probabilities(logits[:, :1], regression) == [[]]
    assert heads.predicted_labels([0.7, 0.2, 0.9], multi) == [0, 2]
    assert heads.predicted_labels([0.2, 0.5, 0.3], single) == [1]


def test_single_class_tools_refuse_multi_label(multi_label, tmp_path):
    from attrtools.pruning.pipeline import run_pruning
    from attrtools.types import Example

    model, tok = multi_label
    with pytest.raises(heads.NoProbabilityError, match="head pruning .* assumes one class per example"):
        run_pruning(model, tok, [Example(t, label=0) for t in TEXTS], str(tmp_path / "run"))
    from attrtools.adversarial.triggers import predict

    with pytest.raises(heads.NoProbabilityError, match="trigger extraction .* multi-label"):
        predict(model, tok, [Example(t, label=0) for t in TEXTS])
    from attrtools.adversarial.audit import run_audit

    with pytest.raises(heads.NoProbabilityError, match="robustness audit .* assumes one class per example"):
        run_audit(model, tok, [Example(t, label=0) for t in TEXTS], str(tmp_path / "audit"))


def test_perturbation_probabilities_follow_the_head(multi_label):
    from attrtools.engine import Engine
    from attrtools.evaluate.perturb import Predictor

    model, tok = multi_label
    engine = Engine(model, tok)
    enc = engine.encode(TEXTS[0])
    probs = Predictor.for_engine(engine)([(tuple(enc.input_ids), tuple(enc.token_type_ids))])
    with torch.no_grad():
        expected = torch.sigmoid(model(**engine.collate([enc])).logits)[0]
    torch.testing.assert_close(torch.tensor(probs[0]), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ pooling
def _observed_positions(model, inputs):
    """The row each example's logits come from, observed at the classifier head's input."""
    seen = {}
    head = architecture.get_module(model, adapters.adapter_for(model).classifier_head[0])
    handle = head.register_forward_hook(lambda m, a, o: seen.update(h=a[0]))
    try:
        with torch.no_grad():
            logits = model(**inputs).logits
    finally:
        handle.remove()
    out = []
    for b in range(logits.shape[0]):
        rows = head(seen["h"][b])  # (n, C): the head applied at every position
        match = [t for t in range(rows.shape[0]) if torch.allclose(rows[t], logits[b], atol=1e-5)]
        out.append(match[-1])
    return out


@pytest.mark.parametrize("family", DECODERS)
def test_pad_equals_eos_pools_the_models_own_token(family, tmp_path):
    """pad = the end token of the text ([SEP] here, as pad = eos): the model reads the token before it."""
    model, tok = attrtools.load_model(build_tiny_model(family, str(tmp_path / family)))
    tok.pad_token = tok.sep_token
    model.config.pad_token_id = tok.sep_token_id
    from attrtools.engine import Engine

    engine = Engine(model, tok)
    encoded = [engine.encode(t) for t in TEXTS]
    inputs = engine.collate(encoded)
    observed = _observed_positions(model, inputs)
    assert observed == [e.length - 2 for e in encoded]  # not the last token ([SEP] == pad)
    assert architecture.pool_positions(model, inputs["input_ids"]).tolist() == observed
    results = attrtools.attribute(model, tok, TEXTS, method="rollout")
    assert [a.pool_row() for a in results] == observed
    for a, row in zip(results, observed):
        torch.testing.assert_close(a.token_scores(), a.scores[-1, row])
    grads = attrtools.attribute(model, tok, TEXTS, method="gradsam", rows="cls")
    assert [a.pool_row() for a in grads] == observed
    # pairs: [CLS] a [SEP] b [SEP] -> the last token of b; the user's own (left-padded) ids alike
    pairs = [(TEXTS[0], TEXTS[2]), (TEXTS[2], TEXTS[1])]
    encoded = [engine.encode(p) for p in pairs]
    observed = _observed_positions(model, engine.collate(encoded))
    for e, row in zip(encoded, observed):  # the rightmost token that is not [SEP] (== pad); [SEP] after it
        assert e.tokens[row] != "[SEP]" and set(e.tokens[row + 1:]) == {"[SEP]"}
    assert [a.pool_row() for a in attrtools.attribute(model, tok, pairs, method="rollout")] == observed
    tok.padding_side = "left"
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs], padding=True, return_tensors="pt")
    tok.padding_side = "right"
    assert [a.pool_row() for a in attrtools.attribute(model, tok, enc, method="rollout")] == observed


@pytest.mark.parametrize("family", DECODERS[:2])
def test_default_pad_pools_the_last_token_and_left_padding_agrees(family, tmp_path):
    model, tok = attrtools.load_model(build_tiny_model(family, str(tmp_path / family)))
    reference = attrtools.attribute(model, tok, TEXTS, method="rollout")
    assert [a.pool_row() for a in reference] == [a.n_tokens - 1 for a in reference]
    tok.padding_side = "left"
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    tok.padding_side = "right"
    assert _observed_positions(model, enc) == [enc["input_ids"].shape[1] - 1] * len(TEXTS)
    _same(attrtools.attribute(model, tok, enc, method="rollout"), reference)


# ------------------------------------------------------------------------------------ CLI
def test_cli_revision_and_dtype_reach_the_loader_and_run_config(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    import attrtools.api
    from attrtools.cli import main

    folder = build_tiny_model("bert", str(tmp_path / "m"))
    seen = {}
    real = attrtools.api.load_model

    def record(name, device=None, **kwargs):
        seen[name] = dict(kwargs)
        kwargs.pop("revision", None)  # a local folder has no branches: the call itself is what is tested
        return real(name, device=device, **kwargs)
    monkeypatch.setattr(attrtools.api, "load_model", record)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["attribute", "--model", folder, "--revision", "v1.2", "--dtype", "bf16",
                                       "--text", "the movie was good", "--method", "grad_input",
                                       "--output-dir", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert seen[folder] == {"revision": "v1.2", "dtype": "bf16"}
    config = json.loads((out / "run_config.json").read_text())
    assert config["model_revision"] == "v1.2" and config["model_dtype"] == "bf16"
    bad = CliRunner().invoke(main, ["attribute", "--model", folder, "--dtype", "fp8", "--text", "x"])
    assert bad.exit_code == 2 and "fp8" in bad.output


def test_multi_label_results_read_back_from_the_cache(multi_label, tmp_path):
    model, tok = multi_label
    first = attrtools.attribute(model, tok, TEXTS, method="grad_input", cache=str(tmp_path / "c"))
    engine_again = attrtools.Engine(model, tok, cache=str(tmp_path / "c"))
    again = engine_again.attribute(TEXTS, method="grad_input")
    assert engine_again.stats["hits"] == len(TEXTS) and engine_again.stats["computed"] == 0
    for a, b in zip(first, again):
        assert a.probs == b.probs and b.multi_label and abs(sum(b.probs) - 1.0) > 1e-3  # not a softmax


def test_regression_head_stores_no_probability(tmp_path):
    model, tok = attrtools.load_model(build_tiny_model("bert", str(tmp_path / "r"), num_labels=1))
    assert heads.head_kind(model) == "regression"
    (a,) = attrtools.attribute(model, tok, TEXTS[:1], method="grad_input")
    assert a.probs == [] and a.predicted_labels == [] and not a.multi_label


def test_stream_takes_a_dataframe(bert, tmp_path):
    pd = pytest.importorskip("pandas")
    model, tok = bert
    engine = attrtools.Engine(model, tok, cache=str(tmp_path / "c"))
    got = list(engine.stream(pd.DataFrame({"text": TEXTS}), method="grad_input"))
    _same(got, attrtools.attribute(model, tok, TEXTS, method="grad_input"))
