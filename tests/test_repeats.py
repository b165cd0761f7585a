"""Repeats (issue U item 1, the run side): ``repeats = N`` trains N runs of an experiment, each with
its own seed, cache key and stored result; raising N trains only the new runs, lowering it trains
nothing, and repeat 1 is exactly the experiment without repeats.

Training is the runner's ``train=`` seam (a spy, no TensorFlow), as in test_runner.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from labreport import cli, config
from labreport.config.spec import repeat_seed
from labreport.results import staleness, store
from labreport.results.layout import BuildLayout
from labreport.train import eta, runner
from test_runner import fake_train, tiny_dataset

LAB = """\
[defaults]
optimizer = {{ name = "rmsprop" }}
batch_size = 64
seed = 7
{defaults}

[[experiment]]
name = "mlp-a"
part = "raw"
hidden = 16
activation = "relu"
epochs = 2
{own}

[[experiment]]
name = "mlp-b"
from = "mlp-a"
hidden = 8
"""


def write_lab(tmp_path: Path, *, repeats: int | None = None, defaults: str = "") -> config.LabConfig:
    """mlp-a with ``repeats`` (None: the key absent), mlp-b inheriting it through ``from``."""
    own = f"repeats = {repeats}" if repeats is not None else ""
    path = tmp_path / "experiments.toml"
    path.write_text(LAB.format(own=own, defaults=defaults))
    return config.load(path)


class Spy:
    """Records (name, repeat, seed) of every run trained; raises for chosen (name, repeat)."""

    def __init__(self, fail: set[tuple[str, int]] = frozenset()):
        self.calls: list[tuple[str, int, int]] = []
        self.fail = fail

    def __call__(self, spec, dataset, **kwargs):
        self.calls.append((spec.name, spec.repeat, spec.seed))
        if (spec.name, spec.repeat) in self.fail:
            raise RuntimeError(f"boom in {spec.run_key}")
        return fake_train(spec, dataset, **kwargs)


def run(lab, build, spy=None, **kwargs):
    kwargs.setdefault("progress", io.StringIO())
    return runner.run(lab, build, train=spy or Spy(), load_dataset=tiny_dataset, names=["mlp-a"], **kwargs)


# --------------------------------------------------------------------------- the spec


def test_repeat_seed_keeps_the_seed_for_repeat_1_and_derives_distinct_stable_seeds_from_sha256():
    assert repeat_seed(7, 1) == 7
    seeds = [repeat_seed(7, r) for r in range(2, 21)]
    assert len(set(seeds) | {7}) == 20 and all(1 <= s <= 2**31 - 1 for s in seeds)
    # The documented derivation, recomputed: first 8 bytes of sha256("7/2"), into [1, 2**31 - 1].
    digest = hashlib.sha256(b"7/2").digest()
    assert seeds[0] == int.from_bytes(digest[:8], "big") % (2**31 - 1) + 1
    assert repeat_seed(8, 2) != repeat_seed(7, 2)  # another experiment seed, other runs


def test_runs_are_the_experiment_with_repeat_and_derived_seed_and_repeat_1_is_the_experiment(tmp_path):
    spec = write_lab(tmp_path, repeats=3).by_name("mlp-a")
    runs = spec.runs()
    assert [(r.repeat, r.repeats, r.seed) for r in runs] == [(1, 3, 7), (2, 3, repeat_seed(7, 2)),
                                                              (3, 3, repeat_seed(7, 3))]
    assert runs[0] == spec
    assert [r.run_key for r in runs] == ["mlp-a", "mlp-a/repeat-2", "mlp-a/repeat-3"]
    assert [r.run_label for r in runs] == ["mlp-a run 1/3", "mlp-a run 2/3", "mlp-a run 3/3"]
    assert spec.as_dict()["repeats"] == 3 and "repeats" not in spec.result_dict()
    with pytest.raises(ValueError, match="repeat 1"):
        runs[1].runs()


def test_repeats_is_inherited_from_defaults_and_through_from(tmp_path):
    lab = write_lab(tmp_path, defaults="repeats = 2")
    assert [s.repeats for s in lab.experiments] == [2, 2]
    lab = write_lab(tmp_path, repeats=4)
    assert [s.repeats for s in lab.experiments] == [4, 4]  # mlp-b: from = "mlp-a"
    assert [s.repeats for s in write_lab(tmp_path).experiments] == [1, 1]


def test_the_cache_key_of_repeat_1_is_the_key_without_repeats(tmp_path):
    without = write_lab(tmp_path).by_name("mlp-a")
    with_three = write_lab(tmp_path, repeats=3).by_name("mlp-a")
    keys = [staleness.cache_key(r) for r in with_three.runs()]
    assert keys[0] == staleness.cache_key(without)
    assert staleness.cache_key(with_three, quick=True) == staleness.cache_key(without, quick=True)
    assert len(set(keys)) == 3  # each run its own cache entry


# --------------------------------------------------------------------------- running


def test_repeats_3_trains_3_runs_with_3_seeds_stored_at_the_contract_paths(tmp_path):
    lab = write_lab(tmp_path, repeats=3)
    build = tmp_path / "build"
    spy = Spy()
    out = io.StringIO()
    summary = run(lab, build, spy, progress=out)
    assert sorted(spy.calls) == [("mlp-a", r, s.seed) for r, s in enumerate(lab.by_name("mlp-a").runs(), 1)]
    assert len({seed for _, _, seed in spy.calls}) == 3
    assert (summary.ran, summary.failed) == (3, 0)
    assert sorted(summary.names()) == ["mlp-a", "mlp-a/repeat-2", "mlp-a/repeat-3"]
    folders = {1: build / "runs" / "mlp-a", 2: build / "runs" / "mlp-a" / "repeat-2",
               3: build / "runs" / "mlp-a" / "repeat-3"}
    for repeat, folder in folders.items():
        stored = json.loads((folder / "result.json").read_text())
        assert (stored["name"], stored["repeat"], stored["status"]) == ("mlp-a", repeat, "ok")
        assert stored["cache_key"] == staleness.cache_key(lab.by_name("mlp-a").runs()[repeat - 1])
        assert stored["spec"]["seed"] == lab.by_name("mlp-a").runs()[repeat - 1].seed
        assert (folder / "history.csv").read_text().startswith("epoch,")
        assert "epoch 2/2" in (folder / "run.log").read_text()
        assert store.read_result(build, "mlp-a", repeat=repeat) == stored
    assert store.read_result(build, "mlp-a", repeat=4) is None
    text = out.getvalue()
    assert "running 3 run(s) of 1 experiment(s) with 1 job(s)" in text
    assert "mlp-a run 2/3  ok  test loss" in text and "mlp-a run 3/3  ok" in text
    assert "ran 3 run(s) in" in text
    assert "run 2/3, seed" in (folders[2] / "run.log").read_text()  # the log says which run


def test_a_result_in_another_runs_folder_is_a_miss(tmp_path):
    """A folder copied by hand (repeat-3 holding repeat 2's result) is not taken for repeat 3."""
    lab = write_lab(tmp_path, repeats=3)
    build = tmp_path / "build"
    run(lab, build)
    layout = BuildLayout(build)
    layout.result_path("mlp-a", 3).write_bytes(layout.result_path("mlp-a", 2).read_bytes())
    assert store.read_result(build, "mlp-a", repeat=3) is None
    spy = Spy()
    assert run(lab, build, spy).ran == 1 and [c[:2] for c in spy.calls] == [("mlp-a", 3)]


def test_raising_repeats_trains_only_the_new_runs_and_keeps_repeat_1_byte_for_byte(tmp_path):
    build = tmp_path / "build"
    run(write_lab(tmp_path), build)
    first = BuildLayout(build).result_path("mlp-a")
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    assert json.loads(before[0])["repeat"] == 1
    spy = Spy()
    summary = run(write_lab(tmp_path, repeats=3), build, spy)
    assert sorted(c[:2] for c in spy.calls) == [("mlp-a", 2), ("mlp-a", 3)]
    assert (summary.ran, summary.skipped) == (2, 1)
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before


def test_a_result_stored_before_repeats_existed_is_repeat_1(tmp_path):
    """Old results carry no "repeat" key: still fresh for repeat 1, so declaring repeats keeps them."""
    build = tmp_path / "build"
    run(write_lab(tmp_path), build)
    path = BuildLayout(build).result_path("mlp-a")
    old = json.loads(path.read_text())
    del old["repeat"]
    path.write_text(json.dumps(old))
    assert store.read_result(build, "mlp-a") == old
    spy = Spy()
    run(write_lab(tmp_path, repeats=2), build, spy)
    assert [c[:2] for c in spy.calls] == [("mlp-a", 2)]


def test_lowering_repeats_trains_nothing_and_keeps_the_extra_runs_on_disk(tmp_path, capsys):
    build = tmp_path / "build"
    run(write_lab(tmp_path, repeats=3), build)
    third = BuildLayout(build).result_path("mlp-a", 3)
    kept = third.read_bytes()
    spy = Spy()
    summary = run(write_lab(tmp_path, repeats=2), build, spy)
    assert spy.calls == [] and (summary.ran, summary.skipped) == (0, 2)
    assert third.read_bytes() == kept
    assert store.stored_repeats(build, "mlp-a") == [2, 3]
    # and raising it again reuses the kept run
    assert run(write_lab(tmp_path, repeats=3), build, spy).ran == 0


def test_a_failed_repeat_does_not_stop_the_others_and_is_retried_next_run(tmp_path):
    lab = write_lab(tmp_path, repeats=3)
    build = tmp_path / "build"
    summary = run(lab, build, Spy(fail={("mlp-a", 2)}))
    assert (summary.ran, summary.failed) == (3, 1)
    assert summary.names("failed") == ("mlp-a/repeat-2",)
    statuses = {r: store.read_result(build, "mlp-a", repeat=r)["status"] for r in (1, 2, 3)}
    assert statuses == {1: "ok", 2: "failed", 3: "ok"}
    assert "boom in mlp-a/repeat-2" in store.read_result(build, "mlp-a", repeat=2)["error"]
    decisions = staleness.check_runs(lab.by_name("mlp-a"), BuildLayout(build))
    assert [d.status for d in decisions] == ["fresh", "failed", "fresh"]
    spy = Spy()
    again = run(lab, build, spy)
    assert [c[:2] for c in spy.calls] == [("mlp-a", 2)] and (again.ran, again.failed) == (1, 0)


def test_a_worker_process_failure_stores_the_failed_run_in_its_own_folder(tmp_path):
    """The failure built by the driver (not the worker) carries the run's identity too."""
    lab = write_lab(tmp_path, repeats=2)
    task = runner.make_tasks(lab.by_name("mlp-a").runs()[1:], tmp_path / "build", quick=False, quick_cfg=None)[0]
    failed = runner.failed_result(task, "worker process failed: BrokenProcessPool")
    assert (failed["name"], failed["repeat"], failed["status"]) == ("mlp-a", 2, "failed")
    store.write_result(tmp_path / "build", failed)
    assert store.read_result(tmp_path / "build", "mlp-a", repeat=2)["error"].startswith("worker process failed")


def test_repeats_run_in_worker_processes(tmp_path):
    lab = write_lab(tmp_path, repeats=2)
    build = tmp_path / "build"
    summary = runner.run(lab, build, jobs=2, load_dataset=tiny_dataset, train=fake_train, progress=io.StringIO())
    assert (summary.ran, summary.failed) == (4, 0)
    for name in ("mlp-a", "mlp-b"):
        for repeat in (1, 2):
            assert store.read_result(build, name, repeat=repeat)["repeat"] == repeat
            assert BuildLayout(build).log_path(name, repeat).read_text().strip()


def test_quick_runs_of_repeats_are_stored_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("LABREPORT_QUICK_EPOCHS", "1")
    lab = write_lab(tmp_path, repeats=2)
    build = tmp_path / "build"
    run(lab, build, quick=True)
    assert (build / "quick" / "runs" / "mlp-a" / "repeat-2" / "result.json").is_file()
    assert not (build / "runs").exists()


def test_the_eta_counts_every_run(tmp_path):
    lab = write_lab(tmp_path, repeats=3)
    estimator = eta.Estimator(threads=1)
    tasks = runner.make_tasks(lab.by_name("mlp-a").runs(), tmp_path / "build", quick=False, quick_cfg=None,
                              estimator=estimator)
    one = estimator.seconds(lab.by_name("mlp-a"))
    assert [t.name for t in tasks] == ["mlp-a", "mlp-a/repeat-2", "mlp-a/repeat-3"]
    assert [t.estimate_s for t in tasks] == [one] * 3
    assert eta.makespan([t.estimate_s for t in tasks], 1) == pytest.approx(3 * one)


# --------------------------------------------------------------------------- the CLI


def cli_out(capsys, *argv: str) -> tuple[int, str]:
    status = cli.main(list(argv))
    return status, capsys.readouterr().out


def test_status_says_how_many_runs_are_stored_and_why_the_others_are_not(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build = tmp_path / "build"
    run(write_lab(tmp_path, repeats=3), build, Spy(fail={("mlp-a", 3)}))
    status, out = cli_out(capsys, "status")
    assert status == 0
    assert out.splitlines() == [
        "failed   mlp-a  2 of 3 runs stored; run 3: failed last time: RuntimeError: boom in mlp-a/repeat-3",
        "missing  mlp-b  0 of 3 runs stored; runs 1, 2, 3: new: never run",
        "2 run(s) up to date, 4 to train",
    ]
    status, out = cli_out(capsys, "run", "--dry-run")
    assert out.splitlines() == [
        "failed   mlp-a run 3/3  failed last time: RuntimeError: boom in mlp-a/repeat-3",
        "missing  mlp-b run 1/3  new: never run",
        "missing  mlp-b run 2/3  new: never run",
        "missing  mlp-b run 3/3  new: never run",
        "2 run(s) up to date, 4 would be trained",
    ]
    write_lab(tmp_path, repeats=2)
    status, out = cli_out(capsys, "status", "mlp-a")
    assert out.splitlines() == [
        "fresh    mlp-a  2 of 2 runs stored; 1 more run kept on disk (repeat 3; unused with repeats = 2)",
        "2 run(s) up to date, 0 to train",
    ]


def test_status_after_lowering_repeats_to_1_counts_in_the_singular(tmp_path, capsys, monkeypatch):
    """One declared run is "1 of 1 run", never "1 of 1 runs"; two kept runs are "2 more runs"."""
    monkeypatch.chdir(tmp_path)
    run(write_lab(tmp_path, repeats=3), tmp_path / "build")
    write_lab(tmp_path, repeats=1)
    status, out = cli_out(capsys, "status", "mlp-a")
    assert out.splitlines() == [
        "fresh    mlp-a  1 of 1 run stored; 2 more runs kept on disk (repeats 2, 3; unused with repeats = 1)",
        "1 up to date, 0 to train",
    ]


def test_status_without_repeats_is_unchanged(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(write_lab(tmp_path), tmp_path / "build")
    status, out = cli_out(capsys, "status")
    assert out.splitlines() == ["fresh    mlp-a  up to date", "missing  mlp-b  new: never run",
                                "1 up to date, 1 to train"]


def test_list_and_validate_show_the_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_lab(tmp_path, repeats=3)
    status, out = cli_out(capsys, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["name", "part", "model", "batch", "epochs", "runs"]
    assert lines[1].split()[-1] == "3" and lines[2].split()[-1] == "3"
    assert "2 experiments (6 runs with their repeats) in experiments.toml" in out
    assert cli_out(capsys, "validate")[1] == "experiments.toml: OK, 2 experiments (6 runs with their repeats)\n"
    write_lab(tmp_path)
    assert "runs" not in cli_out(capsys, "list")[1].splitlines()[0].split()


def test_export_has_one_row_per_run_with_a_repeat_column(tmp_path):
    from labreport.results import frame

    lab = write_lab(tmp_path, repeats=2)
    build = tmp_path / "build"
    run(lab, build)
    table = frame.load_results(lab, build)
    assert list(table.index) == ["mlp-a", "mlp-a/repeat-2", "mlp-b", "mlp-b/repeat-2"]
    assert list(table["name"]) == ["mlp-a", "mlp-a", "mlp-b", "mlp-b"]
    assert list(table["repeat"]) == [1, 2, 1, 2] and set(table["repeats"]) == {2}
    assert list(table["status"]) == ["ok", "ok", "not run", "not run"]
    assert list(table["seed"])[:2] == [7, repeat_seed(7, 2)]
    assert list(table["staleness"]) == ["fresh", "fresh", "missing", "missing"]
    assert len(frame.part_table(table, "raw")) == 2  # the report's table: one row per experiment
    history = frame.load_history(lab, "mlp-a", build, repeat=2)
    assert list(history["loss"]) == [1.0, 0.5]


def test_check_names_a_requirement_of_one_variant_in_the_singular(tmp_path):
    from labreport.grading import checks

    lab = write_lab(tmp_path, defaults="\n[requirements]\nmin_variants_per_part = 1")
    assert "at least 1 variant of part 'raw'" in [c.rule for c in checks.evaluate(lab, tmp_path / "build")]


def test_export_of_one_experiment_says_experiment_in_the_singular(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lab = write_lab(tmp_path, repeats=2)
    run(lab, tmp_path / "build")
    (tmp_path / "experiments.toml").write_text(LAB.format(own="repeats = 2", defaults="").split("\n[[experiment]]\nname = \"mlp-b\"")[0])
    status, out = cli_out(capsys, "export", "--format", "csv", "-o", "t.csv")
    assert (status, out) == (0, "wrote t.csv (1 experiment, 2 runs, csv)\n")


def test_clean_keeps_every_run_and_clean_all_removes_them_with_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build = tmp_path / "build"
    run(write_lab(tmp_path, repeats=2), build)
    repeat_2 = BuildLayout(build).result_path("mlp-a", 2)
    assert cli_out(capsys, "clean")[0] == 0 and repeat_2.is_file()
    status, out = cli_out(capsys, "clean", "--all")
    assert status == 0 and f"removed {Path('build') / 'runs'}" in out
    assert not (build / "runs").exists()
