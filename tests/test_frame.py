"""Results in a notebook: load_results / load_history as pandas tables, and `labreport export`.

Synthetic results of the real experiments.toml (no TensorFlow); the numbers must be the
ones the report prints (its part tables), read from the same stored results.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures.synthetic import write_results
from labreport import config
from labreport.errors import UnknownExperiment
from labreport.report.parts import part_summary
from labreport.results.run import Run
from labreport.results import frame, store

ROOT = Path(__file__).resolve().parents[1]
MISSING, FAILED, DIVERGED = "raw-sigmoid-150", "hog-tanh-p7-o8", "cnn-sigmoid-25"


@pytest.fixture(scope="module")
def lab_build(tmp_path_factory):
    build = tmp_path_factory.mktemp("frame") / "build"
    lab = config.load(ROOT / "experiments.toml")
    stored = write_results(lab, build, skip=(MISSING,), statuses={FAILED: "failed", DIVERGED: "diverged"})
    return lab, build, stored


def test_one_row_per_experiment_with_the_reports_numbers(lab_build):
    lab, build, stored = lab_build
    table = frame.load_results(lab, build)
    assert list(table["name"]) == [s.name for s in lab.experiments]
    assert list(table.index) == list(table["name"])
    runs = [Run(s, store.read_result(build, s.name)) for s in lab.experiments]
    printed = {row.name: row for part in ("raw", "hog", "cnn", "fashion")
               for row in part_summary(part, runs).rows}
    for name, row in table.iterrows():
        part_row = printed[name]
        assert row["status"] == part_row.status
        assert (row["n_params"], row["model"]) == (part_row.n_params, part_row.model)
        for column in ("test_loss", "test_accuracy", "macro_f1", "duration_s"):
            expected = getattr(part_row, column)
            assert (math.isnan(row[column]) if expected is None else row[column] == expected), (name, column)
        assert (row["best_epoch"] is pd.NA if part_row.best_epoch is None else row["best_epoch"] == part_row.best_epoch)
    ok = table.loc["raw-tanh-250"]
    assert ok["test_accuracy"] == stored["raw-tanh-250"]["metrics"]["test_accuracy"]
    assert (ok["part"], ok["chosen"], ok["hidden"], ok["activation"], ok["dropout"], ok["batch_size"]) == (
        "raw", True, "250", "tanh", 0.5, 4096)
    assert ok["optimizer"] == "rmsprop" and ok["optimizer_learning_rate"] == 0.001
    hog = table.loc["hog-sigmoid-p4-o8"]
    assert (hog["hog_pixels_per_cell"], hog["hog_orientations"], hog["n_params"]) == (4, 8, 80_610)
    assert table.loc["cnn-relu-25", "n_params"] == 7_465


def test_status_and_staleness_columns(lab_build, tmp_path):
    lab, build, _ = lab_build
    table = frame.load_results(lab, build)
    assert table.loc[MISSING, "status"] == "not run" and table.loc[MISSING, "staleness"] == "missing"
    assert math.isnan(table.loc[MISSING, "test_accuracy"])
    assert table.loc[FAILED, "status"] == "failed" and table.loc[FAILED, "staleness"] == "failed"
    assert table.loc[FAILED, "stale_reasons"].startswith("failed last time: RuntimeError")
    assert table.loc[DIVERGED, "status"] == "diverged" and table.loc[DIVERGED, "staleness"] == "fresh"
    assert set(table["staleness"]) == {"fresh", "missing", "failed"}

    changed = tmp_path / "experiments.toml"
    changed.write_text(lab.source_text.replace("epochs = 150", "epochs = 151", 1))
    after = frame.load_results(changed, build)
    stale = after[after["staleness"] == "stale"]
    assert list(stale["stale_reasons"].unique()) == ["spec changed: epochs 150 -> 151"]


def test_load_history_is_the_stored_curves(lab_build):
    lab, build, stored = lab_build
    history = frame.load_history(lab, "raw-tanh-250", build)
    curves = stored["raw-tanh-250"]["history"]
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert list(history["epoch"]) == list(range(1, len(curves["loss"]) + 1))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert history[key].tolist() == curves[key]
    diverged = frame.load_history(lab, DIVERGED, build)
    assert np.isnan(diverged["loss"].iloc[-1]) and not np.isnan(diverged["loss"].iloc[0])
    assert frame.load_history(lab, MISSING, build).empty
    with pytest.raises(UnknownExperiment, match="no experiment named 'nope'"):
        frame.load_history(lab, "nope", build)


def test_export_csv_markdown_json_carry_the_same_table(lab_build):
    lab, build, _ = lab_build
    table = frame.load_results(lab, build)
    rows = list(csv.DictReader(io.StringIO(frame.export(table, "csv"))))
    assert [r["name"] for r in rows] == list(table["name"])
    assert float(rows[2]["test_accuracy"]) == table.iloc[2]["test_accuracy"]
    records = json.loads(frame.export(table, "json"))
    assert records[2]["test_accuracy"] == table.iloc[2]["test_accuracy"]
    assert records[[r["name"] for r in records].index(MISSING)]["test_accuracy"] is None
    md = frame.export(table, "md").splitlines()
    assert len(md) == 2 + len(table) and md[0].startswith("| name | part | chosen | model |")
    assert set(md[1].replace("|", "").split()) == {"---"}
    assert all(line.count(" | ") == md[0].count(" | ") for line in md[2:])  # no stray pipes in cells


def test_import_labreport_loads_neither_pandas_nor_tensorflow_until_asked(lab_build):
    lab, build, _ = lab_build
    code = ("import sys, labreport\n"
            "assert 'pandas' not in sys.modules and 'tensorflow' not in sys.modules\n"
            f"table = labreport.load_results({str(lab.path)!r}, {str(build)!r})\n"
            "assert 'pandas' in sys.modules and 'tensorflow' not in sys.modules\n"
            "print(len(table), table.loc['cnn-relu-25', 'n_params'])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=build.parent, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["24", "7465"]


def test_export_command_writes_the_table(lab_build, tmp_path):
    lab, build, _ = lab_build
    target = tmp_path / "results.md"
    out = subprocess.run([sys.executable, "-m", "labreport", "export", "--format", "md", "-o", str(target),
                          "-c", str(lab.path), "-b", str(build)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wrote {target} (24 experiments, md)"
    assert target.read_text() == frame.export(frame.load_results(lab, build), "md")
    bad = subprocess.run([sys.executable, "-m", "labreport", "export", "--format", "xlsx"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'xlsx'" in bad.stderr


def test_part_table_has_the_reports_columns_and_rows(lab_build):
    lab, build, _ = lab_build
    table = frame.load_results(lab, build)
    hog = frame.part_table(table, "hog")
    assert list(hog.columns) == ["Experiment", "Model", "Params", "Batch", "Epochs", "Test loss", "Test acc.",
                                 "Macro F1", "Best epoch", "Time (s)"]
    assert list(hog["Experiment"]) == [s.name for s in lab.experiments if s.part == "hog"]
    assert hog.loc[1, "Model"] == "HOG p4 o8: 392-200-10, sigmoid, dropout 0.5" and hog.loc[1, "Params"] == 80_610


def test_a_table_of_rows_exports_the_csv_the_csv_module_writes():
    """What grade.to_csv writes with csv.writer, frame.records + export write byte for byte."""
    columns = ["file", "title", "authors", "problems"]
    rows = [["a.pdf", 'PW "04"', "Ada, Alan", "line one\nline two"], ["b.pdf", "", "", "x; y | z"]]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    assert frame.export(frame.records(columns, rows), "csv") == buf.getvalue()


def test_list_check_and_render_load_neither_pandas_nor_scikit_learn():
    code = ("import sys, labreport.cli, labreport.report.render, labreport.grading.checks, labreport.train.runner\n"
            "from labreport import cli\n"
            "cli.main(['list', '--params'])\n"
            "print(sorted(m for m in ('pandas', 'sklearn', 'tensorflow') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"
