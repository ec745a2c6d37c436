"""What the benchmark scripts share: this repository first on ``sys.path`` (so a checkout runs
without installing) and an offline, quiet Hugging Face environment. Imported for its effect:
``from bench_env import ROOT`` at the top of a script in ``scripts/``."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
