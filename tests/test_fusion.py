"""fusion: K runs as one Keras model train as they would alone, each with its own data order,
and a diverging branch spoils none of the others.

The equality tests train full-batch (one batch = the whole tiny training set, no dropout):
then the data order cannot matter, so a fused branch must reproduce its separate
``engine.train_and_evaluate`` run to float rounding, epoch by epoch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from labreport.config.spec import ConvSpec, HogSpec
from labreport.train import engine, fusion, models

from tests.test_engine import RMSPROP, spec, synthetic_dataset

N_TRAIN, N_TEST = 200, 100


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset("mnist", n_train=N_TRAIN, n_test=N_TEST, seed=3)


def full_batch(s, epochs: int = 3):
    return dataclasses.replace(s, batch_size=N_TRAIN, epochs=epochs, dropout=0.0)


# --------------------------------------------------------------------------- grouping (pure)


def test_runs_that_share_inputs_batches_epochs_and_optimizer_form_one_group():
    a1, a2 = spec("a", seed=1), spec("a", seed=7)
    wider = spec("b", hidden=(40,), activation="tanh")  # another shape: still one input, one step
    other_batch = spec("c", batch_size=128)
    other_epochs = spec("d", epochs=5)
    other_lr = spec("e", optimizer=dataclasses.replace(RMSPROP, args=(("learning_rate", 0.01), ("rho", 0.9))))
    cnn = spec("f", part="cnn", conv=(ConvSpec(4, 3),))
    groups = fusion.groups([a1, other_batch, a2, wider, other_epochs, other_lr, cnn])
    assert groups == [(a1, a2, wider), (other_batch,), (other_epochs,), (other_lr,), (cnn,)]


def test_a_large_group_is_cut_into_near_equal_chunks_in_order():
    runs = [spec("a", seed=s) for s in range(1, 11)]
    groups = fusion.groups(runs, max_branches=4)
    assert [len(g) for g in groups] == [4, 3, 3]
    assert [s for g in groups for s in g] == runs


def test_plan_fuses_only_where_it_pays_and_keeps_one_unit_of_work_per_job():
    raw = [spec("raw", seed=s) for s in (1, 2, 3)]
    cnn = [spec("cnn", part="cnn", conv=(ConvSpec(4, 3),), seed=s) for s in (1, 2)]
    items = [("r1", raw[0]), ("c1", cnn[0]), ("r2", raw[1]), ("c2", cnn[1]), ("r3", raw[2])]
    only_mlps = lambda s: not s.conv  # noqa: E731
    units = fusion.plan(items, lambda item: item[1], jobs=2, worth=only_mlps)
    assert [[name for name, _ in u] for u in units] == [["r1", "r2", "r3"], ["c1"], ["c2"]]
    # three repeats alone at --jobs 2: two units, not one fused group leaving a core idle
    units = fusion.plan(items[::2], lambda item: item[1], jobs=2, worth=only_mlps)
    assert [[name for name, _ in u] for u in units] == [["r1", "r2"], ["r3"]]
    assert fusion.plan(items[::2], lambda item: item[1], jobs=1, worth=only_mlps) == [tuple(items[::2])]
    assert fusion.plan(items, lambda item: item[1], jobs=2, worth=lambda s: False) == [(i,) for i in items]
    # a sweep neighbour (another experiment of the same input and batches) is not fused
    other = ("o1", spec("other", hidden=(40,)))
    units = fusion.plan([items[0], other, items[2]], lambda item: item[1], jobs=1, worth=only_mlps)
    assert [[name for name, _ in u] for u in units] == [["r1", "r2"], ["o1"]]


def test_fusion_is_used_for_the_mlps_only_where_it_was_measured_to_pay():
    assert fusion.pays(spec("raw")) and fusion.pays(spec("hog", part="hog", hog=HogSpec(4, 8)))
    assert not fusion.pays(spec("cnn", part="cnn", conv=(ConvSpec(4, 3),)))
    assert not fusion.pays(spec("f", part="fashion", dataset="fashion", conv=(ConvSpec(4, 3),)))


def test_fusion_is_on_unless_the_environment_says_0():
    assert fusion.enabled({})
    assert fusion.enabled({"LABREPORT_FUSION": "1"})
    assert not fusion.enabled({"LABREPORT_FUSION": "0"})
    assert not fusion.enabled({"LABREPORT_FUSION": "off"})
    assert fusion.enabled({"LABREPORT_FUSION": " "})
    from labreport.env import EnvError

    with pytest.raises(EnvError, match="LABREPORT_FUSION='maybe': expected one of 1, true, yes, on or 0, false"):
        fusion.enabled({"LABREPORT_FUSION": "maybe"})


def test_a_bad_LABREPORT_FUSION_stops_run_before_anything_with_exit_2(tmp_path, capsys, monkeypatch):
    from labreport import cli

    _lab(tmp_path, 2)
    monkeypatch.setenv("LABREPORT_FUSION", "sometimes")
    code = cli.main(["run", "-c", str(tmp_path / "experiments.toml"), "-b", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert code == 2 and "LABREPORT_FUSION='sometimes'" in err and "Traceback" not in err
    assert not (tmp_path / "build" / "runs").exists()


def test_train_group_refuses_runs_that_cannot_share_one_model(data):
    with pytest.raises(ValueError, match="do not share"):
        fusion.train_group([spec("a"), spec("b", batch_size=32)], data)


# --------------------------------------------------------------------------- data order


@pytest.mark.tf
def test_each_branch_has_its_own_order_fixed_by_its_seed_and_new_each_epoch():
    def order(seed, key):
        return fusion.epoch_order(seed, key, 500).numpy()

    first = order(1, 0)
    assert sorted(first) == list(range(500))
    assert np.array_equal(first, order(1, 0))  # reproducible
    assert not np.array_equal(first, order(2, 0))  # another seed (another repeat): another order
    assert not np.array_equal(first, order(1, 1))  # another epoch's key: another order
    keys = fusion.epoch_keys(5)
    passes = [list(keys.as_numpy_iterator()) for _ in range(3)]
    assert all(len(p) == 1 for p in passes) and len({p[0] for p in passes}) == 3  # a new key every pass
    again = fusion.epoch_keys(5)
    assert [list(again.as_numpy_iterator()) for _ in range(3)] == passes  # the sequence is the seed's


@pytest.mark.tf
def test_a_branchs_order_does_not_depend_on_the_group_it_is_fused_with():
    # _fit seeds the global state with each branch's seed in turn: the last one must not leak.
    import keras

    n, batch = 40, 8
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    y = engine.one_hot(np.arange(n) % 10)

    def orders(seeds, last_seed):
        keras.utils.set_random_seed(last_seed)
        ds = fusion.training_batches(seeds, x, y, batch)
        return [np.concatenate([xb["input0"][:, 0] for xb, _ in epoch])
                for epoch in (list(ds.as_numpy_iterator()) for _ in range(2))]

    with_runs_2_3 = orders([11, 12, 13], last_seed=13)
    with_run_2 = orders([11, 12], last_seed=12)
    for a, b in zip(with_runs_2_3, with_run_2, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.tf
def test_the_batches_give_every_branch_every_row_once_per_epoch_in_its_own_order():
    n, batch = 10, 4
    x = np.arange(n, dtype=np.float32).reshape(n, 1) * np.ones((1, 3), np.float32)
    y = engine.one_hot(np.arange(n) % 10)
    ds = fusion.training_batches([5, 6], x, y, batch)
    epochs = [list(ds.as_numpy_iterator()) for _ in range(2)]
    assert [[len(xb["input0"]) for xb, _ in e] for e in epochs] == [[4, 4, 2]] * 2  # one epoch per pass
    for k, seed in ((0, 5), (1, 6)):
        inp, out = fusion.input_name(k), fusion.branch_name(k)
        keys = fusion.epoch_keys(seed)
        for epoch in epochs:
            (key,) = list(keys.as_numpy_iterator())
            rows = np.concatenate([xb[inp][:, 0] for xb, _ in epoch]).astype(int)
            assert np.array_equal(rows, fusion.epoch_order(seed, key, n).numpy())
            labels = np.concatenate([yb[out] for _, yb in epoch]).argmax(axis=1)
            assert np.array_equal(labels, rows % 10)  # each row keeps its own label
    first, second = ([np.concatenate([xb["input0"][:, 0] for xb, _ in e]) for e in epochs])
    assert not np.array_equal(first, second)


# --------------------------------------------------------------------------- training


def _separate(specs, data):
    return [engine.train_and_evaluate(s, data) for s in specs]


def _assert_same_run(fused: dict, alone: dict):
    assert (fused["status"], fused["error"]) == (alone["status"], alone["error"]) == ("ok", None)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(fused["history"][key], alone["history"][key], rtol=2e-4, atol=1e-6,
                                   err_msg=f"{fused['name']}: {key}")
    assert fused["confusion"] == alone["confusion"]
    assert fused["params"] == alone["params"]
    assert fused["metrics"]["macro_f1"] == pytest.approx(alone["metrics"]["macro_f1"], abs=1e-9)


@pytest.mark.tf
def test_fused_repeats_and_a_sweep_neighbour_train_exactly_as_alone(data):
    specs = [full_batch(spec("a", seed=1)), full_batch(spec("a", seed=9)),
             full_batch(spec("b", hidden=(24,), activation="tanh", seed=1))]
    lines: list[list[str]] = [[], [], []]
    epochs_seen: list[list[int]] = [[], [], []]
    fused = fusion.train_group(specs, data, cache_keys=["k1", "k2", "k3"],
                               logs=[ls.append for ls in lines],
                               on_epochs=[lambda info, k=k: epochs_seen[k].append(info.epoch) for k in range(3)])
    alone = _separate(specs, data)
    for f, a in zip(fused, alone):
        _assert_same_run(f, a)
    # the two repeats differ (their own seeds), as they would alone
    assert fused[0]["history"]["loss"] != fused[1]["history"]["loss"]
    assert [r["cache_key"] for r in fused] == ["k1", "k2", "k3"]
    assert [r["fused"]["branch"] for r in fused] == [1, 2, 3]
    assert all(r["fused"]["branches"] == 3 for r in fused)
    group_s = fused[0]["fused"]["duration_s"]
    assert all(r["duration_s"] == pytest.approx(group_s / 3, abs=2e-3) for r in fused)
    assert epochs_seen == [[1, 2, 3]] * 3
    assert all(any(line.startswith("epoch 3/3") for line in ls) for ls in lines)


@pytest.mark.tf
def test_a_cnn_group_trains_exactly_as_alone(data):
    conv = (ConvSpec(4, 3), ConvSpec(6, 3))
    specs = [full_batch(spec("c", part="cnn", conv=conv, hidden=(12,), seed=s), epochs=2) for s in (2, 3)]
    for f, a in zip(fusion.train_group(specs, data), _separate(specs, data)):
        _assert_same_run(f, a)


@pytest.mark.tf
def test_epochs_of_many_small_steps_keep_their_boundaries_as_alone(data):
    """Several steps per graph call (engine.steps_per_execution) with a partial last call: each
    fused epoch must be exactly one pass, as alone. With every training row the same image,
    the data order cannot matter, so histories must agree step for step."""
    same = dataclasses.replace(data, x_train=np.repeat(data.x_train[:1], N_TRAIN, axis=0),
                               y_train=np.repeat(data.y_train[:1], N_TRAIN))
    specs = [spec("a", seed=s, batch_size=3, epochs=3) for s in (1, 2)]  # 67 steps: 32 + 32 + 3
    assert engine.steps_per_execution(N_TRAIN, 3) == 32
    for f, a in zip(fusion.train_group(specs, same), _separate(specs, same)):
        _assert_same_run(f, a)


def _nan_in_branch(bad: int):
    """models.build, except that branch ``bad`` starts with a NaN weight: its first loss is NaN."""
    def build(s, n_inputs, *, name):
        model = models.build(s, n_inputs, name=name)
        if name == fusion.branch_name(bad):
            layer = model.get_layer("output")
            kernel, bias = layer.get_weights()
            bias[0] = np.nan  # (a NaN before a relu may vanish: relu(NaN) is 0 on this build)
            layer.set_weights([kernel, bias])
        return model

    return build


@pytest.mark.tf
def test_a_diverging_branch_is_marked_diverged_and_the_others_train_on_exactly_as_alone(data):
    specs = [full_batch(spec("a", seed=1)), full_batch(spec("a", seed=2)), full_batch(spec("a", seed=3))]
    lines: list[list[str]] = [[], [], []]
    fused = fusion.train_group(specs, data, logs=[ls.append for ls in lines], build=_nan_in_branch(1))
    bad = fused[1]
    assert bad["status"] == "diverged"
    assert bad["metrics"]["diverged_epoch"] == 1
    assert bad["error"] == "the training loss became NaN or infinite at epoch 1"
    assert bad["history"]["loss"] == [None]  # its history stops where it diverged, as alone
    assert bad["confusion"] == []
    assert any("this branch diverged" in line for line in lines[1])
    alone = _separate([specs[0], specs[2]], data)
    _assert_same_run(fused[0], alone[0])
    _assert_same_run(fused[2], alone[1])
    assert len(fused[0]["history"]["loss"]) == 3  # the NaN stopped neither fit nor the others


@pytest.mark.tf
def test_fit_stops_when_every_branch_has_diverged(data):
    specs = [full_batch(spec("a", seed=1), epochs=4)]
    fused = fusion.train_group(specs, data, build=_nan_in_branch(0))
    assert fused[0]["status"] == "diverged"
    assert len(fused[0]["history"]["loss"]) == 1


@pytest.mark.tf
def test_minibatch_branches_learn_with_their_own_order_and_a_failure_fails_the_group(data):
    specs = [spec("a", seed=1, batch_size=32, epochs=3), spec("a", seed=4, batch_size=32, epochs=3)]
    fused = fusion.train_group(specs, data)
    assert [r["status"] for r in fused] == ["ok", "ok"]
    assert all(r["metrics"]["test_accuracy"] > 0.5 for r in fused)  # the synthetic bars are easy
    assert fused[0]["history"] != fused[1]["history"]

    def broken(s, n_inputs, *, name):
        raise RuntimeError("no model today")

    lines: list[str] = []
    failed = fusion.train_group(specs, data, build=broken, logs=[lines.append, lambda _l: None])
    assert [r["status"] for r in failed] == ["failed", "failed"]
    assert failed[0]["error"] == "RuntimeError: no model today"
    assert any("Traceback" in line for line in lines)


# --------------------------------------------------------------------------- the runner's grouping step

LAB = """\
[defaults]
optimizer = {{ name = "rmsprop" }}
batch_size = 64
seed = 7

[[experiment]]
name = "mlp-a"
part = "raw"
hidden = 16
activation = "relu"
epochs = 2
repeats = {repeats}

[[experiment]]
name = "cnn-a"
part = "cnn"
conv = [{{ filters = 3, kernel = 3 }}]
hidden = 8
activation = "relu"
epochs = 1
"""


def _lab(tmp_path, repeats: int):
    from labreport import config

    path = tmp_path / "experiments.toml"
    path.write_text(LAB.format(repeats=repeats))
    return config.load(path)


def _run(lab, build, **kwargs):
    import io

    from labreport.train import runner
    from test_runner import tiny_dataset

    out = io.StringIO()
    summary = runner.run(lab, build, load_dataset=tiny_dataset, progress=out, **kwargs)
    return summary, out.getvalue()


@pytest.fixture
def raw_mlps_pay(monkeypatch):
    """Fusion on for the raw MLPs only, whatever the measured table says today."""
    monkeypatch.setattr(fusion, "FUSED_FAMILIES", frozenset({"mlp raw"}))
    monkeypatch.delenv(fusion.ENV_VAR, raising=False)


@pytest.mark.tf
def test_the_runner_fuses_the_stale_repeats_and_stores_each_run_on_its_own(tmp_path, raw_mlps_pay):
    from labreport.results import store

    build = tmp_path / "build"
    summary, out = _run(_lab(tmp_path, 3), build)
    assert summary.ran == 4 and summary.ok
    assert "running 4 run(s) of 2 experiment(s)" in out and "3 of them as 1 fused model(s)" in out
    runs = [store.read_result(build, "mlp-a", repeat=r) for r in (1, 2, 3)]
    assert [r["repeat"] for r in runs] == [1, 2, 3]
    assert [r["fused"]["branch"] for r in runs] == [1, 2, 3]
    assert runs[0]["fused"]["runs"] == ["mlp-a", "mlp-a/repeat-2", "mlp-a/repeat-3"]
    assert len({r["spec"]["seed"] for r in runs}) == 3
    assert all(r["status"] == "ok" and len(r["history"]["loss"]) == 2 for r in runs)
    assert store.read_result(build, "cnn-a")["fused"] is None  # not a family where fusion pays
    log2 = _log_of(build, "mlp-a", 2)
    assert "fused: one Keras model of 3 branches" in log2 and "run 2/3" in log2

    # raising repeats trains only the new runs, fused together; the fresh ones stay as they are
    before = (build / "runs" / "mlp-a" / "result.json").read_bytes()
    summary, out = _run(_lab(tmp_path, 5), build)
    assert summary.ran == 2 and sorted(summary.names()) == ["mlp-a/repeat-4", "mlp-a/repeat-5"]
    assert (build / "runs" / "mlp-a" / "result.json").read_bytes() == before
    assert store.read_result(build, "mlp-a", repeat=5)["fused"]["runs"] == ["mlp-a/repeat-4", "mlp-a/repeat-5"]


def _log_of(build, name: str, repeat: int) -> str:
    from labreport.results.layout import BuildLayout

    return BuildLayout(build).log_path(name, repeat).read_text()


@pytest.mark.tf
def test_LABREPORT_FUSION_0_trains_the_repeats_one_by_one(tmp_path, raw_mlps_pay, monkeypatch):
    from labreport.results import store

    monkeypatch.setenv(fusion.ENV_VAR, "0")
    build = tmp_path / "build"
    summary, out = _run(_lab(tmp_path, 2), build, names=["mlp-a"])
    assert summary.ran == 2 and "fused" not in out
    assert all(store.read_result(build, "mlp-a", repeat=r)["fused"] is None for r in (1, 2))


def _fused_task(tmp_path, n: int):
    from labreport.train import runner

    runs = _lab(tmp_path, n).experiments[0].runs()
    tasks = runner.make_tasks(runs, tmp_path / "build", quick=False, quick_cfg=None)
    (task,) = runner.fuse_tasks(tasks, jobs=1)
    return task


def test_a_fused_task_gives_each_run_its_own_outcome_status_identity_and_log(tmp_path, raw_mlps_pay):
    from labreport.train import runner
    from test_runner import tiny_dataset

    task = _fused_task(tmp_path, 3)
    assert [r.name for r in task.runs] == ["mlp-a", "mlp-a/repeat-2", "mlp-a/repeat-3"]

    def one_diverges(specs, dataset, *, logs, cache_keys, **_):
        out = []
        for k, (s, log) in enumerate(zip(specs, logs)):
            log(f"branch of seed {s.seed}")
            r = engine.base_result(s, status="diverged" if k == 1 else "ok", quick=False, cache_key="?")
            r["history"]["loss"] = [1.0, float("nan")] if k == 1 else [1.0, 0.5]
            out.append(r)
        return out

    events = []
    outcome = runner.Worker(tiny_dataset, train_group=one_diverges).run(task, events.append)
    assert [o.name for o in outcome.all] == [r.name for r in task.runs]
    assert [o.result["status"] for o in outcome.all] == ["ok", "diverged", "ok"]
    assert [o.result["repeat"] for o in outcome.all] == [1, 2, 3]
    assert [o.result["cache_key"] for o in outcome.all] == [r.cache_key for r in task.runs]
    assert outcome.more[0].result["history"]["loss"] == [1.0, None]  # stored without the NaN
    for o, r in zip(outcome.all, task.runs):
        assert f"branch of seed {r.spec.seed}" in o.log and "run " in o.log
    assert {e.name for e in events if e.kind == "start"} == {r.name for r in task.runs}

    # a worker process that dies takes the whole group: every run is stored failed
    failed = runner.failed_outcome(task, "worker process failed: BrokenProcessPool")
    assert [o.result["status"] for o in failed.all] == ["failed"] * 3
    assert [o.result["repeat"] for o in failed.all] == [1, 2, 3]


def test_ctrl_c_in_a_fused_group_says_its_runs_are_not_stored(tmp_path, raw_mlps_pay):
    """A fused group's runs end together: interrupted after some epochs, none of them is kept,
    and the one line Ctrl-C prints says so instead of implying something was."""
    import io

    from labreport.results import store
    from labreport.train import runner
    from test_runner import tiny_dataset

    task = _fused_task(tmp_path, 3)

    def interrupted(specs, dataset, *, logs, **_):
        for log in logs:
            log("epoch 1/1 done")
        raise KeyboardInterrupt

    build = tmp_path / "build"
    executor = runner.InProcessExecutor(runner.Worker(tiny_dataset, train_group=interrupted))
    sink = runner._Sink(build, False, {r.name: r for r in task.runs}, runner.Progress(io.StringIO(), live=False), 1,
                        unit="run(s)")
    with pytest.raises(runner.RunInterrupted) as info:
        runner._execute(executor, [task], sink, 0, 0.0)
    assert info.value.summary.ran == 0
    assert info.value.message == ("interrupted: 0 runs finished and stored; mlp-a runs 1-3 (fused): interrupted,"
                                  " not stored; run again to continue.")
    assert [store.read_result(build, "mlp-a", repeat=r) for r in (1, 2, 3)] == [None] * 3
    assert "interrupted (Ctrl-C): no result stored" in _log_of(build, "mlp-a", 2)


def test_a_fused_tasks_estimate_counts_the_measured_gain(tmp_path, raw_mlps_pay):
    from labreport.train import runner

    runs = _lab(tmp_path, 3).experiments[0].runs()
    alone = runner.make_tasks(runs, tmp_path / "build", quick=False, quick_cfg=None)
    (task,) = runner.fuse_tasks(alone, jobs=1)
    assert fusion.FUSED_SPEEDUP > 1 and all(t.estimate_s > 0 for t in alone)
    assert task.estimate_s == pytest.approx(sum(t.estimate_s for t in alone) / fusion.FUSED_SPEEDUP)
