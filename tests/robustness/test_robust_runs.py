"""Faults during runs: diverging and crashing experiments, corrupt results, SIGKILL, two runs at once.

The runner gets fake trainers through its ``train=``/``load_dataset=`` seams (no TensorFlow); the
kill and lock tests run it in a child process (a small script written to tmp_path) whose trainer
blocks on a file, so the timing is decided by the test, not by sleeps.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from robust_helpers import (
    DIVERGED_ERROR,
    HERE,
    FakeTrainer,
    cli,
    isolated_env,
    render_html,
    snapshot,
    temp_files,
    tiny_dataset,
)

from labreport import config
from labreport.train import runner
from labreport.results import store

LAB = """\
[report]
title = "Faults"

[[experiment]]
name = "small"
part = "raw"
hidden = 8
activation = "relu"
batch_size = 64
epochs = 2

[[experiment]]
name = "medium"
from = "small"
hidden = 64

[[experiment]]
name = "large"
from = "small"
hidden = [256, 128]
"""


@pytest.fixture
def lab(tmp_path) -> config.LabConfig:
    path = tmp_path / "experiments.toml"
    path.write_text(LAB)
    return config.load(path)


def order(lab, build) -> list[str]:
    """The order the runner trains them in (longest first)."""
    return [t.name for t in runner.make_tasks(lab.experiments, build, quick=False, quick_cfg=None)]


def run(lab, build, trainer, **kwargs) -> runner.RunSummary:
    return runner.run(lab, build, train=trainer, load_dataset=tiny_dataset, progress=io.StringIO(), **kwargs)


def _no_nan(token: str):
    raise AssertionError(f"result.json holds {token}: not strict JSON")


def statuses(build) -> dict[str, str | None]:
    return {name: (store.read_result(build, name) or {}).get("status") for name in ("small", "medium", "large")}


# --------------------------------------------------------------------------- diverging / failing experiments


def test_a_diverging_experiment_is_stored_and_reported_as_diverged_the_others_are_fine(lab, tmp_path, figure_cache):
    build = tmp_path / "build"
    trainer = FakeTrainer({"medium": "diverge"})
    out = io.StringIO()
    summary = runner.run(lab, build, train=trainer, load_dataset=tiny_dataset, progress=out)
    assert (summary.ran, summary.diverged, summary.failed, summary.ok) == (3, 1, 0, True)
    assert f"medium  DIVERGED: {DIVERGED_ERROR}" in out.getvalue()
    assert statuses(build) == {"small": "ok", "medium": "diverged", "large": "ok"}
    stored = store.read_result(build, "medium")
    assert stored["error"] == DIVERGED_ERROR and stored["history"]["loss"] == [2.1, None]
    json.loads((store.run_dir(build, "medium") / "result.json").read_text(), parse_constant=_no_nan)  # strict JSON

    trainer.calls.clear()
    assert run(lab, build, trainer).ran == 0 and trainer.calls == []  # diverged is final (deterministic)

    html = render_html(lab, build, figure_cache).html_path.read_text(encoding="utf-8")
    assert f'<p class="failed-box">DIVERGED: {DIVERGED_ERROR}</p>' in html
    assert html.count('<span class="badge diverged">DIVERGED</span>') == 1
    assert "3 experiments in 1 part:\n      2 measured, <strong class=\"bad\">1 diverged</strong>." in html
    assert '<tr class="status-diverged"><td><a href="#exp-medium">medium</a></td><td class="bad">DIVERGED</td>' \
           f"<td>{DIVERGED_ERROR}</td></tr>" in html
    assert "badge failed" not in html and "badge notrun" not in html
    document = json.loads((build / "results.json").read_text())
    assert {e["name"]: e["status"] for e in document["experiments"]} == {
        "small": "ok", "medium": "diverged", "large": "ok"}


@pytest.mark.filterwarnings("ignore:No artists with labels found to put in legend")  # see the xfail below
def test_an_experiment_that_raises_is_failed_reported_and_retried(lab, tmp_path, figure_cache):
    build = tmp_path / "build"
    summary = run(lab, build, FakeTrainer({"large": "raise"}))
    assert (summary.ran, summary.failed, summary.names("failed")) == (3, 1, ("large",))
    error = "FloatingPointError: loss is nan in batch 3"
    assert store.read_result(build, "large")["error"] == error
    assert "Traceback" in (store.run_dir(build, "large") / "run.log").read_text()

    html = render_html(lab, build, figure_cache).html_path.read_text(encoding="utf-8")
    assert f'<p class="failed-box">FAILED: {error}</p>' in html
    assert html.count('<span class="badge failed">FAILED</span>') == 1 and "badge diverged" not in html

    again = FakeTrainer()
    assert run(lab, build, again).ran == 1 and again.calls == ["large"]  # failed is retried, the rest kept
    assert statuses(build) == {"small": "ok", "medium": "ok", "large": "ok"}


def test_raw_nan_numbers_from_a_trainer_do_not_sink_the_run(lab, tmp_path):
    build = tmp_path / "build"
    first = order(lab, build)[0]
    trainer = FakeTrainer({first: "nan"})
    summary = run(lab, build, trainer)
    assert sorted(trainer.calls) == ["large", "medium", "small"] and summary.ran == 3
    bad = store.read_result(build, first)
    assert bad["status"] in ("diverged", "failed") and bad["error"]
    assert [s for n, s in statuses(build).items() if n != first] == ["ok", "ok"]


# --------------------------------------------------------------------------- corrupt stored results


def _other_name(result: dict) -> dict:
    return {**result, "name": "small"}


CORRUPTIONS = {
    # how the stored result.json of 'medium' is damaged -> (new bytes or a function of the result, plan status)
    "half-written": (lambda text, _r: text[: len(text) // 2].encode(), "stale"),
    "empty": (lambda _t, _r: b"", "stale"),
    "binary garbage": (lambda _t, _r: b"\x00\xff\xfe\x89PNG\r\n", "stale"),
    "a JSON array": (lambda _t, _r: b"[1, 2, 3]\n", "stale"),
    "another schema": (lambda _t, r: json.dumps({**r, "schema": 99}).encode(), "stale"),
    "another experiment's result": (lambda _t, r: json.dumps(_other_name(r)).encode(), "stale"),
    "an unknown status": (lambda _t, r: json.dumps({**r, "status": "running"}).encode(), "stale"),
    "computed for other settings": (lambda _t, r: json.dumps({**r, "cache_key": "0" * 64}).encode(), "stale"),
    "a failed run": (lambda _t, r: json.dumps({**r, "status": "failed"}).encode(), "failed"),
}


@pytest.mark.parametrize("damage", list(CORRUPTIONS))
def test_a_corrupt_result_is_stale_and_only_it_is_rerun(lab, tmp_path, damage):
    build = tmp_path / "build"
    run(lab, build, FakeTrainer())
    path = store.run_dir(build, "medium") / "result.json"
    text = path.read_text()
    corrupt, expected_status = CORRUPTIONS[damage]
    path.write_bytes(corrupt(text, json.loads(text)))
    kept = {n: (store.run_dir(build, n) / "result.json").read_bytes() for n in ("small", "large")}

    assert {e.spec.name: e.status for e in runner.plan(lab, build, quick=False)} == {
        "small": "fresh", "medium": expected_status, "large": "fresh"}
    trainer = FakeTrainer()
    summary = run(lab, build, trainer)
    assert trainer.calls == ["medium"] and (summary.ran, summary.skipped) == (1, 2)
    fixed = store.read_result(build, "medium")
    assert fixed["status"] == "ok" and fixed["cache_key"] == runner.cache_key(lab.by_name("medium"))
    assert {n: (store.run_dir(build, n) / "result.json").read_bytes() for n in ("small", "large")} == kept
    assert temp_files(build) == []


def test_a_temp_file_left_by_a_write_killed_halfway_is_ignored(lab, tmp_path):
    build = tmp_path / "build"
    run(lab, build, FakeTrainer())
    folder = store.run_dir(build, "large")
    text = (folder / "result.json").read_text()
    (folder / "result.json").unlink()
    leftover = folder / ".result.json.99999.deadbeef.tmp"  # store.atomic_write's name, writer killed mid-write
    leftover.write_text(text[:200])
    assert runner.status_of(lab.by_name("large"), build, quick=False) == "missing"
    trainer = FakeTrainer()
    run(lab, build, trainer)
    assert trainer.calls == ["large"] and store.read_result(build, "large")["status"] == "ok"


# --------------------------------------------------------------------------- a child process running the runner

CHILD = """\
import sys, time
from pathlib import Path
sys.path.insert(0, {here!r})
from robust_helpers import ok_result, tiny_dataset
from labreport import config
from labreport.train import runner

cfg, build, marks, block, release = sys.argv[1:6]

def mark(text):
    with open(marks, "a") as f:
        f.write(text + "\\n")

def train(spec, dataset, **kwargs):
    mark("start " + spec.name)
    if spec.name == block:
        deadline = time.monotonic() + 60
        while not Path(release).exists():
            if time.monotonic() > deadline:
                raise SystemExit("never released")
            time.sleep(0.02)
    result = ok_result(spec, dataset, **kwargs)
    mark("end " + spec.name)
    return result

summary = runner.run(config.load(cfg), Path(build), train=train, load_dataset=tiny_dataset, progress=sys.stdout)
print("ran", summary.ran, flush=True)
"""


class Child:
    """``runner.run`` in another process; its trainer blocks on ``block`` until ``release()``."""

    def __init__(self, tmp_path: Path, block: str):
        script = tmp_path / "child_run.py"
        script.write_text(CHILD.format(here=str(HERE)))
        self.marks = tmp_path / "marks.txt"
        self.release_file = tmp_path / "release"
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "experiments.toml", "build", str(self.marks), block, str(self.release_file)],
            cwd=tmp_path, env=isolated_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def lines(self) -> list[str]:
        return self.marks.read_text().splitlines() if self.marks.exists() else []

    def wait_for(self, line: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.lines():
            if self.proc.poll() is not None:
                raise AssertionError(f"child exited early: {self.proc.communicate()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"child never reached {line!r}: {self.lines()}")
            time.sleep(0.02)

    def release(self) -> None:
        self.release_file.touch()

    def stop(self) -> None:
        """Cleanup: never leave our child behind (killed by its own pid)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def child_factory(tmp_path):
    children: list[Child] = []

    def start(block: str) -> Child:
        (tmp_path / "experiments.toml").write_text(LAB)
        children.append(Child(tmp_path, block))
        return children[-1]

    yield start
    for child in children:
        child.stop()


def test_sigkill_mid_experiment_then_rerun_keeps_the_finished_result_and_completes(lab, tmp_path, child_factory):
    build = tmp_path / "build"
    first, second, third = order(lab, build)
    child = child_factory(block=second)
    child.wait_for(f"start {second}")
    child.proc.send_signal(signal.SIGKILL)
    assert child.proc.wait(timeout=30) == -signal.SIGKILL
    killed_pid = child.proc.pid

    # What the kill left: the first result whole, the second only a partial log, nothing of the third.
    assert child.lines() == [f"start {first}", f"end {first}", f"start {second}"]
    kept = (store.run_dir(build, first) / "result.json").read_bytes()
    assert store.read_result(build, first)["status"] == "ok"
    assert sorted(p.name for p in store.run_dir(build, second).iterdir()) == ["run.log"]
    assert not store.run_dir(build, third).exists()
    assert {e.spec.name: e.status for e in runner.plan(lab, build, quick=False)} == {
        first: "fresh", second: "missing", third: "missing"}
    assert (build / ".lock").read_text() == str(killed_pid)  # a dead holder's lock does not block

    trainer = FakeTrainer()
    summary = run(lab, build, trainer)
    assert trainer.calls == [second, third] and (summary.ran, summary.skipped) == (2, 1)
    assert (store.run_dir(build, first) / "result.json").read_bytes() == kept  # not retrained, not rewritten
    assert statuses(build) == {"small": "ok", "medium": "ok", "large": "ok"}
    for name in (first, second, third):
        assert sorted(p.name for p in store.run_dir(build, name).iterdir()) == ["history.csv", "result.json", "run.log"]
    assert f"pid {killed_pid}" not in (store.run_dir(build, second) / "run.log").read_text()
    assert sorted(p.name for p in store.runs_dir(build).iterdir()) == ["large", "medium", "small"]
    assert temp_files(build) == []


def test_a_second_run_on_a_busy_build_is_refused_and_writes_nothing(lab, tmp_path, child_factory):
    build = tmp_path / "build"
    first = order(lab, build)[0]
    child = child_factory(block=first)
    child.wait_for(f"start {first}")
    before = snapshot(build)

    out = cli("run", "-c", "experiments.toml", "-b", "build", cwd=tmp_path)
    assert (out.returncode, out.stdout) == (3, "")
    assert out.stderr == (f"labreport: build/ is in use by another labreport process (pid {child.proc.pid});"
                          " wait for it to finish or stop it\n")
    trainer = FakeTrainer()
    with pytest.raises(store.BuildLocked, match=rf"in use by another labreport process \(pid {child.proc.pid}\)"):
        run(lab, build, trainer)
    assert trainer.calls == [] and snapshot(build) == before

    child.release()
    stdout, stderr = child.proc.communicate(timeout=30)
    assert child.proc.returncode == 0, stderr
    assert "ran 3" in stdout
    assert sorted(child.lines()) == sorted(f"{w} {n}" for n in ("small", "medium", "large") for w in ("start", "end"))
    assert statuses(build) == {"small": "ok", "medium": "ok", "large": "ok"}
    assert run(lab, build, trainer).ran == 0  # the lock is free again, everything fresh


def test_clean_all_is_refused_while_a_run_holds_the_build(lab, tmp_path, child_factory):
    build = tmp_path / "build"
    first, second, _ = order(lab, build)
    child = child_factory(block=second)
    child.wait_for(f"start {second}")
    before = snapshot(build)
    try:
        out = cli("clean", "--all", "-c", "experiments.toml", "-b", "build", cwd=tmp_path)
        after = snapshot(build)
    finally:
        child.release()
    assert out.returncode == 3 and "in use by another labreport process" in out.stderr
    assert after == before


@pytest.mark.filterwarnings("ignore:No artists with labels found to put in legend")
def test_a_run_that_failed_before_its_first_epoch_shows_no_empty_curves(lab, tmp_path, figure_cache):
    build = tmp_path / "build"
    run(lab, build, FakeTrainer({"large": "raise"}))
    html = render_html(lab, build, figure_cache).html_path.read_text(encoding="utf-8")
    card = html.split('id="exp-large"', 1)[1].split("</article>", 1)[0]
    assert "Epochs run</th><td>0 of 2" in card
    assert 'class="fig curves"' not in card


# --------------------------------------------------------------------------- with the real engine

DIVERGING_LAB = """\
[[experiment]]
name = "calm"
part = "raw"
hidden = 8
activation = "relu"
batch_size = 20
epochs = 1

[[experiment]]
name = "boom"
part = "raw"
hidden = [64, 64]
activation = "linear"
batch_size = 8
epochs = 3
optimizer = { name = "sgd", learning_rate = 10.0 }
"""


@pytest.mark.slow
@pytest.mark.tf
def test_real_engine_stores_a_nan_loss_as_diverged_and_the_report_says_so(tmp_path, figure_cache):
    path = tmp_path / "experiments.toml"
    path.write_text(DIVERGING_LAB)
    lab = config.load(path)
    build = tmp_path / "build"
    summary = runner.run(lab, build, load_dataset=tiny_dataset, progress=io.StringIO())  # train=None: TensorFlow
    assert (summary.ran, summary.diverged, summary.failed) == (2, 1, 0)
    boom = store.read_result(build, "boom")
    assert boom["status"] == "diverged" and store.read_result(build, "calm")["status"] == "ok"
    assert boom["error"].startswith("the training loss became NaN or infinite at epoch ")
    assert None in boom["history"]["loss"]
    json.loads((store.run_dir(build, "boom") / "result.json").read_text(), parse_constant=_no_nan)
    html = render_html(lab, build, figure_cache).html_path.read_text(encoding="utf-8")
    assert f'<p class="failed-box">DIVERGED: {boom["error"]}</p>' in html
