#!/usr/bin/env python
"""Re-create the committed planted-structure model the tests load (``tests/assets/planted``).

The planted model (label = 1 iff "alpha" comes before "beta"; see ``attrtools.testing``) is trained
once and its weights are committed, because training numerics differ between machines and thread
counts: a model retrained on CI's machine can learn the rule through other heads, and tests that
check *where* the rule lives (trees, triggers) would then see another model. The test suite checks
that this script still trains a model that learns the rule (``tests/test_planted_asset.py``).

    python scripts/make_planted_model.py --output-dir tests/assets/planted
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", required=True, help="folder to write the model and tokenizer to")
    parser.add_argument("--steps", type=int, default=700, help="training steps (default: 700)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0, the committed model's)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from attrtools.testing import train_planted_model

    directory, accuracy = train_planted_model(args.output_dir, steps=args.steps, seed=args.seed)
    for name in os.listdir(directory):  # shareable files, whatever the writer's temporary mode
        os.chmod(os.path.join(directory, name), 0o644)
    print(f"planted model in {directory}: held-out accuracy {accuracy:.4f}")
    return 0 if accuracy > 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
