"""The model's state, one rule: what attrtools does with a model as the user hands it over.

Users hand over the model the way they train or serve it: left in train mode (dropout on), with
gradient checkpointing switched on, or wrapped by ``torch.compile``. The rule, applied by the
engine around every computation (``Engine.attribute``, ``Engine.stream``, ``Engine.logits``) and by
the tools' own forwards (pruning's Taylor gradients and masked evaluation, the evaluation's
predictor):

- **compiled modules are unwrapped** (:func:`unwrap_compiled`): a ``torch.compile``'d model is an
  ``OptimizedModule`` whose ``_orig_mod`` is the user's module, sharing its parameters. Capture
  installs forward hooks and an attention function by module path, which the compiled graph
  bypasses or renames (``_orig_mod.`` prefixes), so attributions always run on ``_orig_mod``:
  the same weights, the same numbers as the plain model, eager.
- **eval mode, checkpointing off, the caller's state restored** (:func:`inference_state`): every
  submodule's ``training`` flag and every ``gradient_checkpointing`` flag (transformers sets one
  per checkpointed layer) is saved, the model is switched to eval with checkpointing off for the
  computation, and every flag is put back afterwards (also when the computation raises).

Why run in eval mode rather than refuse a train-mode model: an attribution explains the
classifier's *function*, and dropout makes that function random (two identical calls differed by
up to 1.1 in raw attention on a tiny BERT), so a train-mode result is never what a user wants and
could not be cached (the cache key would need the random state). Switching to eval is what every
neighbouring tool's documentation tells users to do by hand (Captum, inseq call ``model.eval()``),
and restoring the flags afterwards leaves a training loop that attributes between steps intact.
Because every engine computation runs in eval mode, the cache only ever holds eval-mode results:
a train-mode call and its eval-mode twin share cache entries and give the same numbers, and no
dropout result can be served after ``model.eval()``. Checkpointing is switched off because it only
re-runs the forward during backward (no change in value) and, on decoders in train mode, raises
torch's ``CheckpointError`` when capture's hooks record a tensor in the first run but not in the
recomputation.

Operations that replace parameter tensors (``prune_heads``) follow one rule for the user's
optimizer (``replace_in_optimizer``): updated in place when given, else a warning naming the
replaced parameters.
"""
from __future__ import annotations

import contextlib

from torch import nn


def unwrap_compiled(model):
    """The user's module under any number of ``torch.compile`` wrappers (``OptimizedModule`` and
    its ``_orig_mod``); any other object is returned as it is. The unwrapped module shares every
    parameter with the compiled one, so fingerprints, pruning and results are those of the model
    the user compiled."""
    seen = 0
    while _is_compiled(model):
        inner = getattr(model, "_orig_mod", None)
        if inner is None or seen > 8:  # pragma: no cover - a wrapper torch does not make
            from .errors import UnsupportedModelError

            raise UnsupportedModelError(
                f"{type(model).__name__}: a torch.compile'd model without its original module (_orig_mod); "
                "pass the model before compiling it")
        model, seen = inner, seen + 1
    return model


def _is_compiled(model) -> bool:
    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except ImportError:  # pragma: no cover - a torch without dynamo
        return False
    return isinstance(model, OptimizedModule)


def checkpointing_modules(model: nn.Module) -> list[nn.Module]:
    """The submodules of ``model`` (itself included) whose ``gradient_checkpointing`` flag is on
    (transformers puts the flag on each checkpointed layer and on the layer stack)."""
    return [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]


@contextlib.contextmanager
def inference_state(model: nn.Module):
    """For the block: ``model`` in eval mode with gradient checkpointing off; afterwards every
    submodule's ``training`` flag and ``gradient_checkpointing`` flag is what it was before
    (restored also when the block raises). Nesting is safe (the inner block restores eval).

    Yields the model. Parameters, their ``requires_grad`` and the optimizer are not touched."""
    modes = [(m, m.training) for m in model.modules()]
    checkpointed = checkpointing_modules(model)
    try:
        for m in checkpointed:
            m.gradient_checkpointing = False
        model.eval()
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for m in checkpointed:
            m.gradient_checkpointing = True


# ------------------------------------------------------------------ parameters replaced under an optimizer
class ParametersReplacedWarning(UserWarning):
    """An operation replaced parameters of a model (``prune_heads``) and no optimizer was given to
    update: an optimizer built before it holds the old tensors and would not train the new ones."""


def parameter_snapshot(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{name: Parameter}`` of ``model`` (tied copies under each name), taken before an operation
    that may replace parameters (``replace_in_optimizer`` compares against it)."""
    return dict(model.named_parameters(remove_duplicate=False))


def replace_in_optimizer(before: dict, model: nn.Module, optimizer=None, operation: str = "this operation") -> dict:
    """After an operation that replaced parameter objects of ``model`` (``before`` from
    ``parameter_snapshot``): ``{name: (old, new)}`` of every replaced parameter, with the one rule
    for the user's optimizer applied:

    - ``optimizer`` given (a ``torch.optim.Optimizer``): updated in place: each old parameter in its
      ``param_groups`` is replaced by the new one at the same place, and the old one's state
      (Adam moments: shaped like the old tensor, so meaningless for the sliced one) is dropped, so
      the optimizer starts the new parameter afresh on its next step. Parameters that vanished
      (no new object under the name) are removed from the groups.
    - ``optimizer=None``: a ``ParametersReplacedWarning`` naming the replaced parameters (an
      optimizer built before would silently stop training them: build it after, or pass it);
    - ``optimizer=False``: the caller states that no optimizer holds the model (internal use).
    """
    after = dict(model.named_parameters(remove_duplicate=False))
    replaced = {name: (old, after.get(name)) for name, old in before.items() if after.get(name) is not old}
    if not replaced:
        return replaced
    if optimizer is None:
        from .notices import warn

        names = sorted(replaced)
        shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        warn(f"{operation} replaced {len(names)} parameter tensor(s) of the model ({shown}): an optimizer built "
             "before it still holds the old tensors and will not train the new ones. Build the optimizer "
             f"after {operation}, or pass it (optimizer=...) to have it updated", ParametersReplacedWarning)
    elif optimizer is not False:
        swap = {id(old): new for old, new in replaced.values()}
        for group in optimizer.param_groups:
            params = []
            for p in group["params"]:
                if id(p) in swap:
                    optimizer.state.pop(p, None)
                    if swap[id(p)] is not None:
                        params.append(swap[id(p)])
                else:
                    params.append(p)
            group["params"] = params
    return replaced


__all__ = ["ParametersReplacedWarning", "checkpointing_modules", "inference_state",
           "parameter_snapshot", "replace_in_optimizer", "unwrap_compiled"]
