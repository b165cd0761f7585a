"""Memory: the estimate of a run's peak, the free memory read from the machine, the rule that
starts a run only when it fits, and the process pool and the time estimate following it."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest

from labreport import config, env
from labreport.config import param_counts
from labreport.results import store
from labreport.train import eta, memory, runner
from labreport.train.engine import QuickConfig

from tests.test_runner import fake_train, tiny_dataset, write_lab

ROOT = Path(__file__).resolve().parents[1]
GB = int(memory.GB)


@pytest.fixture(scope="module")
def lab():
    return {s.name: s for s in config.load(ROOT / "experiments.toml").experiments}


# --------------------------------------------------------------------------- the estimate


def test_activations_are_the_report_layer_tables_outputs(lab):
    spec = lab["cnn-relu-25"]
    # 28x28x1 input, conv 28x28x9, pool 14x14x9, conv 14x14x9, pool 7x7x9, conv 7x7x16, pool 3x3x16,
    # flatten 144, dense 25, output 10
    expected = 784 + 7056 + 1764 + 1764 + 441 + 784 + 144 + 144 + 25 + 10
    assert memory.activations_per_sample(spec) == expected
    assert expected == sum(layer.units for layer in param_counts.breakdown(spec).layers)


# Peaks measured (VmHWM, 2 epochs on the full data set, 1 thread, 2026-11-26; the module docstring);
# the 9-filter CNNs in micro-batches of 64 (engine 1+conv3).
MEASURED_GB = {"raw-tanh-300": 1.29, "cnn-relu-25": 1.27, "fashion-conv9-100": 1.27, "fashion-tanh-25": 1.42,
               "fashion-relu-25": 1.42, "fashion-conv64-100": 6.05}


@pytest.mark.parametrize("name", sorted(MEASURED_GB))
def test_the_estimate_is_above_the_measured_peak_and_not_far_above(lab, name):
    est = memory.run_bytes(lab[name]) / GB
    assert MEASURED_GB[name] <= est <= 1.25 * MEASURED_GB[name], (name, est)


def test_a_fused_group_holds_one_base_and_every_branch(lab):
    specs = [lab["raw-tanh-300"], lab["raw-tanh-300-dropout"]]
    assert memory.run_bytes(specs) == memory.BASE_BYTES + sum(memory.activation_bytes(s) for s in specs)
    assert memory.run_bytes(specs) < sum(memory.run_bytes(s) for s in specs)


def test_quick_runs_hold_batches_no_larger_than_their_data(lab):
    spec = lab["fashion-conv64-100"]  # batch 8,192
    quick = QuickConfig(epochs=2, n_train=2000, n_test=1000)
    assert memory.activation_bytes(spec, quick) * 8192 == memory.activation_bytes(spec) * 2000


def test_a_micro_batched_run_holds_one_micro_batch_of_activations_and_the_batch_of_inputs(lab):
    spec = lab["fashion-relu-25"]  # batch 16,382 in micro-batches of 64
    per_sample = memory.activations_per_sample(spec)
    inputs = memory.INPUT_COPIES * 4 * 784
    assert memory.activation_bytes(spec) == int(memory.ACTIVATION_FACTOR * 4 * per_sample * 64 + inputs * 16382)
    whole = memory.ACTIVATION_FACTOR * 4 * per_sample * 16382
    assert memory.activation_bytes(spec) < whole / 10  # 1.4 GB peaks measured, 2.9 GB before
    quick = QuickConfig(epochs=2, n_train=2000, n_test=1000)
    assert memory.activation_bytes(spec, quick) == int(memory.ACTIVATION_FACTOR * 4 * per_sample * 64 + inputs * 2000)


# --------------------------------------------------------------------------- the machine


def test_available_reads_meminfo_and_a_tighter_cgroup_limit(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:  1000 kB\nMemAvailable:   10000000 kB\n")
    no_cgroup = tmp_path / "self-cgroup-none"
    assert memory.available_bytes(meminfo, tmp_path / "no-cgroup", no_cgroup) == 10_000_000 * 1024
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("4000000000\n")
    (v2 / "memory.current").write_text("1500000000\n")
    (v2 / "memory.stat").write_text("anon 1000000000\ninactive_file 500000000\n")
    assert memory.available_bytes(meminfo, v2, no_cgroup) == 4_000_000_000 - 1_000_000_000  # page cache given back
    (v2 / "memory.max").write_text("max\n")
    assert memory.available_bytes(meminfo, v2, no_cgroup) == 10_000_000 * 1024
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{2**63 - 4096}\n")  # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("9000000000\n")
    assert memory.available_bytes(meminfo, v1.parent, no_cgroup) == 10_000_000 * 1024
    (v1 / "memory.limit_in_bytes").write_text("3000000000\n")
    (v1 / "memory.usage_in_bytes").write_text("2000000000\n")
    (v1 / "memory.stat").write_text("total_inactive_file 1000000000\n")
    assert memory.available_bytes(meminfo, v1.parent, no_cgroup) == 2_000_000_000
    assert memory.available_bytes(tmp_path / "none", tmp_path / "none") is None


def test_a_limit_on_a_parent_cgroup_counts_too(tmp_path):
    """A systemd slice's MemoryMax sits on an ancestor of the process's own cgroup (v2)."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:   10000000 kB\n")
    root = tmp_path / "cgroup"
    own = root / "user.slice" / "user-1000.slice" / "session-2.scope"
    own.mkdir(parents=True)
    (own / "memory.max").write_text("max\n")
    (own / "memory.current").write_text("100000000\n")
    slice_ = root / "user.slice" / "user-1000.slice"
    (slice_ / "memory.max").write_text("6000000000\n")
    (slice_ / "memory.current").write_text("2000000000\n")
    proc_cgroup = tmp_path / "self-cgroup"
    proc_cgroup.write_text("0::/user.slice/user-1000.slice/session-2.scope\n")
    assert memory.available_bytes(meminfo, root, proc_cgroup) == 4_000_000_000
    proc_cgroup.write_text("0::/\n")  # in a container: its own root
    assert memory.available_bytes(meminfo, root, proc_cgroup) == 10_000_000 * 1024


def test_the_budget_is_most_of_the_free_memory_or_the_variable():
    assert memory.budget({}, lambda: 10 * GB) == memory.Budget(int(10 * GB * memory.HEADROOM), "free memory")
    assert memory.budget({}, lambda: None) == memory.Budget(None, "unknown")
    assert memory.budget({"LABREPORT_MEMORY_GB": "6"}, lambda: 10 * GB) == memory.Budget(6 * GB, "LABREPORT_MEMORY_GB")
    assert memory.budget({"LABREPORT_MEMORY_GB": "0"}, lambda: 10 * GB).bytes is None
    with pytest.raises(env.EnvError, match="LABREPORT_MEMORY_GB='lots'"):
        memory.budget({"LABREPORT_MEMORY_GB": "lots"}, lambda: 10 * GB)


def test_the_peak_of_this_process_is_measured_from_a_reset():
    if not Path("/proc/self/status").exists():
        pytest.skip("Linux only")
    memory.reset_peak()
    before = memory.peak_mb()
    block = bytearray(200 * 1024 * 1024)  # touched: resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert memory.peak_mb() >= before + 190
    del block


# --------------------------------------------------------------------------- the rule


def test_admission_starts_what_fits_and_lets_a_smaller_run_pass_a_waiting_big_one():
    rule = memory.Admission(10 * GB, jobs=3)
    assert rule.pick([9 * GB]) == 0  # nothing running: the first starts
    assert rule.pick([20 * GB]) == 0  # even beyond the budget: alone it has its best chance
    # 6 GB held by one running run; a new one on a worker still to start
    assert rule.pick([6 * GB, 3 * GB], held=6 * GB, running=1) == 1  # 6 + 3 fit in 10, 6 + 6 do not
    assert rule.pick([6 * GB, 5 * GB], held=6 * GB, running=1) is None
    assert rule.pick([1 * GB], held=3 * GB, running=3) is None  # every worker busy
    assert memory.Admission(None, jobs=2).pick([50 * GB], held=50 * GB, running=1) == 0


def test_admission_counts_what_idle_workers_still_hold():
    """TensorFlow's allocator keeps a worker's largest run: an idle worker that trained a 5.5 GB
    model holds it (in ``held``); a new run is counted on the lightest worker that could take it."""
    rule = memory.Admission(10 * GB, jobs=3)
    # 3 GB running, an idle worker holding 5 GB, a worker still to start (lightest 0)
    assert rule.pick([3 * GB], held=8 * GB, lightest=0, running=1) is None  # 8 + 3
    assert rule.pick([2 * GB], held=8 * GB, lightest=0, running=1) == 0  # 8 + 2
    assert rule.pick([6 * GB, 2 * GB], held=8 * GB, lightest=0, running=1) == 1
    # idle workers holding 5 and 4 GB next to a 3 GB run: held 12 already, but a 3 GB run adds nothing
    assert rule.pick([3 * GB], held=12 * GB, lightest=4 * GB, running=1) == 0
    assert rule.pick([5 * GB], held=12 * GB, lightest=4 * GB, running=1) is None


def test_the_makespan_plans_the_same_rule():
    durations, sizes = [10.0, 9.0, 8.0], [6 * GB, 3 * GB, 3 * GB]
    assert eta.makespan(durations, 3) == 10.0
    assert eta.makespan(durations, 3, sizes=sizes, admission=memory.Admission(100 * GB, 3)) == 10.0
    # 8 GB: the 6 GB run trains alone; then its worker still holds 6 GB: one 3 GB run goes on
    # that worker (adds nothing), the other would need 6 + 3: it waits
    assert eta.makespan(durations, 3, sizes=sizes, admission=memory.Admission(8 * GB, 3)) == 27.0
    # 9.5 GB: one 3 GB run next to the 6 GB one (9); the other would make 12 (wherever it lands,
    # counted on the idle worker holding least) and starts when nothing runs, at 10
    assert eta.makespan(durations, 3, sizes=sizes, admission=memory.Admission(int(9.5 * GB), 3)) == 18.0
    # a busy worker holding 6 GB for 4 more seconds: with 8 GB the others wait for it
    assert eta.makespan([5.0, 5.0], 3, [4.0], sizes=[3 * GB, 3 * GB], busy_sizes=[6 * GB],
                        admission=memory.Admission(8 * GB, 3)) == 14.0


def test_the_note_says_when_memory_limits_the_runs_at_once():
    sizes = {"big": 6 * GB, "mid": 3 * GB, "small": 1 * GB}
    assert memory.note(memory.Admission(20 * GB, 3), sizes, "free memory") == ""
    line = memory.note(memory.Admission(8 * GB, 3), sizes, "free memory")
    assert line.startswith("memory: 8.0 GB for the runs (free now); the largest needs about 6.0 GB (big)")
    assert "about 10 GB would let 3 train at once" in line


# --------------------------------------------------------------------------- the pool


def timeline_train(spec, dataset, **kwargs):
    """A module-level trainer that notes when it trains (into $TIMELINE_DIR) and takes 1 s."""
    folder = Path(os.environ["TIMELINE_DIR"])
    start = time.time()
    time.sleep(1.0)
    (folder / f"{spec.name}.json").write_text(json.dumps([start, time.time()]))
    return fake_train(spec, dataset, **kwargs)


def _overlaps(folder: Path) -> int:
    spans = sorted(json.loads(p.read_text()) for p in folder.glob("*.json"))
    assert len(spans) == 3
    return sum(1 for a, b in zip(spans, spans[1:]) if b[0] < a[1])


def _run(tmp_path, monkeypatch, budget_gb: str):
    folder = tmp_path / f"timeline-{budget_gb}"
    folder.mkdir()
    monkeypatch.setenv("TIMELINE_DIR", str(folder))  # the spawned workers inherit it
    monkeypatch.setenv("LABREPORT_MEMORY_GB", budget_gb)
    out = io.StringIO()
    build = tmp_path / f"build-{budget_gb}"
    summary = runner.run(write_lab(tmp_path), build, jobs=2, load_dataset=tiny_dataset, train=timeline_train,
                         progress=out)
    assert summary.ok and summary.ran == 3
    return folder, out.getvalue(), build


def test_the_pool_starts_a_run_only_when_it_fits_in_the_budget(tmp_path, monkeypatch):
    """Each tiny run is estimated at about a worker's base (1.3-1.4 GB). With 2 GB for the runs,
    two do not fit together: they train one after the other on the 2 workers, and the run
    says why; with no limit, two train at once."""
    folder, out, build = _run(tmp_path, monkeypatch, "2")
    assert _overlaps(folder) == 0
    biggest = memory.run_bytes(write_lab(tmp_path).experiments[2])  # cnn-c: its validation batch of 2,048
    assert (f"memory: 2.0 GB for the runs (set by LABREPORT_MEMORY_GB); the largest needs about"
            f" {memory.fmt_gb(biggest)} (cnn-c), so a run starts only when it fits next to the others") in out
    serial_estimate = re.search(r"estimated (\w+)", out).group(1)
    folder, out, _ = _run(tmp_path, monkeypatch, "0")
    assert _overlaps(folder) >= 1
    assert "memory:" not in out
    parallel_estimate = re.search(r"estimated (\w+)", out).group(1)
    assert eta_seconds(serial_estimate) > eta_seconds(parallel_estimate)  # the first figure plans it
    if Path("/proc/self/status").exists():  # the workers' measured peaks are stored
        peaks = [store.read_result(build, n)["host"]["peak_memory_mb"] for n in ("mlp-a", "mlp-b", "cnn-c")]
        assert all(isinstance(p, int) and p > 10 for p in peaks)


def test_a_run_larger_than_the_budget_trains_alone_with_a_warning(tmp_path, monkeypatch):
    folder, out, _ = _run(tmp_path, monkeypatch, "1")
    assert _overlaps(folder) == 0
    biggest = memory.run_bytes(write_lab(tmp_path).experiments[2])
    assert f"cnn-c needs about {memory.fmt_gb(biggest)} and 1.0 GB is set by LABREPORT_MEMORY_GB: it trains alone" in out


def test_the_cli_refuses_a_bad_memory_budget_before_training(tmp_path, monkeypatch, capsys):
    from labreport import cli

    write_lab(tmp_path)
    monkeypatch.setenv("LABREPORT_MEMORY_GB", "-3")
    code = cli.main(["run", "-c", str(tmp_path / "experiments.toml"), "-b", str(tmp_path / "build")])
    assert code == 2
    assert "LABREPORT_MEMORY_GB='-3'" in capsys.readouterr().err
    assert not (tmp_path / "build" / "runs").exists()


def eta_seconds(text: str) -> int:
    """'1m15s' -> 75, '9s' -> 9 (runner.fmt_duration's forms below an hour)."""
    minutes, _, seconds = text.rstrip("s").rpartition("m")
    return int(minutes or 0) * 60 + int(seconds)


def test_eta_seconds_reads_fmt_duration():
    for s in (0, 9, 75, 3599):
        assert eta_seconds(runner.fmt_duration(s)) == s


