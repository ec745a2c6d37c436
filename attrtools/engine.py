"""The engine: the single entry through which tools and the CLI get attributions.

``Engine(model, tokenizer, cache).attribute(examples, method, target, **params)``:
tokenize → form each example's cache key → take hits from the cache → batch the misses by length
(dynamic padding) → resolve targets with one clean forward → compute through the method → write
each result to the cache as soon as it exists → return ``Attribution`` objects in input order.

Methods that declare ``units`` (AttAttr: layers) are cached per (example, unit), so a killed job
keeps every finished layer. Out-of-memory errors halve the batch (and the method's internal batch)
and retry.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from . import methods as method_registry
from .methods.base import Batch
from .models import fingerprint, model_device, pool_position, tokenizer_fingerprint, adapter_for
from .types import FORMAT_VERSION, Attribution, Example

# Parameters that change how a result is computed, never what it is: left out of cache keys.
VOLATILE_PARAMS = frozenset({"internal_batch_size"})


@dataclass
class Encoded:
    """One tokenized example."""

    example: Example
    input_ids: list[int]
    token_type_ids: list[int] | None
    special_tokens_mask: list[int]
    tokens: list[str]

    @property
    def length(self) -> int:
        return len(self.input_ids)


def resolve_target_spec(target, example: Example, index: int):
    """The per-example target *spec*: ``"pred"``, or a class index (gold label or given)."""
    if target is None or target == "pred" or target == "predicted":
        return "pred"
    if target == "gold":
        if example.label is None:
            raise ValueError(f"target='gold' but example {example.id or index} has no label")
        return int(example.label)
    if isinstance(target, int):
        return int(target)
    if isinstance(target, Sequence) and not isinstance(target, str):
        return resolve_target_spec(target[index], example, index)
    raise ValueError(f"target must be None/'pred', 'gold', a class index or a list of them, got {target!r}")


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class Engine:
    """Batches, caches and computes attributions for one model."""

    def __init__(self, model, tokenizer, cache=None, batch_size: int = 8, max_length: int | None = 512,
                 progress: bool | None = None):
        adapter_for(model)
        self.model = model
        self.tokenizer = tokenizer
        self.cache = cache
        self.batch_size = batch_size
        self.max_length = max_length
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.stats = {"hits": 0, "computed": 0}
        self._uses_token_types = adapter_for(model).uses_token_type_ids and \
            getattr(model.config, "type_vocab_size", 1) > 1

    # ------------------------------------------------------------------------------ tokenizing
    def encode(self, example: Example) -> Encoded:
        enc = self.tokenizer(example.text, example.text_pair, truncation=self.max_length is not None,
                             max_length=self.max_length, return_special_tokens_mask=True,
                             return_token_type_ids=True)
        ids = list(enc["input_ids"])
        if not ids:
            raise ValueError(f"example {example.id!r} tokenizes to nothing")
        return Encoded(example, ids, list(enc.get("token_type_ids") or [0] * len(ids)),
                       list(enc["special_tokens_mask"]), self.tokenizer.convert_ids_to_tokens(ids))

    def collate(self, encoded: list[Encoded]) -> dict:
        """Right-padded model inputs on the model's device."""
        device = model_device(self.model)
        n = max(e.length for e in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(encoded), n), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), n), dtype=torch.long)
        types = torch.zeros((len(encoded), n), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, : e.length] = torch.tensor(e.input_ids)
            mask[row, : e.length] = 1
            types[row, : e.length] = torch.tensor(e.token_type_ids)
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if self._uses_token_types:
            inputs["token_type_ids"] = types.to(device)
        return inputs

    # ------------------------------------------------------------------------------ keys
    def key(self, enc: Encoded, method: str, params: dict, target_spec, unit=None) -> str:
        payload = {
            "model": fingerprint(self.model),
            "tokenizer": tokenizer_fingerprint(self.tokenizer),
            "input_ids": enc.input_ids,
            "token_type_ids": enc.token_type_ids if self._uses_token_types else None,
            "target": target_spec,
            "method": method,
            "params": {k: v for k, v in sorted(params.items()) if k not in VOLATILE_PARAMS},
            "unit": unit,
            "format": FORMAT_VERSION,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    # ------------------------------------------------------------------------------ main entry
    def attribute(self, examples: Iterable, method: str = "attattr", target=None,
                  batch_size: int | None = None, **params) -> list[Attribution]:
        impl = method_registry.get(method)
        impl.check_model(self.model)
        params = impl.params(**params)
        examples = [Example.coerce(e) for e in examples]
        encoded = [self.encode(e) for e in examples]
        specs = [resolve_target_spec(target, e, i) for i, e in enumerate(examples)] if impl.needs_target(params) \
            else [None] * len(examples)
        units = impl.units(self.model, params)
        unit_list = units if units is not None else [None]

        results: list[Attribution | None] = [None] * len(examples)
        pending: dict[int, list] = {}
        for i, enc in enumerate(encoded):
            missing = self._lookup(i, enc, impl, params, specs[i], unit_list, results)
            if missing:
                pending[i] = missing

        order = sorted(pending, key=lambda i: encoded[i].length)
        batch_size = batch_size or self.batch_size
        bar = _progress(len(examples), self.progress, f"{method}")
        bar.update(len(examples) - len(pending))
        position = 0
        while position < len(order):
            chunk = order[position: position + batch_size]
            try:
                self._compute_batch(chunk, encoded, impl, params, specs, pending, results)
            except RuntimeError as err:
                if not _is_oom(err) or batch_size == 1 and not params.get("internal_batch_size", 2) > 1:
                    raise
                torch.cuda.empty_cache() if torch.cuda.is_available() else None
                if batch_size > 1:
                    batch_size = max(1, batch_size // 2)
                elif "internal_batch_size" in params:
                    current = params["internal_batch_size"] or 64
                    params = dict(params, internal_batch_size=max(1, current // 2))
                continue
            position += len(chunk)
            bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------------------ internals
    def _lookup(self, i, enc, impl, params, spec, unit_list, results):
        """Fill results[i] from the cache if every unit is there; return the missing units."""
        if self.cache is None:
            return list(unit_list)
        found, missing, meta = [], [], None
        for unit in unit_list:
            hit = self.cache.get(self.key(enc, impl.name, params, spec, unit))
            if hit is None:
                missing.append(unit)
            else:
                found.append(hit[0])
                meta = hit[1]
        if missing:
            return missing
        scores = found[0] if unit_list == [None] else torch.cat(found, dim=0)
        results[i] = self._build(enc, impl, params, scores, meta["target"], meta["predicted"], meta["probs"])
        self.stats["hits"] += 1
        return []

    def _compute_batch(self, chunk, encoded, impl, params, specs, pending, results):
        encs = [encoded[i] for i in chunk]
        inputs = self.collate(encs)
        with torch.no_grad():
            logits = self.model(**inputs).logits.float()
        predicted = logits.argmax(-1)
        targets = torch.tensor([predicted[r].item() if specs[i] == "pred" else (specs[i] if specs[i] is not None else -1)
                                for r, i in enumerate(chunk)], device=logits.device)
        num_classes = logits.shape[-1]
        bad = [(i, int(t)) for i, t in zip(chunk, targets.tolist()) if specs[i] is not None and not 0 <= t < num_classes]
        if bad:
            raise ValueError(f"target class {bad[0][1]} out of range for a {num_classes}-class model")
        batch = Batch(inputs=inputs, lengths=[e.length for e in encs],
                      targets=targets if impl.needs_target(params) else None, logits=logits,
                      labels=[e.example.label for e in encs])
        units = sorted({u for i in chunk for u in pending[i]}, key=lambda u: (u is None, u))
        payloads = impl.compute(self.model, batch, units=None if units == [None] else units, **params)
        probs = torch.softmax(logits, -1)
        for r, i in enumerate(chunk):
            target = int(targets[r]) if specs[i] is not None else None
            meta = {"target": target, "predicted": int(predicted[r]), "probs": probs[r].tolist()}
            scores = payloads[r].detach()
            if self.cache is not None:
                for pos, unit in enumerate(units):
                    part = scores if unit is None else scores[pos: pos + 1]
                    self.cache.put(self.key(encoded[i], impl.name, params, specs[i], unit), part, meta)
            if units != [None] and len(units) != len(impl.units(self.model, params)):
                # Some units came from the cache: reassemble the full payload in unit order.
                self._lookup(i, encoded[i], impl, params, specs[i], impl.units(self.model, params), results)
                if results[i] is None:
                    raise RuntimeError("cache did not return the units just written")
                continue
            results[i] = self._build(encoded[i], impl, params, scores, target, meta["predicted"], meta["probs"])
            self.stats["computed"] += 1

    def _build(self, enc: Encoded, impl, params, scores, target, predicted, probs) -> Attribution:
        public = {k: v for k, v in params.items()}
        public["_pool_position"] = pool_position(self.model)
        return Attribution(
            tokens=enc.tokens, input_ids=enc.input_ids, scores=scores, kind=impl.kind, method=impl.name,
            params=public, target=target, predicted=predicted, probs=probs, label=enc.example.label,
            text=enc.example.text, text_pair=enc.example.text_pair, example_id=enc.example.id,
            segment_ids=enc.token_type_ids or [], special_tokens_mask=enc.special_tokens_mask,
        )


class _NullBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool, desc: str):
    if not enabled or total == 0:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ex")
