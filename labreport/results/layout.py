"""Every path under build/, in one object (and the one place that reads ``LABREPORT_DATA_DIR``).

Layout (everything generated, git-ignored)::

    build/data/               canonical uint8 data sets (or $LABREPORT_DATA_DIR)
    build/features/           cached HOG features
    build/runs/<name>/        result.json, history.csv, run.log   (full runs; repeat 1)
    build/runs/<name>/repeat-<r>/   the same for run r >= 2 of an experiment with ``repeats``
    build/quick/runs/<name>/  the same for --quick smoke runs (never mixed with full runs)
    build/figures/            PNG/SVG of the report
    build/report.html, build/report.pdf, build/results.json
    build/.lock               the run lock
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "LABREPORT_DATA_DIR"
DEFAULT_BUILD = "build"


def _data_dir_from_env() -> Path | None:
    from labreport import env  # the one parser of LABREPORT_* (a bad value is an EnvError naming it)

    value = env.get(DATA_DIR_ENV)
    return Path(value) if value else None


@dataclass(frozen=True)
class BuildLayout:
    """The paths of one build folder; ``quick`` selects the smoke-run results (build/quick/runs)."""

    root: Path = Path(DEFAULT_BUILD)
    quick: bool = False
    # Data sets are big and shared between checkouts: $LABREPORT_DATA_DIR moves them out of build/.
    data_dir_override: Path | None = dataclasses.field(default_factory=_data_dir_from_env)

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def with_quick(self, quick: bool) -> BuildLayout:
        return dataclasses.replace(self, quick=quick)

    # -- inputs shared by every run
    @property
    def data_dir(self) -> Path:
        return self.data_dir_override or self.root / "data"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    # -- results
    @property
    def runs_dir(self) -> Path:
        return self.root / ("quick/runs" if self.quick else "runs")

    def run_dir(self, name: str, repeat: int = 1) -> Path:
        """Repeat 1 where an experiment without repeats has always been stored; run r inside it."""
        return self.runs_dir / name if repeat == 1 else self.runs_dir / name / f"repeat-{repeat}"

    def result_path(self, name: str, repeat: int = 1) -> Path:
        return self.run_dir(name, repeat) / "result.json"

    def history_path(self, name: str, repeat: int = 1) -> Path:
        return self.run_dir(name, repeat) / "history.csv"

    def log_path(self, name: str, repeat: int = 1) -> Path:
        return self.run_dir(name, repeat) / "run.log"

    # -- the report
    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_pdf(self) -> Path:
        return self.root / "report.pdf"

    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    # `clean` keeps what is expensive to remake unless --all.
    EXPENSIVE = ("data", "features", "runs", "quick")
