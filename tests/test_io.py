"""Atomic file writes (``attrtools.io``) that leave the file with the mode the umask gives."""
import os
import stat

import pytest

import attrtools


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask(tmp_path, umask, planted):
    """Every output was written with mode 0600 whatever the umask (the atomic writer's temporary file kept its
    mode); now outputs get the mode a plain open() gives under the umask."""
    from attrtools.io import write_json, write_text

    old = os.umask(umask)
    try:
        write_text(str(tmp_path / "report.html"), "<html></html>")
        write_json(str(tmp_path / "summary.json"), {"a": 1})
        model, tok = planted
        (att,) = attrtools.attribute(model, tok, ["alpha the beta"], method="raw")
        att.save(str(tmp_path / "a.safetensors"))
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for name in ("report.html", "summary.json", "a.safetensors", "plain.txt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expected, name
