"""What the input rules did during one run (``attrtools.runreport``): truncations counted in rows of
the user's data, the texts built from them apart, as each command's summary prints them."""
from helpers import run_cli as _cli
from helpers import summary_line as _line
from helpers import write_tsv as _write_tsv


def test_triggers_count_truncated_rows_not_the_texts_built_from_them(planted_dir, tmp_path):
    """``triggers --eval-dataset`` counted every distinct trigger-inserted text that was truncated,
    so one long row read as several "inputs truncated"."""
    from attrtools.testing import planted_dataset

    long_row = " ".join(["alpha the movie was fine"] * 6)
    rows = [(t, y) for t, y in planted_dataset(30, seed=11)] + [(long_row, 1)]
    data = _write_tsv(tmp_path / "d.tsv", rows)
    out = tmp_path / "run"
    result = _cli(["triggers", "--model", planted_dir, "--dataset", data, "--eval-dataset", data, "--steps", "4",
                   "--num-train-examples", "24", "--max-length", "24", "--top-k", "3", "--output-dir", out,
                   "--no-cache"])
    assert result.exit_code == 0, result.output
    assert (out / "per_class.csv").exists()
    line = _line(result.output, "inputs truncated")
    assert line.startswith("1 data row(s) longer than the max length"), line
    # the inserted texts (the long row with a trigger, truncated too) are said apart, not added to the rows
    assert "; besides, " in line and "perturbed or trigger-inserted text(s) built from the data" in line


def test_run_report_counts_rows_and_derived_inputs_apart():
    """The run report counted every truncated text alike, so one long row and the trigger-inserted or
    perturbed texts built from it read as several inputs truncated; now truncations are counted in rows of
    the user's data once the command has said which rows it read, and derived inputs apart."""
    from attrtools import runreport
    from attrtools.types import Example

    runreport.reset()
    try:
        runreport.note_truncated("x y", None, 40, 20)
        assert runreport.report()["truncated"] == 1 and runreport.report()["truncated_unit"] == "input"
        runreport.note_rows([Example("x y"), Example("short")])
        runreport.note_truncated("x y INSERTED", None, 43, 20)
        runreport.note_truncated("x y PERTURBED", None, 41, 20)
        report = runreport.report()
        assert (report["truncated"], report["truncated_unit"], report["truncated_derived"]) == (1, "row", 2)
    finally:
        runreport.reset()
