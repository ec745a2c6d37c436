"""Faithfulness evaluation of attribution methods (``attrtools evaluate``).

``perturb`` (operators delete / [MASK] / [PAD], bin presets, ranking, batched predictor),
``metrics`` (AOPC comprehensiveness/sufficiency, deletion/insertion AUC, log-odds, accuracy@K,
Spearman), ``run`` (many methods over a dataset through the ``Engine``), ``report`` (CSV, markdown,
PNG). Light on purpose: importing this package imports no torch.
"""

PRESETS = ("eraser", "ferret", "decompx")
OPERATORS = ("delete", "mask", "pad")

__all__ = ["PRESETS", "OPERATORS"]
