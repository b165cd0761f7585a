"""The Dask path as users run it: real `dask scheduler` / `dask worker` processes on 127.0.0.1, the CLI.

Every server listens on 127.0.0.1 on a port chosen free; every wait is bounded; the fixtures
kill every process they start. The workers train with fakes preloaded into them
(tests/dask_worker_fakes.py: no TensorFlow, an epoch is a short sleep), except the one
end-to-end test that trains real (tiny, --quick) models on the real data through `make report`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "robustness"))
from robust_helpers import cli, isolated_env  # noqa: E402

DASK = Path(sys.executable).with_name("dask")
FAKES = HERE / "dask_worker_fakes.py"
DATA = Path(os.environ.get("LABREPORT_DATA_DIR", ROOT / "build" / "data"))
START_TIMEOUT_S = 90  # a loaded 2-core machine imports distributed slowly

TWO = """\
[report]
title = "Cluster"

[[experiment]]
name = "quick-one"
part = "raw"
hidden = 16
activation = "relu"
batch_size = 64
epochs = {epochs_a}

[[experiment]]
name = "long-one"
from = "quick-one"
hidden = 8
epochs = {epochs_b}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str, step_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


class Cluster:
    """A scheduler and workers as separate processes, logs in ``folder``; ``close`` kills them all."""

    def __init__(self, folder: Path, scheduler_env: dict | None = None):
        self.folder = folder
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        folder.mkdir(parents=True, exist_ok=True)
        self._spawn("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                  "--no-dashboard"], {**isolated_env(folder), **(scheduler_env or {})})
        wait_until(self._listening, START_TIMEOUT_S, f"the scheduler on {self.address}", 0.2)

    def _spawn(self, name: str, args: list[str], env: dict, cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")
        proc = subprocess.Popen([str(DASK), *args], cwd=cwd or self.folder, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def add_worker(self, *, fakes: bool = True, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
        """One `dask worker --no-nanny` (so SIGKILL really kills the worker), 1 thread."""
        name = f"worker{len(self.workers) + 1}"
        args = ["worker", self.address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                "--no-dashboard", "--death-timeout", "60", "--name", name,
                "--local-directory", str(self.folder / name)]
        if fakes:
            args += ["--preload", str(FAKES)]
        worker_env = {**isolated_env(self.folder), "LABREPORT_FAKE_EPOCH_S": "0.2", **(env or {})}
        proc = self._spawn(name, args, worker_env, cwd)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT_S)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.folder.glob("*.log")))

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:  # a graceful Dask shutdown can take 10 s: not our subject
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def make_cluster(tmp_path):
    clusters: list[Cluster] = []

    def make(n_workers: int = 0, scheduler_env: dict | None = None, **worker_kw) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(clusters) + 1}", scheduler_env)
        clusters.append(cluster)
        for _ in range(n_workers):
            cluster.add_worker(**worker_kw)
        if n_workers:
            cluster.wait_for_workers(n_workers)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()


def project(tmp_path: Path, epochs_a: int = 1, epochs_b: int = 3) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / "experiments.toml").write_text(TWO.format(epochs_a=epochs_a, epochs_b=epochs_b))
    return folder


def result(folder: Path, name: str) -> dict | None:
    path = folder / "build" / "runs" / name / "result.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_log(folder: Path, name: str) -> str:
    path = folder / "build" / "runs" / name / "run.log"
    return path.read_text() if path.exists() else ""


# --------------------------------------------------------------------------- the happy path


def test_run_ships_experiments_to_the_workers_and_prints_their_epochs(tmp_path, make_cluster):
    cluster = make_cluster(2)
    folder = project(tmp_path, epochs_a=2, epochs_b=3)
    out = cli("run", "--scheduler", cluster.address, cwd=folder, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr + cluster.logs()
    assert "Traceback" not in out.stderr
    assert "dask: 2 worker(s), 2 thread(s) at " + cluster.address in out.stdout
    # Remote epochs reach the driver's console, each before its experiment's final line.
    for name, epochs in (("quick-one", 2), ("long-one", 3)):
        lines = out.stdout.splitlines()
        epoch_at = [i for i, line in enumerate(lines) if f"{name}  epoch {epochs}/{epochs}" in line]
        done_at = [i for i, line in enumerate(lines) if f"{name}  ok  test loss" in line]
        assert epoch_at and done_at and epoch_at[0] < done_at[0], out.stdout
        stored = result(folder, name)
        assert stored["status"] == "ok" and stored["name"] == name
        assert "ran on dask worker tcp://127.0.0.1:" in run_log(folder, name)
    # Both workers took one: experiments run in parallel, not one after the other.
    workers = {run_log(folder, n).split("ran on dask worker ")[1].split()[0] for n in ("quick-one", "long-one")}
    assert len(workers) == 2
    again = cli("run", "--scheduler", cluster.address, cwd=folder, timeout=120)
    assert again.returncode == 0 and "2 experiment(s) up to date" in again.stdout
    assert "dask:" not in again.stdout  # nothing stale: the cluster is not even contacted


# --------------------------------------------------------------------------- faults


def test_an_unreachable_scheduler_exits_2_naming_the_address_and_the_reason(tmp_path):
    folder = project(tmp_path)
    address = f"tcp://127.0.0.1:{free_port()}"  # nobody listens there
    out = cli("run", "--scheduler", address, cwd=folder, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == (f"labreport: cannot reach the Dask scheduler at {address}: connection refused "
                                  "(start it with `dask scheduler`, or check the address and the firewall)")
    assert not (folder / "build" / "runs").exists()
    bad = cli("run", "--scheduler", "tcp://[::1", cwd=folder, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("labreport: --scheduler 'tcp://[::1' is not a Dask address like tcp://HOST:8786")


def kill_a_worker_mid_experiment(tmp_path, cluster) -> tuple[Path, str, str, int]:
    """Run the two experiments, SIGKILL the worker training long-one at its epoch 2; (folder, stdout, stderr)."""
    folder = project(tmp_path, epochs_a=12, epochs_b=12)
    driver = subprocess.Popen([sys.executable, "-m", "labreport", "run", "--scheduler", cluster.address],
                              cwd=folder, env=isolated_env(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        # run.log is written by the driver from the workers' events: its first line names the worker's pid.
        def both_training():
            logs = {n: run_log(folder, n) for n in ("quick-one", "long-one")}
            return logs if all("epoch 2/12" in log for log in logs.values()) else None

        logs = wait_until(both_training, 60, "both experiments to train on their workers")
        victim_pid = int(logs["long-one"].split(", pid ")[1].split()[0])
        victim = next(w for w in cluster.workers if w.pid == victim_pid)
        os.kill(victim_pid, signal.SIGKILL)
        victim.wait(timeout=10)
        stdout, stderr = driver.communicate(timeout=90)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=10)
    assert driver.returncode is not None
    return folder, stdout, stderr, driver.returncode


def test_a_worker_killed_mid_experiment_is_replaced_by_another_and_every_experiment_finishes(tmp_path, make_cluster):
    cluster = make_cluster(2, env={"LABREPORT_FAKE_EPOCH_S": "0.5"})
    folder, stdout, stderr, status = kill_a_worker_mid_experiment(tmp_path, cluster)
    assert status == 0, stdout + stderr + cluster.logs()
    assert {result(folder, n)["status"] for n in ("quick-one", "long-one")} == {"ok"}
    log = run_log(folder, "long-one")
    assert "restarted on dask worker tcp://127.0.0.1:" in log and "was lost" in log
    assert "epoch 12/12" in log


def test_a_killed_worker_beyond_the_allowed_failures_stores_its_experiment_as_failed(tmp_path, make_cluster):
    cluster = make_cluster(2, scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"},
                           env={"LABREPORT_FAKE_EPOCH_S": "0.5"})
    folder, stdout, stderr, status = kill_a_worker_mid_experiment(tmp_path, cluster)
    assert status == 1, stdout + stderr + cluster.logs()
    assert "Traceback" not in stderr
    assert result(folder, "quick-one")["status"] == "ok"
    failed = result(folder, "long-one")
    assert failed["status"] == "failed"
    assert failed["error"].startswith("dask: KilledWorker: Attempted to run task 'labreport-long-one-")
    assert "long-one  FAILED: dask: KilledWorker" in stdout


def test_a_worker_with_another_labreport_fails_each_experiment_with_a_sentence(tmp_path, make_cluster):
    other = tmp_path / "other"
    shutil.copytree(ROOT / "labreport", other / "labreport", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "labreport" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9-other-'))
    # Like an old release: no dask_executor at all. The check is shipped by value, so it still runs.
    (other / "labreport" / "train" / "dask_executor.py").unlink()
    cluster = make_cluster(1, env={"PYTHONPATH": str(other)})
    folder = project(tmp_path)
    out = cli("run", "--scheduler", cluster.address, cwd=folder, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr + cluster.logs()
    assert "Traceback" not in out.stderr
    for name in ("quick-one", "long-one"):
        stored = result(folder, name)
        assert stored["status"] == "failed"
        assert stored["error"].startswith("dask worker tcp://127.0.0.1:")
        assert "runs labreport 9.9-other-" in stored["error"]
        assert stored["error"].endswith("install the same labreport on every worker")
        assert f"{name}  FAILED: dask worker tcp://127.0.0.1:" in out.stdout


def test_a_worker_without_the_data_fails_its_experiments_with_the_data_error(tmp_path, make_cluster):
    # A worker started in an empty folder, offline, with no package source: datasets.load finds nothing.
    cluster = make_cluster(1, env={"LABREPORT_FAKE_REAL_DATA": "1"})
    folder = project(tmp_path)
    out = cli("run", "quick-one", "--scheduler", cluster.address, cwd=folder, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr + cluster.logs()
    stored = result(folder, "quick-one")
    assert stored["status"] == "failed"
    assert stored["error"].startswith("DataError: cannot load data set 'mnist'; tried:")
    assert "cannot load data set 'mnist'" in run_log(folder, "quick-one")


@pytest.mark.skipif(not (DATA / "mnist.npz").exists(), reason=f"no data in {DATA}: run `make data`")
def test_a_worker_without_the_data_fetches_and_verifies_it_into_its_own_folder(tmp_path, make_cluster):
    keras_home = tmp_path / "keras"
    (keras_home / "datasets").mkdir(parents=True)
    shutil.copy(DATA / "mnist.npz", keras_home / "datasets" / "mnist.npz")  # the worker machine's Keras cache
    cluster = make_cluster(1, env={"LABREPORT_FAKE_REAL_DATA": "1", "KERAS_HOME": str(keras_home)})
    folder = project(tmp_path)
    out = cli("run", "quick-one", "--scheduler", cluster.address, cwd=folder, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr + cluster.logs()
    assert result(folder, "quick-one")["status"] == "ok"
    # Verified and cached where the worker runs (its build/data), not in the driver's build/.
    assert (cluster.folder / "build" / "data" / "mnist.npz").exists()
    assert not (folder / "build" / "data").exists()


@pytest.mark.parametrize("stop", ["ctrl-c", "kill -9"])
def test_stopping_the_driver_stops_the_remote_experiment(tmp_path, make_cluster, stop):
    trace = tmp_path / "epochs.trace"
    cluster = make_cluster(2, env={"LABREPORT_FAKE_TRACE": str(trace)})
    folder = project(tmp_path, epochs_a=1, epochs_b=300)  # long-one: 60 s, far longer than we wait
    driver = subprocess.Popen([sys.executable, "-m", "labreport", "run", "--scheduler", cluster.address],
                              cwd=folder, env=isolated_env(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_until(lambda: result(folder, "quick-one") and "epoch 3/300" in run_log(folder, "long-one"), 60,
                   "quick-one stored and long-one training")
        driver.send_signal(signal.SIGINT if stop == "ctrl-c" else signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=10)
    assert result(folder, "quick-one")["status"] == "ok"
    assert result(folder, "long-one") is None
    if stop == "ctrl-c":
        assert driver.returncode == 130, stdout + stderr
        assert "Traceback" not in stderr
        said = [line for line in (stdout + stderr).splitlines() if line.startswith("interrupted")]
        assert said == ["interrupted: 1 experiment finished and stored; long-one: interrupted, not stored;"
                        " run again to continue."], stdout + stderr
        assert "interrupted (Ctrl-C): no result stored" in run_log(folder, "long-one")

    # The worker stops training at its next epoch (0.2 s), instead of going on for a minute: Ctrl-C
    # cancels the task; a killed driver's client disappears and the scheduler releases its tasks.
    def long_epochs() -> int:
        return sum(1 for line in trace.read_text().splitlines() if line.startswith("long-one "))

    time.sleep(1.0)
    seen = long_epochs()
    time.sleep(1.5)
    assert long_epochs() == seen < 300


def test_losing_the_scheduler_mid_run_exits_1_in_one_line_and_keeps_what_finished(tmp_path, make_cluster):
    cluster = make_cluster(2)
    folder = project(tmp_path, epochs_a=1, epochs_b=300)
    driver = subprocess.Popen([sys.executable, "-m", "labreport", "run", "--scheduler", cluster.address],
                              cwd=folder, env=isolated_env(folder, LABREPORT_DASK_TIMEOUT="3"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: result(folder, "quick-one") and "epoch 2/300" in run_log(folder, "long-one"), 60,
                   "quick-one stored and long-one training")
        scheduler = cluster.procs[0]
        scheduler.kill()
        scheduler.wait(timeout=10)
        stdout, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=10)
    assert driver.returncode == 1, stdout + stderr
    assert stderr.strip().splitlines() == [
        f"labreport: lost the connection to the Dask scheduler at {cluster.address} (FutureCancelledError); "
        "1 experiment(s) finished and stored, 1 not; run again to continue"], stderr
    assert result(folder, "quick-one")["status"] == "ok"
    assert result(folder, "long-one") is None  # not stored as failed: the next run simply runs it


# --------------------------------------------------------------------------- real training, `make report`


@pytest.mark.slow  # ~45 s on a loaded 2-core machine: TensorFlow starts in both workers
@pytest.mark.skipif(not (DATA / "mnist.npz").exists(), reason=f"no data in {DATA}: run `make data`")
def test_make_report_with_a_scheduler_trains_real_models_on_the_workers(tmp_path, make_cluster):
    # Real TensorFlow on the workers, real MNIST, --quick with tiny caps; the data is the workers' own.
    caps = {"LABREPORT_QUICK_EPOCHS": "2", "LABREPORT_QUICK_TRAIN": "300", "LABREPORT_QUICK_TEST": "100"}
    cluster = make_cluster(2, fakes=False, env={"LABREPORT_DATA_DIR": str(DATA)})
    folder = project(tmp_path, epochs_a=2, epochs_b=2)
    from labreport.results import store

    store.mark_build(folder / "build")  # a build folder labreport made earlier...
    (folder / "build" / "data").symlink_to(DATA)  # ...with the data in it: `make data` verifies, no fetch
    env = {**os.environ, **caps}
    env.pop("LABREPORT_DATA_DIR", None)
    out = subprocess.run(["make", "-C", str(ROOT), "report", "QUICK=1", f"LABREPORT_SCHEDULER={cluster.address}",
                          f"CONFIG={folder / 'experiments.toml'}", f"BUILD={folder / 'build'}"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:] + cluster.logs()
    assert f"dask: 2 worker(s), 2 thread(s) at {cluster.address}" in out.stdout
    assert "quick-one  epoch 2/2" in out.stdout  # a real Keras epoch, printed by the driver
    for name in ("quick-one", "long-one"):
        path = folder / "build" / "quick" / "runs" / name
        stored = json.loads((path / "result.json").read_text())
        assert stored["status"] == "ok" and stored["params"]["keras_total"] == stored["params"]["total"]
        assert stored["data"]["n_train"] == 300
        assert f"data {DATA}" in (path / "run.log").read_text()  # the worker's LABREPORT_DATA_DIR
    assert (folder / "build" / "report.pdf").stat().st_size > 10_000
