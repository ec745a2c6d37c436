"""The old import path of the evaluation's pipeline (``from attrtools.evaluate.run import
evaluate_methods``, as users wrote it): the code is in :mod:`attrtools.evaluate.pipeline`."""
from .pipeline import RANDOM, Evaluation, MethodResult, evaluate_methods, random_scores, run

__all__ = ["RANDOM", "Evaluation", "MethodResult", "evaluate_methods", "random_scores", "run"]
