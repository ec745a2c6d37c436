"""The seed papers' headline claims, their published numbers, and the one verdict rule (torch-free).

Each :class:`Claim` names the paper, where the number is printed (table / figure / section), the
protocol, and how a measurement is compared with it. :func:`verdict` is the only place a claim is
judged ``reproduced`` / ``weaker`` / ``not reproduced`` (or ``not run`` when nothing was measured:
never a guessed number). ``scripts/reproduce.py`` (``attrtools.commands.reproduce``) fills the
measurements.

Published numbers: the papers' texts (arXiv 2004.11207 AttAttr, 2204.11073 Grad-SAM, 2012.09838
Chefer, 2205.03286 GlobEnc, 2305.02881 DecompX), as recorded with their provenance in the
project's research notes (METHODS.md: "verified" rows only carry numbers; the rest are orderings).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

VERDICTS = ("reproduced", "weaker", "not reproduced", "not run")

# Kinds of comparison:
#   "order":    ``expected`` lists keys best first; every ordered pair of the list is a sub-claim.
#   "at_least": measured >= published - tolerance; weaker above ``floor``; else not reproduced.
#   "at_most":  measured <= published + tolerance; weaker up to ``ceiling``; else not reproduced.
KINDS = ("order", "at_least", "at_most")


@dataclass(frozen=True)
class Claim:
    """One published claim.

    ``key``: short id (CSV column ``claim``); ``paper`` / ``source``: citation and where the number
    is printed; ``statement``: the claim in words; ``kind``: one of :data:`KINDS`; ``published``:
    the number (``at_least``/``at_most``) or ``{key: value}`` (``order``; values may be None where
    the paper gives only a plot); ``expected``: keys best first (``order``); ``higher_is_better``
    (``order``); ``tolerance``: the paper's reported spread (or the stated allowance) in the
    number's units; ``floor`` / ``ceiling``: the bound between ``weaker`` and ``not reproduced``;
    ``tie`` (``order``): the smallest difference, in the number's units, that orders two methods
    (default 1e-3: a tenth of a point of accuracy or probability, a thousandth of a Spearman rho;
    a random tiny model's methods all sit within it); ``unit``; ``protocol``: the paper's protocol,
    and what of it is not recoverable.
    """

    key: str
    paper: str
    source: str
    statement: str
    kind: str
    published: object = None
    expected: tuple = ()
    higher_is_better: bool = True
    tolerance: float = 0.0
    floor: float | None = None
    ceiling: float | None = None
    tie: float = 1e-3
    unit: str = ""
    protocol: str = ""
    extra: dict = field(default_factory=dict)


CLAIMS = (
    Claim("attattr_pruning", "Hao et al. 2021 (AAAI), AttAttr", "Fig. 3 (§4)",
          "heads ranked by AttAttr importance can be pruned with less accuracy loss than by Taylor or "
          "attention order (mean accuracy over 0..100 % of heads pruned; random shown as a floor, not judged)",
          "order", published={"attattr": None, "taylor": None, "attention": None},
          expected=("attattr", "taylor", "attention"), unit="mean accuracy, 0–100 % pruned",
          protocol="importance from the first 200 dev examples (IG, m=20, gold-label probability, max over "
                   "the n×n map); heads masked globally 0..100 % in 10 % steps; accuracy on the dev set. "
                   "Fig. 3 is a plot: its values are not printed, so only the ordering is compared; the paper "
                   "compares AttAttr with attention and Taylor; random is the floor added here, drawn but not judged "
                   "(the paper makes no claim about it)."),
    Claim("attattr_adversarial", "Hao et al. 2021 (AAAI), AttAttr", "§6, adversarial-attack table (MNLI)",
          "inserting one of the top attribution patterns collapses a class's accuracy "
          "(MNLI entailment 82.87 % -> 0.8 %: a drop of 82.07 points)",
          "at_least", published=82.07, tolerance=10.0, floor=0.0, unit="accuracy points (largest per-class drop)",
          protocol="patterns from the first correctly classified training examples (AttAttr, m=64), every "
                   "pattern above the 0.02 threshold inserted at its relative positions and evaluated per gold "
                   "class on dev (the official run_adver_evaluate.py; the paper's table shows triggers picked "
                   "from those results): the largest drop is compared. The number is for MNLI (3 classes, "
                   "triggers in both segments), the only one recorded here; SST-2's row is not. The paper "
                   "reports no spread: the allowance of 10 points is ours."),
    Claim("attattr_tree", "Hao et al. 2021 (AAAI), AttAttr", "§5 (attribution trees)",
          "attribution trees are hierarchical: information flows through several layers (mean depth of at "
          "least 2 edges from the root)",
          "at_least", published=2.0, tolerance=0.0, floor=1.0, unit="edges (mean tree depth)",
          protocol="τ=0.4 on per-layer normalised AttAttr summed over heads, [CLS] excluded, the top token as "
                   "root. The paper's quantitative tree statistics are not recoverable as numbers from its text; "
                   "the claim compared is the qualitative one (trees deeper than one layer)."),
    Claim("attattr_cost", "Hao et al. 2021 (AAAI), AttAttr", "§3 (cost of the attribution)",
          "about one second per 128-token example (BERT-base, V100, m=20)",
          "at_most", published=1.0, tolerance=0.5, ceiling=10.0, unit="seconds per example",
          protocol="one example of 128 tokens, all layers, m=20 steps. The paper's figure is for a V100 GPU "
                   "and a 12-layer model; a CPU run or another model size is not comparable one to one."),
    Claim("gradsam_perturbation", "Barkan et al. 2021 (CIKM), Grad-SAM", "§5 (perturbation tests)",
          "Grad-SAM explains better than raw attention and rollout in the perturbation test "
          "(AOPC comprehensiveness: higher is better)",
          "order", published={"gradsam": None, "rollout": None, "raw": None},
          expected=("gradsam", "rollout", "raw"), unit="AOPC comprehensiveness",
          protocol="the paper's exact metric and numbers are not recoverable from its text (no official code); "
                   "the ordering against its attention baselines is compared with attrtools' AOPC (mask, "
                   "0..90 % of tokens)."),
    Claim("chefer_positive", "Chefer et al. 2021 (CVPR)", "Table 2 (ViT) / §4.3 (text)",
          "Chefer's relevance beats rollout and raw attention in the positive perturbation test "
          "(deletion AUC of the predicted class: lower is better)",
          "order", published={"chefer_lrp": None, "rollout": None, "raw": None},
          expected=("chefer_lrp", "rollout", "raw"), higher_is_better=False, unit="deletion AUC",
          protocol="the paper's perturbation tests are on ViT/ImageNet; its text experiment is token-F1 against "
                   "ERASER Movie Reviews rationales (human rationales needed, not recoverable on SST-2). The "
                   "perturbation protocol is applied to text here."),
    Claim("chefer_negative", "Chefer et al. 2021 (CVPR)", "Table 2 (ViT) / §4.3 (text)",
          "Chefer's relevance beats rollout and raw attention in the negative perturbation test "
          "(keeping the most relevant tokens; AOPC sufficiency: lower is better)",
          "order", published={"chefer_lrp": None, "rollout": None, "raw": None},
          expected=("chefer_lrp", "rollout", "raw"), higher_is_better=False, unit="AOPC sufficiency",
          protocol="as above; negative perturbation (least relevant removed first) measured as sufficiency."),
    Claim("globenc_spearman", "Modarressi et al. 2022 (NAACL), GlobEnc", "Table 1 / official notebook (SST-2)",
          "GlobEnc (N_Enc rollout) correlates with gradient × input saliency: Spearman 0.77 ± 0.12 (SST-2, "
          "BERT-base)",
          "at_least", published=0.77, tolerance=0.12, floor=0.0, unit="Spearman ρ",
          protocol="Spearman between the [CLS] row of the last layer's rollout and the L2-norm gradient × input "
                   "of the gold label, per example, mean over SST-2 validation (872). Here: attrtools' "
                   "grad_input of the predicted class, special tokens excluded."),
    Claim("globenc_variants", "Modarressi et al. 2022 (NAACL), GlobEnc", "Table 1 / official notebook (SST-2)",
          "the variants order N_Enc > N_Res > N > N_ResLN in Spearman with gradient × input",
          "order", published={"N_Enc": 0.77, "N_Res": 0.73, "N": 0.44, "N_ResLN": -0.21},
          expected=("N_Enc", "N_Res", "N", "N_ResLN"), unit="Spearman ρ",
          protocol="as above, one row per variant."),
    Claim("decompx_aopc", "Modarressi et al. 2023 (ACL), DecompX", "Table 1 (SST-2 AOPC)",
          "AOPC ordering DecompX > ALTI > IG > gradient × input > GlobEnc",
          "order", published={"decompx": 0.627, "alti": 0.416, "ig_embed": 0.340, "grad_input": 0.310,
                              "globenc": 0.307},
          expected=("decompx", "alti", "ig_embed", "grad_input", "globenc"), unit="AOPC",
          protocol="mask the K % most important tokens with [MASK], K = 0..90 %, drop of the predicted class's "
                   "probability averaged (BERT-base-uncased, SST-2 validation)."),
)


def claim(key: str) -> Claim:
    """The claim named ``key`` (KeyError if unknown)."""
    for c in CLAIMS:
        if c.key == key:
            return c
    raise KeyError(key)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def verdict(c: Claim, measured, context: str = "") -> tuple[str, str]:
    """Judge one claim: ``(verdict, reason)``; the only place verdicts are decided.

    Args:
        c: the :class:`Claim`.
        measured: a number (``at_least`` / ``at_most``) or ``{key: number}`` (``order``; keys not
            measured are left out of the comparison and named in the reason).
        context: the likely reason for a shortfall (model size, example counts, device), appended
            to the reason of ``weaker`` / ``not reproduced``.

    Rules: ``order``: every pair of ``expected`` (both measured) is a sub-claim; all pairs in the
    published direction by more than ``c.tie``: reproduced; more than half: weaker; else not
    reproduced; fewer than two measured keys: not run. A pair closer than ``c.tie`` is a tie, and
    ties count against the claim (values level with each other order nothing). ``at_least``: ``measured >= published - tolerance`` reproduced,
    ``> floor`` weaker, else not reproduced. ``at_most`` mirrors it with ``ceiling``. A missing or
    NaN measurement: not run. Ties count against the claim.
    """
    why = f" (likely: {context})" if context else ""
    if c.kind == "order":
        values = {k: v for k, v in (measured or {}).items() if not _missing(v)}
        keys = [k for k in c.expected if k in values]
        absent = [k for k in c.expected if k not in values]
        if len(keys) < 2:
            return "not run", "fewer than two of " + ", ".join(c.expected) + " were measured"
        pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
        sign = 1 if c.higher_is_better else -1
        good = [(a, b) for a, b in pairs if sign * (values[a] - values[b]) > c.tie]
        bad = [(f"{a} ≈ {b} (within {c.tie:g})" if abs(values[a] - values[b]) <= c.tie else
                f"{a} ≤ {b}" if c.higher_is_better else f"{a} ≥ {b}") for a, b in pairs if (a, b) not in good]
        order = (" > " if c.higher_is_better else " < ").join(sorted(keys, key=lambda k: -sign * values[k]))
        note = f"measured order {order}" + (f"; not measured: {', '.join(absent)}" if absent else "")
        if len(good) == len(pairs):
            return "reproduced", note
        label = "weaker" if len(good) * 2 > len(pairs) else "not reproduced"
        return label, f"{note}; {len(good)}/{len(pairs)} pairs as published, against: {', '.join(bad)}" + why
    if _missing(measured):
        return "not run", "nothing measured"
    value = float(measured)
    less = f" − {c.tolerance:.4g}" if c.tolerance else ""  # the bound as printed: "0.77 − 0.12", or "2"
    more = f" + {c.tolerance:.4g}" if c.tolerance else ""
    if c.kind == "at_least":
        if value >= c.published - c.tolerance:
            return "reproduced", f"{value:.4g} ≥ {c.published:.4g}{less}"
        if c.floor is not None and value > c.floor:
            return "weaker", f"{value:.4g} below {c.published:.4g}{less} but above {c.floor:.4g}" + why
        return "not reproduced", f"{value:.4g} at or below {c.floor}" + why
    if c.kind == "at_most":
        if value <= c.published + c.tolerance:
            return "reproduced", f"{value:.4g} ≤ {c.published:.4g}{more}"
        if c.ceiling is not None and value <= c.ceiling:
            return "weaker", f"{value:.4g} above {c.published:.4g}{more} but within {c.ceiling:.4g}" + why
        return "not reproduced", f"{value:.4g} above {c.ceiling}" + why
    from ..errors import ParameterError

    raise ParameterError(f"unknown claim kind {c.kind!r} (one of {', '.join(KINDS)})")
