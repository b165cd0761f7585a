"""How much memory a run needs, how much this machine has free, and which runs may train at once.

``make report`` trains a run per core at once (``JOBS=3`` trains three on two cores).
fashion-conv64-100 holds about 6 GB (its 64-filter feature maps at batch 8,192); the three
started together on the full lab (it, fashion-relu-25, fashion-tanh-25) held about 12 GB before the 9-filter CNNs ran in
micro-batches, about 8.5 GB since; on a laptop with 8 GB the out-of-memory killer would take
one of them (the runner recovers, but that run fails until the next ``make report``). So the process pool starts a run only when its
estimate fits in what was free when the run began, next to the runs already training
(:class:`Admission`), and the first time figure simulates the same rule (``eta.makespan``).

The estimate (:func:`run_bytes`) is a worker's base (TensorFlow, Keras, the data sets and
their float copies) plus a multiple of the activations of one batch: the floats every layer
outputs per sample (``param_counts.breakdown``: the report's own layer table) times the larger
of the training and the validation batch, times 4 bytes. A CNN whose steps run in micro-batches
(``models.micro_batch``: the lab's 9-filter CNNs, 64 images) holds the activations of one
micro-batch only, and the batch's input floats a few times over. Measured peaks (VmHWM of a
process training 2 epochs on the full data set, 1 thread, TensorFlow 2.21, 2026-11-26), against
the estimate with the constants below:

    experiment          batch   micro  activations/sample   peak     estimate
    raw-tanh-300         2,048     -        1,094          1.29 GB   1.32 GB
    cnn-relu-25            256 (val 2,048) 64  12,916      1.27 GB   1.33 GB
    fashion-conv9-100    4,096    64       11,478          1.27 GB   1.35 GB
    fashion-tanh-25     16,382    64       12,916          1.42 GB   1.46 GB
    fashion-relu-25     16,382    64       12,916          1.42 GB   1.46 GB
    fashion-conv64-100   8,192     -       76,158          5.61 GB   6.29 GB  (6.05 GB over a full lab's 50 epochs)

Whole batches (before micro-batches, the 9-filter CNNs peaked at 1.41, 1.65, 2.84 and 2.91 GB):
(peak - 1.25 GB) / activations was 1.5-2.1 for the CNNs, so 2.0 over a base of 1.3 GB keeps every
estimate above its measure; micro-batched, (peak - 1.27 GB) / the batch's input bytes was 2.9.
A fused group holds one base and the activations of every branch. Each stored result
records its worker's measured peak (``host.peak_memory_mb``, Linux): the run's own in a fresh
worker, else with what the worker held from earlier runs.

No TensorFlow; reads /proc and the cgroup files only in :func:`available_bytes`,
:func:`resident_bytes` and the peak helpers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from labreport.config import param_counts
from labreport.config.spec import ExperimentSpec

GB = 1e9
BASE_BYTES = int(1.3 * GB)  # a worker training a small model: TensorFlow, Keras, data and its copies
ACTIVATION_FACTOR = 2.0  # peak bytes over one batch's activation bytes (forward, gradients, workspaces)
INPUT_COPIES = 3  # a batch's input floats held at once by a micro-batched run (the data pipeline's copies)
# What is left for the system and the driver: the budget is this share of what was free.
HEADROOM = 0.9
ENV_VAR = "LABREPORT_MEMORY_GB"


def activations_per_sample(spec: ExperimentSpec) -> int:
    """Floats every layer of ``spec``'s model outputs for one sample, the input included."""
    return sum(layer.units for layer in param_counts.breakdown(spec).layers)


def _batches(spec: ExperimentSpec, quick_cfg=None) -> int:
    """The largest batch a run of ``spec`` holds at once: training or validation (engine's)."""
    from labreport.train.engine import validation_batch  # engine imports TF lazily: cheap

    train, val = spec.batch_size, validation_batch(spec.batch_size)
    if quick_cfg is not None:  # a batch is never larger than the data it is cut from
        train, val = min(train, quick_cfg.n_train), min(val, quick_cfg.n_test)
    return max(train, val)


def activation_bytes(spec: ExperimentSpec, quick_cfg=None) -> int:
    """What a run of ``spec`` holds above a worker's base (see the module docstring)."""
    from labreport.train.models import micro_batch  # pure: no TensorFlow

    batch = _batches(spec, quick_cfg)
    per_image = ACTIVATION_FACTOR * 4 * activations_per_sample(spec)
    micro = micro_batch(spec)
    if micro and micro < batch:  # the layers see one micro-batch at a time; the batch is input only
        return int(per_image * micro + INPUT_COPIES * 4 * param_counts.breakdown(spec).n_inputs * batch)
    return int(per_image * batch)


def run_bytes(specs: ExperimentSpec | Sequence[ExperimentSpec], quick_cfg=None) -> int:
    """Estimated peak memory of a worker training ``specs`` (one run, or a fused group)."""
    group = [specs] if isinstance(specs, ExperimentSpec) else list(specs)
    return BASE_BYTES + sum(activation_bytes(s, quick_cfg) for s in group)


def fmt_gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:.1f} GB"


# --------------------------------------------------------------------------- the machine


def _meminfo_available(path: Path) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _left_in(limit_file: Path, used_file: Path, inactive_key: str) -> int | None:
    """What one cgroup's memory limit still leaves (None: no limit, or not readable); the page
    cache the kernel gives back (inactive files) is not counted as used."""
    try:
        limit = limit_file.read_text(encoding="ascii").strip()
        used = int(used_file.read_text(encoding="ascii").strip())
        if limit == "max" or int(limit) >= 2**62:  # v1 writes "no limit" as a huge number
            return None
    except (OSError, ValueError):
        return None
    try:
        stat = dict(line.split()[:2] for line in (used_file.parent / "memory.stat").read_text(encoding="ascii").splitlines())
        used -= int(stat.get(inactive_key, 0))
    except (OSError, ValueError):
        pass
    return max(0, int(limit) - max(0, used))


def _own_cgroup(proc_cgroup: Path) -> str:
    """This process's cgroup v2 path ("0::/user.slice/..." in /proc/self/cgroup), '' if none."""
    try:
        for line in proc_cgroup.read_text(encoding="ascii").splitlines():
            if line.startswith("0::"):
                return line[3:].strip().strip("/")
    except OSError:
        pass
    return ""


def _cgroup_available(root: Path, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """What the cgroup limits on this process still leave (a container's, a systemd slice's), or
    None without a limit. cgroup v2: the tightest ``memory.max`` from this process's own cgroup
    up to the root of the hierarchy it sees; v1: ``memory/memory.limit_in_bytes``."""
    found = []
    folder = root / _own_cgroup(proc_cgroup)
    while True:
        left = _left_in(folder / "memory.max", folder / "memory.current", "inactive_file")
        if left is not None:
            found.append(left)
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    v1 = _left_in(root / "memory" / "memory.limit_in_bytes", root / "memory" / "memory.usage_in_bytes",
                  "total_inactive_file")
    found += [v1] if v1 is not None else []
    return min(found) if found else None


def available_bytes(meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = Path("/sys/fs/cgroup"),
                    proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """Memory this process may still take: the kernel's MemAvailable, or less if a cgroup
    limit (a container, a systemd slice) leaves less; None where neither can be read (not Linux)."""
    found = [n for n in (_meminfo_available(meminfo), _cgroup_available(cgroup_root, proc_cgroup)) if n is not None]
    return min(found) if found else None


@dataclass(frozen=True)
class Budget:
    """The memory the runs of one ``labreport run`` may hold together, and where it comes from."""

    bytes: int | None  # None: no limit (not measurable, or switched off)
    source: str  # "free memory", "LABREPORT_MEMORY_GB", "unknown", "off"


def budget(environ: Mapping[str, str] | None = None,
           available: Callable[[], int | None] = available_bytes) -> Budget:
    """``LABREPORT_MEMORY_GB`` if set (0: no limit), else HEADROOM of the memory free now."""
    from labreport import env as env_vars

    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip():
        gb = env_vars.get(ENV_VAR, 0, environ)
        return Budget(None, "off") if gb == 0 else Budget(int(gb * GB), ENV_VAR)
    free = available()
    if free is None:
        return Budget(None, "unknown")
    return Budget(int(free * HEADROOM), "free memory")


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Admission:
    """Which waiting run may start now: the first, in the runner's order (longest first), whose
    estimate fits in the budget next to what the workers hold. With nothing running, the first
    starts whatever it needs (alone it has every chance it gets).

    What a worker holds is not only its current run's: TensorFlow's allocator keeps the memory
    of the largest run a worker process trained (measured: the worker that trained
    fashion-conv64-100, 5.5 GB, still held 5.6 GB while it trained fashion-relu-25, then 2.9 GB
    alone on whole batches). So ``held`` counts every worker's resident memory plus what its running run may
    still add to reach its estimate; a new run is counted on the worker that could take it
    holding least (``lightest``: 0 while a worker is still to be started), and one that adds
    nothing there may start whatever the others hold.

    Where the budget keeps the largest runs apart, ``recycle`` gives each run a new worker
    process, so that a worker holds only its own run. Measured on the lab's 10 CNNs (3 epochs,
    ``--jobs 3``, 8 GB budget): with workers kept, the runs after fashion-conv64-100 trained
    one at a time (its worker kept 5.5 GB), 2 min 20 s; with a new worker per run, side by
    side, 1 min 51 s (no limit: 1 min 45 s).

    Shared by the process pool (``runner.ProcessPoolExecutor``, measured memory) and the time
    estimate (``eta.makespan``, which tracks each simulated worker's largest run), so that the
    first figure plans the schedule the runs will have."""

    budget: int | None
    jobs: int
    # Each run in a new worker process (the pool's max_tasks_per_child=1): a worker then holds
    # only its own run. The runner sets it when the budget keeps the largest runs apart.
    recycle: bool = False

    def pick(self, waiting: Sequence[int], held: int = 0, lightest: int = 0, running: int = 0) -> int | None:
        """Index into ``waiting`` (bytes of each waiting run, in order) of the run to start, or
        None: every worker busy (``running`` = jobs), or nothing fits until a running run ends."""
        if not waiting or running >= self.jobs:
            return None
        if not running or self.budget is None:
            return 0
        for i, need in enumerate(waiting):
            grows = max(0, need - lightest)
            if grows == 0 or held + grows <= self.budget:
                return i
        return None

    def together(self, sizes: Sequence[int]) -> int:
        """Bytes the ``jobs`` largest of ``sizes`` need side by side."""
        return sum(sorted(sizes, reverse=True)[: self.jobs])

    def limits(self, sizes: Sequence[int]) -> bool:
        """Whether the budget keeps the ``jobs`` largest of ``sizes`` from training together."""
        if self.budget is None or len(sizes) < 2:
            return False
        return self.together(sizes) > self.budget


def note(admission: Admission, sizes: Mapping[str, int], source: str) -> str:
    """The line the run prints when memory limits how many runs train at once ('' if not)."""
    if not admission.limits(list(sizes.values())):
        return ""
    name, biggest = max(sizes.items(), key=lambda kv: kv[1])
    where = "free now" if source == "free memory" else f"set by {ENV_VAR}"
    gb_needed = math.ceil(admission.together(list(sizes.values())) / GB)
    return (f"memory: {fmt_gb(admission.budget)} for the runs ({where}); the largest needs about {fmt_gb(biggest)}"
            f" ({name}), so a run starts only when it fits next to the others"
            + (", each in a new worker process that gives its memory back when it ends" if admission.recycle else "")
            + f" (about {gb_needed} GB would let {admission.jobs} train at once)")


def notes(admission: Admission, budget: Budget, sizes: Mapping[str, int]) -> list[str]:
    """What a run says of memory (``sizes``: each task's bytes by the name it prints): that it
    limits how many train at once (:func:`note`), or that a run alone may need more than the budget."""
    lines = [note(admission, sizes, budget.source)] if admission.budget is not None else []
    if budget.bytes is not None and sizes:
        name, need = max(sizes.items(), key=lambda kv: kv[1])
        if need > budget.bytes:
            what = (f"is the budget ({HEADROOM:.0%} of the free memory)" if budget.source == "free memory"
                    else f"is set by {ENV_VAR}")
            lines.append(f"memory: {name} needs about {fmt_gb(need)} and {fmt_gb(budget.bytes)} {what}:"
                         " it trains alone and may still be killed for memory (close other programs)")
    return [line for line in lines if line]


# --------------------------------------------------------------------------- measured


def reset_peak() -> None:
    """Start measuring this process's peak memory anew (Linux: /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def resident_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux /proc), 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_mb() -> int | None:
    """This process's peak resident memory (MB) since the last :func:`reset_peak` (Linux), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024)
    except (OSError, ValueError, IndexError):
        pass
    return None
