#!/usr/bin/env python
"""Build AttAttr attribution trees for texts or a dataset (thin wrapper of ``attrtools tree``).

Example (SST-2 dev, the fine-tuned MiniLM):

    nice -n 10 python scripts/build_trees.py --model models/minilm-sst2 \
        --dataset sst2/dev.tsv --limit 200 --output-dir runs/tree/sst2-dev200
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from attrtools.tree.cli import tree  # noqa: E402

if __name__ == "__main__":
    tree(prog_name="build_trees.py")
