"""runner: planning, the result cache, failure isolation, the lock, quick runs, workers, progress.

Most tests swap the trainer for a spy (no TensorFlow, milliseconds per "experiment");
a few run the real engine on tiny synthetic data through ``runner.run``.
"""

from __future__ import annotations

import _thread
import io
import json
import multiprocessing
import multiprocessing.queues
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from labreport import config
from labreport.train import datasets
from labreport.train import engine
from labreport.train import runner
from labreport.errors import UnknownExperiment
from labreport.results import store

ROOT = Path(__file__).resolve().parents[1]

LAB = """\
[defaults]
optimizer = {{ name = "rmsprop", learning_rate = 0.001 }}
batch_size = 64

[[experiment]]
name = "mlp-a"
part = "raw"
hidden = 16
activation = "relu"
epochs = {epochs_a}
comment = "{comment}"

[[experiment]]
name = "mlp-b"
from = "mlp-a"
hidden = 8
epochs = 2

[[experiment]]
name = "cnn-c"
part = "cnn"
conv = [{{ filters = 4, kernel = 3 }}]
hidden = 8
activation = "relu"
epochs = 2
"""


def write_lab(tmp_path: Path, *, epochs_a: int = 2, comment: str = "first") -> config.LabConfig:
    path = tmp_path / "experiments.toml"
    path.write_text(LAB.format(epochs_a=epochs_a, comment=comment))
    return config.load(path)


def tiny_dataset(name: str, data_dir: Path | None = None, **_: object) -> datasets.Dataset:
    """A module-level (picklable, for worker processes) stand-in for datasets.load."""
    rng = np.random.default_rng(0)

    def split(n: int):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(y):
            x[i, 2 * c: 2 * c + 6, 4:24] += 200
        return x.clip(0, 255).astype(np.uint8), y

    (x, y), (xt, yt) = split(200), split(60)
    return datasets.Dataset(name=name, x_train=x, y_train=y, x_test=xt, y_test=yt, source="synthetic")


def fake_train(spec, dataset, *, quick=False, quick_cfg=None, cache_key="", log=print, on_epoch=None, **_):
    """A module-level trainer without TensorFlow: an 'ok' result with two made-up epochs."""
    result = engine.base_result(spec, status="ok", quick=quick, cache_key=cache_key, dataset=dataset)
    result["history"] = {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8], "val_loss": [1.1, 0.6], "val_accuracy": [0.4, 0.7]}
    result["metrics"] = {"test_loss": 0.6, "test_accuracy": 0.7, "macro_f1": 0.69}
    result["duration_s"] = 0.01
    for epoch in (1, 2):
        log(f"epoch {epoch}/2")
        if on_epoch:
            on_epoch(engine.EpochInfo(epoch, 2, 1.0 / epoch, 0.5, 1.1 / epoch, 0.7, 0.005, 0.005 * epoch))
    return result


def sleepy_train(spec, dataset, **kwargs):
    """A module-level trainer that takes far longer than any test waits."""
    time.sleep(60)
    return fake_train(spec, dataset, **kwargs)


def killed_train(spec, dataset, **kwargs):
    """A module-level trainer whose worker the 'out-of-memory killer' takes while it trains cnn-c
    (the longest: the first to start, next to mlp-a, with mlp-b waiting)."""
    if spec.name == "cnn-c":
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(1.0)
    return fake_train(spec, dataset, **kwargs)


def crashing_train(spec, dataset, **kwargs):
    """A module-level trainer whose worker process exits with code 3 while it trains cnn-c."""
    if spec.name == "cnn-c":
        time.sleep(0.3)
        os._exit(3)
    time.sleep(1.0)
    return fake_train(spec, dataset, **kwargs)


class Spy:
    """Records which experiments were trained; can raise for chosen names."""

    def __init__(self, fail: dict[str, BaseException] | None = None):
        self.calls: list[str] = []
        self.fail = fail or {}

    def __call__(self, spec, dataset, **kwargs):
        self.calls.append(spec.name)
        if spec.name in self.fail:
            raise self.fail[spec.name]
        return fake_train(spec, dataset, **kwargs)


def run(lab, build, spy=None, **kwargs):
    kwargs.setdefault("progress", io.StringIO())
    kwargs.setdefault("load_dataset", tiny_dataset)
    return runner.run(lab, build, train=spy or Spy(), **kwargs)


# --------------------------------------------------------------------------- import hygiene


def test_importing_the_runner_does_not_import_tensorflow():
    code = "import labreport.train.runner, labreport.train.engine, labreport.train.models, sys; assert 'tensorflow' not in sys.modules, 'tf'; assert 'keras' not in sys.modules, 'keras'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_planning_and_a_fully_cached_run_do_not_import_tensorflow(tmp_path):
    lab = write_lab(tmp_path)
    run(lab, tmp_path / "build")  # the spy stands in for training
    code = textwrap.dedent(f"""
        import io, sys
        from labreport import config
        from labreport.train import runner
        lab = config.load({str(tmp_path / 'experiments.toml')!r})
        summary = runner.run(lab, {str(tmp_path / 'build')!r}, progress=io.StringIO())
        assert summary.ran == 0 and summary.skipped == 3, summary
        assert 'tensorflow' not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --------------------------------------------------------------------------- planning


def test_cache_keys_use_the_checksum_table_and_separate_quick_runs(tmp_path):
    spec = write_lab(tmp_path).by_name("mlp-a")
    expected_data = datasets.combined_sha256(datasets.CHECKSUMS["mnist"])
    assert runner.data_sha256("mnist") == expected_data
    assert runner.cache_key(spec) == spec.cache_key(data_sha256=expected_data,
                                                    engine_version=engine.ENGINE_VERSION, quick=False)
    quick = runner.cache_key(spec, quick=True, quick_cfg=engine.QuickConfig())
    assert quick != runner.cache_key(spec)
    assert quick != runner.cache_key(spec, quick=True, quick_cfg=engine.QuickConfig(epochs=3))


@pytest.mark.parametrize("name", datasets.NAMES)
def test_the_planned_data_identity_is_the_real_data_sha256(name):
    try:
        real = datasets.load(name, data_dir=ROOT / "build" / "data", sources=["cache"])
    except datasets.DataError:
        pytest.skip("no cached data in build/data (make data)")
    assert runner.data_sha256(name) == real.sha256


def test_plan_reports_missing_fresh_stale_and_failed(tmp_path):
    lab = write_lab(tmp_path)
    build = tmp_path / "build"
    assert [(s.name, st) for s, st in runner.plan(lab, build, quick=False)] == [
        ("mlp-a", "missing"), ("mlp-b", "missing"), ("cnn-c", "missing")]
    run(lab, build, Spy(fail={"cnn-c": ValueError("boom")}))
    changed = write_lab(tmp_path, epochs_a=3)
    assert {s.name: st for s, st in runner.plan(changed, build, quick=False)} == {
        "mlp-a": "stale", "mlp-b": "fresh", "cnn-c": "failed"}
    assert [e.spec.name for e in runner.plan(changed, build, quick=False, names=["mlp-*"])] == ["mlp-a", "mlp-b"]


def test_unknown_names_are_refused_with_a_suggestion(tmp_path):
    lab = write_lab(tmp_path)
    with pytest.raises(UnknownExperiment) as info:
        runner.plan(lab, tmp_path / "build", quick=False, names=["mlp-aa", "mlp-*", "zz*"])
    # one line naming every name that matches nothing, with a guess where there is one
    assert str(info.value) == (f"no experiment named 'mlp-aa' in {lab.path} (did you mean 'mlp-a'?); "
                               f"no experiment named 'zz*' in {lab.path}")


def test_longest_experiments_are_run_first(tmp_path):
    lab = config.load(ROOT / "experiments.toml")
    tasks = runner.make_tasks(lab.experiments, tmp_path, quick=False, quick_cfg=None)
    estimates = [t.estimate_s for t in tasks]
    assert estimates == sorted(estimates, reverse=True)
    assert [t.index for t in tasks] == list(range(1, len(tasks) + 1))
    # A CNN epoch costs more than an MLP epoch of the same batch count.
    assert runner.estimate_seconds(lab.by_name("cnn-relu-25")) > runner.estimate_seconds(lab.by_name("raw-tanh-250"))


# --------------------------------------------------------------------------- the cache


def test_second_run_trains_nothing_comment_changes_nothing_epochs_retrain_one(tmp_path):
    build = tmp_path / "build"
    spy = Spy()
    first = run(write_lab(tmp_path), build, spy)
    assert sorted(spy.calls) == ["cnn-c", "mlp-a", "mlp-b"] and sorted(first.names()) == sorted(spy.calls)
    for name in spy.calls:
        folder = store.run_dir(build, name)
        assert (folder / "result.json").exists() and (folder / "history.csv").exists()
        assert "epoch 2/2" in (folder / "run.log").read_text()

    spy.calls.clear()
    second = run(write_lab(tmp_path), build, spy)
    assert spy.calls == [] and second.ran == 0 and second.skipped == 3

    run(write_lab(tmp_path, comment="reworded"), build, spy)
    assert spy.calls == []

    run(write_lab(tmp_path, epochs_a=3), build, spy)
    assert spy.calls == ["mlp-a"]  # mlp-b is declared `from` mlp-a but sets its own epochs

    spy.calls.clear()
    run(write_lab(tmp_path, epochs_a=3), build, spy, force=True, names=["cnn-c"])
    assert spy.calls == ["cnn-c"]


def test_a_corrupt_or_half_written_result_is_rerun(tmp_path):
    build = tmp_path / "build"
    lab = write_lab(tmp_path)
    run(lab, build)
    path = store.run_dir(build, "mlp-b") / "result.json"
    path.write_text(path.read_text()[:100])  # as if the machine died mid-write
    assert {s.name: st for s, st in runner.plan(lab, build, quick=False)}["mlp-b"] == "stale"
    spy = Spy()
    run(lab, build, spy)
    assert spy.calls == ["mlp-b"]
    assert json.loads(path.read_text())["status"] == "ok"


def test_quick_results_are_stored_apart_with_their_own_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("LABREPORT_QUICK_EPOCHS", "1")
    build = tmp_path / "build"
    lab = write_lab(tmp_path)
    spy = Spy()
    run(lab, build, spy, quick=True)
    assert len(spy.calls) == 3
    assert not store.runs_dir(build).exists()
    stored = store.read_result(build, "mlp-a", quick=True)
    assert stored["quick"] is True
    assert stored["cache_key"] == runner.cache_key(lab.by_name("mlp-a"), quick=True)
    assert all(st == "missing" for _, st in runner.plan(lab, build, quick=False))

    spy.calls.clear()
    run(lab, build, spy, quick=True)
    assert spy.calls == []
    monkeypatch.setenv("LABREPORT_QUICK_EPOCHS", "2")  # other caps, other results
    run(lab, build, spy, quick=True)
    assert len(spy.calls) == 3


# --------------------------------------------------------------------------- failures


def test_a_failing_experiment_is_stored_as_failed_and_the_others_run(tmp_path):
    build = tmp_path / "build"
    lab = write_lab(tmp_path)
    spy = Spy(fail={"mlp-b": RuntimeError("out of cheese")})
    out = io.StringIO()
    summary = run(lab, build, spy, progress=out)
    assert summary.names("failed") == ("mlp-b",) and summary.failed == 1 and not summary.ok
    assert sorted(summary.names()) == ["cnn-c", "mlp-a", "mlp-b"] and summary.ran == 3
    failed = store.read_result(build, "mlp-b")
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: out of cheese"
    log = (store.run_dir(build, "mlp-b") / "run.log").read_text()
    assert "Traceback" in log and "out of cheese" in log
    assert store.read_result(build, "mlp-a")["status"] == "ok"
    assert "mlp-b  FAILED: RuntimeError: out of cheese" in out.getvalue()

    spy.fail.clear()
    spy.calls.clear()
    run(lab, build, spy)
    assert spy.calls == ["mlp-b"]  # failed results are retried


def test_a_data_set_that_cannot_be_loaded_stops_the_run_before_any_training(tmp_path):
    def loader(name, data_dir=None):
        if name == "fashion":
            raise datasets.DataError("cannot load data set 'fashion'; tried:\n  cache x: missing")
        return tiny_dataset(name)

    path = tmp_path / "experiments.toml"
    path.write_text(LAB.format(epochs_a=1, comment="") + textwrap.dedent("""
        [[experiment]]
        name = "fashion-d"
        from = "cnn-c"
        part = "fashion"
        dataset = "fashion"
    """))
    build = tmp_path / "build"
    spy = Spy()
    with pytest.raises(datasets.DataError) as info:
        runner.run(config.load(path), build, load_dataset=loader, train=spy, progress=io.StringIO())
    assert str(info.value) == "cannot load data set 'fashion'; tried:\n  cache x: missing\nnothing was trained."
    assert spy.calls == [] and not store.runs_dir(build).exists()


def test_ctrl_c_keeps_finished_results_and_raises_run_interrupted(tmp_path):
    build = tmp_path / "build"
    lab = write_lab(tmp_path)
    order = [t.name for t in runner.make_tasks(lab.experiments, build, quick=False, quick_cfg=None)]
    spy = Spy(fail={order[1]: KeyboardInterrupt()})
    with pytest.raises(runner.RunInterrupted) as info:
        run(lab, build, spy)
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.summary.names() == (order[0],)
    assert store.read_result(build, order[0])["status"] == "ok"
    assert store.read_result(build, order[1]) is None
    assert "interrupted" in (store.run_dir(build, order[1]) / "run.log").read_text()
    assert not (store.run_dir(build, order[2])).exists()
    assert info.value.message == (f"interrupted: 1 experiment finished and stored; {order[1]}: interrupted,"
                                  " not stored; 1 not started; run again to continue.")


def test_ctrl_c_in_the_cli_prints_one_interrupted_line_saying_what_was_kept(tmp_path, capsys, monkeypatch):
    from labreport import cli

    monkeypatch.chdir(tmp_path)
    lab = write_lab(tmp_path)
    order = [t.name for t in runner.make_tasks(lab.experiments, tmp_path / "build", quick=False, quick_cfg=None)]
    spy = Spy(fail={order[1]: KeyboardInterrupt()})
    real = runner.run
    monkeypatch.setattr(runner, "run", lambda *a, **k: real(*a, **{**k, "train": spy, "load_dataset": tiny_dataset}))
    assert cli.main(["run", "--jobs", "1"]) == 130
    out, err = capsys.readouterr()
    said = [line for line in (out + err).splitlines() if "interrupted" in line]
    assert said == [f"interrupted: 1 experiment finished and stored; {order[1]}: interrupted, not stored;"
                    " 1 not started; run again to continue."]


def test_the_lock_refuses_a_second_concurrent_run(tmp_path):
    build = tmp_path / "build"
    lab = write_lab(tmp_path)
    spy = Spy()
    with store.BuildLock(build), pytest.raises(store.BuildLocked, match="in use by another labreport process"):
        run(lab, build, spy)
    assert spy.calls == []
    run(lab, build, spy)  # released
    assert len(spy.calls) == 3


# --------------------------------------------------------------------------- progress


def test_progress_is_one_line_per_few_epochs_when_not_a_tty(tmp_path):
    out = io.StringIO()
    run(write_lab(tmp_path), tmp_path / "build", progress=out)
    text = out.getvalue()
    assert "\r" not in text
    assert "running 3 experiment(s) with 1 job(s)" in text
    assert "[1/3] " in text and "epoch 2/2  loss 0.5000  test 0.5500  acc 0.7000  ETA 0s" in text
    assert "ok  test loss 0.6000  acc 0.7000  F1 0.6900" in text
    out = io.StringIO()
    run(write_lab(tmp_path), tmp_path / "build", progress=out)
    assert out.getvalue() == f"3 experiment(s) up to date in {tmp_path / 'build' / 'runs'}/ (use --force to re-run)\n"


def test_progress_rewrites_one_line_on_a_terminal(tmp_path):
    out = io.StringIO()
    progress = runner.Progress(out, live=True)
    spec = write_lab(tmp_path).by_name("mlp-a")
    task = runner.Task(spec=spec, index=2, total=5, quick=False, quick_cfg=None, cache_key="", data_dir="",
                       features_dir="")
    for epoch in (1, 2):
        progress.epoch(task, engine.EpochInfo(epoch, 100, 0.12345, 0.9, 0.14567, 0.96123, 0.8, 0.8 * epoch))
    progress.finished(task, {"status": "ok", "metrics": {"test_loss": 0.1, "test_accuracy": 0.97, "macro_f1": 0.96},
                             "duration_s": 80.0}, "")
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 2 and text.endswith("(1m20s)\n")
    assert "[2/5] mlp-a  epoch 2/100  loss 0.1235  test 0.1457  acc 0.9612  ETA 1m18s" in text


def test_fmt_duration():
    assert [runner.fmt_duration(s) for s in (0, 59.4, 75, 3725, None)] == ["0s", "59s", "1m15s", "1h02m", "?"]


# --------------------------------------------------------------------------- workers


def test_worker_loads_each_data_set_once(tmp_path):
    loads = []

    def loader(name, data_dir=None):
        loads.append(name)
        return tiny_dataset(name)

    run(write_lab(tmp_path), tmp_path / "build", load_dataset=loader)
    assert loads == ["mnist"]


def test_worker_processes_run_the_tasks_and_the_driver_writes_the_results(tmp_path):
    build = tmp_path / "build"
    out = io.StringIO()
    summary = runner.run(write_lab(tmp_path), build, jobs=2, load_dataset=tiny_dataset, train=fake_train,
                         progress=out)
    assert sorted(summary.names("ok")) == ["cnn-c", "mlp-a", "mlp-b"] and summary.ok
    for name in summary.names():
        assert store.read_result(build, name)["status"] == "ok"
        assert "epoch 2/2" in (store.run_dir(build, name) / "run.log").read_text()
    assert "with 2 job(s)" in out.getvalue()


@pytest.mark.parametrize("train, death", [
    (killed_train, "worker process died: killed by SIGKILL (on Linux most often the out-of-memory killer"),
    (crashing_train, "worker process died: exit code 3"),
])
def test_a_dead_worker_fails_only_its_own_run_and_the_others_go_on(tmp_path, train, death):
    """Python's pool fails every task it holds when one worker dies (all 3 failed here before):
    only the dead worker's run fails, saying how it died; the run that was training next to it
    and the one not started yet train in a new pool (one worker fewer after a SIGKILL)."""
    build = tmp_path / "build"
    out = io.StringIO()
    summary = runner.run(write_lab(tmp_path), build, jobs=2, load_dataset=tiny_dataset, train=train, progress=out)
    assert summary.names("failed") == ("cnn-c",) and sorted(summary.names("ok")) == ["mlp-a", "mlp-b"]
    error = store.read_result(build, "cnn-c")["error"]
    assert error.startswith(death)
    assert ("the other runs go on with 1 worker" in error) == (train is killed_train)
    assert death in out.getvalue()
    for name in ("mlp-a", "mlp-b"):
        assert store.read_result(build, name)["status"] == "ok"
        assert "epoch 2/2" in (store.run_dir(build, name) / "run.log").read_text()
    assert multiprocessing.active_children() == []
    # the next run retries the failed one alone
    again = runner.run(write_lab(tmp_path), build, jobs=2, load_dataset=tiny_dataset, train=fake_train,
                       progress=io.StringIO())
    assert again.names() == ("cnn-c",) and again.ok


class _DeadPool:
    """What _recover sees of a pool that broke: its workers' pids and exit codes, no events."""

    def __init__(self, exits: dict[int, int]):
        self.created = [type("P", (), {"pid": pid, "exitcode": code})() for pid, code in exits.items()]

    def Queue(self):  # noqa: N802 - multiprocessing's name
        return _NoEvents()


class _NoEvents:
    def get_nowait(self):
        raise multiprocessing.queues.Empty

    def close(self):
        pass


@pytest.mark.parametrize("known", [True, False])
def test_a_dead_worker_whose_start_event_was_lost_still_fails_its_own_run(tmp_path, known):
    """A worker killed right after it took a run may die before its 'start' event (with its pid)
    reaches the driver. The run that no SIGTERMed worker held is the dead one's: before, the run
    training next to it (the only one known to have started) failed in its place."""
    lab = write_lab(tmp_path)
    tasks = {t.name: t for t in runner.make_tasks(lab.experiments, tmp_path / "build", quick=False, quick_cfg=None)}
    executor = runner.ProcessPoolExecutor.__new__(runner.ProcessPoolExecutor)
    executor.context, executor._pool_start, executor.jobs = _DeadPool({101: -signal.SIGKILL, 102: -signal.SIGTERM}), 0, 2
    executor.pool, executor.events = type("Pool", (), {"shutdown": lambda self, wait: None})(), _NoEvents()
    executor._new_pool = lambda: "a new pool"
    held = {"mlp-a": 102, **({"cnn-c": 101} if known else {})}
    outcomes, retry = executor._recover([tasks["cnn-c"], tasks["mlp-a"]], held)
    assert [o.name for o in outcomes] == ["cnn-c"] and [t.name for t in retry] == ["mlp-a"]
    assert outcomes[0].result["error"].startswith("worker process died: killed by SIGKILL")
    assert executor.jobs == 1 and executor.pool == "a new pool"


def test_ctrl_c_stops_the_worker_processes(tmp_path):
    build = tmp_path / "build"
    timer = threading.Timer(3.0, _thread.interrupt_main)  # Ctrl-C while the workers are busy
    timer.start()
    start = time.perf_counter()
    try:
        with pytest.raises(runner.RunInterrupted) as info:
            runner.run(write_lab(tmp_path), build, jobs=2, load_dataset=tiny_dataset, train=sleepy_train,
                       progress=io.StringIO())
    finally:
        timer.cancel()
    assert time.perf_counter() - start < 30
    assert info.value.summary.ran == 0
    assert multiprocessing.active_children() == []
    assert not store.runs_dir(build).exists() or not list(store.runs_dir(build).glob("*/result.json"))


class StartedThenInterrupted(multiprocessing.context.SpawnProcess):
    """A worker process after whose start Ctrl-C arrives, before the pool has recorded it."""

    def start(self):
        super().start()
        raise KeyboardInterrupt


class InterruptedContext(runner.WorkerContext):
    process_class = StartedThenInterrupted


def test_ctrl_c_just_after_the_pool_started_a_worker_leaves_none_running(tmp_path):
    executor = runner.ProcessPoolExecutor(2, load_dataset=tiny_dataset, train=sleepy_train,
                                          context=InterruptedContext())
    tasks = runner.make_tasks(write_lab(tmp_path).experiments, tmp_path / "build", quick=False, quick_cfg=None)
    with pytest.raises(KeyboardInterrupt):
        next(executor.run(tasks, lambda event: None))
    (worker,) = executor.context.created
    assert worker.pid is not None  # it did start
    executor.close(cancel=True)
    assert multiprocessing.active_children() == [] and worker.exitcode is not None


def test_thread_split():
    assert runner.thread_split(1, cores=2) == (2, 1)
    assert runner.thread_split(2, cores=2) == (1, 1)
    assert runner.thread_split(4, cores=2) == (1, 1)
    assert runner.thread_split(2, cores=8) == (4, 1)


# --------------------------------------------------------------------------- with the real engine


@pytest.mark.tf
def test_runner_with_the_real_engine_stores_a_complete_result(tmp_path):
    build = tmp_path / "build"
    lab = write_lab(tmp_path, epochs_a=1)
    summary = runner.run(lab, build, names=["mlp-a", "cnn-c"], load_dataset=tiny_dataset, progress=io.StringIO())
    assert sorted(summary.names("ok")) == ["cnn-c", "mlp-a"] and summary.ok
    result = store.read_result(build, "cnn-c")
    assert result["status"] == "ok" and result["params"]["keras_total"] == result["params"]["total"]
    assert result["cache_key"] == runner.cache_key(lab.by_name("cnn-c"))
    assert len(result["history"]["loss"]) == 2
    assert (store.run_dir(build, "cnn-c") / "history.csv").read_text().startswith("epoch,loss,accuracy,val_loss,val_accuracy\n")
    log = (store.run_dir(build, "cnn-c") / "run.log").read_text()
    assert "epoch 2/2" in log and "model: 28x28x1 -> 28x28x4" in log


@pytest.mark.slow
@pytest.mark.tf
def test_worker_processes_with_the_real_engine(tmp_path):
    build = tmp_path / "build"
    summary = runner.run(write_lab(tmp_path, epochs_a=1), build, jobs=2, load_dataset=tiny_dataset,
                         progress=io.StringIO())
    assert summary.ok and summary.ran == 3
    result = store.read_result(build, "mlp-a")
    assert result["host"]["threads"]["intra_op"] == 1  # 2 cores split between 2 workers
