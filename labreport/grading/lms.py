"""Spreadsheet-safe CSV cells, and the grades as an LMS import: one row per student.

Cells: students control titles, groups, author names and experiment names, and a cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by
Excel/LibreOffice when the teacher opens the CSV (OWASP "CSV Injection"). ``safe_cell``
prefixes such a cell with a single quote, as OWASP advises, so it is shown as text; plain
numbers (``-0.5``, a grade) are left as numbers. The csv module quotes cells holding the
separator, quotes or line breaks.

Exports (``grade --lms``):

- ``moodle``: Moodle's grade import (Grades > Import > CSV file) maps columns by hand: one
  column to a user field (the identifier), one to the grade item, one to its feedback.
  The file has the header ``ID number`` (or ``Email address`` when every id is an email),
  ``Full name``, ``Grade``, ``Feedback``, comma-separated, UTF-8: choose "ID number" (or
  "Email address") as the user mapping and the grade item for ``Grade`` and its feedback
  for ``Feedback``. One row per author; authors without an id cannot be matched by Moodle
  and are listed in ``missing`` (not written).
- ``csv``: the same, generic: ``student_id, name, group, grade, out_of, feedback, file``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?\Z")
FORMATS = ("moodle", "csv")


def safe_cell(value: object) -> str:
    """A cell that a spreadsheet shows as text, never evaluates (OWASP CSV injection advice)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START) and not PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([safe_cell(c) for c in header])
    for row in rows:
        writer.writerow([safe_cell(c) for c in row])
    return buf.getvalue()


@dataclass(frozen=True)
class StudentGrade:
    student_id: str
    name: str
    group: str
    grade: float
    out_of: float
    feedback: str
    file: str


@dataclass(frozen=True)
class Export:
    name: str  # file name
    text: str
    missing: tuple[str, ...]  # "Ada (Group 3)": authors without an id, not exported


def export(fmt: str, students: Sequence[StudentGrade], missing: Sequence[str] = ()) -> Export:
    if fmt == "moodle":
        with_id = [s for s in students if s.student_id]
        ids = [s.student_id for s in with_id]
        id_column = "Email address" if ids and all("@" in i for i in ids) else "ID number"
        text = to_csv([id_column, "Full name", "Grade", "Feedback"],
                      ([s.student_id, s.name, f"{s.grade:.2f}", s.feedback] for s in with_id))
        lost = tuple(missing) + tuple(f"{s.name} ({s.group or s.file})" for s in students if not s.student_id)
        return Export("moodle.csv", text, lost)
    if fmt == "csv":
        text = to_csv(["student_id", "name", "group", "grade", "out_of", "feedback", "file"],
                      ([s.student_id, s.name, s.group, f"{s.grade:.2f}", f"{s.out_of:g}", s.feedback, s.file]
                       for s in students))
        return Export("students.csv", text, tuple(missing))
    raise ValueError(f"unknown LMS format {fmt!r}")
