"""Claims: every printed number is recorded by the report model, attached as claims.json, and
verify catches an edit anywhere on the page (issue G).

A small lab (2 raw MLPs, 2 CNNs, one raw experiment not run) with synthetic results keeps
each tampered PDF to a few pages. A tampered PDF is the good HTML with ONE printed text
changed inside one element, laid out again by WeasyPrint with the good PDF's attachments,
which is what a student editing the PDF's text would hand in.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures.synthetic import make_result, write_fake_data, write_results
from labreport import config
from labreport.grading import checks, verify
from labreport.report import claims, model, render
from labreport.results import store

LAB = """\
[report]
title = "Claims lab"
authors = ["A"]

[defaults]
optimizer = { name = "rmsprop", learning_rate = 0.001, rho = 0.9 }
seed = 1

[[experiment]]
name = "raw-a"
part = "raw"
hidden = 50
activation = "tanh"
dropout = 0.5
batch_size = 4096
epochs = 20
chosen = true

[[experiment]]
name = "raw-b"
from = "raw-a"
activation = "sigmoid"

[[experiment]]
name = "raw-c"
from = "raw-a"
hidden = 30

[[experiment]]
name = "cnn-a"
part = "cnn"
conv = [{ filters = 4, kernel = 3 }, { filters = 8, kernel = 3 }]
hidden = 25
activation = "relu"
batch_size = 256
epochs = 10
chosen = true

[[experiment]]
name = "cnn-b"
from = "cnn-a"
hidden = 10
"""
NOT_RUN = "raw-c"


def attachments_of(pdf: Path) -> list[tuple[str, bytes, str]]:
    from pypdf import PdfReader

    return [(name, data[0], name) for name, data in PdfReader(str(pdf)).attachments.items()]


@pytest.fixture(scope="module")
def lab_pdf(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("claims")
    (tmp / "experiments.toml").write_text(LAB, encoding="utf-8")
    lab = config.load(tmp / "experiments.toml")
    build, data = tmp / "build", tmp / "data"
    write_results(lab, build, skip=(NOT_RUN,))
    write_fake_data(data)
    result = render.render(lab, build, data_dir=data)
    good = Path(shutil.copy(result.pdf_path, tmp / "good.pdf"))
    html = result.html_path.read_text(encoding="utf-8")
    report = model.build(lab, render.load_runs(lab, build), model.RenderInfo("2000-01-01", "x"))
    return {"tmp": tmp, "lab": lab, "build": build, "data": data, "good": good, "html": html, "report": report}


def tampered(lab_pdf, name: str, anchor: str, old: str, new: str, after: str = "") -> Path:
    """The good report with the first ``old`` inside element ``anchor`` (after ``after``) printed as ``new``."""
    html = lab_pdf["html"]
    start = html.index(f'id="{anchor}"')
    if after:
        start = html.index(after, start)
    i = html.index(old, start)
    edited = html[:i] + new + html[i + len(old):]
    out = lab_pdf["tmp"] / f"{name}.pdf"
    build = lab_pdf["build"]
    render.write_pdf(edited, out, base_dir=build, roots=[build, render.default_templates_dir()],
                     attachments=attachments_of(lab_pdf["good"]))
    return out


def claim(report: model.Report, anchor: str, what: str) -> claims.Claim:
    found = [c for c in report.claims if c.anchor == anchor and what in c.what]
    assert found, f"no claim {what!r} at #{anchor}"
    return found[0]


def mismatches(pdf: Path) -> list[str]:
    return [f.line() for f in verify.verify(pdf).findings if f.status == verify.MISMATCH]


# --------------------------------------------------------------------------- the model and the good report
def test_every_printed_number_is_a_claim_with_a_place_and_a_source(lab_pdf):
    report = lab_pdf["report"]
    anchors = {c.anchor for c in report.claims}
    for a in ("title", "q1", "q2-raw", "q3", "part-raw", "row-raw-a", "exp-raw-a", "part-raw-best",
              "conclusions-raw", "appendix-times"):
        assert a in anchors, a
    acc = claim(report, "exp-raw-a", "test accuracy of raw-a")
    stored = store.read_result(lab_pdf["build"], "raw-a")["metrics"]["test_accuracy"]
    assert acc.source == "results:raw-a/metrics/test_accuracy" and acc.text == f"{100 * stored:.2f}%"
    assert claim(report, "q2-raw", "parameters of raw-a").source == "config:raw-a/total"
    # Nothing is claimed about the experiment that did not run, except its declared settings.
    assert not [c for c in report.claims if c.subject == NOT_RUN and c.source.startswith("results:")]


def test_the_pdf_carries_the_claims_and_verifies(lab_pdf):
    doc = json.loads(dict((n, d) for n, d, _ in attachments_of(lab_pdf["good"]))["claims.json"])
    assert doc["templates"]["default"] is True
    assert len(doc["claims"]) == len(lab_pdf["report"].claims) > 100
    v = verify.verify(lab_pdf["good"])
    assert [f.line() for f in v.findings if f.status == verify.MISMATCH] == []
    text_ok = [f for f in v.findings if f.kind == verify.TEXT and f.status == verify.OK]
    assert text_ok and "every number on the" in text_ok[0].detail


def test_the_model_owns_section_numbers_titles_and_the_toc(lab_pdf):
    report, html = lab_pdf["report"], lab_pdf["html"]
    headings = [s.heading for s in report.toc]
    assert headings[:4] == ["1 Learning algorithm", "2 Model complexity", "2.1 MLP on raw pixels: raw-a",
                            "2.2 CNN on MNIST: cnn-a"]
    for s in report.toc:
        assert f'id="{s.anchor}"' in html and f'href="#{s.anchor}"' in html
    assert render.check_links(html) == []


# --------------------------------------------------------------------------- one tamper per kind of claim
def _case(report, anchor, what, new=None):
    c = claim(report, anchor, what)
    return anchor, c.text, new or ("12.34%" if c.text.endswith("%") else "9,999" if "," in c.text else "0.1234")


def _prose(report):
    """A number of an observation sentence (computed from the history), not of a table."""
    c = next(c for c in report.claims if c.anchor == "exp-raw-b" and c.what == "number"
             and c.source.startswith("formula: from results:raw-b"))
    return "exp-raw-b", c.text, "0.0101"


CASES = {
    "card": lambda r: _case(r, "exp-raw-b", "test accuracy of raw-b"),
    "table": lambda r: _case(r, "row-raw-b", "macro F1 of raw-b"),
    "prose": _prose,
    "title range": lambda r: _case(r, "q3", "highest test accuracy in part raw"),
    "best model": lambda r: _case(r, "part-raw-best", "test accuracy of"),
    "q2 arithmetic": lambda r: ("q2-raw", "784 x 50 = 39,200", "784 x 50 = 39,300"),
}


@pytest.mark.parametrize("kind", ["card", "table", "prose", "title range", "best model", "q2 arithmetic"])
def test_an_edited_number_is_caught_with_its_page(lab_pdf, kind):
    anchor, old, new = CASES[kind](lab_pdf["report"])
    assert old != new
    bad = mismatches(tampered(lab_pdf, kind.replace(" ", "-"), anchor, old, new))
    assert any(f"#{anchor}" in line and "page " in line for line in bad), bad
    wrong = [t for t in verify.numbers(new) if t not in verify.numbers(old)]
    assert wrong and any(repr(t) in line for t in wrong for line in bad), bad


def test_an_edited_comparison_conclusion_and_worked_example_are_caught(lab_pdf):
    report, html = lab_pdf["report"], lab_pdf["html"]
    # A one-key comparison (raw-a vs raw-b differ in the activation only), in the conclusions.
    comp = next(c for c in report.claims if c.anchor == "conclusions-raw" and " minus " in c.what)
    assert comp.source.startswith("formula: results:") and html.index(comp.text, html.index('class="comparisons"'))
    bad = mismatches(tampered(lab_pdf, "comparison", "conclusions-raw", comp.text, "+9.99",
                              after='class="comparisons"'))
    assert any("#conclusions-raw" in line and f"{comp.what}: the attachments give {comp.text!r}" in line
               for line in bad), bad
    # The spread sentence of the part's conclusions.
    spread = next(c for c in report.claims if c.anchor == "conclusions-raw" and f"a spread of {c.text}" in html)
    bad = mismatches(tampered(lab_pdf, "conclusion", "conclusions-raw", f"a spread of {spread.text}",
                              "a spread of 7.77"))
    assert any("#conclusions-raw" in line and "'7.77'" in line for line in bad), bad
    # Question 3's worked example: the MLP's parameter total.
    total = report.q2[0].model.total_text  # the chosen MLP's parameter total, restated in the example
    assert html.index(total, html.index("Worked example")) > 0
    bad = mismatches(tampered(lab_pdf, "worked", "q3", total, "1,234,567", after="Worked example"))
    assert any("#q3" in line and "1,234,567" in line for line in bad), bad


def test_a_number_printed_for_an_experiment_that_did_not_run_is_an_error(lab_pdf):
    pdf = tampered(lab_pdf, "ghost", f"exp-{NOT_RUN}", "Not run yet — no result", "Test accuracy 97.10% — no result")
    bad = mismatches(pdf)
    assert any(NOT_RUN in line and "did not run" in line and "97.10%" in line for line in bad), bad


def test_a_claims_attachment_about_a_not_run_experiment_is_an_error(lab_pdf):
    from test_verify import reattach, attachment

    doc = json.loads(attachment(lab_pdf["good"], "claims.json"))
    doc["claims"].append({"anchor": f"exp-{NOT_RUN}", "subject": NOT_RUN, "what": f"test accuracy of {NOT_RUN}",
                          "text": "97.10%", "source": f"results:{NOT_RUN}/metrics/test_accuracy", "value": 0.971})
    pdf = reattach(lab_pdf["good"], lab_pdf["tmp"] / "ghost-claim.pdf", "claims.json", json.dumps(doc).encode())
    bad = mismatches(pdf)
    assert any(line.startswith(f"MISMATCH {NOT_RUN}: claim:") and "not run" in line for line in bad), bad


# --------------------------------------------------------------------------- smoke runs handed in as full runs
def test_a_disguised_smoke_run_is_flagged_by_check_verify_and_grade(lab_pdf, tmp_path):
    from labreport.grading import grade

    lab = lab_pdf["lab"]
    build = tmp_path / "build"
    for spec in lab.experiments:
        if spec.name == NOT_RUN:
            continue
        r = make_result(spec, quick=True)
        r["quick"] = False  # the flag flipped, the result moved to runs/
        r["history"] = {k: v[:2] for k, v in r["history"].items()}
        store.write_result(build, r)
    result = render.render(lab, build, data_dir=lab_pdf["data"])
    v = verify.verify(result.pdf_path)
    smoke = v.smoke_runs
    assert {f.subject for f in smoke} == {"raw-a", "raw-b", "cnn-a", "cnn-b"}
    assert all(f.status == verify.MISMATCH for f in smoke)
    raw_a = next(f for f in smoke if f.subject == "raw-a").detail
    assert "status ok after 2 of the 20 declared epochs" in raw_a and "n_test = 500" in raw_a
    assert not v.ok
    statuses = {s.name: "fresh" for s in lab.experiments}
    found = checks.evaluate(lab, build, statuses=statuses)
    full = next(c for c in found if c.rule == "results are full runs")
    assert not full.ok and "raw-a" in full.detail
    g = grade.grade_submission(verify.read_submission(result.pdf_path))
    assert any("full run" in m and "raw-a" in m for m in g.mismatches)


# --------------------------------------------------------------------------- templates and anchors
def test_a_report_rendered_with_its_own_stylesheet_is_flagged(lab_pdf, tmp_path):
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    css = (render.default_templates_dir() / "style.css").read_text(encoding="utf-8")
    (tpl / "style.css").write_text(css + "\n.kv td { color: white; }\n", encoding="utf-8")
    build = tmp_path / "build"
    shutil.copytree(lab_pdf["build"], build)
    result = render.render(lab_pdf["lab"], build, data_dir=lab_pdf["data"], templates_dir=tpl)
    v = verify.verify(result.pdf_path)
    flagged = [f for f in v.findings if f.kind == verify.TEMPLATES]
    assert [f.status for f in flagged] == [verify.MISMATCH]
    assert "own templates/stylesheet" in flagged[0].detail
    allowed = verify.verify(result.pdf_path, allow_templates=True)
    assert allowed.ok and [f.status for f in allowed.findings if f.kind == verify.TEMPLATES] == [verify.NOTE]


def test_colliding_names_get_distinct_anchors_and_the_report_verifies(tmp_path):
    text = LAB.replace('name = "raw-b"', 'name = "raw.a"').replace('name = "raw-c"', 'name = "raw-a-2"')
    (tmp_path / "experiments.toml").write_text(text, encoding="utf-8")
    lab = config.load(tmp_path / "experiments.toml")
    anchors = model.Anchors.of([s.name for s in lab.experiments])
    cards = [anchors.card(s.name) for s in lab.experiments]
    assert len(set(cards)) == len(cards)
    assert anchors.card("raw-a") == "exp-raw-a" and anchors.card("raw.a") == "exp-raw-a-2"
    assert anchors.card("raw-a-2") == "exp-raw-a-2-2"
    build = tmp_path / "build"
    write_results(lab, build)
    write_fake_data(tmp_path / "data")
    result = render.render(lab, build, data_dir=tmp_path / "data")
    html = result.html_path.read_text(encoding="utf-8")
    assert 'href="#exp-raw-a-2">raw.a</a>' in html
    v = verify.verify(result.pdf_path)
    assert v.ok, [f.line() for f in v.mismatches]


def test_a_broken_internal_link_fails_the_render(lab_pdf, tmp_path):
    assert render.check_links('<p id="a"></p><a href="#a">x</a><a href="#nope">y</a>') == [
        "the link #nope has no target"]
    assert render.check_links('<p id="a"></p><p id="a"></p>') == ["the id #a is used 2 times"]
    tpl = tmp_path / "tpl" / "partials"
    tpl.mkdir(parents=True)
    q4 = (render.default_templates_dir() / "partials" / "q4.html.j2").read_text(encoding="utf-8")
    (tpl / "q4.html.j2").write_text(q4 + '<a href="#q9">see question 9</a>\n', encoding="utf-8")
    build = tmp_path / "build"
    shutil.copytree(lab_pdf["build"], build)
    before = (build / "report.html").read_bytes()
    with pytest.raises(render.RenderError, match="the link #q9 has no target"):
        render.render(lab_pdf["lab"], build, data_dir=lab_pdf["data"], templates_dir=tpl.parent)
    assert (build / "report.html").read_bytes() == before  # nothing already written is lost


# --------------------------------------------------------------------------- units
def test_formatting_records_only_inside_a_recording_and_in_its_place():
    assert claims.pct(0.98123) == "98.12%"  # outside a recording: just a format
    with claims.recording() as rec:
        with claims.at("exp-x", "x"):
            claims.num(0.123456, what="test loss of x", src="results:x/metrics/test_loss")
            with claims.about(source="formula: f"):
                claims.points(-0.0052)
            with claims.paused():
                claims.count(7)
        claims.count(None)  # printed as a dash: no number, no claim
    assert [(c.anchor, c.subject, c.what, c.text, c.source) for c in rec.claims] == [
        ("exp-x", "x", "test loss of x", "0.1235", "results:x/metrics/test_loss"),
        ("exp-x", "x", "difference in points", "−0.52", "formula: f"),
    ]
    assert claims.points(0.0052, sign=False) == "0.52"


def test_unique_slugs_resolve_collisions_in_declaration_order():
    assert model.unique_slugs(["a.b", "a-b", "a_b", "a b", "a-b-2"]) == {
        "a.b": "a-b", "a-b": "a-b-2", "a_b": "a_b", "a b": "a-b-3", "a-b-2": "a-b-2-2"}


def test_numbers_are_cut_the_same_way_on_both_sides():
    assert verify.numbers("Macro F1 (+0.52 points) −0.0123 raw-tanh-250 1,024 98.12% A.1 4.1 x 2, 3.") == [
        "+0.52", "−0.0123", "250", "1,024", "98.12%", "4.1", "2", "3"]
    regions = verify.html_regions('<p id="a">x 1 <ol><li>y 2</li><li>z</li></ol></p><p id="b">3</p>')
    assert verify.numbers(regions["a"]) == ["1", "1", "2", "2"] and regions["b"] == "3"


def test_a_cache_key_that_does_not_reproduce_is_flagged_as_smoke_run(lab_pdf):
    from test_verify import edit_results

    def forge(doc):
        entry = next(e for e in doc["experiments"] if e["name"] == "cnn-b")
        entry["result"]["cache_key"] = "0" * 64

    pdf = edit_results(lab_pdf["good"], lab_pdf["tmp"] / "forged-key.pdf", forge)
    v = verify.verify(pdf)
    assert [(f.subject, f.status) for f in v.smoke_runs] == [("cnn-b", verify.MISMATCH)]
    assert "cache key does not reproduce" in v.smoke_runs[0].detail
