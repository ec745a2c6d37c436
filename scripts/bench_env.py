"""What the benchmark scripts share: this repository first on ``sys.path`` (so a checkout runs
without installing) and an offline, quiet Hugging Face environment. A script in ``scripts/`` calls
``ROOT = bench_env.prepare()`` at its top, before it imports attrtools."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def prepare() -> str:
    """Put this repository first on ``sys.path`` and set the offline variables (``HF_HUB_OFFLINE``,
    ``HF_DATASETS_OFFLINE``, ``TOKENIZERS_PARALLELISM``) where unset; idempotent. Returns the
    repository root."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return ROOT
