"""A grading table over many report PDFs: who handed in what, whether it verifies, what is missing.

One row per PDF, from the PDF alone: the attached experiments.toml's ``[report]`` (title,
group, authors); ``verify``'s checks (no re-training); the hand-in requirements of
``checks.evaluate`` on the attached config and results; per part the number of trained
variants, the chosen model and the best test accuracy; the failed experiments; whether the
results are ``--quick`` smoke runs. A file that cannot be read gets a row saying why and
the others are graded anyway. Written as ``grades.csv`` and ``grades.html``, atomically.
"""

from __future__ import annotations

import csv
import html
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from labreport.grading import checks
from labreport.report import commentary
from labreport.results import staleness, store
from labreport.grading import verify
from labreport.config.spec import PARTS

VERIFIED, NOT_VERIFIED, UNREADABLE = "VERIFIED", "NOT VERIFIED", "UNREADABLE"
CSV_NAME, HTML_NAME = "grades.csv", "grades.html"


@dataclass(frozen=True)
class PartGrade:
    part: str
    variants: int  # trained with the declared settings, status ok
    declared: int
    chosen: str  # "" when none is marked chosen = true
    best_name: str
    best_accuracy: float | None


@dataclass(frozen=True)
class Grade:
    """One submission's row; ``error`` is set (and little else) when the file could not be read."""

    file: str
    error: str = ""
    title: str = ""
    group: str = ""
    authors: tuple[str, ...] = ()
    mismatches: tuple[str, ...] = ()  # verify's MISMATCH lines
    wrong_params: tuple[str, ...] = ()  # experiments whose parameter counts do not add up
    requirements: tuple[checks.Check, ...] = ()
    parts: tuple[PartGrade, ...] = ()
    failed: tuple[str, ...] = ()  # failed or diverged experiments
    quick: bool = False

    @property
    def verification(self) -> str:
        if self.error:
            return UNREADABLE
        return NOT_VERIFIED if self.mismatches else VERIFIED

    @property
    def requirements_met(self) -> str:
        return f"{sum(c.ok for c in self.requirements)} of {len(self.requirements)}" if not self.error else ""

    def part(self, name: str) -> PartGrade | None:
        return next((p for p in self.parts if p.part == name), None)


# --------------------------------------------------------------------------- grading
def collect(inputs: Iterable[str | Path]) -> list[Path]:
    """The files to grade: folders are searched (recursively) for *.pdf; named files are kept as given."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pdfs = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".pdf")
            out += pdfs or [path]  # an empty folder still gets a row, so it is not silently skipped
        else:
            out.append(path)
    return out


def grade_file(path: Path) -> Grade:
    if path.is_dir():
        return Grade(str(path), error="no PDF file in this folder")
    try:
        sub = verify.read_submission(path)
    except verify.UnreadableReport as e:
        return Grade(str(path), error=str(e).removeprefix(f"{path}: "))  # the file column names it
    return grade_submission(sub)


def grade_submission(sub: verify.Submission) -> Grade:
    findings = verify.verify_submission(sub)
    runs = sub.runs()
    fresh = statuses(sub)
    meta = sub.config.report
    return Grade(
        file=str(sub.path),
        title=meta.title,
        group=meta.group,
        authors=tuple(meta.authors),
        mismatches=tuple(f.line() for f in findings if f.status == verify.MISMATCH),
        wrong_params=tuple(f.subject for f in findings if f.check == "parameters" and f.status == verify.MISMATCH),
        requirements=tuple(requirement_checks(sub, fresh)),
        parts=tuple(part_grade(p, runs, fresh) for p in PARTS),
        failed=tuple(r.name for r in runs if r.status in ("failed", "diverged")),
        quick=sub.quick or any(bool((r.result or {}).get("quick")) for r in runs),
    )


def statuses(sub: verify.Submission) -> dict[str, str]:
    """staleness.decide on the attached results, as `labreport check` decides on build/."""
    return {spec.name: staleness.decide(spec, sub.result(spec.name), quick=sub.quick).status
            for spec in sub.config.experiments}


def requirement_checks(sub: verify.Submission, fresh: dict[str, str]) -> list[checks.Check]:
    """checks.evaluate on the attached config and results, laid out in a scratch build folder.

    Only what checks.py reads is written (name, status, error): the rest of an untrusted
    results.json need not survive a round trip through store.write_result.
    """
    with tempfile.TemporaryDirectory(prefix="labreport-grade-") as tmp:
        build = Path(tmp)
        for spec in sub.config.experiments:
            result = sub.result(spec.name)
            if result is not None:
                error = result.get("error")
                store.write_result(build, {"name": spec.name, "status": result.get("status"),
                                           "error": error if isinstance(error, str) else None}, quick=sub.quick)
        # The PDF's named destinations are the HTML ids: enough for the "four questions" check.
        ids = " ".join(f'id="{a.name}"' for a in sub.text.anchors)
        return checks.evaluate(sub.config, build, quick=sub.quick, html=ids, statuses=fresh)


def part_grade(part: str, runs: Sequence[commentary.Run], fresh: dict[str, str]) -> PartGrade:
    mine = [r for r in runs if r.spec.part == part]
    best = commentary.best_run(mine)
    return PartGrade(
        part=part,
        variants=sum(1 for r in mine if r.status == "ok" and fresh[r.name] == "fresh"),
        declared=len(mine),
        chosen=next((r.name for r in mine if r.spec.chosen), ""),
        best_name=best.name if best else "",
        best_accuracy=best.test_accuracy if best else None,
    )


def grade(inputs: Iterable[str | Path]) -> list[Grade]:
    return [grade_file(path) for path in collect(inputs)]


# --------------------------------------------------------------------------- output
def columns() -> list[str]:
    head = ["file", "title", "group", "authors", "verification", "mismatches", "requirements met",
            "parameter counts", "quick runs", "failed experiments"]
    for p in PARTS:
        head += [f"{p} variants", f"{p} chosen", f"{p} best accuracy", f"{p} best model"]
    return head + ["unmet requirements", "problems"]


def row(g: Grade) -> list[str]:
    if g.error:
        return [g.file, "", "", "", UNREADABLE] + [""] * (len(columns()) - 7) + ["", g.error]
    cells = [g.file, g.title, g.group, ", ".join(g.authors), g.verification, str(len(g.mismatches)),
             g.requirements_met,
             "correct" if not g.wrong_params else "WRONG: " + ", ".join(g.wrong_params),
             "yes" if g.quick else "no", ", ".join(g.failed)]
    for p in PARTS:
        pg = g.part(p)
        cells += [f"{pg.variants} of {pg.declared}", pg.chosen, commentary.pct(pg.best_accuracy)
                  if pg.best_accuracy is not None else "", pg.best_name] if pg else ["", "", "", ""]
    unmet = [f"{c.rule}: {c.detail}" for c in g.requirements if not c.ok]
    return cells + ["; ".join(unmet), " | ".join(g.mismatches)]


def to_csv(grades: Sequence[Grade]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns())
    writer.writerows(row(g) for g in grades)
    return buf.getvalue()


HTML_STYLE = """
body { font: 13px/1.35 "DejaVu Sans", sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; text-align: left; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.VERIFIED { background: #e3f4e3; }
td.NOT-VERIFIED, td.UNREADABLE { background: #fbe3e3; font-weight: bold; }
td.problems { font-size: 11px; white-space: pre-line; max-width: 60em; }
"""


def to_html(grades: Sequence[Grade]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns())
    body = []
    for g in grades:
        cells = row(g)
        tds = []
        for name, value in zip(columns(), cells):
            cls = g.verification.replace(" ", "-") if name == "verification" else \
                "problems" if name in ("problems", "unmet requirements") else ""
            text = value.replace(" | ", "\n").replace("; ", "\n") if cls == "problems" else value
            tds.append(f'<td class="{cls}">{e(text)}</td>' if cls else f"<td>{e(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    n_ok = sum(g.verification == VERIFIED for g in grades)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>labreport grades</title>'
            f"<style>{HTML_STYLE}</style></head>\n<body>\n<h1>labreport grades</h1>\n"
            f"<p>{len(grades)} submissions, {n_ok} verified.</p>\n"
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body)
            + "\n</tbody>\n</table>\n</body>\n</html>\n")


def write(grades: Sequence[Grade], out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    csv_path, html_path = out_dir / CSV_NAME, out_dir / HTML_NAME
    store.write_text_atomic(csv_path, to_csv(grades))
    store.write_text_atomic(html_path, to_html(grades))
    return csv_path, html_path


def summary_lines(grades: Sequence[Grade]) -> list[str]:
    """The terminal view: one line per file."""
    lines = []
    for g in grades:
        if g.error:
            lines.append(f"{UNREADABLE:<12} {g.file}: {g.error.splitlines()[0]}")
            continue
        n = len(g.mismatches)
        what = f"{g.verification}{f' ({n})' if n else ''}"
        lines.append(f"{what:<12} {g.file}: requirements {g.requirements_met}"
                     f"{', parameter counts WRONG' if g.wrong_params else ''}{', quick runs' if g.quick else ''}")
    return lines
