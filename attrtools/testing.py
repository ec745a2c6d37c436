"""Small models built from configs, for tests, benchmarks and the offline demo path.

Everything here is offline and deterministic: a word-level vocabulary written to disk, tiny
classifiers of every supported architecture saved with ``save_pretrained`` (so tests go through
the real ``from_pretrained``), and a model trained in seconds on a task with planted structure:

    label = 1  iff  the token "alpha" comes before the token "beta"

so the tokens and heads that carry the rule are known in advance.
"""
from __future__ import annotations

import os
import random

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = ["the", "a", "movie", "film", "was", "is", "very", "quite", "story", "plot", "acting", "and",
          "but", "it", "this", "that", "of", "to", "in", "with", "good", "bad", "great", "dull", "fun",
          "boring", "fine", "long", "short", "funny", "sad", "scene", "actor", "music", "ending", "not"]
PLANTED = ["alpha", "beta"]
WORDS = FILLER + PLANTED + ["gamma", "delta"]
# The architectures the whole suite is parametrized over (one per kind of block), and every family
# in the adapter table (tests/test_families.py proves each one).
ARCHITECTURES = ("bert", "roberta", "distilbert", "electra", "llama")


def _families():
    from .adapters import ADAPTERS

    return tuple(ADAPTERS)


FAMILIES = _families()


def write_tokenizer(directory: str):
    """A BertTokenizer over ``SPECIALS + WORDS``, saved to ``directory``; returns it."""
    from transformers import BertTokenizer

    os.makedirs(directory, exist_ok=True)
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(directory)
    return tokenizer


def write_ascii_tokenizer(directory: str):
    """A fast WordPiece tokenizer over the same vocabulary as ``write_tokenizer`` (same ids, same
    special tokens) whose normaliser drops every character outside ASCII, as many word-level and
    byte-less vocabularies do: a text in another script ("λόγος") has letters but tokenizes to
    nothing. Saved to ``directory`` (replacing the tokenizer files there); returns it."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    os.makedirs(directory, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\x00-\x7f]"), "")])
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    core.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=128)
    tokenizer.save_pretrained(directory)
    return tokenizer


def tiny_config(model_type: str, vocab_size: int, layers: int = 2, heads: int = 4, hidden: int = 32,
                num_labels: int = 2, pad_token_id: int = 0, max_positions: int = 160, **overrides):
    """A tiny config of any supported family: the common sizes here, the family's own realistic
    extras (grouped KV heads, soft-capping, ...) from its adapter's ``tiny_config`` (``models.py``)."""
    from transformers import AutoConfig

    from .adapters import ADAPTERS

    adapter = ADAPTERS.get(model_type)  # None: a family attrtools would have to infer
    extra = {k: (v(hidden) if callable(v) else v) for k, v in (adapter.tiny_config if adapter else ())}
    values = dict(vocab_size=vocab_size, num_labels=num_labels, pad_token_id=pad_token_id,
                  num_hidden_layers=layers, num_attention_heads=heads, hidden_size=hidden,
                  intermediate_size=hidden * 2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  attention_dropout=0.0, bos_token_id=2, eos_token_id=3,
                  # RoBERTa-style position ids start after the padding index
                  max_position_embeddings=max_positions + 2)
    values.update(extra)
    values.update(overrides)
    return AutoConfig.for_model(model_type, **values)


def build_tiny_model(model_type: str, directory: str, seed: int = 0, **config_kwargs) -> str:
    """Random-init tiny classifier + tokenizer saved in ``directory`` (returned)."""
    from transformers import AutoModelForSequenceClassification

    tokenizer = write_tokenizer(directory)
    config = tiny_config(model_type, len(tokenizer), pad_token_id=tokenizer.pad_token_id, **config_kwargs)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():  # larger random weights so outputs depend clearly on the input
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(3.0)
    model.save_pretrained(directory)
    return directory


# ---------------------------------------------------------------------------------- planted task
def planted_example(rng: random.Random, length: int | None = None) -> tuple[str, int]:
    """A sentence of filler words holding "alpha" and "beta" once each; label = alpha before beta."""
    length = length or rng.randint(5, 12)
    words = [rng.choice(FILLER) for _ in range(length)]
    i, j = rng.sample(range(length), 2)
    words[i], words[j] = "alpha", "beta"
    return " ".join(words), int(i < j)


def planted_dataset(count: int, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [planted_example(rng) for _ in range(count)]


def train_planted_model(directory: str, model_type: str = "bert", steps: int = 700, seed: int = 0,
                        layers: int = 2, heads: int = 4, hidden: int = 48) -> tuple[str, float]:
    """Train a tiny classifier on the planted task; returns (directory, held-out accuracy)."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = write_tokenizer(directory)
    config = tiny_config(model_type, len(tokenizer), layers=layers, heads=heads, hidden=hidden,
                         pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForSequenceClassification.from_config(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = random.Random(seed)
    for step in range(steps):
        texts, labels = zip(*[planted_example(rng) for _ in range(32)])
        enc = tokenizer(list(texts), padding=True, return_tensors="pt")
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=torch.tensor(labels))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    texts, labels = zip(*planted_dataset(400, seed=seed + 1))
    with torch.no_grad():
        enc = tokenizer(list(texts), padding=True, return_tensors="pt")
        pred = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.argmax(-1)
    accuracy = (pred == torch.tensor(labels)).float().mean().item()
    model.save_pretrained(directory)
    from .io import write_text

    write_text(os.path.join(directory, "planted_task.txt"),
               f"label = 1 iff 'alpha' comes before 'beta'\nheld-out accuracy {accuracy:.4f}\n")
    return directory, accuracy


# ---------------------------------------------------------------------------------- reference AttAttr
def official_style_attattr(model, tokenizer, example, steps: int = 20, chunk: int = 20, pad_to: int = 128,
                           target: int | None = None, layers=None) -> torch.Tensor:
    """AttAttr computed the way the official code (YRdddream/attattr) does, for tests and benchmarks.

    Batch-1 input padded to a fixed length; for every layer a fresh clean forward, then the whole
    model re-run for every chunk of steps with the layer's probabilities replaced by ``k/m * A``
    (k = 0..m-1), eager attention in every layer, parameters left requiring grad; gradient sum times
    ``A/m``; cropped to the real length. Returns ``(L, H, n, n)``, or ``(len(layers), H, n, n)`` for
    the given target ``layers`` only (benchmarks time a subset of them).
    """
    from .capture import capture
    from .engine import Engine
    from .heads import probabilities
    from .architecture import batch_pad_id, num_layers_heads
    from .types import Example

    engine = Engine(model, tokenizer)
    enc = engine.encode(Example(*example) if isinstance(example, tuple) else Example.coerce(example))
    n = enc.length
    inputs = engine.collate([enc])
    pad = batch_pad_id(model, tokenizer)
    inputs = {k: torch.nn.functional.pad(v, (0, max(0, pad_to - n)), value=pad if k == "input_ids" else 0)
              for k, v in inputs.items()}
    out = []
    for layer in range(num_layers_heads(model)[0]) if layers is None else layers:
        with torch.no_grad(), capture(model, record="all") as rec:  # record="all": eager everywhere
            logits = model(**inputs).logits
        label = int(logits.argmax(-1)) if target is None else target
        attention = rec.attentions[layer][0]
        step = attention / steps
        grad_sum = torch.zeros_like(attention)
        for start in range(0, steps, chunk):
            ks = torch.arange(start, min(steps, start + chunk), dtype=attention.dtype, device=attention.device)
            scaled = (step.unsqueeze(0) * ks.view(-1, 1, 1, 1)).requires_grad_(True)
            batch_inputs = {k: v.expand(len(ks), -1) for k, v in inputs.items()}
            with capture(model, override={layer: scaled}, record="all"):
                prob = probabilities(model(**batch_inputs).logits, model)[:, label]
            (grad,) = torch.autograd.grad(torch.unbind(prob), scaled)
            grad_sum += grad.sum(0)
        out.append((grad_sum * step)[:, :n, :n])
    return torch.stack(out)
