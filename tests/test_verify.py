"""verify: a report PDF checked against its own attachments (no TensorFlow).

The PDFs are made by the tool (render.render, pdf=True) from synthetic results of the real
experiments.toml, once per module; the tampered ones are the good PDF with one attachment
replaced (pypdf), or a PDF rendered from altered results with the original results.json
put back.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.synthetic import write_fake_data, write_results
from labreport import cli
from labreport import config
from labreport.train import engine
from labreport.report import render
from labreport.results import store
from labreport.grading import verify

ROOT = Path(__file__).resolve().parents[1]
MISSING, FAILED, DIVERGED = "raw-sigmoid-150", "hog-tanh-p7-o8", "cnn-sigmoid-25"
EDITED = "raw-tanh-300"  # the experiment whose accuracy the tampering tests change
Q2_MODEL = "cnn-relu-5"  # chosen for part cnn: its counts are also printed in question 2


# --------------------------------------------------------------------------- helpers
def attachment(pdf: Path, name: str) -> bytes:
    from pypdf import PdfReader

    return PdfReader(str(pdf)).attachments[name][0]


def reattach(src: Path, dst: Path, name: str, data: bytes) -> Path:
    """``src`` with its attachment ``name`` replaced by ``data``, written to ``dst``."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=str(src))
    for embedded in list(writer.attachment_list):
        if embedded.name == name:
            embedded.delete()
    writer.add_attachment(name, data)
    with open(dst, "wb") as f:
        writer.write(f)
    return dst


def edit_results(src: Path, dst: Path, edit) -> Path:
    """``src`` with its results.json changed by ``edit(document)``."""
    doc = json.loads(attachment(src, "results.json"))
    edit(doc)
    return reattach(src, dst, "results.json", json.dumps(doc, indent=1).encode())


def result_of(doc: dict, name: str) -> dict:
    return next(e for e in doc["experiments"] if e["name"] == name)["result"]


def lines(findings, status: str = verify.MISMATCH) -> list[str]:
    return [f.line() for f in findings if f.status == status]


def page(sub: verify.Submission, anchor: str) -> int:
    return sub.text.anchor(anchor).page + 1


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """good.pdf (one experiment missing, one failed, one diverged) and text-tampered.pdf."""
    tmp = tmp_path_factory.mktemp("verify")
    lab = config.load(ROOT / "experiments.toml")
    build, data = tmp / "build", tmp / "data"
    results = write_results(lab, build, skip=(MISSING,), statuses={FAILED: "failed", DIVERGED: "diverged"})
    write_fake_data(data)
    render.render(lab, build, data_dir=data)
    good = Path(shutil.copy(build / "report.pdf", tmp / "good.pdf"))

    # (b) the text says +1 point, the attachment is the original results.json.
    edited = copy.deepcopy(results[EDITED])
    edited["metrics"]["test_accuracy"] += 0.01
    store.write_result(build, edited)
    render.render(lab, build, data_dir=data)
    text_tampered = reattach(build / "report.pdf", tmp / "text-tampered.pdf", "results.json",
                             attachment(good, "results.json"))
    return {"tmp": tmp, "good": good, "text_tampered": text_tampered, "results": results}


@pytest.fixture(scope="module")
def good_sub(made):
    return verify.read_submission(made["good"])


# --------------------------------------------------------------------------- the good PDF
def test_untampered_report_verifies(made, good_sub):
    findings = verify.verify_submission(good_sub)
    assert lines(findings) == []
    assert lines(findings, verify.NOTE) == [f"NOTE     {MISSING}: result: not run: the report prints no numbers for it"]
    assert lines(findings, verify.OK)[:4] == [
        "OK       document: attachments: experiments.toml (24 experiments), results.json (24 experiments)",
        "OK       document: experiments.toml: identical to the copy inside results.json",
        "OK       document: experiments: the same 24 in both files",
        "OK       document: smoke-run banner: absent: full runs",
    ]
    # Every experiment with a result had its card and its table row read, failed and diverged included.
    measured = [s.name for s in good_sub.config.experiments if s.name != MISSING]
    for where in ("card (page ", "part table (page "):
        assert sorted(f.subject for f in findings if f.check.startswith(where)) == sorted(measured)
    by_key = {(f.subject, f.check.split(" (")[0]): f for f in findings}
    r = made["results"][EDITED]["metrics"]
    assert by_key[(EDITED, "card")].detail == (
        f"test loss {r['test_loss']:.4f}, test accuracy {100 * r['test_accuracy']:.2f}%,"
        f" macro F1 {r['macro_f1']:.4f}, parameters 238,510")
    assert by_key[(FAILED, "card")].detail == "test loss —, test accuracy —, macro F1 —, parameters 27,810"
    assert by_key[(FAILED, "part table")].detail == "parameters 27,810"
    assert by_key[(DIVERGED, "part table")].detail == ("parameters 7,465, test loss —, test accuracy 9.80%,"
                                                       " macro F1 0.0179")
    assert by_key[(Q2_MODEL, "question 2")].detail == ("weights 4,316, biases 49, total 4,365,"
                                                       " Keras count 4,365")
    assert by_key[(EDITED, "parameters")].detail == "238,510 = results.json params.total = Keras count_params()"
    assert by_key[(EDITED, "measurements")].status == verify.OK
    assert (FAILED, "measurements") not in by_key  # only 'ok' results have a confusion matrix to agree with


def test_cli_verify_exits_0_and_prints_the_verdict(made, good_sub, capsys, monkeypatch):
    # Reading the PDF is what the other tests time; here the parsed one is handed back.
    monkeypatch.setattr(verify, "read_submission", lambda path: good_sub)
    assert cli.main(["verify", str(made["good"]), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{made['good']}: Practical Work 04 - Deep Neural Networks (Group 1; Student A, Student B)"
    assert out[1] == f"NOTE     {MISSING}: result: not run: the report prints no numbers for it"
    assert re.fullmatch(r"VERIFIED: good\.pdf: all \d+ checks OK \(1 note\)\.", out[2]), out[2]
    assert len(out) == 3


# --------------------------------------------------------------------------- tampering
def test_numbers_changed_in_results_json_but_not_in_the_text_are_flagged(made, good_sub, capsys):
    def bump(doc):
        result_of(doc, EDITED)["metrics"]["test_accuracy"] += 0.01

    pdf = edit_results(made["good"], made["tmp"] / "results-tampered.pdf", bump)
    acc = made["results"][EDITED]["metrics"]["test_accuracy"]
    assert cli.main(["verify", str(pdf), "-q"]) == 1
    out = capsys.readouterr().out.splitlines()
    old_checks = [
        f"MISMATCH {EDITED}: measurements: test accuracy {acc + 0.01:.6g} but the confusion matrix gives"
        f" {acc:.6g} ({round(acc * 10000):,} of 10,000 correct); test accuracy {acc + 0.01:.6g} but the last"
        f" epoch of the history has {acc:.6g}",
        f"MISMATCH {EDITED}: card (page {page(good_sub, 'exp-' + EDITED)}): test accuracy printed"
        f" {100 * acc:.2f}%, results.json has {100 * (acc + 0.01):.2f}% ({acc + 0.01:.6g})",
        f"MISMATCH {EDITED}: part table (page {page(good_sub, 'row-' + EDITED)}): test accuracy printed"
        f" {100 * acc:.2f}%, results.json has {100 * (acc + 0.01):.2f}% ({acc + 0.01:.6g})",
        f"NOTE     {MISSING}: result: not run: the report prints no numbers for it",
    ]
    assert all(line in out for line in old_checks), out
    # The claims attached to the PDF name the stored value they were printed from: it moved.
    assert (f"MISMATCH {EDITED}: claim: test accuracy of {EDITED}: claims {acc!r} from"
            f" results:{EDITED}/metrics/test_accuracy, which holds {acc + 0.01!r}") in out
    # And the page prints what the rebuilt report does not (each with its page and element).
    assert any(line.startswith(f"MISMATCH {EDITED}: page {page(good_sub, 'exp-' + EDITED)}, #exp-{EDITED}:")
               and f"'{100 * (acc + 0.01):.2f}%'" in line for line in out), out
    assert re.fullmatch(r"NOT VERIFIED: results-tampered\.pdf: \d+ of \d+ checks MISMATCH \(1 note\)\.", out[-1])


def test_numbers_changed_in_the_text_but_not_in_results_json_are_flagged(made, good_sub):
    result = verify.verify(made["text_tampered"])
    acc = made["results"][EDITED]["metrics"]["test_accuracy"]
    found = lines(result.findings)
    for line in [
        f"MISMATCH {EDITED}: card (page {page(good_sub, 'exp-' + EDITED)}): test accuracy printed"
        f" {100 * (acc + 0.01):.2f}%, results.json has {100 * acc:.2f}% ({acc:.6g})",
        f"MISMATCH {EDITED}: part table (page {page(good_sub, 'row-' + EDITED)}): test accuracy printed"
        f" {100 * (acc + 0.01):.2f}%, results.json has {100 * acc:.2f}% ({acc:.6g})",
    ]:
        assert line in found, found
    # The edited number is caught by the text-layer check too, with its page and element.
    assert (f"MISMATCH {EDITED}: page {page(good_sub, 'exp-' + EDITED)}, #exp-{EDITED}: test accuracy of {EDITED}:"
            f" the attachments give '{100 * acc:.2f}%' (results:{EDITED}/metrics/test_accuracy), the page prints"
            f" '{100 * (acc + 0.01):.2f}%'") in found
    assert not result.ok


def test_parameter_total_inconsistent_with_the_config_is_flagged(made, good_sub):
    def inflate(doc):
        result_of(doc, Q2_MODEL)["params"]["total"] = 4366

    pdf = edit_results(made["good"], made["tmp"] / "params-tampered.pdf", inflate)
    findings = verify.verify(pdf).findings
    for line in [
        f"MISMATCH {Q2_MODEL}: parameters: experiments.toml gives 234 + 2,034 + 1,312 + 725 + 60 = 4,365"
        " but results.json params.total is 4,366",
        f"MISMATCH {Q2_MODEL}: card (page {page(good_sub, 'exp-' + Q2_MODEL)}): parameters printed 4,365,"
        " results.json has 4,366 (4366)",
        f"MISMATCH {Q2_MODEL}: part table (page {page(good_sub, 'row-' + Q2_MODEL)}): parameters printed 4,365,"
        " results.json has 4,366 (4366)",
    ]:
        assert line in lines(findings)


def test_document_level_tampering_is_flagged(good_sub):
    # The PDF's text is not involved: edit the parsed results.json of the good PDF (no re-read).
    doc = copy.deepcopy(good_sub.results)
    doc["experiments_toml"] = doc["experiments_toml"].replace("epochs = 150", "epochs = 15", 1)
    doc["quick"] = True
    result_of(doc, "hog-relu-p4-o8")["spec"]["epochs"] = 10
    doc["experiments"] = [e for e in doc["experiments"] if e["name"] != "fashion-tanh-25"]
    findings = verify.verify_submission(dataclasses.replace(good_sub, results=doc))
    for line in [
        "MISMATCH document: experiments.toml: differs from the copy inside results.json (experiments_toml)",
        "MISMATCH document: experiments: declared in experiments.toml but not in results.json: fashion-tanh-25",
        "MISMATCH document: smoke-run banner: results.json says quick = true but the banner"
        " \"SMOKE RUN (--quick): numbers are not the lab's\" is not printed",
        "MISMATCH hog-relu-p4-o8: spec: epochs 10 in results.json, 100 in experiments.toml",
    ]:
        assert line in lines(findings)
    # The report printed numbers for fashion-tanh-25, which results.json now says did not run.
    assert any(line.startswith("MISMATCH fashion-tanh-25: claim: ") and "was not run" in line
               for line in lines(findings))


def test_a_malformed_result_is_a_mismatch_not_a_crash(good_sub):
    doc = copy.deepcopy(good_sub.results)
    result_of(doc, EDITED)["metrics"] = [0.98]
    findings = verify.verify_submission(dataclasses.replace(good_sub, results=doc))
    assert f"MISMATCH {EDITED}: result: malformed in results.json: 'metrics' is list, not an object" in lines(findings)


# --------------------------------------------------------------------------- unreadable input
def test_a_file_that_is_not_a_pdf_exits_2_naming_it(tmp_path):
    notes = tmp_path / "report.pdf"
    notes.write_text("my report, in a text file\n")
    out = subprocess.run([sys.executable, "-m", "labreport", "verify", str(notes)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr == f"labreport: {notes}: not a PDF file\n"
    assert out.stdout == ""


def test_unreadable_inputs_have_clear_messages(made, tmp_path):
    from pypdf import PdfWriter

    blank = tmp_path / "blank.pdf"
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with open(blank, "wb") as f:
        writer.write(f)
    no_results = tmp_path / "no-results.pdf"
    writer.add_attachment("experiments.toml", b"[report]\n")
    with open(no_results, "wb") as f:
        writer.write(f)
    bad_toml = reattach(made["good"], tmp_path / "bad-toml.pdf", "experiments.toml",
                        b'[[experiment]]\nname = "a"\npart = "raw"\nepoch = 3\n')
    bad_json = reattach(made["good"], tmp_path / "bad-json.pdf", "results.json", b"{not json")
    nan_json = reattach(made["good"], tmp_path / "nan-json.pdf", "results.json",
                        b'{"schema": 1, "experiments": [], "x": NaN}')
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(made["good"].read_bytes()[:2000])

    def message(path: Path) -> str:
        with pytest.raises(verify.UnreadableReport) as info:
            verify.read_submission(path)
        assert info.value.exit_status == 2
        return str(info.value)

    assert message(tmp_path / "absent.pdf") == f"{tmp_path / 'absent.pdf'}: no such file"
    assert message(blank) == (f"{blank}: the PDF has no attached files; a labreport report carries its"
                              " experiments.toml and results.json (was it made by `labreport render`?)")
    assert message(no_results) == f"{no_results}: no results.json attached (attached: experiments.toml)"
    assert message(bad_toml) == (
        f"{bad_toml}: the attached experiments.toml is invalid:\n"
        "  experiments.toml:1: experiment 'a': missing required keys 'hidden', 'activation', 'batch_size',"
        " 'epochs'\n"
        "  experiments.toml:4: experiment 'a': unknown key 'epoch' (did you mean 'epochs'?)")
    assert message(bad_json).startswith(f"{bad_json}: the attached results.json is not valid JSON (")
    assert message(nan_json) == f"{nan_json}: the attached results.json is not valid JSON (NaN is not JSON)"
    assert message(truncated).startswith(f"{truncated}: not a readable PDF (")


def test_cli_rejects_bad_options_with_exit_2(made, capsys):
    assert cli.main(["verify", str(made["good"]), "--rerun", "-1"]) == 2
    assert cli.main(["verify", str(made["good"]), "--tolerance", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "labreport: --rerun must be >= 0, got -1",
        "labreport: --tolerance is an absolute test accuracy between 0 and 1, got 2",
    ]


# --------------------------------------------------------------------------- --rerun
class FakeTrainer:
    """A trainer without TensorFlow: claims ``shift[name]`` more accuracy than the report."""

    def __init__(self, claimed: dict[str, float], shift: dict[str, float]):
        self.claimed, self.shift, self.calls = claimed, shift, []

    def __call__(self, spec, dataset, *, quick=False, cache_key="", **_):
        self.calls.append((spec.name, quick))
        acc = self.claimed[spec.name] + self.shift.get(spec.name, 0.0)
        result = engine.base_result(spec, status="ok", quick=quick, cache_key=cache_key, dataset=dataset)
        result["metrics"] = {"test_accuracy": acc, "test_loss": 0.1, "macro_f1": acc}
        return result


def fake_dataset(name, data_dir=None, **_):
    return object()  # the fake trainer never looks at the data


def test_rerun_trains_the_chosen_models_first_and_compares_with_tolerance(made, good_sub, tmp_path):
    claimed = {n: r["metrics"]["test_accuracy"] for n, r in made["results"].items() if r["status"] == "ok"}
    trainer = FakeTrainer(claimed, {"raw-tanh-250": -0.004, "hog-sigmoid-p4-o8": +0.03})
    findings = verify.rerun(good_sub, 2, build=tmp_path / "build", train=trainer, load_dataset=fake_dataset,
                            progress=io.StringIO())
    assert sorted(trainer.calls) == [("hog-sigmoid-p4-o8", False), ("raw-tanh-250", False)]
    reruns = [f.line() for f in findings]
    raw, hog = claimed["raw-tanh-250"], claimed["hog-sigmoid-p4-o8"]
    assert reruns == [
        f"OK       raw-tanh-250: rerun: test accuracy {100 * raw:.2f}% claimed, {100 * (raw - 0.004):.2f}%"
        " re-trained (−0.40 points; tolerance ±1.00 points)",
        f"MISMATCH hog-sigmoid-p4-o8: rerun: test accuracy {100 * hog:.2f}% claimed, {100 * (hog + 0.03):.2f}%"
        " re-trained (+3.00 points; tolerance ±1.00 points)",
    ]
    assert (tmp_path / "build" / "data").is_dir()  # the scratch build shared the real data cache


def test_rerun_tolerance_and_too_few_candidates(made, good_sub, tmp_path):
    claimed = {n: r["metrics"]["test_accuracy"] for n, r in made["results"].items() if r["status"] == "ok"}
    chosen = ["raw-tanh-250", "hog-sigmoid-p4-o8", "cnn-relu-5", "fashion-conv9-100"]
    assert [s.name for s in verify.rerun_candidates(good_sub, 5)] == chosen + ["raw-tanh-300"]
    n = len(claimed)
    trainer = FakeTrainer(claimed, {name: 0.03 for name in claimed})
    findings = verify.rerun(good_sub, 99, tolerance=0.05, build=tmp_path / "build", train=trainer,
                            load_dataset=fake_dataset, progress=io.StringIO())
    assert findings[0].line() == (f"NOTE     document: rerun: asked for 99, only {n} experiments have a"
                                  " measured accuracy")
    assert [f.status for f in findings[1:]] == [verify.OK] * n


def test_a_failed_rerun_is_a_mismatch(made, good_sub, tmp_path):
    def broken(spec, dataset, **_):
        raise RuntimeError("out of memory")

    findings = verify.rerun(good_sub, 1, build=tmp_path / "build", train=broken, load_dataset=fake_dataset,
                            progress=io.StringIO())
    assert [f.line() for f in findings] == [
        "MISMATCH raw-tanh-250: rerun: the re-training did not finish: RuntimeError: out of memory"]


# --------------------------------------------------------------------------- pieces
def test_an_older_pdf_without_row_anchors_gets_a_note(good_sub):
    anchors = tuple(a for a in good_sub.text.anchors if not a.name.startswith("row-"))
    old = dataclasses.replace(good_sub, text=verify.PdfText(good_sub.text.fragments, anchors))
    spec = old.config.by_name(EDITED)
    finding = verify.check_row(old, spec, old.result(EDITED))
    assert finding.line() == (f"NOTE     {EDITED}: part table: not checked: the table rows of this PDF carry no"
                              " anchors (made by an older labreport)")


def test_regions_run_from_one_anchor_to_the_next_in_reading_order():
    F, A = verify.Fragment, verify.Anchor
    text = verify.PdfText(
        fragments=(F(0, 700, "Title"), F(0, 500, "raw-tanh-\n300 Test"), F(0, 480, "accu-\nracy 98.03%"),
                   F(0, 300, "next card"), F(1, 780, "continued"), F(1, 20, "footer")),
        anchors=(A("exp-a", 0, 520), A("exp-b", 0, 320), A("end", 1, 700)),
    )
    assert text.region("exp-a") == verify.Region("exp-a", 1, "raw-tanh- 300 Test accu- racy 98.03%")
    assert text.region("exp-b") == verify.Region("exp-b", 1, "next card continued")
    assert text.region("end").text == "footer"
    assert text.region("nope") is None
    assert re.match(verify.loose("raw-tanh-300"), text.region("exp-a").text)
    assert re.search(verify.loose("Test accuracy") + r" ?(\S+)", text.region("exp-a").text).group(1) == "98.03%"
    assert verify.normalize("a\u00ad b\n\n c\u200b") == "a b c"


def test_verify_and_grade_do_not_import_tensorflow():
    code = ("import sys, labreport.grading.verify, labreport.grading.grade, labreport.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')"
            " or m == 'labreport.train.runner']; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
