#!/usr/bin/env python
"""Reproduce the seed papers' headline experiments on one classifier (thin wrapper of
``attrtools.commands.reproduce``; docs/reproduce.md). Offline example (the fine-tuned MiniLM):

    nice -n 10 python scripts/reproduce.py --model models/minilm-sst2 \
        --dataset sst2/dev.tsv --train-dataset sst2/train.tsv --output-dir runs/reproduce/minilm-sst2

``--preset paper`` runs the papers' full protocols (GPU advised).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from attrtools.commands.reproduce import main  # noqa: E402

if __name__ == "__main__":
    main(prog_name="reproduce.py")
