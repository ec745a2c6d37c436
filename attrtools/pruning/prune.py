"""Physical head pruning and pruned checkpoints: the code lives in the core module
``attrtools.pruned`` (``attrtools.load_model`` reloads pruned folders for every tool). This name is
the same module object, kept for the pruning planner and older imports (so patching one patches
the other)."""
import sys

from .. import pruned as _pruned

sys.modules[__name__] = _pruned
