"""Grading a class: one row per PDF, a rubric score, copies between groups, the class overview.

One row per PDF, from the PDF alone: the attached experiments.toml's ``[report]`` (title,
group, authors and their ids); ``verify``'s checks (no re-training) and its non-OK findings
grouped by kind; the hand-in requirements of ``checks.evaluate`` on the attached config and
results; per part the number of trained variants, the chosen model and the best test
accuracy; the failed experiments; whether the results are ``--quick`` smoke runs; the seeds.

Each PDF is graded in its own process with a time and a memory limit (``isolation``): a
file that cannot be read, or that crashes, hangs or exhausts the grader, gets a row saying
why and the others are graded anyway. Then, across the class: copies (``copies``), the
rubric (``rubric``), and the outputs -- ``grades.csv`` (spreadsheet-safe cells),
``grades.html`` (how each score was reached), ``overview.html`` (``overview``) and the LMS
export (``lms``) -- all written atomically, always, whatever the submissions held.
"""

from __future__ import annotations

import dataclasses
import html
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from labreport.grading import checks, copies, isolation, lms, rubric
from labreport.report.claims import pct
from labreport.results.run import Run, best_run
from labreport.results import staleness, store
from labreport.grading import verify
from labreport.config.spec import PARTS

VERIFIED, NOT_VERIFIED, UNREADABLE = "VERIFIED", "NOT VERIFIED", "UNREADABLE"
# What grading a PDF imports (results.metrics loads scikit-learn, ~280 MB of address space):
# loaded once by the isolation's fork server rather than by every submission's process.
PRELOAD = ("labreport.grading.grade", "sklearn.metrics")
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
class FindingRow:
    """A non-OK finding of verify: its kind (verify's ``kind`` if it has one, else the check)."""

    kind: str
    status: str
    subject: str
    text: str


@dataclass(frozen=True)
class Grade:
    """One submission's row; ``error`` is set (and little else) when the file could not be graded."""

    file: str
    error: str = ""
    title: str = ""
    group: str = ""
    authors: tuple[str, ...] = ()
    author_ids: tuple[str, ...] = ()
    mismatches: tuple[str, ...] = ()  # verify's MISMATCH lines
    wrong_params: tuple[str, ...] = ()  # experiments whose parameter counts do not add up
    requirements: tuple[checks.Check, ...] = ()
    parts: tuple[PartGrade, ...] = ()
    failed: tuple[str, ...] = ()  # failed or diverged experiments
    quick: bool = False
    findings: tuple[FindingRow, ...] = ()  # every non-OK finding (MISMATCH and NOTE)
    questions: tuple[str, ...] = ()  # q1..q4 sections present in the PDF
    stale: tuple[str, ...] = ()  # not trained with the declared settings (or not at all)
    seeds: tuple[int, ...] = ()
    variants: tuple[tuple[str, str], ...] = ()  # (part, model) of each trained variant
    errors: tuple[tuple[str, str], ...] = ()  # (experiment, first line of the error) of failed runs
    fingerprint: copies.Fingerprint | None = field(default=None, compare=False, repr=False)

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
    """One file's row (run inside an isolated process by ``grade``)."""
    path = Path(path)
    if path.is_dir():
        return Grade(str(path), error="no PDF file in this folder")
    try:
        sub = verify.read_submission(path)
    except verify.UnreadableReport as e:
        return Grade(str(path), error=str(e).removeprefix(f"{path}: "))  # the file column names it
    g = grade_submission(sub)
    fp = copies.fingerprint(sub.toml_text, sub.results, None, path.read_bytes(),
                            [(s.name, s.comment) for s in sub.config.experiments])
    return dataclasses.replace(g, fingerprint=fp)


def finding_kind(f: verify.Finding) -> str:
    """verify's ``kind`` when it gives one; else the check's name without its page."""
    return getattr(f, "kind", "") or re.sub(r" \(page \d+\)$", "", f.check)


def grade_submission(sub: verify.Submission) -> Grade:
    findings = verify.verify_submission(sub)
    runs = sub.runs()
    fresh = statuses(sub)
    meta = sub.config.report
    anchors = {a.name for a in sub.text.anchors}
    return Grade(
        file=str(sub.path),
        title=meta.title,
        group=meta.group,
        authors=tuple(meta.authors),
        author_ids=tuple(getattr(meta, "author_ids", ()) or ("",) * len(meta.authors)),
        mismatches=tuple(f.line() for f in findings if f.status == verify.MISMATCH),
        wrong_params=tuple(f.subject for f in findings if f.check == "parameters" and f.status == verify.MISMATCH),
        requirements=tuple(requirement_checks(sub, fresh)),
        parts=tuple(part_grade(p, runs, fresh) for p in PARTS),
        failed=tuple(r.name for r in runs if r.status in ("failed", "diverged")),
        quick=sub.quick or any(bool((r.result or {}).get("quick")) for r in runs),
        findings=tuple(FindingRow(finding_kind(f), f.status, f.subject, f.line())
                       for f in findings if f.status != verify.OK),
        questions=tuple(q for q in checks.QUESTION_IDS if q in anchors),
        stale=tuple(name for name, st in fresh.items() if st != "fresh"),
        seeds=tuple(sorted({s.seed for s in sub.config.experiments})),
        variants=tuple((r.spec.part, r.spec.summary) for r in runs
                       if r.status == "ok" and fresh[r.spec.run_label] == "fresh"),
        errors=tuple((r.name, str((r.result or {}).get("error") or r.status).splitlines()[0][:200])
                     for r in runs if r.status in ("failed", "diverged")),
    )


def statuses(sub: verify.Submission) -> dict[str, str]:
    """staleness.decide on every attached run, as `labreport check` decides on build/: keyed
    by the run's label ('raw-tanh-300', 'raw-tanh-300 run 2/3')."""
    out = {}
    for spec in sub.config.experiments:
        first, *more = spec.runs()
        for run, result in zip((first, *more), (sub.result(spec.name), *sub.more_results(spec))):
            out[run.run_label] = staleness.decide(run, result, quick=sub.quick).status
    return out


def requirement_checks(sub: verify.Submission, fresh: dict[str, str]) -> list[checks.Check]:
    """checks.evaluate on the attached config and results, laid out in a scratch build folder.

    Only what checks.py reads is written (name, status, error): the rest of an untrusted
    results.json need not survive a round trip through store.write_result.
    """
    with tempfile.TemporaryDirectory(prefix="labreport-grade-") as tmp:
        build = Path(tmp)
        for spec in sub.config.experiments:
            for repeat, result in enumerate((sub.result(spec.name), *sub.more_results(spec)), start=1):
                if result is not None:
                    error = result.get("error")
                    store.write_result(build, {"name": spec.name, "repeat": repeat, "status": result.get("status"),
                                               "error": error if isinstance(error, str) else None}, quick=sub.quick)
        # The PDF's named destinations are the HTML ids: enough for the "four questions" check.
        ids = " ".join(f'id="{a.name}"' for a in sub.text.anchors)
        return checks.evaluate(sub.config, build, quick=sub.quick, html=ids, statuses=fresh)


def part_grade(part: str, runs: Sequence[Run], fresh: dict[str, str]) -> PartGrade:
    mine = [r for r in runs if r.spec.part == part]
    best = best_run(mine)
    return PartGrade(
        part=part,
        variants=sum(1 for r in mine if r.status == "ok" and fresh[r.spec.run_label] == "fresh"),
        declared=len(mine),
        chosen=next((r.name for r in mine if r.spec.chosen), ""),
        best_name=best.name if best else "",
        best_accuracy=best.headline_accuracy if best else None,  # the mean with repeats, as the report prints
    )


def _failed_row(path: Path, outcome: isolation.Failure) -> Grade:
    return Grade(str(path), error=f"not graded: {outcome.message}")


def grade(inputs: Iterable[str | Path], *, jobs: int | None = None, timeout_s: float = 120.0,
          memory_mb: int = 2048, on_done: Callable[[Grade], None] | None = None) -> list[Grade]:
    """One Grade per file, each graded in its own process (``isolation.run_each``), in input order."""
    paths = collect(inputs)

    def done(i: int, outcome) -> None:
        if on_done is not None:
            on_done(outcome if isinstance(outcome, Grade) else _failed_row(paths[i], outcome))

    outcomes = isolation.run_each(paths, grade_file, jobs=jobs or isolation.default_jobs(), timeout_s=timeout_s,
                                  memory_mb=memory_mb, preload=PRELOAD, on_done=done)
    return [o if isinstance(o, Grade) else _failed_row(p, o) for p, o in zip(paths, outcomes)]


# --------------------------------------------------------------------------- the class
@dataclass(frozen=True)
class ClassGrades:
    """Every row, the copy pairs, and each row's rubric score (same order as ``grades``)."""

    grades: tuple[Grade, ...]
    pairs: tuple[copies.Pair, ...]
    rubric: rubric.Rubric
    scores: tuple[rubric.Score, ...]
    labels: tuple[str, ...]  # how each submission is named in evidence ("Group 3")

    def copy_of(self, i: int) -> list[str]:
        return [self.labels[j] for j in copies.flagged(self.pairs).get(i, [])]


def labels(grades: Sequence[Grade]) -> list[str]:
    """A short name per submission: its group (or authors), with the file when that is ambiguous."""
    base = [g.group.strip() or ", ".join(g.authors) or Path(g.file).name for g in grades]
    counts = {b: base.count(b) for b in base}
    return [b if counts[b] == 1 else f"{b} ({g.file})" for b, g in zip(base, grades)]


def assess(grades: Sequence[Grade], the_rubric: rubric.Rubric = rubric.DEFAULT) -> ClassGrades:
    pairs = copies.compare([g.fingerprint for g in grades])
    names = labels(grades)
    flagged = copies.flagged(pairs)
    scores = [rubric.score(the_rubric, g, [names[j] for j in flagged.get(i, [])]) for i, g in enumerate(grades)]
    return ClassGrades(tuple(grades), tuple(pairs), the_rubric, tuple(scores), tuple(names))


# --------------------------------------------------------------------------- output
def columns(the_rubric: rubric.Rubric = rubric.DEFAULT) -> list[str]:
    head = ["file", "title", "group", "authors", "author ids", "seeds", "verification", "mismatches",
            "requirements met", "parameter counts", "quick runs", "failed experiments"]
    for p in PARTS:
        head += [f"{p} variants", f"{p} chosen", f"{p} best accuracy", f"{p} best model"]
    head += ["unmet requirements", "problems", "findings", "copies"]
    head += [label for _, label in the_rubric.line_keys()]
    return head + ["total", "out of", "arithmetic"]


def findings_summary(g: Grade) -> str:
    """Non-OK findings counted by kind: 'card: 2 MISMATCH; part table: 1 NOTE' (any new kind shows)."""
    counts: dict[tuple[str, str], int] = {}
    for f in g.findings:
        counts[(f.kind, f.status)] = counts.get((f.kind, f.status), 0) + 1
    return "; ".join(f"{kind}: {n} {status}" for (kind, status), n in counts.items())


def row(g: Grade, cg: ClassGrades | None = None, index: int = 0) -> list[str]:
    the_rubric = cg.rubric if cg else rubric.DEFAULT
    cols = columns(the_rubric)
    cells: dict[str, str] = {"file": g.file}
    if g.error:
        cells.update({"verification": UNREADABLE, "problems": g.error})
    else:
        cells.update({
            "title": g.title, "group": g.group, "authors": ", ".join(g.authors),
            "author ids": ", ".join(g.author_ids) if any(g.author_ids) else "",
            "seeds": ", ".join(map(str, g.seeds)), "verification": g.verification,
            "mismatches": str(len(g.mismatches)), "requirements met": g.requirements_met,
            "parameter counts": "correct" if not g.wrong_params else "WRONG: " + ", ".join(g.wrong_params),
            "quick runs": "yes" if g.quick else "no", "failed experiments": ", ".join(g.failed),
            "unmet requirements": "; ".join(f"{c.rule}: {c.detail}" for c in g.requirements if not c.ok),
            "problems": " | ".join(g.mismatches), "findings": findings_summary(g),
        })
        for p in PARTS:
            pg = g.part(p)
            if pg:
                cells.update({f"{p} variants": f"{pg.variants} of {pg.declared}", f"{p} chosen": pg.chosen,
                              f"{p} best accuracy": pct(pg.best_accuracy)
                              if pg.best_accuracy is not None else "", f"{p} best model": pg.best_name})
    if cg is not None:
        cells["copies"] = "; ".join(cg.copy_of(index))
        s = cg.scores[index]
        for (key, label) in the_rubric.line_keys():
            line = s.line(key)
            cells[label] = f"{line.points:g}" if line else ""
        cells["total"] = f"{s.total:.2f}"
        cells["out of"] = f"{the_rubric.out_of or s.max_points:g}"
        cells["arithmetic"] = rubric.explain(the_rubric, s)
    return [cells.get(c, "") for c in cols]


def to_csv(grades: Sequence[Grade], cg: ClassGrades | None = None) -> str:
    """grades.csv: every student-controlled cell neutralised for spreadsheets (lms.safe_cell)."""
    cg = cg or assess(grades)
    return lms.to_csv(columns(cg.rubric), (row(g, cg, i) for i, g in enumerate(grades)))


HTML_STYLE = """
body { font: 13px/1.35 "DejaVu Sans", sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; text-align: left; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.VERIFIED { background: #e3f4e3; }
td.NOT-VERIFIED, td.UNREADABLE { background: #fbe3e3; font-weight: bold; }
td.problems { font-size: 11px; white-space: pre-line; max-width: 60em; }
td.score small, td.total small { display: block; color: #555; font-size: 10px; max-width: 16em; }
td.lost { background: #fff2dd; }
td.copies { background: #fbe3e3; }
"""


def to_html(grades: Sequence[Grade], cg: ClassGrades | None = None) -> str:
    """grades.html: the same table; each rubric cell shows its points and how they were reached."""
    cg = cg or assess(grades)
    e = html.escape
    cols = columns(cg.rubric)
    rubric_labels = {label: key for key, label in cg.rubric.line_keys()}
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for i, g in enumerate(grades):
        cells = row(g, cg, i)
        score = cg.scores[i]
        tds = []
        for name, value in zip(cols, cells):
            if name in rubric_labels:
                line = score.line(rubric_labels[name])
                lost = line is not None and (line.points < 0 or (line.points == 0 and not line.key.startswith("penalty")))
                cls = "score lost" if lost else "score"
                how = f"<small>{e(line.how)}</small>" if line else ""
                tds.append(f'<td class="{cls}">{e(value)}{how}</td>')
                continue
            if name == "total":
                tds.append(f'<td class="total"><b>{e(value)}</b><small>{e(rubric.explain(cg.rubric, score))}</small></td>')
                continue
            cls = g.verification.replace(" ", "-") if name == "verification" else \
                "problems" if name in ("problems", "unmet requirements", "findings") else \
                "copies" if name == "copies" and value else ""
            text = value.replace(" | ", "\n").replace("; ", "\n") if cls == "problems" else value
            tds.append(f'<td class="{cls}">{e(text)}</td>' if cls else f"<td>{e(text)}</td>")
        body.append(f'<tr id="row-{i + 1}">' + "".join(tds) + "</tr>")
    n_ok = sum(g.verification == VERIFIED for g in grades)
    n_copies = sum(p.verdict == copies.COPY for p in cg.pairs)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>labreport grades</title>'
            f"<style>{HTML_STYLE}</style></head>\n<body>\n<h1>labreport grades</h1>\n"
            f"<p>{len(grades)} submissions, {n_ok} verified. Rubric: {e(cg.rubric.source)};"
            f" {n_copies} pair{'s' * (n_copies != 1)} flagged as copies."
            f' <a href="{OVERVIEW_NAME}">Class overview</a>.</p>\n'
            f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body)
            + "\n</tbody>\n</table>\n</body>\n</html>\n")


OVERVIEW_NAME = "overview.html"


def students(cg: ClassGrades) -> tuple[list[lms.StudentGrade], list[str]]:
    """One row per author (for the LMS), and the submissions that name no author."""
    out, nobody = [], []
    out_of = cg.rubric.out_of or cg.rubric.max_points
    for g, s, i in zip(cg.grades, cg.scores, range(len(cg.grades))):
        if not g.authors:
            nobody.append(g.file)
            continue
        feedback = feedback_text(cg, i)
        for name, sid in zip(g.authors, g.author_ids or ("",) * len(g.authors)):
            out.append(lms.StudentGrade(sid, name, g.group, s.total, out_of, feedback, g.file))
    return out, nobody


def feedback_text(cg: ClassGrades, i: int) -> str:
    """What the student reads in the LMS: the lines where points were lost, and the total."""
    g, s = cg.grades[i], cg.scores[i]
    if g.error:
        return f"Not graded: {g.error.splitlines()[0]}"
    lost = [f"{x.key}: {x.how} ({x.points:+g})" for x in s.lines if x.points < 0]
    max_of = {k: v for k, v in cg.rubric.points}
    lost += [f"{x.key}: {x.how} (0 of {max_of.get(x.key.split(' ')[0], 0):g})" for x in s.lines
             if x.points == 0 and not x.key.startswith("penalty") and max_of.get(x.key.split(" ")[0], 0) > 0]
    out_of = cg.rubric.out_of or s.max_points
    return f"{s.total:.2f} / {out_of:g}. " + ("; ".join(lost) if lost else "Every rubric line met.")


def write(grades: Sequence[Grade], out_dir: Path, cg: ClassGrades | None = None, *,
          lms_format: str | None = None) -> list[Path]:
    """grades.csv, grades.html, overview.html (+ its figures) and the LMS file; returns the paths."""
    from labreport.grading import overview

    cg = cg or assess(grades)
    out_dir = Path(out_dir)
    csv_path, html_path = out_dir / CSV_NAME, out_dir / HTML_NAME
    store.write_text_atomic(csv_path, to_csv(grades, cg))
    store.write_text_atomic(html_path, to_html(grades, cg))
    paths = [csv_path, html_path, overview.write(cg, out_dir)]
    if lms_format:
        rows, _ = students(cg)
        export = lms.export(lms_format, rows)
        store.write_text_atomic(out_dir / export.name, export.text)
        paths.append(out_dir / export.name)
    return paths


def summary_lines(grades: Sequence[Grade], cg: ClassGrades | None = None) -> list[str]:
    """The terminal view: one line per file, then the flagged pairs."""
    lines = []
    for i, g in enumerate(grades):
        total = f", total {cg.scores[i].total:.2f}" if cg else ""
        if g.error:
            lines.append(f"{UNREADABLE:<12} {g.file}: {g.error.splitlines()[0]}")
            continue
        n = len(g.mismatches)
        what = f"{g.verification}{f' ({n})' if n else ''}"
        lines.append(f"{what:<12} {g.file}: requirements {g.requirements_met}"
                     f"{', parameter counts WRONG' if g.wrong_params else ''}{', quick runs' if g.quick else ''}"
                     f"{total}")
    if cg:
        for p in cg.pairs:
            lines.append(f"{p.verdict.upper():<12} {p.sentence(cg.labels)}")
    return lines
