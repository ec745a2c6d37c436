#!/usr/bin/env python
"""Robustness audit (thin wrapper over ``attrtools audit``): attribution triggers + offline TextAttack
recipes. Example:

    python scripts/robustness_audit.py --model models/minilm-sst2 \
        --dataset sst2/dev.tsv --train-dataset sst2/train.tsv \
        --num-examples 100 --output-dir runs/adversarial/sst2
"""
import sys

from attrtools.adversarial.cli import audit

if __name__ == "__main__":
    sys.exit(audit(prog_name="robustness_audit.py"))
