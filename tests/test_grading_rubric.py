"""The rubric: reading [grading] (errors name file and key), and the arithmetic of each score."""

from __future__ import annotations

from pathlib import Path

import pytest

from labreport import cli
from labreport.config import loader
from labreport.grading import checks, rubric
from labreport.grading.grade import FindingRow, Grade, PartGrade

TEACHER = """\
[grading]
out_of = 10
min_variants = 2
parts = ["raw", "cnn"]

[grading.points]
variants = 3          # per part
chosen = 1            # per part
q2 = 2
verified = 2
parameters = 1

[grading.penalties]
failed = 0.5
quick = 4
mismatch = 0.25
copy = 10
findings = { template = 1.5 }
"""


def a_grade(**changes) -> Grade:
    base = dict(
        file="g.pdf", title="T", group="G", authors=("Ada",),
        parts=(PartGrade("raw", 3, 3, "raw-a", "raw-a", 0.97), PartGrade("hog", 0, 1, "", "", None),
               PartGrade("cnn", 1, 2, "", "cnn-b", 0.98), PartGrade("fashion", 2, 2, "f", "f", 0.88)),
        questions=("q1", "q2", "q3"), requirements=(checks.Check("x", True, ""),),
    )
    base.update(changes)
    return Grade(**base)


def test_the_arithmetic_line_by_line(tmp_path):
    (tmp_path / "rubric.toml").write_text(TEACHER)
    r = rubric.load(tmp_path / "rubric.toml")
    assert r.max_points == 3 * 2 + 1 * 2 + 2 + 2 + 1 == 13
    g = a_grade(failed=("raw-x", "cnn-y"), mismatches=("MISMATCH a", "MISMATCH b", "MISMATCH c"),
                findings=(FindingRow("template", "MISMATCH", "document", "not the bundled templates"),
                          FindingRow("card", "MISMATCH", "raw-a", "...")))
    s = rubric.score(r, g, copy_of=())
    got = {x.key: x.points for x in s.lines}
    assert got == {"variants raw": 3, "variants cnn": 0, "chosen raw": 1, "chosen cnn": 0, "q2": 2,
                   "verified": 0, "parameters": 1, "penalty failed": -1.0, "penalty quick": 0,
                   "penalty mismatch": -0.75, "penalty copy": 0, "penalty finding template": -1.5}
    # 3 + 1 + 2 + 1 - 1 - 0.75 - 1.5 = 3.75 of 13, scaled to 10
    assert s.raw == 3.75 and s.total == round(3.75 / 13 * 10, 2) == 2.88
    assert rubric.explain(r, s) == "3 + 1 + 2 + 1 - 1 - 0.75 - 1.5 = 3.75 of 13 -> 2.88 / 10"
    how = {x.key: x.how for x in s.lines}
    assert how["variants cnn"] == "1 trained variant, 2 needed"
    assert how["verified"] == "3 mismatches"
    assert how["penalty finding template"] == "1 finding of kind 'template': document"


def test_penalties_never_go_below_zero_and_a_copy_costs_its_points():
    r = rubric.from_table({"points": {"q1": 2}, "penalties": {"copy": 5}}, "inline")
    s = rubric.score(r, a_grade(), copy_of=["Group 9"])
    assert (s.raw, s.total, s.max_points) == (0.0, 0.0, 2.0)
    assert s.line("penalty copy").how == "flagged as a copy with Group 9"
    assert rubric.score(r, a_grade(), copy_of=[]).total == 2.0  # no out_of: points as they are


def test_an_unreadable_submission_scores_zero_and_says_why():
    s = rubric.score(rubric.DEFAULT, Grade("x.pdf", error="not a PDF file"))
    assert s.total == 0 and {x.how for x in s.lines} == {"not graded: not a PDF file"}


def test_the_default_rubric_is_out_of_20():
    assert rubric.DEFAULT.max_points == 20 and rubric.DEFAULT.out_of == 20


@pytest.mark.parametrize("table, message", [
    ("[grading]\nout_off = 20\n[grading.points]\nq1 = 1\n",
     "FILE: [grading]: unknown key 'out_off' (did you mean 'out_of'?)"),
    ("[grading.points]\nvariant = 2\n",
     "FILE: [grading.points]: unknown key 'variant' (did you mean 'variants'?) (known: variants, chosen, q1, q2,"
     " q3, q4, verified, parameters)"),
    ("[grading.points]\nq1 = -1\n", "FILE: [grading.points]: key 'q1': expected a number of points >= 0, got -1"),
    ("[grading.points]\nq1 = 1\n[grading.penalties]\nfindings = 3\n",
     "FILE: [grading.penalties]: key 'findings': expected a table { KIND = points, ... }"),
    ("[grading]\nparts = [\"raw\", \"mlp\"]\n[grading.points]\nq1 = 1\n",
     "FILE: [grading]: key 'parts': expected an array of parts among: raw, hog, cnn, fashion"),
    ("[report]\ntitle = \"x\"\n", "FILE: no [grading] table (see README: Grading a class)"),
    ("[grading\n", None),
])
def test_bad_rubrics_stop_grade_with_exit_2_and_write_nothing(tmp_path, capsys, table, message):
    path = tmp_path / "rubric.toml"
    path.write_text(table)
    out = tmp_path / "out"
    assert cli.main(["grade", str(tmp_path), "--rubric", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    if message is None:
        assert err.startswith(f"labreport: {path}: TOML syntax error: ")
    else:
        assert err == f"labreport: {message.replace('FILE', str(path))}\n"
    assert not out.exists()


def test_the_teachers_experiments_toml_may_carry_the_rubric(tmp_path):
    lab = (Path(__file__).resolve().parents[1] / "experiments.toml").read_text() + "\n" + TEACHER
    (tmp_path / "experiments.toml").write_text(lab)
    assert len(loader.load(tmp_path / "experiments.toml").experiments) == 24  # [grading] is not an error
    assert rubric.load(tmp_path / "experiments.toml").out_of == 10
