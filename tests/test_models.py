"""What ``attrtools.models`` answers about a model: how long an input it reads (its position table and
tokenizer), its fingerprint, and where a decoder reads (its pad id). Loading has its own file
(test_model_loading.py), the refusals of a folder theirs (test_guard.py)."""
import os

import pytest
import torch

import attrtools
from attrtools.cache import AttributionCache
from attrtools.engine import Engine
from attrtools.models import fingerprint, max_input_length, position_limit, tokenizer_limit
from attrtools.testing import build_tiny_model

from helpers import labelled_csv as _labelled_csv
from helpers import run_cli as _cli
from helpers import textattack_or_skip as _textattack


# ------------------------------------------------------------------------------ input limits
def test_limit_from_position_table_offset_and_tokenizer(short_table):
    """The engine truncated at 512 tokens whatever the model, the audit, its wrapper and triggers at 128; now
    one limit from the model and the tokenizer: the position table (less RoBERTa's padding offset), the
    tokenizer's model_max_length (its 'no limit' sentinel ignored), or an override within them."""
    bert, tok = short_table["bert"]
    roberta, _ = short_table["roberta"]
    distil, _ = short_table["distilbert"]
    assert bert.config.max_position_embeddings == 34 and position_limit(bert) == 34
    assert position_limit(roberta) == 34 - (roberta.config.pad_token_id + 1)  # positions start after padding
    assert position_limit(distil) == distil.config.max_position_embeddings  # no offset
    assert tokenizer_limit(tok) == 128 and max_input_length(bert, tok) == 34
    sentinel = type("Tok", (), {"model_max_length": int(1e30)})()  # transformers' "no limit" value
    assert tokenizer_limit(sentinel) is None and max_input_length(bert, sentinel) == 34
    small = type("Tok", (), {"model_max_length": 16})()
    assert max_input_length(bert, small) == 16
    assert max_input_length(bert, tok, override=20) == 20
    with pytest.raises(ValueError, match="exceeds the 34 positions"):
        max_input_length(bert, tok, override=40)
    with pytest.raises(ValueError, match="at least 2"):
        Engine(bert, tok, max_length=1)


# ------------------------------------------------------------------------------ fingerprints
def test_data_edit_changes_fingerprint_and_misses_the_cache(planted_dir, tmp_path):
    """After ``model.classifier.bias.data[0] += 0.5`` the cache still served the old attribution (the
    fingerprint memo trusted version counters that ``.data`` edits do not bump); now every in-place edit
    changes the fingerprint, and an unchanged model keeps its value."""
    model, tok = attrtools.load_model(planted_dir)  # a private copy to modify
    engine = Engine(model, tok, cache=AttributionCache(tmp_path))
    (first,) = engine.attribute(["alpha the beta"], method="attattr", steps=2)
    before = fingerprint(model)
    model.classifier.bias.data[0] += 0.5  # .data: no version-counter bump
    assert fingerprint(model) != before
    (second,) = engine.attribute(["alpha the beta"], method="attattr", steps=2)
    assert engine.stats["hits"] == 0 and engine.stats["computed"] == 2
    assert second.probs != first.probs
    # Another route: a numpy view of a weight, edited in place.
    after = fingerprint(model)
    model.bert.embeddings.word_embeddings.weight.detach().numpy()[5, 3] += 1e-6
    assert fingerprint(model) != after
    # Unchanged model: same value every call, and equal to a fresh load of the same weights.
    fresh, _ = attrtools.load_model(planted_dir)
    assert fingerprint(fresh) == fingerprint(fresh) == before


# ------------------------------------------------------------------------------ pad tokens and pooling
@pytest.fixture(scope="module")
def nopad_llama_dir(tmp_path_factory):
    """A tiny Llama classifier whose config and tokenizer both lack a pad token."""
    import json

    directory = build_tiny_model("llama", str(tmp_path_factory.mktemp("nopad") / "llama"))
    for name, key in (("config.json", "pad_token_id"), ("tokenizer_config.json", "pad_token")):
        path = os.path.join(directory, name)
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        values[key] = None
        with open(path, "w", encoding="utf-8") as f:
            json.dump(values, f)
    return directory


def test_decoder_without_a_pad_token_gets_attrtools_error_in_every_path(nopad_llama_dir, tmp_path):
    """Not transformers' "Cannot handle batch sizes > 1 if no padding token is defined" nor a silent
    read of a pad position: attrtools' PoolingError saying what to set, from attribute, evaluate, the
    audit's model wrapper and the command line."""
    from attrtools.evaluate.run import evaluate_methods
    from attrtools.models import PoolingError

    model, tok = attrtools.load_model(nopad_llama_dir)
    assert model.config.pad_token_id is None and tok.pad_token_id is None
    texts = ["the movie was good", "bad"]
    with pytest.raises(PoolingError, match="pad_token_id"):
        attrtools.attribute(model, tok, texts, method="grad_input", batch_size=2)
    with pytest.raises(PoolingError, match="pad_token_id"):
        evaluate_methods(model, tok, [attrtools.Example(t, label=0) for t in texts], ["grad_input"], reference=None)
    try:
        _textattack()
    except pytest.skip.Exception:
        pass
    else:
        from attrtools.adversarial.wrapper import AttrtoolsModelWrapper

        with pytest.raises(PoolingError, match="pad_token_id"):
            AttrtoolsModelWrapper(model, tok)
    model.config.pad_token_id = 0  # the model has a pad id, the tokenizer none: batches pad with the model's
    batched = attrtools.attribute(model, tok, texts, method="grad_input", batch_size=2)
    alone = [attrtools.attribute(model, tok, [t], method="grad_input")[0] for t in texts]
    for a, b in zip(batched, alone):
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-6)
        assert a.probs == pytest.approx(b.probs, abs=1e-5)
    model.config.pad_token_id = None
    for args in (["attribute", "--text", "good", "--text", "bad", "--method", "grad_input"],
                 ["evaluate", "--dataset", _labelled_csv(tmp_path), "--methods", "grad_input", "--reference", "none"]):
        result = _cli(args + ["--model", nopad_llama_dir, "--output-dir", tmp_path / args[0]])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
        assert "pad_token" in result.output, result.output


def test_decoder_whose_tokenizer_pads_with_another_id_reads_its_own_token(tmp_path):
    """A decoder classifier finds its last token through config.pad_token_id: a tokenizer padding with
    another id would make it read a pad position in a batch, silently. The engine pads a decoder's
    batches with the model's own pad id (architecture.batch_pad_id): batched equals one text at a time."""
    import attrtools
    from attrtools import architecture
    from attrtools.engine import Engine
    from attrtools.testing import build_tiny_model

    model, tokenizer = attrtools.load_model(build_tiny_model("llama", str(tmp_path / "llama")))
    model.config.pad_token_id = tokenizer.mask_token_id  # not the tokenizer's pad, and no token of the texts
    engine = Engine(model, tokenizer)
    texts = ["the movie was very good", "bad"]
    inputs = engine.collate([engine.encode(t) for t in texts])
    assert inputs["input_ids"][1, -1] == model.config.pad_token_id
    assert architecture.pool_positions(model, inputs["input_ids"]).tolist() == [len(engine.encode(t).input_ids) - 1
                                                                          for t in texts]
    with torch.no_grad():
        batched = model(**inputs).logits
        alone = torch.cat([model(**engine.collate([engine.encode(t)])).logits for t in texts])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)


def test_pad_id_outside_the_embedding_table_is_refused_at_once(tmp_path):
    """transformers 5 may give a decoder's tokenizer a pad token the model has no row for (a
    Qwen2 tokenizer adding <|endoftext|>): every padded batch would index past the table. The engine
    refuses it with attrtools' error before computing, also for a single text."""
    import attrtools
    from attrtools.engine import Engine
    from attrtools.models import PoolingError
    from attrtools.testing import build_tiny_model

    model, tokenizer = attrtools.load_model(build_tiny_model("llama", str(tmp_path / "llama")))
    rows = model.get_input_embeddings().num_embeddings
    tokenizer.add_special_tokens({"pad_token": "<|new-pad|>"})
    assert tokenizer.pad_token_id >= rows
    model.config.pad_token_id = tokenizer.pad_token_id
    with pytest.raises(PoolingError, match=f"outside the model's embedding table of {rows} tokens"):
        Engine(model, tokenizer)
    with pytest.raises(PoolingError):
        attrtools.attribute(model, tokenizer, ["one text"], method="raw", cache=False)
