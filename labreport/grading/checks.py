"""The lab's hand-in requirements, checked against the config and the stored results.

Rules come from ``[requirements]`` in experiments.toml (defaults: the lab's). Used by
``labreport check`` before hand-in, by the report (its checklist), and by ``grade``.
Pure: reads build/, imports no TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from labreport.report.model import QUESTION_ANCHORS
from labreport.config.spec import PART_TITLES, ExperimentSpec, LabConfig
from labreport.results import staleness, store
from labreport.results.layout import BuildLayout
from labreport.results.run import Run

QUESTION_IDS = QUESTION_ANCHORS  # the report model's anchors of the four questions


@dataclass(frozen=True)
class Check:
    rule: str
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return {"rule": self.rule, "ok": self.ok, "detail": self.detail}


def run_statuses(config: LabConfig, build: Path, *, quick: bool = False) -> dict[str, str]:
    """Every declared run's staleness status ("fresh", "stale", "missing", "failed"), keyed by
    its label ('raw-tanh-300', or 'raw-tanh-300 run 2/3' for an experiment with repeats)."""
    layout = BuildLayout(build, quick)
    return {d.label: d.status for runs in staleness.check_all_runs(config, layout) for d in runs}


def evaluate(config: LabConfig, build: Path, *, quick: bool = False, html: str | None = None,
             statuses: dict[str, str] | None = None) -> list[Check]:
    """Every requirement as a Check.

    ``statuses``: each run's label -> status (:func:`run_statuses`, computed here when not
    given); an experiment counts as a variant when its first run is fresh. ``html``: the
    rendered report, to check that each question has its section (skipped when None).
    """
    req = config.requirements
    if statuses is None:
        statuses = run_statuses(config, build, quick=quick)
    first = {s.name: statuses.get(s.run_label, "missing") for s in config.experiments}
    results = {s.name: store.read_result(build, s.name, quick) for s in config.experiments}
    out: list[Check] = []

    for part in req.parts:
        specs = [s for s in config.experiments if s.part == part]
        done = [s for s in specs if first[s.name] == "fresh" and (results[s.name] or {}).get("status") == "ok"]
        title = PART_TITLES[part]
        out.append(Check(
            f"at least {req.min_variants_per_part} variant{'s' * (req.min_variants_per_part != 1)} of part '{part}'",
            len(done) >= req.min_variants_per_part,
            f"{title}: {len(done)} trained of {len(specs)} declared",
        ))
        if req.chosen_per_part:
            chosen = [s.name for s in specs if s.chosen]
            out.append(Check(
                f"a chosen model for part '{part}'",
                bool(chosen),
                f"{chosen[0]}" if chosen else f"mark one experiment of part '{part}' with chosen = true",
            ))

    # Every run counts (repeats): a failed run 2 is left out of the mean the report prints.
    every: dict[str, tuple[ExperimentSpec, dict | None]] = {}
    for spec in config.experiments:
        for s in spec.runs():
            every[s.run_label] = (s, results[s.name] if s.repeat == 1
                            else store.read_result(build, s.name, quick, repeat=s.repeat))
    if req.no_failed:
        bad = [f"{name} ({r['status']}: {r.get('error') or 'no detail'})"
               for name, (_, r) in every.items() if r and r.get("status") in ("failed", "diverged")]
        out.append(Check("no failed or diverged experiment", not bad, "; ".join(bad) or "none"))

    stale = [label for label, st in statuses.items() if st != "fresh"]
    out.append(Check("every experiment trained with its current settings", not stale,
                     ("not run or out of date: " + ", ".join(stale)) if stale else "all up to date"))
    if req.no_quick:
        out.append(Check("full runs, not --quick smoke runs", not quick,
                         "these results come from --quick: run `make report` without QUICK" if quick
                         else "full runs"))
        if not quick:
            # Smoke runs moved into runs/ with their quick flag flipped still contradict a full run.
            smoke = [f"{label}: {'; '.join(why)}" for label, (s, r) in every.items()
                     for why in [Run(s, r).full_run_contradictions()] if why]
            shown = "; ".join(smoke[:3]) + (f"; and {len(smoke) - 3} more" if len(smoke) > 3 else "")
            out.append(Check("results are full runs", not smoke,
                             (shown + " (re-train them: `make report`)") if smoke
                             else "every ok result ran its declared epochs on the full data sets"))
    if html is not None:
        missing = [q for q in QUESTION_ANCHORS if not re.search(rf'id="{q}"', html)]
        out.append(Check("the report answers the four questions", not missing,
                         ("missing sections: " + ", ".join(missing)) if missing else "Q1-Q4 present"))
    return out


def format_checks(checks: list[Check]) -> str:
    lines = [f"[{'x' if c.ok else ' '}] {c.rule}: {c.detail}" for c in checks]
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed} of {len(checks)} requirements met"
                 + ("" if not failed else f"; {failed} to fix before hand-in"))
    return "\n".join(lines)
