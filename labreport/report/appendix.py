"""The appendix: failed/missing experiments, run times, data checksums, software versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from labreport.report.claims import count
from labreport.results.run import NOT_RUN, Run, best_run, sort_key_best  # noqa: F401


@dataclass(frozen=True)
class Timing:
    name: str
    part: str
    status: str
    epochs_run: int
    duration_s: float | None
    epoch_s: float | None
    source: str = ""  # the run's place in results.json (claims.py sources)
    label: str = ""  # as printed: the name, or "NAME run R" for the runs of a repeated experiment


def timings(runs: Sequence[Run]) -> tuple[tuple[Timing, ...], float]:
    """One row per run (every run of a repeated experiment: the total is what the lab cost)."""
    rows = []
    for exp in runs:
        for r in (exp.aggregate.runs if exp.repeated else (exp,)):
            res = r.result or {}
            ep = res.get("epoch_s")
            label = (f"{r.name} run {count(r.repeat, what=f'run number of {r.name}', src=f'config:{r.name}/repeats')}"
                     if exp.repeated else r.name)
            rows.append(Timing(r.name, r.spec.part, r.status, r.facts["epochs_run"] if r.result else 0, r.duration_s,
                               float(ep) if isinstance(ep, (int, float)) else None, r.source, label))
    total = sum(t.duration_s for t in rows if t.duration_s is not None)
    return tuple(rows), total


@dataclass(frozen=True)
class Problem:
    name: str
    status: str
    error: str
    label: str = ""  # as printed when not the name: "NAME run R", a run left out of a repeated experiment's mean


def problems(runs: Sequence[Run]) -> tuple[Problem, ...]:
    """The experiments that failed, diverged or have not run (``Run.outcome``), and the failed or
    diverged runs of a repeated experiment whose other runs are measured (its mean leaves them out)."""
    out = []
    for exp in runs:
        if exp.outcome in ("failed", "diverged", NOT_RUN):
            out.append(Problem(exp.name, exp.outcome, str((exp.detail.result or {}).get("error") or "")))
        elif exp.repeated:
            for r in exp.aggregate.runs:
                if r.status in ("failed", "diverged"):
                    k = count(r.repeat, what=f"run number of {r.name}", src=f"config:{r.name}/repeats")
                    out.append(Problem(r.name, r.status, str((r.result or {}).get("error") or ""), f"{r.name} run {k}"))
    return tuple(out)


@dataclass(frozen=True)
class DataChecksum:
    dataset: str
    sha256: str
    source: str
    n_train: int | None
    n_test: int | None
    experiments: int


def data_checksums(runs: Sequence[Run]) -> tuple[DataChecksum, ...]:
    seen: dict[tuple, list[str]] = {}
    info: dict[tuple, dict] = {}
    for r in runs:
        d = (r.result or {}).get("data") or {}
        if not d:
            continue
        key = (d.get("dataset", r.spec.dataset), d.get("sha256", ""), d.get("source", ""),
               d.get("n_train"), d.get("n_test"))
        seen.setdefault(key, []).append(r.name)
        info[key] = d
    return tuple(DataChecksum(k[0], k[1], k[2], k[3], k[4], len(v)) for k, v in seen.items())


def versions_used(runs: Sequence[Run]) -> tuple[tuple[str, str, int], ...]:
    """(package, version, number of experiments) for every version seen in the results."""
    count: dict[tuple[str, str], int] = {}
    for r in runs:
        for k, v in ((r.result or {}).get("versions") or {}).items():
            count[(k, str(v))] = count.get((k, str(v)), 0) + 1
    return tuple((k, v, n) for (k, v), n in sorted(count.items()))
