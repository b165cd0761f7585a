"""staleness.decide: one fresh/stale decision with its reasons, shared by run, status, render, check, grade.

Results are written with the synthetic fixture (no TensorFlow), then changed the way a
user or a new labreport version would change them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


from fixtures.synthetic import make_result
from labreport import config
from labreport.grading import checks
from labreport.report import render
from labreport.results.run import Run
from labreport.results import staleness, store
from labreport.results.layout import BuildLayout
from labreport.train import runner

ROOT = Path(__file__).resolve().parents[1]

LAB = """\
[defaults]
optimizer = {{ name = "rmsprop" }}
batch_size = 64

[[experiment]]
name = "mlp-a"
part = "raw"
hidden = 16
activation = "relu"
epochs = {epochs}
dropout = {dropout}

[[experiment]]
name = "mlp-b"
from = "mlp-a"
hidden = 8
epochs = 2
dropout = 0
"""


def write_lab(tmp_path: Path, *, epochs: int = 2, dropout: float = 0.0) -> config.LabConfig:
    path = tmp_path / "experiments.toml"
    path.write_text(LAB.format(epochs=epochs, dropout=dropout))
    return config.load(path)


def store_results(lab: config.LabConfig, build: Path, **changes) -> None:
    for spec in lab.experiments:
        store.write_result(build, {**make_result(spec), **changes.get(spec.name, {})})


def reasons(decision: staleness.Staleness) -> list[tuple[str, str]]:
    return [(r.kind, r.text) for r in decision.reasons]


def test_a_result_made_with_todays_spec_data_and_engine_is_fresh(tmp_path):
    lab = write_lab(tmp_path)
    store_results(lab, tmp_path / "build")
    decisions = staleness.check_all(lab, BuildLayout(tmp_path / "build"))
    assert [(d.name, d.status, d.reasons, d.why()) for d in decisions] == [
        ("mlp-a", "fresh", (), "up to date"), ("mlp-b", "fresh", (), "up to date")]


def test_new_experiments_and_only_a_quick_result(tmp_path):
    lab = write_lab(tmp_path)
    build = tmp_path / "build"
    spec = lab.by_name("mlp-a")
    store.write_result(build, make_result(spec, quick=True), quick=True)
    full = staleness.check(spec, BuildLayout(build))
    assert full.status == "missing" and not full.out_of_date
    assert reasons(full) == [("new", "new: never run"), ("quick-only", "only a --quick smoke-run result exists")]
    assert staleness.check(spec, BuildLayout(build, quick=True)).status == "fresh"
    other = staleness.check(lab.by_name("mlp-b"), BuildLayout(build, quick=True))
    assert reasons(other) == [("new", "new: never run with --quick")]


def test_a_quick_result_moved_among_the_full_runs_is_named_so(tmp_path):
    """A --quick run folder copied into runs/ (repeat folders included) is stale, and says why."""
    lab = write_lab(tmp_path)
    build = tmp_path / "build"
    spec = lab.by_name("mlp-a")
    store.write_result(build, make_result(spec, quick=True), quick=True)
    shutil.copytree(BuildLayout(build, quick=True).result_path("mlp-a", 1).parent,
                    BuildLayout(build).result_path("mlp-a", 1).parent)
    full = staleness.check(spec, BuildLayout(build))
    assert full.status == "stale"
    assert reasons(full) == [("key", "a --quick smoke-run result stored among the full runs")]


def test_a_spec_change_names_the_keys_and_their_old_and_new_values(tmp_path):
    build = tmp_path / "build"
    store_results(write_lab(tmp_path), build)
    changed = write_lab(tmp_path, epochs=5, dropout=0.5)
    a, b = staleness.check_all(changed, BuildLayout(build))
    assert a.status == "stale" and a.out_of_date
    assert reasons(a) == [("spec", "spec changed: dropout 0.0 -> 0.5, epochs 2 -> 5")]
    assert b.fresh  # mlp-b sets its own epochs and dropout


def made_by_engine_0(spec) -> dict:
    """A result as an older engine version ("0") stored it."""
    old = make_result(spec)
    old["versions"] = {**old["versions"], "engine": "0"}
    old["cache_key"] = spec.cache_key(data_sha256=staleness.data_sha256("mnist"), engine_version="0")
    return old


def test_an_engine_version_change_is_a_reason(tmp_path):
    spec = write_lab(tmp_path).by_name("mlp-a")
    decision = staleness.decide(spec, made_by_engine_0(spec))
    assert decision.status == "stale" and decision.out_of_date
    assert reasons(decision) == [("engine", f"engine version changed: 0 -> {staleness.engine_version(spec)}")]


def test_a_data_change_is_a_reason(tmp_path):
    lab = write_lab(tmp_path)
    spec = lab.by_name("mlp-a")
    old = make_result(spec)
    old["data"] = {**old["data"], "sha256": "ab" * 32}
    old["cache_key"] = spec.cache_key(data_sha256="ab" * 32, engine_version=staleness.engine_version(spec))
    decision = staleness.decide(spec, old)
    assert [r.kind for r in decision.reasons] == ["data"]
    assert decision.why().startswith("data changed: mnist sha256 abababababab... -> ")


def test_a_key_no_component_explains_is_still_stale(tmp_path):
    spec = write_lab(tmp_path).by_name("mlp-a")
    foreign = {**make_result(spec), "cache_key": "0" * 64}
    decision = staleness.decide(spec, foreign)
    assert decision.status == "stale" and [r.kind for r in decision.reasons] == ["key"]


def test_failed_last_time_and_unreadable(tmp_path):
    lab = write_lab(tmp_path)
    build = tmp_path / "build"
    store_results(lab, build, **{"mlp-a": {"status": "failed", "error": "RuntimeError: out of cheese\nmore"}})
    path = BuildLayout(build).result_path("mlp-b")
    path.write_text(path.read_text()[:50])
    a, b = staleness.check_all(lab, BuildLayout(build))
    assert (a.status, reasons(a)) == ("failed", [("failed", "failed last time: RuntimeError: out of cheese")])
    assert not a.out_of_date  # same settings: the report says FAILED, not OUT OF DATE
    assert (b.status, [r.kind for r in b.reasons]) == ("stale", ["unreadable"])


def test_run_check_grade_and_the_report_agree(tmp_path):
    """The statuses the runner plans, check counts and the report marks all come from decide()."""
    build = tmp_path / "build"
    store_results(write_lab(tmp_path), build)
    lab = write_lab(tmp_path, epochs=5)
    decided = {d.name: d.status for d in staleness.check_all(lab, BuildLayout(build))}
    assert decided == {"mlp-a": "stale", "mlp-b": "fresh"}
    assert {e.spec.name: e.status for e in runner.plan(lab, build, quick=False)} == decided
    check = next(c for c in checks.evaluate(lab, build) if c.rule.startswith("every experiment"))
    assert (check.ok, check.detail) == (False, "not run or out of date: mlp-a")
    runs = [Run(s, store.read_result(build, s.name)) for s in lab.experiments]
    document = render.results_document(lab, runs, quick=False)
    assert {e["name"]: e["stale"] for e in document["experiments"]} == {"mlp-a": True, "mlp-b": False}


def test_the_report_marks_an_engine_version_change_out_of_date(tmp_path):
    """Before: render compared the spec alone, so a result of an older engine looked current."""
    lab = write_lab(tmp_path)
    spec = lab.by_name("mlp-a")
    document = render.results_document(lab, [Run(spec, made_by_engine_0(spec))], quick=False)
    assert document["experiments"][0]["stale"] is True


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labreport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)


def test_status_and_dry_run_print_the_reasons(tmp_path):
    build = tmp_path / "build"
    store_results(write_lab(tmp_path), build)
    write_lab(tmp_path, epochs=5)
    status = cli("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        "stale    mlp-a  spec changed: epochs 2 -> 5",
        "fresh    mlp-b  up to date",
        "1 up to date, 1 to train",
    ]
    dry = cli("run", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["stale    mlp-a  spec changed: epochs 2 -> 5", "1 up to date, 1 would be trained"]
    assert json.loads(BuildLayout(build).result_path("mlp-a").read_text())["spec"]["epochs"] == 2  # nothing ran


CONV_LAB = LAB + """
[[experiment]]
name = "cnn-a"
part = "cnn"
conv = [{{ filters = 4, kernel = 3 }}]
hidden = 8
activation = "relu"
epochs = 2
"""


def test_conv_results_of_the_fused_bias_gradient_engine_are_retrained_mlps_are_not(tmp_path):
    # Engine "1" (before models.conv_layer) stored every result; only the CNNs' numbers changed.
    (tmp_path / "experiments.toml").write_text(CONV_LAB.format(epochs=2, dropout=0.0))
    lab = config.load(tmp_path / "experiments.toml")
    for spec in lab.experiments:
        old = make_result(spec)
        old["versions"] = {**old["versions"], "engine": "1"}
        old["cache_key"] = spec.cache_key(data_sha256=staleness.data_sha256(spec.dataset), engine_version="1")
        store.write_result(tmp_path / "build", old)
    decisions = {d.name: d for d in staleness.check_all(lab, BuildLayout(tmp_path / "build"))}
    assert decisions["mlp-a"].fresh and decisions["mlp-b"].fresh
    assert reasons(decisions["cnn-a"]) == [("engine", "engine version changed: 1 -> 1+conv3")]
