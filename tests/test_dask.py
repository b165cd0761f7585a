"""The Dask backend in-process (LocalCluster): caching, storage, failure isolation, progress, checks.

The same path through real `dask scheduler`/`dask worker` processes and the CLI: test_dask_cluster.py.
"""

from __future__ import annotations

import io
import logging

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from labreport.results import store  # noqa: E402
from labreport.train import dask_executor, runner  # noqa: E402
from test_runner import fake_train, tiny_dataset, write_lab  # noqa: E402


def failing_train(spec, dataset, **kw):
    if spec.name == "mlp-b":
        raise RuntimeError("boom on the worker")
    return fake_train(spec, dataset, **kw)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as c:
        yield c


def run(lab, build, client, train, **kw):
    executor = dask_executor.DaskExecutor(client, load_dataset=tiny_dataset, train=train, say=lambda _l: None)
    return runner.run(lab, build, executor=executor, progress=io.StringIO(), **kw)


def test_results_are_written_by_the_driver_and_cached(tmp_path, client):
    lab = write_lab(tmp_path)
    build = tmp_path / "build"
    first = run(lab, build, client, fake_train)
    assert (first.ran, first.failed) == (3, 0)
    for spec in lab.experiments:
        result = store.read_result(build, spec.name)
        assert result["status"] == "ok"
        assert result["cache_key"] == runner.cache_key(spec)
        assert (store.run_dir(build, spec.name) / "run.log").read_text().strip()
    again = run(lab, build, client, fake_train)
    assert again.ran == 0  # nothing shipped: every result is fresh


def test_a_failing_experiment_on_a_worker_does_not_stop_the_others(tmp_path, client):
    lab = write_lab(tmp_path)
    build = tmp_path / "build"
    summary = run(lab, build, client, failing_train)
    assert (summary.ran, summary.failed) == (3, 1)
    assert store.read_result(build, "mlp-b")["status"] == "failed"
    assert "boom on the worker" in store.read_result(build, "mlp-b")["error"]
    assert {store.read_result(build, n)["status"] for n in ("mlp-a", "cnn-c")} == {"ok"}


def test_progress_events_reach_the_driver_before_each_outcome(tmp_path, client):
    lab = write_lab(tmp_path)
    executor = dask_executor.DaskExecutor(client, load_dataset=tiny_dataset, train=fake_train, say=lambda _l: None)
    tasks = runner.make_tasks(lab.experiments, tmp_path / "build", quick=False, quick_cfg=None)
    seen: list[tuple[str, str, object]] = []
    finished_after: dict[str, int] = {}
    for outcome in executor.run(tasks, lambda ev: seen.append((ev.name, ev.kind, ev.payload))):
        finished_after[outcome.name] = len(seen)
    executor.close()
    for task in tasks:
        mine = [(kind, payload) for name, kind, payload in seen[:finished_after[task.name]] if name == task.name]
        assert mine[0] == ("start", None)
        epochs = [p for kind, p in mine if kind == "epoch"]
        assert [(e.epoch, e.epochs) for e in epochs] == [(1, 2), (2, 2)]  # EpochInfo again on the driver
        assert any(kind == "log" and p.endswith("epoch 2/2") for kind, p in mine)


def test_a_worker_whose_labreport_differs_refuses_the_task_with_both_versions(client):
    identity, entry = dask_executor._shipped()
    mine = identity()
    assert set(mine) == {"labreport", "engine", "code"} and len(mine["code"]) == 12
    expected = {**mine, "code": "0" * 12}
    kind, why = client.submit(entry, b"never unpickled", expected, None, {}, pure=False).result(timeout=60)
    assert kind == "refused"
    assert why.startswith("dask worker tcp://127.0.0.1:")
    assert f"runs labreport {mine['labreport']} (engine {mine['engine']}, code {mine['code']})" in why
    assert f"the driver labreport {mine['labreport']} (engine {mine['engine']}, code 000000000000)" in why


def test_the_check_travels_by_value_and_the_work_by_reference():
    import cloudpickle

    _, entry = dask_executor._shipped()
    shipped = cloudpickle.dumps(entry)
    # By value: the code object itself is in the bytes, not "labreport.train.dask_executor._shipped".
    assert entry.__code__.co_code in shipped
    assert b"_run_remote" in shipped  # the name it calls on the worker, after the check


@pytest.mark.parametrize("worker_threads, host_threads, cores, expected", [
    (1, 2, 2, (1, 1)),   # two 1-thread workers on a 2-core host
    (1, 1, 2, (2, 1)),   # the only worker of its host uses every core
    (2, 2, 8, (8, 1)),   # one process training two experiments shares its pool
    (1, 16, 8, (1, 1)),  # more workers than cores: never 0
    (1, None, 4, (4, 1)),  # a worker that joined after the driver looked
])
def test_tensorflow_threads_share_a_hosts_cores_between_its_dask_threads(worker_threads, host_threads, cores,
                                                                         expected, monkeypatch):
    monkeypatch.delenv("LABREPORT_TF_THREADS", raising=False)
    assert dask_executor.tf_threads(worker_threads, host_threads, cores) == expected
    monkeypatch.setenv("LABREPORT_TF_THREADS", "3")
    assert dask_executor.tf_threads(worker_threads, host_threads, cores) == (3, 1)


def test_a_fully_cached_run_does_not_contact_the_scheduler(tmp_path, client):
    lab = write_lab(tmp_path)
    build = tmp_path / "build"
    run(lab, build, client, fake_train)
    # Nothing listens on port 9 (discard): connecting would fail, and run() must not try.
    executor = dask_executor.DaskExecutor("tcp://127.0.0.1:9", connect_timeout_s=1)
    summary = runner.run(lab, build, executor=executor, progress=io.StringIO())
    assert (summary.ran, summary.skipped) == (0, 3)
    assert executor.client is None


def test_repeats_ship_one_task_per_run_and_each_run_lands_in_its_folder(tmp_path, client):
    path = tmp_path / "experiments.toml"
    write_lab(tmp_path)
    path.write_text(path.read_text().replace('comment = "first"', 'comment = "first"\nrepeats = 3'))
    from labreport import config

    lab = config.load(path)
    build = tmp_path / "build"
    out = io.StringIO()
    executor = dask_executor.DaskExecutor(client, load_dataset=tiny_dataset, train=fake_train, say=lambda _l: None)
    summary = runner.run(lab, build, executor=executor, progress=out, names=["mlp-a"])
    assert (summary.ran, summary.failed) == (3, 0)
    runs = lab.by_name("mlp-a").runs()
    for run_spec in runs:
        result = store.read_result(build, "mlp-a", repeat=run_spec.repeat)
        assert (result["repeat"], result["spec"]["seed"]) == (run_spec.repeat, run_spec.seed)
        assert result["cache_key"] == runner.cache_key(run_spec)
        assert store.run_dir(build, "mlp-a", repeat=run_spec.repeat).joinpath("run.log").read_text().strip()
    assert "mlp-a run 3/3  ok" in out.getvalue()
