"""The Dask backend: same caching, storage and failure isolation as the local pool."""

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
    executor = dask_executor.DaskExecutor(client, load_dataset=tiny_dataset, train=train)
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
