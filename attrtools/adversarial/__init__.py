"""Adversarial triggers from self-attention attribution, and robustness audits with TextAttack.

Light on purpose: nothing heavy (torch, TextAttack) is imported here.

- ``triggers``: trigger extraction (Hao et al. 2021, §6) and fixed insertion + per-class accuracy;
  works without TextAttack;
- ``textattack_compat``: lazy, offline, environment-preserving import of TextAttack 0.3.11;
- ``wrapper`` / ``transformation`` / ``search``: TextAttack ModelWrapper, TriggerInsertion
  transformation, attribution-ranked word-importance search (import TextAttack when imported);
- ``audit``: runs the attacks with ``textattack.Attacker``, writes results.csv / summary.json;
- ``report``: the HTML page; ``cli``: ``attrtools triggers`` and ``attrtools audit``.
"""
