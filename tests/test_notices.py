"""Warnings attributed to the caller's line (``attrtools.notices``), not to an attrtools or torch frame."""
import os

import pytest

import attrtools


@pytest.fixture(scope="module")
def short_bert(tmp_path_factory):
    """Tiny BERT with a 34-row position table: a long text is truncated."""
    from attrtools.testing import build_tiny_model

    return attrtools.load_model(build_tiny_model("bert", str(tmp_path_factory.mktemp("short")), max_positions=32))


def test_truncation_and_completeness_warnings_name_the_callers_line(short_bert, planted):
    """Both warnings named an engine or torch frame (``torch.no_grad``'s wrapper), not the user's call."""
    import inspect
    import warnings

    from attrtools.engine import CompletenessWarning, TruncationWarning

    long_text = " ".join(["the movie was very good and the acting was fine"] * 8)
    for (model, tok), category, text in ((short_bert, TruncationWarning, long_text),
                                         (planted, CompletenessWarning, "alpha the movie beta")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = inspect.currentframe().f_lineno + 1
            attrtools.attribute(model, tok, [text], method="attattr", steps=1)
        [w] = [w for w in caught if w.category is category] or [None]
        assert w is not None, (category, [str(c.message) for c in caught])
        assert os.path.samefile(w.filename, __file__) and w.lineno == line, (category, w.filename, w.lineno)


def test_warn_points_past_every_attrtools_frame():
    """Warnings named the engine's frame or torch's (``torch.no_grad``'s wrapper); ``warn`` now points past
    every attrtools frame, at the line that called into attrtools."""
    import warnings

    from attrtools.notices import caller_stacklevel, warn

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn("here", UserWarning)
    assert os.path.samefile(caught[0].filename, __file__)
    assert caller_stacklevel() == 2  # no attrtools frame above this test: the direct caller


def test_completeness_warning_in_reduced_precision_points_at_fp32_not_at_the_tolerance():
    """A bf16 MiniLM's AttAttr missed completeness by 9.3 %: the warning said 'pass ... tolerance=1e-4' (and
    'on example None') while the floor warning beside it said the bf16 forward stops at 1e-2. When results
    were integrated to their dtype's floor, the warning names the cause (the forward) and the way out (fp32)."""
    import types
    import warnings

    from attrtools.completeness import CompletenessWarning, GapTally, report_gaps

    tally = GapTally(0.05)
    tally.add(types.SimpleNamespace(method="attattr", example_id=None, completeness={
        "worst_relative_gap": 0.093, "worst_unit": 3, "floor": [0.01], "error_estimate": [0.005], "met": [True]}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report_gaps(tally, 0.05, {})
    (message,) = [str(w.message) for w in caught if w.category is CompletenessWarning]
    assert "load the model in fp32" in message and "tolerance=" not in message and "None" not in message
