"""The run-time estimator as pure functions: table, load, previous runs, schedule, refinement.

No TensorFlow: the estimator reads only specs, numbers and stored result dicts.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from labreport import config
from labreport.config.spec import ConvSpec, ExperimentSpec, OptimizerSpec
from labreport.train import engine, eta, runner

ROOT = Path(__file__).resolve().parents[1]
RMSPROP = OptimizerSpec("rmsprop", (("learning_rate", 0.001),))


def mlp(name: str = "m", hidden: int = 250, batch_size: int = 4096, epochs: int = 10, **kw) -> ExperimentSpec:
    return ExperimentSpec(name=name, part="raw", dataset="mnist", hidden=(hidden,), activation="tanh",
                          dropout=0.5, batch_size=batch_size, epochs=epochs, optimizer=RMSPROP, seed=1, **kw)


def stored(spec: ExperimentSpec, *, epoch_s: float, threads: int, epochs: int = 5, quick: bool = False,
           workers: int | None = None) -> dict:
    """A result dict as the engine stores it (engine.base_result), with timings filled in;
    ``workers``: as the runner adds it (local workers of the run), None as results before it."""
    r = engine.base_result(spec, status="ok", quick=quick, cache_key="k")
    r["epoch_s"] = epoch_s
    r["history"]["loss"] = [0.5] * epochs
    r["data"]["n_train"] = 2000 if quick else 60_000
    r["host"] = {"cpus": 2, "threads": {"intra_op": threads, "inter_op": 1}}
    if workers is not None:
        r["host"]["workers"] = workers
    return r


# --------------------------------------------------------------------------- the table


def test_every_shape_of_the_default_lab_is_calibrated_for_one_and_two_jobs():
    lab = config.load(ROOT / "experiments.toml")
    missing = {(eta.shape_key(s), t) for s in lab.experiments for t in (1, 2)} - set(eta.EPOCH_S)
    assert not missing, f"run `python -m bench.calibrate` for: {sorted(missing)}"
    for s in lab.experiments:
        assert eta.Estimator(threads=1).epoch_s(s)[1] == "calibration"


def test_the_table_is_read_and_scaled_by_the_machines_load():
    table = {(eta.shape_key(mlp()), 1): 0.5}
    quiet = eta.Estimator(threads=1, table=table)
    busy = dataclasses.replace(quiet, share=0.25)
    wall = 0.5 / eta.WORKER_BUSY  # CPU seconds; a worker with a core to itself keeps it 98 % busy
    assert quiet.epoch_s(mlp()) == (pytest.approx(wall), "calibration")
    assert busy.epoch_s(mlp())[0] == pytest.approx(4 * wall)
    overhead = eta.OVERHEAD_S.get("mlp raw", eta.DEFAULT_OVERHEAD_S)
    assert quiet.seconds(mlp(epochs=10)) == pytest.approx(overhead + 10 * wall)
    assert busy.seconds(mlp(epochs=10)) == pytest.approx(4 * (overhead + 10 * wall))
    # --quick: capped epochs, a fraction of the training set, start-up and tracing dominate
    quick_overhead = eta.QUICK_OVERHEAD_S["mlp raw"]
    assert quiet.seconds(mlp(epochs=10), epochs=2, n_train=6000) == pytest.approx(quick_overhead + 2 * wall / 10)


def test_shapes_outside_the_table_use_the_cost_model_with_the_familys_factor(monkeypatch):
    monkeypatch.setitem(eta.MODEL_FACTOR, ("mlp raw", 1), 3.0)
    est = eta.Estimator(threads=1, table={})
    seconds, source = est.epoch_s(mlp(hidden=777))
    assert source == "cost model"
    assert seconds == pytest.approx(3.0 * eta.model_epoch_s(mlp(hidden=777)) * eta.crowding(1.0))
    assert eta.model_epoch_s(mlp(hidden=777)) > eta.model_epoch_s(mlp(hidden=77))


def test_thread_share():
    # a contended machine: the session's weight is spread over the cores its threads use
    assert eta.thread_share(0.3, 2.0, cores=2, our_threads=1) == pytest.approx(0.3)  # as the probe
    assert eta.thread_share(0.5, 2.0, cores=2, our_threads=2) == pytest.approx(1 / 3)  # 0.5 / (0.5 + 2 x 0.5)
    assert eta.thread_share(0.5, 2.0, cores=2, our_threads=4) == pytest.approx(1 / 6)  # two threads a core
    # measured: probe 0.83, the hog family's two workers then got 0.52 (0.71 here; 0.83 was 1.6x)
    assert 0.6 < eta.thread_share(0.83, 1.2, cores=2, our_threads=2) < 0.75
    assert eta.thread_share(0.0, 2.0, cores=2, our_threads=2) == 0.02  # never nothing
    # room left: a core we share with another session gives us half our weight against its
    assert eta.thread_share(1.0, 0.0, cores=2, our_threads=2) == 1.0
    assert eta.thread_share(0.98, 1.0, cores=2, our_threads=2) == pytest.approx(2 / 3)  # (1/3 + 1) / 2
    assert eta.thread_share(0.98, 1.0, cores=2, our_threads=1) == 1.0  # the free core is ours
    assert eta.thread_share(0.98, 0.2, cores=2, our_threads=4) == pytest.approx((0.2 / 3 + 1.8) / 4)
    assert eta.thread_share(0.5, 3.0, cores=0, our_threads=2) == 1.0
    # a session at autogroup nice -15 (28x the weight): measured 0.93 a thread, nice 0 gets 2/3
    prio = eta.autogroup_weight("/autogroup-589 nice -15\n")
    assert prio == pytest.approx(28.4, rel=0.01)
    assert eta.thread_share(0.98, 1.0, cores=2, our_threads=2, weight=prio) == pytest.approx(0.966, abs=0.01)
    assert eta.autogroup_weight("/autogroup-5 nice 0") == 1.0 and eta.autogroup_weight("?") == 1.0
    assert eta.autogroup_weight("/autogroup-5 nice 10") == pytest.approx(0.107, abs=0.001)


def test_probe_cpu_measures_a_share_of_a_core():
    share, others = eta.probe_cpu(2, windows=3, window_s=0.02, gap_s=0.01)
    assert 0.0 < share <= 1.0 and others >= 0.0


def window(share: float, busy_cores: float = 2.0, wall_s: float = 0.1) -> eta.ProbeWindow:
    """A probe window of 0.1 s on 2 cores: the spinning thread got ``share``, all cores ``busy_cores``."""
    return eta.ProbeWindow(wall_s, share * wall_s, busy_jiffies=busy_cores * 5, total_jiffies=2 * 5)


def test_the_probe_is_the_median_of_its_windows_so_one_burst_does_not_set_the_estimate():
    # the full lab of 2026-11-25: one window read 66 % of a core, the run then got 80 %
    steady = [window(0.8, 2.0)] * 4
    assert eta.probe_summary(steady, cores=2) == pytest.approx((0.8, 1.2))
    burst = [window(0.8, 2.0), window(0.3, 2.0), window(0.8, 2.0), window(0.75, 2.0), window(0.85, 2.0)]
    share, others = eta.probe_summary(burst, cores=2)
    assert share == pytest.approx(0.8) and others == pytest.approx(1.2)
    lull = [window(1.0, 1.0), window(0.5, 2.0), window(0.5, 2.0)]  # the others paused for one window
    assert eta.probe_summary(lull, cores=2) == pytest.approx((0.5, 1.5))
    # a window that measured nothing counts for nothing; no window at all: a quiet machine
    assert eta.probe_summary([window(0.6, 2.0), eta.ProbeWindow(0.0, 0.0)], cores=2)[0] == pytest.approx(0.6)
    assert eta.probe_summary([], cores=2) == (1.0, 0.0)
    # off Linux (no /proc/stat): the share alone
    assert eta.probe_summary([eta.ProbeWindow(0.1, 0.04)] * 3, cores=2) == pytest.approx((0.4, 0.0))


# --------------------------------------------------------------------------- previous runs


def test_previous_runs_give_the_shapes_key_back_and_skip_what_cannot_be_timed():
    spec = mlp()
    history = eta.history_from_results([
        stored(spec, epoch_s=0.9, threads=1),
        stored(spec, epoch_s=5.0, threads=1, quick=True),  # quick: start-up, not epochs
        stored(spec, epoch_s=7.0, threads=1, epochs=1),  # one epoch: tracing, not epochs
        {"name": "foreign", "spec": "?"},
        {},
    ])
    assert history == [eta.Measured(eta.shape_key(spec), "mlp raw", 1, 0.9)]


def test_previous_runs_of_another_engine_version_do_not_time_today_s_models():
    conv = dataclasses.replace(mlp("c"), part="cnn", hidden=(10,), dropout=0.0, batch_size=256,
                               conv=(ConvSpec(filters=4, kernel=3),))
    before = stored(conv, epoch_s=9.0, threads=1)
    before["versions"]["engine"] = "1"  # the conv models before their bias change (slower)
    today = stored(conv, epoch_s=5.0, threads=1)
    assert today["versions"]["engine"] == engine.engine_version(conv) != "1"
    assert [m.epoch_s for m in eta.history_from_results([before, today])] == [5.0]
    assert [m.epoch_s for m in eta.history_from_results([stored(mlp(), epoch_s=0.9, threads=1)])] == [0.9]


def test_previous_runs_of_the_same_shape_win_and_correct_their_family():
    a, b = mlp("a"), mlp("b", hidden=150)
    table = {(eta.shape_key(a), 1): 0.5, (eta.shape_key(b), 1): 0.4}
    history = tuple(eta.history_from_results([stored(a, epoch_s=1.5, threads=1),
                                              stored(a, epoch_s=0.3, threads=2)]))
    est = eta.Estimator(threads=1, share=0.5, table=table, history=history)
    assert est.epoch_s(a) == (1.5, "previous runs")  # wall seconds: not rescaled by the load
    seconds, source = est.epoch_s(b)  # same family ran 3x its table figure here
    assert seconds == pytest.approx(0.4 * 3.0) and "previous runs of the family" in source
    other_threads = eta.Estimator(threads=2, table={(eta.shape_key(b), 2): 0.2}, history=history)
    assert other_threads.epoch_s(b) == (pytest.approx(0.2 * eta.crowding(1.0)), "calibration")


# --------------------------------------------------------------------------- schedule and refinement


def test_a_running_experiments_pace_leaves_out_its_first_epoch_which_traces():
    # hog-sigmoid-p4-o8 under load: epoch 1 took 1.18 s (tracing), epoch 2 0.33 s
    assert eta.epochs_left_s(1.51, 2, 100, first_epoch_s=1.18) == pytest.approx(0.33 * 98)
    assert eta.epochs_left_s(1.51, 2, 100) == pytest.approx(1.51 / 2 * 98)  # first epoch unknown
    assert eta.epochs_left_s(1.18, 1, 100, first_epoch_s=1.18) == pytest.approx(1.18 * 99)
    assert eta.epochs_left_s(40.0, 100, 100, first_epoch_s=1.0) == 0.0
    assert eta.epochs_left_s(0.5, 3, 10, first_epoch_s=2.0) == 0.0  # clocks disagree: never negative


def test_makespan_is_a_list_schedule_over_the_jobs():
    assert eta.makespan([5, 3, 3], jobs=1) == 11
    assert eta.makespan([5, 3, 3], jobs=2) == 6
    assert eta.makespan([5, 3, 3], jobs=2, busy_s=[4]) == 8  # 3 -> free worker; 5 -> ...
    assert eta.makespan([], jobs=2, busy_s=[4, -1]) == 4
    assert eta.makespan([1, 1], jobs=4) == 1


def test_refine_applies_each_familys_measured_ratio_and_the_overall_one_to_the_others():
    est = {"r1": 10.0, "r2": 10.0, "c1": 100.0, "h1": 20.0}
    fam = {"r1": "mlp raw", "r2": "mlp raw", "c1": "cnn", "h1": "mlp hog"}
    assert eta.refine(est, fam, {}) == est
    out = eta.refine(est, fam, {"r1": 20.0, "c1": 150.0})
    assert out["r2"] == pytest.approx(20.0)  # raw ran 2x
    assert out["c1"] == pytest.approx(150.0)
    assert out["h1"] == pytest.approx(20.0 * 170 / 110)  # no hog finished: the overall ratio


# --------------------------------------------------------------------------- in a run


def ok_result(spec: ExperimentSpec) -> dict:
    """What a fake trainer returns: a finished run with plausible metrics."""
    r = engine.base_result(spec, status="ok", quick=False, cache_key="")
    r["metrics"] = {"test_loss": 0.1, "test_accuracy": 0.9, "macro_f1": 0.9}
    return r


def test_a_run_prints_the_schedules_estimate_then_refines_it(tmp_path, monkeypatch):
    """Three experiments on one job, a trainer that 'takes' 3x the estimate: the first figure
    is the calibrated one, each finish line re-estimates what is left with the ratio. The
    worker's start-up (TensorFlow's import, here 50 s in the first run) is not taken for
    the first experiment's: it would have inflated every family's ratio."""
    lab = config.load(ROOT / "experiments.toml")
    names = ["raw-tanh-250", "raw-tanh-150", "raw-sigmoid-150"]
    clock = {"t": 1000.0}
    monkeypatch.setattr(runner.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(eta, "probe_cpu", lambda cores: (1.0, 0.0))
    monkeypatch.setattr(runner, "cpu_count", lambda: 2)
    calls = []

    def train(spec, dataset, **kw):
        took = 3 * runner.estimate_seconds(spec, estimator=eta.Estimator(threads=2))
        clock["t"] += took + (50.0 if not calls else 0.0)
        calls.append(spec.name)
        return {**ok_result(spec), "duration_s": took}

    out = io.StringIO()
    runner.run(lab, tmp_path / "build", names=names, jobs=1, progress=out, load_dataset=lambda *a, **k: None,
               train=train)
    est = eta.Estimator(threads=2)
    secs = sorted((est.seconds(lab.by_name(n)) for n in names), reverse=True)
    text = out.getvalue()
    assert f"estimated {runner.fmt_duration(est.startup_s() + sum(secs))}" in text
    assert f"[2 left, about {runner.fmt_duration(3 * (secs[1] + secs[2]))}]" in text
    assert f"[1 left, about {runner.fmt_duration(3 * secs[2])}]" in text


def test_epoch_lines_carry_the_runs_time_left_from_the_running_experiments_own_speed(tmp_path, monkeypatch):
    lab = config.load(ROOT / "experiments.toml")
    names = ["raw-tanh-250", "raw-tanh-150"]
    monkeypatch.setattr(eta, "probe_cpu", lambda cores: (1.0, 0.0))
    monkeypatch.setattr(runner, "cpu_count", lambda: 2)
    est = eta.Estimator(threads=2)

    first, second = (est.seconds(lab.by_name(n)) for n in names)
    # 2 of 10 epochs done: the first traced (a tenth of the estimate), the pace after it puts
    # the whole experiment at 3x the estimate
    first_epoch_s = first / 10
    pace_s = (3 * first - first_epoch_s) / 9

    def train(spec, dataset, *, on_epoch, **kw):
        if spec.name == "raw-tanh-250":
            on_epoch(engine.EpochInfo(1, 10, 0.6, 0.7, 0.6, 0.7, first_epoch_s, first_epoch_s))
            on_epoch(engine.EpochInfo(2, 10, 0.5, 0.8, 0.5, 0.8, pace_s, first_epoch_s + pace_s))
        return ok_result(spec)

    out = io.StringIO()
    runner.run(lab, tmp_path / "build", names=names, jobs=1, progress=out, load_dataset=lambda *a, **k: None,
               train=train)
    expected = runner.fmt_duration(8 * pace_s + 3 * second)
    assert f"epoch 2/10  loss 0.5000  test 0.5000  acc 0.8000  ETA {runner.fmt_duration(8 * pace_s)}" \
           f"  [run: about {expected} left]" in out.getvalue()


def test_a_run_reads_the_previous_full_runs_in_build(tmp_path, monkeypatch):
    from labreport.results import store

    lab = config.load(ROOT / "experiments.toml")
    spec = lab.by_name("raw-tanh-250")
    store.write_result(tmp_path, stored(spec, epoch_s=2.5, threads=1))
    store.write_result(tmp_path, stored(lab.by_name("raw-tanh-150"), epoch_s=9.0, threads=1, quick=True), quick=True)
    monkeypatch.setattr(eta, "probe_cpu", lambda cores: (0.5, 2.0))
    est = eta.for_run(lab, tmp_path, jobs=2, threads=(1, 1), cores=2)
    assert est.threads == 1 and est.share == pytest.approx(1 / 3)  # two threads of a probed 0.5
    assert est.epoch_s(spec) == (2.5, "previous runs")
    assert est.epoch_s(lab.by_name("raw-tanh-150"))[1] == "calibration x previous runs of the family"
    assert eta.for_run(lab, tmp_path, jobs=2, threads=None, cores=2).share == 1.0  # remote workers


def test_a_familys_full_run_correction_scales_the_table_once(monkeypatch):
    """A family's full runs may differ from its calibration (the MNIST CNNs took 0.77x and 0.72x
    of the first one, 1.21x of the one after the micro-batches): corrected once, also when
    previous runs of the family rescale it (no double correction)."""
    monkeypatch.setitem(eta.FULL_RUN_CORRECTION, "mlp raw", 0.5)
    a, b = mlp(), mlp(hidden=77)
    table = {(eta.shape_key(a), 1): 0.4, (eta.shape_key(b), 1): 1.0}
    assert eta.Estimator(threads=1, table=table).epoch_s(a) == (pytest.approx(0.2 * eta.crowding(1.0)), "calibration")
    # b ran here at 0.25 s/epoch, half its corrected table figure: a is expected at half of its own.
    history = (eta.Measured(shape=eta.shape_key(b), family="mlp raw", threads=1, epoch_s=0.25),)
    seconds, _ = eta.Estimator(threads=1, table=table, history=history).epoch_s(a)
    assert seconds == pytest.approx(0.1)


# --------------------------------------------------------------------------- more workers than cores


def test_more_workers_than_cores_is_not_a_busy_machine_but_slows_each_worker(monkeypatch):
    """--jobs 3 on 2 cores: the probe's idle machine stays a share of 1.0 (no "machine is busy"
    note); each worker's epochs take what the cores give divided between 3 threads."""
    lab = config.load(ROOT / "experiments.toml")
    spec = lab.by_name("raw-tanh-250")
    monkeypatch.setattr(eta, "probe_cpu", lambda cores: (1.0, 0.0))
    two = eta.for_run(lab, Path("/nonexistent"), jobs=2, threads=(1, 1), cores=2)
    three = eta.for_run(lab, Path("/nonexistent"), jobs=3, threads=(1, 1), cores=2)
    assert (two.share, two.load) == (1.0, 1.0) and (three.share, three.load) == (1.0, 1.5)
    assert runner._load_note(three) == ""
    slower = eta.crowding(1.5) / eta.crowding(1.0)  # 1.69 / 1.02: 1.65x per epoch, 3 workers for 2
    assert 1.5 < slower < 1.8
    assert three.epoch_s(spec)[0] == pytest.approx(slower * two.epoch_s(spec)[0])
    assert three.startup_s() == pytest.approx(1.5 * two.startup_s())  # start-up: CPU, no gaps
    # the other sessions' load still counts, apart from ours: probe 0.5 -> 1/3 of a core per thread
    monkeypatch.setattr(eta, "probe_cpu", lambda cores: (0.5, 2.0))
    busy = eta.for_run(lab, Path("/nonexistent"), jobs=3, threads=(1, 1), cores=2)
    assert busy.share == pytest.approx(1 / 3) and busy.load == 1.5 and "busy" in runner._load_note(busy)
    assert busy.epoch_s(spec)[0] == pytest.approx(3 * three.epoch_s(spec)[0])
    remote = eta.for_run(lab, Path("/nonexistent"), jobs=3, threads=None, cores=2)
    assert (remote.share, remote.load) == (1.0, 1.0)  # remote workers have their own cores


def test_crowding_turns_cpu_seconds_into_a_workers_wall_seconds():
    """Measured on full labs (tf.data's autotuning off): at --jobs 2 the cores were 98 % busy
    (wall = CPU / 0.98); 3 workers on 2 cores took 1.096x the --jobs 2 time for the same work
    (wall = CPU x 1.5 / 0.89); fewer threads than cores still leave each worker's own gaps."""
    assert eta.crowding(1.0) == pytest.approx(1 / 0.98)
    assert eta.crowding(0.5) == eta.crowding(1.0)
    assert eta.crowding(1.01) == pytest.approx(1.01 / 0.89)  # one worker more than the cores
    assert eta.crowding(1.5) == pytest.approx(1.5 / 0.89)
    assert eta.crowding(2.0) == pytest.approx(2 / 0.89)
    # what the full lab gave: 3,186 CPU s in 26 min 51 s at --jobs 2 (2 workers, 2 cores)
    assert 3186 / 2 * eta.crowding(1.0) / 60 == pytest.approx(26 + 51 / 60, rel=0.02)
    # and at --jobs 3: 29 min 25 s for the same work
    assert (26 * 60 + 51) * (eta.crowding(1.5) / 1.5) / eta.crowding(1.0) == pytest.approx(29 * 60 + 25, rel=0.02)


def test_previous_runs_are_rescaled_from_their_workers_per_core_to_this_runs():
    """A run at --jobs 2 (a core per worker) timed an epoch at 1.0 s: at --jobs 3 the same epoch
    is expected crowding(1.5) / crowding(1.0) = 1.65x as long, and back."""
    a, b = mlp("a"), mlp("b", hidden=150)
    two = tuple(eta.history_from_results([stored(a, epoch_s=1.0, threads=1, workers=2)]))
    three = tuple(eta.history_from_results([stored(a, epoch_s=1.34, threads=1, workers=3)]))
    before = tuple(eta.history_from_results([stored(a, epoch_s=1.0, threads=1)]))  # no "workers": a core each
    assert [m.load for m in two + three + before] == [1.0, 1.5, 1.0]
    ratio = eta.crowding(1.5) / eta.crowding(1.0)
    assert eta.Estimator(threads=1, load=1.5, history=two).epoch_s(a) == (pytest.approx(ratio), "previous runs")
    assert eta.Estimator(threads=1, load=1.5, history=before).epoch_s(a)[0] == pytest.approx(ratio)
    assert eta.Estimator(threads=1, load=1.0, history=three).epoch_s(a)[0] == pytest.approx(1.34 / ratio)
    assert eta.Estimator(threads=1, load=1.5, history=three).epoch_s(a) == (pytest.approx(1.34), "previous runs")
    # the family's ratio is rescaled the same way (and not a second time by the load)
    table = {(eta.shape_key(a), 1): 0.5, (eta.shape_key(b), 1): 0.4}
    seconds, source = eta.Estimator(threads=1, load=1.5, table=table, history=two).epoch_s(b)
    assert source == "calibration x previous runs of the family"
    assert seconds == pytest.approx(0.4 * (1.0 / 0.5) * ratio)


def test_a_local_run_stores_how_many_workers_shared_the_cores(tmp_path, monkeypatch):
    from labreport.results import store

    lab = config.load(ROOT / "experiments.toml")
    monkeypatch.setattr(eta, "probe_cpu", lambda cores: (1.0, 0.0))

    def train(spec, dataset, **kw):
        return {**ok_result(spec), "host": {"cpus": 2, "threads": {"intra_op": 2, "inter_op": 1}}}

    runner.run(lab, tmp_path, names=["raw-tanh-150"], jobs=1, progress=io.StringIO(),
               load_dataset=lambda *a, **k: None, train=train)
    host = store.read_result(tmp_path, "raw-tanh-150", False)["host"]
    assert host["workers"] == 1 and host["threads"]["intra_op"] == 2
    assert eta.history_from_results([{**store.read_result(tmp_path, "raw-tanh-150", False), "epoch_s": 0.5,
                                      "history": {"loss": [1, 1]}}])[0].load == 1.0
