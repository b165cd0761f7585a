"""grade: one row per submission (CSV + HTML), bad files included, from the PDFs alone (no TensorFlow).

Two small labs are rendered once for the module (PDF included): group 7 meets every
requirement; group 8 handed in --quick smoke runs with a failed experiment and no chosen
model for part fashion. A tampered copy of group 7's PDF, a text file named .pdf, a
truncated PDF, a non-PDF given by name and an empty folder complete the pile.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from fixtures.synthetic import make_result, write_fake_data
from labreport import cli
from labreport.report.claims import pct
from labreport import config
from labreport.report import render
from labreport.results import store
from fixtures import chromium
from test_verify import attachment, reattach

LAB = """\
[report]
title = "PW04 - Deep Neural Networks"
authors = ["Ada", "Alan"]
group = "Group 7"

[requirements]
min_variants_per_part = 2

[defaults]
optimizer = {{ name = "rmsprop" }}
batch_size = 256
epochs = 4

[[experiment]]
name = "raw-16"
part = "raw"
hidden = 16
activation = "tanh"
chosen = true

[[experiment]]
name = "raw-16-sigmoid"
from = "raw-16"
activation = "sigmoid"

[[experiment]]
name = "hog-16"
part = "hog"
hog = {{ pixels_per_cell = 7, orientations = 8 }}
hidden = 16
activation = "relu"
chosen = true

[[experiment]]
name = "hog-8"
from = "hog-16"
hidden = 8

[[experiment]]
name = "cnn-8"
part = "cnn"
conv = [{{ filters = 4, kernel = 3 }}]
hidden = 8
activation = "relu"
chosen = true

[[experiment]]
name = "cnn-4"
from = "cnn-8"
hidden = 4

[[experiment]]
name = "fashion-8"
part = "fashion"
conv = [{{ filters = 4, kernel = 3 }}]
hidden = 8
activation = "relu"
{fashion_chosen}

[[experiment]]
name = "fashion-4"
from = "fashion-8"
hidden = 4
"""


def make_pdf(tmp: Path, name: str, *, group: str, quick: bool = False, failed: tuple[str, ...] = (),
             fashion_chosen: bool = True) -> tuple[Path, dict[str, dict]]:
    """Render one submission to ``tmp/name.pdf``.

    Both labs share one build folder (full runs in runs/, smoke runs in quick/runs/) so the
    figures they have in common (equations, samples, HOG) are drawn once; one worker process,
    as spawning more costs more than these few figures.
    """
    text = LAB.format(fashion_chosen="chosen = true" if fashion_chosen else "")
    (tmp / f"{name}.toml").write_text(text.replace('"Group 7"', f'"{group}"'))
    lab = config.load(tmp / f"{name}.toml")
    build = tmp / "build"
    results = {}
    for k, spec in enumerate(lab.experiments):
        # Each group its own training: another seed of the fixture and its own run times (the
        # fixture's are the same for every result, which the copy detector would rightly flag).
        result = make_result(spec, seed=spec.seed, status="failed" if spec.name in failed else "ok", quick=quick)
        result["started_at"] = f"2026-03-{1 + spec.seed % 27:02d}T10:{k:02d}:00+00:00"
        result["finished_at"] = f"2026-03-{1 + spec.seed % 27:02d}T10:{k:02d}:30+00:00"
        if quick and result["confusion"]:
            # A real smoke run's confusion matrix counts its test subsample; the fixture's counts 10,000.
            result["data"]["n_test"] = sum(map(sum, result["confusion"]))
        store.write_result(build, result, quick=quick)
        results[spec.name] = result
    write_fake_data(tmp / "data")
    render.render(lab, build, quick=quick, data_dir=tmp / "data", workers=1)
    return Path(shutil.copy(build / "report.pdf", tmp / f"{name}.pdf")), results


@pytest.fixture(scope="module")
def pile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grade")
    subs = tmp / "submissions"
    good_pdf, good = make_pdf(tmp, "g7", group="Group 7")
    quick_pdf, quick = make_pdf(tmp, "g8", group="Group 8", quick=True, failed=("cnn-4",), fashion_chosen=False)
    (subs / "group7").mkdir(parents=True)
    (subs / "group8").mkdir()
    shutil.copy(good_pdf, subs / "group7" / "report.pdf")
    shutil.copy(quick_pdf, subs / "group8" / "report.pdf")

    doc = json.loads(attachment(good_pdf, "results.json"))
    for e in doc["experiments"]:
        if e["name"] == "raw-16":
            e["result"]["metrics"]["test_accuracy"] += 0.02
        if e["name"] == "hog-8":
            e["result"]["params"]["total"] += 1
    reattach(good_pdf, subs / "tampered.pdf", "results.json", json.dumps(doc).encode())
    (subs / "notes.pdf").write_text("our report is in the other file\n")
    (subs / "truncated.pdf").write_bytes(good_pdf.read_bytes()[:3000])
    readme = tmp / "readme.txt"
    readme.write_text("hello\n")
    (tmp / "empty").mkdir()
    return {"tmp": tmp, "subs": subs, "readme": readme, "empty": tmp / "empty", "good": good, "quick": quick}


@pytest.fixture(scope="module")
def graded(pile):
    out_dir = pile["tmp"] / "out"
    stdout = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(stdout):
        status = cli.main(["grade", str(pile["subs"]), str(pile["readme"]), str(pile["empty"]),
                           str(pile["tmp"] / "missing.pdf"), "-o", str(out_dir)])
    rows = list(csv.DictReader(io.StringIO((out_dir / "grades.csv").read_text(encoding="utf-8"))))
    return {"status": status, "stdout": stdout.getvalue(), "rows": {r["file"]: r for r in rows},
            "order": [r["file"] for r in rows], "out": out_dir}


def best(results: dict[str, dict], part: str) -> tuple[str, str]:
    ok = [r for r in results.values() if r["part"] == part and r["status"] == "ok"]
    top = min(ok, key=lambda r: (-r["metrics"]["test_accuracy"], r["metrics"]["test_loss"], r["name"]))
    return pct(top["metrics"]["test_accuracy"]), top["name"]


def test_one_row_per_file_in_order_and_bad_files_do_not_stop_the_others(pile, graded):
    subs, tmp = pile["subs"], pile["tmp"]
    assert graded["status"] == 0
    assert graded["order"] == [str(subs / "group7" / "report.pdf"), str(subs / "group8" / "report.pdf"),
                               str(subs / "notes.pdf"), str(subs / "tampered.pdf"), str(subs / "truncated.pdf"),
                               str(pile["readme"]), str(pile["empty"]), str(tmp / "missing.pdf")]
    assert sorted(p.name for p in graded["out"].iterdir()) == ["grades.csv", "grades.html", "overview-figures",
                                                               "overview.html"]  # no temp files left


def test_a_complete_verified_submission(pile, graded):
    row = graded["rows"][str(pile["subs"] / "group7" / "report.pdf")]
    expected = {
        "title": "PW04 - Deep Neural Networks", "group": "Group 7", "authors": "Ada, Alan",
        "verification": "VERIFIED", "mismatches": "0", "requirements met": "13 of 13",
        "parameter counts": "correct", "quick runs": "no", "failed experiments": "",
        "raw variants": "2 of 2", "raw chosen": "raw-16", "hog chosen": "hog-16", "cnn chosen": "cnn-8",
        "fashion variants": "2 of 2", "fashion chosen": "fashion-8", "unmet requirements": "", "problems": "",
    }
    assert {k: row[k] for k in expected} == expected
    for part in ("raw", "hog", "cnn", "fashion"):
        assert (row[f"{part} best accuracy"], row[f"{part} best model"]) == best(pile["good"], part)


def test_the_requirement_checklist_of_an_incomplete_quick_submission(pile, graded):
    row = graded["rows"][str(pile["subs"] / "group8" / "report.pdf")]
    expected = {
        "group": "Group 8", "verification": "VERIFIED", "requirements met": "7 of 12", "quick runs": "yes",
        "failed experiments": "cnn-4", "cnn variants": "1 of 2", "fashion chosen": "",
        "parameter counts": "correct",
    }
    assert {k: row[k] for k in expected} == expected
    assert row["unmet requirements"].split("; ") == [
        "at least 2 variants of part 'cnn': CNN on MNIST: 1 trained of 2 declared",
        "a chosen model for part 'fashion': mark one experiment of part 'fashion' with chosen = true",
        "no failed or diverged experiment: cnn-4 (failed: RuntimeError: synthetic failure in epoch 4 (out of memory))",
        "every experiment trained with its current settings: not run or out of date: cnn-4",
        "full runs, not --quick smoke runs: these results come from --quick: run `make report` without QUICK",
    ]


def test_a_tampered_submission_is_not_verified(pile, graded):
    row = graded["rows"][str(pile["subs"] / "tampered.pdf")]
    assert row["verification"] == "NOT VERIFIED"
    assert row["parameter counts"] == "WRONG: hog-8"
    problems = row["problems"].split(" | ")
    assert row["mismatches"] == str(len(problems))
    # The per-experiment checks (3 each), then the claims the PDF carries, which name the stored values.
    assert [p.split(":")[0] for p in problems[:6]] == ["MISMATCH raw-16"] * 3 + ["MISMATCH hog-8"] * 3
    assert problems[3] == ("MISMATCH hog-8: parameters: experiments.toml gives 1,032 + 90 = 1,122 but"
                           " results.json params.total is 1,123")
    assert any(p.startswith("MISMATCH raw-16: claim: test accuracy of raw-16: claims ") for p in problems[6:])


def test_unreadable_files_say_why(pile, graded):
    rows, subs = graded["rows"], pile["subs"]

    def why(path: Path) -> tuple[str, str]:
        return rows[str(path)]["verification"], rows[str(path)]["problems"]

    assert why(subs / "notes.pdf") == ("UNREADABLE", "not a PDF file")
    assert why(pile["readme"]) == ("UNREADABLE", "not a PDF file")
    assert why(pile["empty"]) == ("UNREADABLE", "no PDF file in this folder")
    assert why(pile["tmp"] / "missing.pdf") == ("UNREADABLE", "no such file")
    status, problem = why(subs / "truncated.pdf")
    assert status == "UNREADABLE" and problem.startswith("not a readable PDF (")
    assert rows[str(subs / "notes.pdf")]["title"] == ""


def test_terminal_summary_and_html(pile, graded):
    subs = pile["subs"]
    lines = graded["stdout"].splitlines()
    assert lines[:5] == [
        f"VERIFIED     {subs / 'group7' / 'report.pdf'}: requirements 13 of 13, total 0.00",
        f"VERIFIED     {subs / 'group8' / 'report.pdf'}: requirements 7 of 12, quick runs, total 5.50",
        f"UNREADABLE   {subs / 'notes.pdf'}: not a PDF file",
        lines[3],
        lines[4],
    ]
    n = graded["rows"][str(subs / "tampered.pdf")]["mismatches"]
    assert lines[3] == (f"NOT VERIFIED ({n}) {subs / 'tampered.pdf'}: requirements 13 of 13, parameter counts WRONG,"
                        " total 0.00")
    # The tampered file is group 7's report with two numbers edited: the same runs, so a copy.
    assert lines[8].startswith(f"COPY         Group 7 ({subs / 'group7' / 'report.pdf'}) and Group 7"
                               f" ({subs / 'tampered.pdf'}): copy: ")
    out = graded["out"]
    assert lines[-1] == (f"wrote {out / 'grades.csv'}, {out / 'grades.html'} and {out / 'overview.html'}"
                         " (8 submissions)")
    page = (graded["out"] / "grades.html").read_text(encoding="utf-8")
    assert page.count('<td class="VERIFIED">') == 2
    assert page.count('<td class="NOT-VERIFIED">') == 1
    assert page.count('<td class="UNREADABLE">') == 5
    assert ('<p>8 submissions, 2 verified. Rubric: the default rubric; 1 pair flagged as copies.'
            ' <a href="overview.html">Class overview</a>.</p>') in page
    assert "`make report` without QUICK" in page and "<script" not in page


def test_grade_output_must_be_a_folder(pile, capsys):
    assert cli.main(["grade", str(pile["readme"]), "-o", str(pile["readme"])]) == 2
    assert capsys.readouterr().err == (f"labreport: {pile['readme']} is a file; -o/--output names the folder for"
                                       " grades.csv and grades.html\n")


def test_rubric_columns_show_how_the_default_rubric_scored_group_8(pile, graded):
    """Default rubric (README): 3 variants needed, this lab declares 2 per part -> no variant points."""
    row = graded["rows"][str(pile["subs"] / "group8" / "report.pdf")]
    scored = {k: row[k] for k in ("variants raw (/2)", "chosen raw (/0.5)", "chosen fashion (/0.5)", "q1 (/1)",
                                  "q2 (/2)", "verified (/4)", "penalty failed (-0.5)", "penalty stale (-0.5)",
                                  "penalty quick (-5)", "penalty copy (-20)", "total", "out of")}
    assert scored == {"variants raw (/2)": "0", "chosen raw (/0.5)": "0.5", "chosen fashion (/0.5)": "0",
                      "q1 (/1)": "1", "q2 (/2)": "2", "verified (/4)": "4", "penalty failed (-0.5)": "-0.5",
                      "penalty stale (-0.5)": "-0.5", "penalty quick (-5)": "-5", "penalty copy (-20)": "0",
                      "total": "5.50", "out of": "20"}
    assert row["arithmetic"] == "0.5 + 0.5 + 0.5 + 1 + 2 + 1 + 2 + 4 - 0.5 - 0.5 - 5 = 5.5 of 20 -> 5.50 / 20"
    assert row["copies"] == "" and row["seeds"] != ""
    page = (graded["out"] / "grades.html").read_text(encoding="utf-8")
    assert "<small>2 trained variants, 3 needed</small>" in page and "<small>smoke runs (--quick)</small>" in page


def test_the_tampered_copy_is_flagged_with_its_evidence(pile, graded):
    rows, subs = graded["rows"], pile["subs"]
    good, tampered = rows[str(subs / "group7" / "report.pdf")], rows[str(subs / "tampered.pdf")]
    assert good["copies"] == f"Group 7 ({subs / 'tampered.pdf'})"
    assert tampered["copies"] == f"Group 7 ({subs / 'group7' / 'report.pdf'})"
    assert good["penalty copy (-20)"] == "-20" and good["total"] == "0.00"
    overview = (graded["out"] / "overview.html").read_text(encoding="utf-8")
    assert "<li>cnn-4: identical 4-epoch test-loss curve (and 3 more curves), identical confusion matrix," \
           " the same training start and end time, the same wall time to the millisecond" in overview
    assert "<li>and 4 more experiments alike</li>" in overview  # 8 experiments, 4 spelled out


# --------------------------------------------------------------------------- the overview in a real browser



def test_overview_content(pile, graded):
    page = (graded["out"] / "overview.html").read_text(encoding="utf-8")
    assert "<p>8 submissions: 3 graded, 2 verified," in page
    assert page.count('<img src="overview-figures/') == 5  # the grades and one per part
    # Most common unmet requirement first; the failure and the flagged pair are listed.
    assert "<tr><td>at least 2 variants of part &#39;cnn&#39;</td><td class=\"n\">1</td></tr>" in page
    assert "RuntimeError: synthetic failure in epoch 4 (out of memory)" in page
    assert 'href="grades.html#row-1">Group 7' in page


@pytest.mark.skipif(chromium.CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
def test_overview_has_no_broken_image_or_link_in_chromium(graded):
    out = graded["out"]
    html = (out / "overview.html").read_text(encoding="utf-8")
    body = chromium.probe(out / "overview.html", html, chromium.PROBE + chromium.LINK_PROBE)
    assert re.search(r'data-images="(\d+)"', body).group(1) == str(html.count("<img "))
    assert re.search(r'data-broken="([^"]*)"', body).group(1) == ""
    n_links = int(re.search(r'data-links="(\d+)"', body).group(1))
    assert n_links == html.count("<a href=") and n_links >= 10
    assert re.search(r'data-broken-links="([^"]*)"', body).group(1) == ""
