"""Run directories that never mix runs (``attrtools.rundir``): the same run resumes (after a SIGKILL
too), another is refused or replaces it whole with ``--overwrite``, a second writer is refused, a
folder attrtools did not make is never emptied, an unwritable one fails before the model loads."""
import os

import pytest


def test_a_run_dir_holding_only_its_config_is_taken_over_by_another_run(tmp_path):
    """A run that stopped before writing any output (an option refused once the model had loaded)
    leaves only run_config.json: another configuration takes the folder without --overwrite. A
    folder with outputs is still refused."""
    import json

    from attrtools import rundir

    path = str(tmp_path / "run")
    rundir.prepare(path, "evaluate", {"operator": "mask"}).close()
    run = rundir.prepare(path, "evaluate", {"operator": "pad"})
    assert not run.resumed and json.loads(open(os.path.join(path, "run_config.json")).read())["operator"] == "pad"
    with open(os.path.join(path, "faithfulness.csv"), "w") as f:
        f.write("method\n")
    run.close()
    with pytest.raises(rundir.RunDirMismatch, match="operator"):
        rundir.prepare(path, "evaluate", {"operator": "delete"})
    assert os.path.exists(os.path.join(path, "faithfulness.csv"))
