"""The class overview: one HTML page about all submissions at once.

Distribution of the grades and of the best test accuracy per part (matplotlib PNGs written
next to the page), the variants each part was tried with, the most common unmet
requirements and failures, the pairs flagged by the copy detector, and the files that could
not be graded. Gather first (``summarise``: pure counting on ``ClassGrades``), then write
(figures, then ``templates/grading/overview.html.j2``, autoescaped). Every link on the page
points at a file written here or an anchor of grades.html.
"""

from __future__ import annotations

import io
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from labreport.config.spec import PART_TITLES, PARTS
from labreport.results import store

FIGURE_DIR = "overview-figures"
TEMPLATE = "overview.html.j2"
TOP = 8  # rows of each "most common" table


@dataclass(frozen=True)
class PartSummary:
    part: str
    title: str
    accuracies: tuple[float, ...]  # best test accuracy of each submission that trained the part
    variant_counts: tuple[int, ...]
    common_models: tuple[tuple[str, int], ...]  # (model, submissions that trained it)
    figure: str = ""  # relative path of the PNG, "" when nothing was measured

    @property
    def stats(self) -> str:
        if not self.accuracies:
            return "no measured accuracy"
        a = self.accuracies
        return (f"{len(a)} submissions; median {100 * statistics.median(a):.2f}%, "
                f"min {100 * min(a):.2f}%, max {100 * max(a):.2f}%")

    @property
    def variants_text(self) -> str:
        v = self.variant_counts
        if not v:
            return "no submission"
        if min(v) == max(v):
            return f"{v[0]} trained variant{'s' * (v[0] != 1)} in every submission"
        return f"{min(v)} to {max(v)} trained variants per submission (median {statistics.median(v):g})"


def summarise(cg) -> dict[str, Any]:
    """Everything the page shows, counted from the graded class (``grade.ClassGrades``)."""
    graded = [(i, g) for i, g in enumerate(cg.grades) if not g.error]
    parts = []
    for p in PARTS:
        accs, counts, models = [], [], Counter()
        for _, g in graded:
            pg = g.part(p)
            if pg is None:
                continue
            counts.append(pg.variants)
            if pg.best_accuracy is not None:
                accs.append(pg.best_accuracy)
            models.update({m for part, m in g.variants if part == p})
        parts.append(PartSummary(p, PART_TITLES[p], tuple(accs), tuple(counts), tuple(models.most_common(TOP))))
    unmet = Counter(c.rule for _, g in graded for c in g.requirements if not c.ok)
    failures = Counter(err for _, g in graded for _, err in g.errors)
    failed_names = Counter(name for _, g in graded for name in g.failed)
    totals = [s.total for s in cg.scores]
    out_of = cg.rubric.out_of or cg.rubric.max_points
    return {
        "n": len(cg.grades),
        "n_graded": len(graded),
        "n_verified": sum(g.verification == "VERIFIED" for _, g in graded),
        "out_of": out_of,
        "totals": totals,
        "median_total": statistics.median(totals) if totals else None,
        "parts": parts,
        "unmet": unmet.most_common(TOP),
        "failures": failures.most_common(TOP),
        "failed_names": failed_names.most_common(TOP),
        "pairs": [(p.verdict, cg.labels[p.a], p.a + 1, cg.labels[p.b], p.b + 1, p.evidence) for p in cg.pairs],
        "ungraded": [(i + 1, g.file, g.error.splitlines()[0]) for i, g in enumerate(cg.grades) if g.error],
        "rubric": cg.rubric.source,
    }


# --------------------------------------------------------------------------- figures
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _histogram(values: Sequence[float], *, xlabel: str, lo: float, hi: float, bins: int = 20) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 2.4))
    try:
        ax.hist(values, bins=bins, range=(lo, hi), color="#4878a8", edgecolor="white")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("submissions")
        ax.yaxis.get_major_locator().set_params(integer=True)
        fig.tight_layout()
        return _png(fig)
    finally:
        plt.close(fig)


def draw(summary: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """The PNGs (grades, best accuracy per part); returns key -> path relative to out_dir."""
    fig_dir = out_dir / FIGURE_DIR
    out = {}
    if summary["totals"]:
        rel = f"{FIGURE_DIR}/grades.png"
        store.write_bytes_atomic(out_dir / rel, _histogram(summary["totals"], xlabel=f"grade (out of {summary['out_of']:g})",
                                                           lo=0, hi=summary["out_of"]))
        out["grades"] = rel
    for ps in summary["parts"]:
        if ps.accuracies:
            # The class's spread, one point either side: the default lab lives within a few points.
            lo, hi = max(0.0, 100 * min(ps.accuracies) - 1), min(100.0, 100 * max(ps.accuracies) + 1)
            rel = f"{FIGURE_DIR}/best-accuracy-{ps.part}.png"
            store.write_bytes_atomic(out_dir / rel, _histogram([100 * a for a in ps.accuracies],
                                                               xlabel="best test accuracy (%)", lo=lo, hi=hi))
            out[ps.part] = rel
    fig_dir.mkdir(parents=True, exist_ok=True)
    for stale in fig_dir.glob("*.png"):  # a figure of an earlier class would be a broken promise
        if f"{FIGURE_DIR}/{stale.name}" not in out.values():
            stale.unlink()
    return out


# --------------------------------------------------------------------------- page
def template_dir() -> Path:
    from labreport.report.render import default_templates_dir

    return default_templates_dir() / "grading"


def to_html(summary: dict[str, Any], figures: dict[str, str], *, grades_html: str, grades_csv: str) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(s=summary, figures=figures, grades_html=grades_html,
                                             grades_csv=grades_csv)


def write(cg, out_dir: Path) -> Path:
    from labreport.grading.grade import CSV_NAME, HTML_NAME, OVERVIEW_NAME

    out_dir = Path(out_dir)
    summary = summarise(cg)
    figures = draw(summary, out_dir)
    path = out_dir / OVERVIEW_NAME
    store.write_text_atomic(path, to_html(summary, figures, grades_html=HTML_NAME, grades_csv=CSV_NAME))
    return path
