#!/usr/bin/env python
"""Head-pruning planner (thin wrapper around ``attrtools prune``; same options, same function).

Example (the official AttAttr protocol on SST-2: importance from the first 200 dev examples,
curve on the full dev set):

    nice -n 10 python scripts/prune_model.py --model models/minilm-sst2 \
        --dataset sst2/dev.tsv --output-dir runs/pruning/minilm-sst2
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from attrtools.pruning.cli import prune  # noqa: E402

if __name__ == "__main__":
    prune(prog_name="prune_model.py")
