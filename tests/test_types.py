"""Core value types (``attrtools.types``): what an ``Attribution`` shows of itself."""
import attrtools


def test_attribution_repr_is_one_line_without_the_scores(planted):
    """``print(result)`` dumped the whole scores tensor (the dataclass repr)."""
    model, tok = planted
    [a] = attrtools.attribute(model, tok, ["alpha the movie beta"], method="attattr", steps=2)
    text = repr(a)
    assert "\n" not in text and "tensor" not in text and len(text) < 300, text
    assert text.startswith("Attribution(method='attattr'")
    assert f"target={a.target}" in text and f"shape={tuple(a.scores.shape)}" in text
    assert f"tokens={a.n_tokens}" in text
    gap = a.completeness["worst_relative_gap"]
    assert f"completeness_gap={gap:.3g}" in text
    results = attrtools.attribute(model, tok, ["alpha the movie beta"] * 7, method="raw")
    listed = repr(results)
    assert "tensor" not in listed and listed.count("Attribution(method='raw'") == 5 and "and 2 more" in listed
    assert "completeness_gap" not in listed  # raw attention has no completeness property
