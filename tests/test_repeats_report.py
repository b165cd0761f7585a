"""Repeats, the report and verify side (issue U item 1): an experiment declared with
``repeats = N`` is printed as mean ± sample std over its measured runs, with every run on
demand, curves with a band and the median run's confusion matrix; comparisons judge a
difference of means against the seed spread and the test-set error together; every new
number is a claim verify re-derives, and results.json carries the runs (``more_runs``).

Runs are synthetic (tests/fixtures/synthetic.py), written at the contract's paths:
build/runs/NAME/result.json for repeat 1, build/runs/NAME/repeat-R/result.json for R > 1.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest

from fixtures.synthetic import make_result, write_fake_data
from labreport import config
from labreport.config.spec import repeat_seed
from labreport.grading import verify
from labreport.report import comparisons, model, render
from labreport.results import store
from labreport.results.run import Aggregate, Run

LAB = """\
[report]
title = "Repeats lab"
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
repeats = 3

[[experiment]]
name = "raw-b"
from = "raw-a"
activation = "sigmoid"

[[experiment]]
name = "raw-c"
from = "raw-a"
hidden = 30
repeats = 1

[[experiment]]
name = "cnn-a"
part = "cnn"
conv = [{ filters = 4, kernel = 3 }]
hidden = 10
activation = "relu"
batch_size = 256
epochs = 5
chosen = true
repeats = 3
"""
NOT_RUN = {("cnn-a", 3)}  # cnn-a: 2 of its 3 runs measured


def result_path(build: Path, name: str, repeat: int) -> Path:
    """The contract's storage: repeat 1 where an experiment without repeats is, repeat R in repeat-R/."""
    folder = store.run_dir(build, name)
    return (folder if repeat == 1 else folder / f"repeat-{repeat}") / "result.json"


def write_runs(lab, build: Path, skip=NOT_RUN, statuses: dict | None = None) -> dict[tuple[str, int], dict]:
    """A synthetic result for every run but ``skip``; ``statuses``: (name, repeat) -> status (default ok)."""
    out = {}
    for spec in lab.experiments:
        for run_spec in spec.runs():
            if (spec.name, run_spec.repeat) in skip:
                continue
            result = make_result(run_spec, seed=run_spec.repeat,
                                 status=(statuses or {}).get((spec.name, run_spec.repeat), "ok"))
            result["repeat"] = run_spec.repeat
            path = result_path(build, spec.name, run_spec.repeat)
            path.parent.mkdir(parents=True, exist_ok=True)
            store.write_json_atomic(path, {"schema": store.RESULT_SCHEMA, **result})
            out[(spec.name, run_spec.repeat)] = result
    return out


def rendered_lab(tmp: Path, skip=NOT_RUN, statuses: dict | None = None) -> dict:
    """LAB with synthetic runs (``write_runs``), rendered; the PDF copied to tmp/good.pdf."""
    (tmp / "experiments.toml").write_text(LAB, encoding="utf-8")
    lab = config.load(tmp / "experiments.toml")
    build, data = tmp / "build", tmp / "data"
    results = write_runs(lab, build, skip, statuses)
    write_fake_data(data)
    rendered = render.render(lab, build, data_dir=data)
    good = Path(shutil.copy(rendered.pdf_path, tmp / "good.pdf"))
    html = rendered.html_path.read_text(encoding="utf-8")
    runs = render.load_runs(lab, build)
    report = model.build(lab, runs, model.RenderInfo("2000-01-01", "x"))
    return {"tmp": tmp, "lab": lab, "build": build, "data": data, "good": good, "html": html, "report": report,
            "results": results, "runs": {r.name: r for r in runs}}


@pytest.fixture(scope="module")
def lab_pdf(tmp_path_factory):
    return rendered_lab(tmp_path_factory.mktemp("repeats"))


def acc(results, name, repeat) -> float:
    return results[(name, repeat)]["metrics"]["test_accuracy"]


# --------------------------------------------------------------------------- the aggregate view
def _result(accuracy, loss=0.1, status="ok", history=None):
    return {"status": status, "metrics": {"test_accuracy": accuracy, "test_loss": loss, "macro_f1": 0.9},
            "history": history or {}}


def _runs(lab, name, results):
    spec = lab.by_name(name) if hasattr(lab, "by_name") else lab
    first, *more = spec.runs()
    return Run(first, results[0], tuple(Run(s, r) for s, r in zip(more, results[1:])))


def test_aggregate_mean_sample_std_measured_runs_and_the_median(lab_pdf):
    lab = lab_pdf["lab"]
    accs = [0.97, 0.95, 0.96]
    run = _runs(lab, "raw-a", [_result(a, loss=1 - a) for a in accs])
    agg = run.aggregate
    assert (agg.n_declared, agg.n_measured) == (3, 3)
    stat = run.headline("test_accuracy")
    assert stat.mean == pytest.approx(statistics.mean(accs))
    assert stat.std == pytest.approx(statistics.stdev(accs))  # n - 1
    assert stat.n == 3 and run.headline_source("test_accuracy") == Aggregate.mean_source("raw-a", "test_accuracy")
    assert agg.median.repeat == 3  # 0.95 < 0.96 < 0.97
    # Even count: the lower middle one; ties: the lower repeat. Untrusted values: only finite numbers count.
    run = _runs(lab, "raw-a", [_result(0.96), _result(0.96), _result(float("nan"))])
    assert run.aggregate.n_measured == 2 and run.aggregate.median.repeat == 1
    run = _runs(lab, "raw-a", [_result(0.97), _result(0.95), None])
    assert run.aggregate.median.repeat == 2 and run.headline("test_accuracy").n == 2
    run = _runs(lab, "raw-a", [_result(0.97), _result("0.99"), _result(0.5, status="failed")])
    stat = run.headline("test_accuracy")
    assert (stat.mean, stat.std, stat.n) == (0.97, None, 1)  # one measured run: no std


def test_aggregate_curves_are_the_per_epoch_mean_and_std(lab_pdf):
    lab = lab_pdf["lab"]
    hists = [{"val_loss": [1.0, 0.5, 0.4]}, {"val_loss": [1.2, 0.7]}, {"val_loss": [0.8, 0.3, 0.2]}]
    run = _runs(lab, "raw-a", [_result(0.9, history=h) for h in hists])
    mean, std = run.aggregate.curves()["val_loss"]
    assert mean == pytest.approx([1.0, 0.5])  # the epochs every run recorded
    assert std == pytest.approx([statistics.stdev([1.0, 1.2, 0.8]), statistics.stdev([0.5, 0.7, 0.3])])


def test_one_run_reads_and_prints_as_before(lab_pdf):
    r = lab_pdf["runs"]["raw-c"]
    assert not r.repeated and r.more_runs == ()
    assert r.headline("test_accuracy").mean == r.test_accuracy
    assert r.headline_source("test_accuracy") == "results:raw-c/metrics/test_accuracy"
    entry = next(e for e in render.results_document(lab_pdf["lab"], list(lab_pdf["runs"].values()), False)["experiments"]
                 if e["name"] == "raw-c")
    assert "repeats" not in entry and "more_runs" not in entry
    claims = [c for c in lab_pdf["report"].claims if c.anchor == "exp-raw-c" and c.what == "test accuracy of raw-c"]
    assert [c.source for c in claims] == ["results:raw-c/metrics/test_accuracy"]


def test_repeat_seeds_follow_the_contract():
    assert repeat_seed(7, 1) == 7
    seeds = {repeat_seed(7, r) for r in range(2, 21)}
    assert len(seeds) == 19 and all(1 <= s <= 2**31 - 1 for s in seeds) and repeat_seed(7, 2) == repeat_seed(7, 2)


# --------------------------------------------------------------------------- the report
def test_results_json_carries_every_run(lab_pdf):
    doc = json.loads((lab_pdf["build"] / "results.json").read_text(encoding="utf-8"))
    entries = {e["name"]: e for e in doc["experiments"]}
    assert entries["raw-a"]["repeats"] == 3 and entries["raw-a"]["result"]["repeat"] == 1
    assert [r["repeat"] for r in entries["raw-a"]["more_runs"]] == [2, 3]
    assert entries["cnn-a"]["more_runs"][1] is None  # repeat 3 not run yet
    assert "more_runs" not in entries["raw-c"]


def test_cards_and_tables_print_mean_std_and_every_run(lab_pdf):
    report, results, html = lab_pdf["report"], lab_pdf["results"], lab_pdf["html"]
    accs = [acc(results, "raw-a", r) for r in (1, 2, 3)]
    mean, std = statistics.mean(accs), statistics.stdev(accs)
    card = next(c for p in report.parts for c in p.cards if c.name == "raw-a")
    row = dict(card.metrics)[model.METRIC_LABELS["test_accuracy"]]
    assert row == f"{100 * mean:.2f}% ± {100 * std:.2f}% (3 runs)"
    assert [r["test_accuracy"] for r in card.runs] == [f"{100 * a:.2f}%" for a in accs]
    spec = lab_pdf["lab"].by_name("raw-a")
    assert [r["seed"] for r in card.runs] == [str(s.seed) for s in spec.runs()]
    median = sorted(range(3), key=lambda i: (accs[i], i))[1] + 1
    assert [r["median"] for r in card.runs] == [k == median for k in (1, 2, 3)]
    assert f"run {median} (the median run by test accuracy" in card.median_note
    assert card.band and "the band one standard deviation either side" in html
    cnn = next(c for p in report.parts for c in p.cards if c.name == "cnn-a")
    assert dict(cnn.metrics)[model.METRIC_LABELS["test_accuracy"]].endswith("(2 of 3 runs)")
    assert [r["status"] for r in cnn.runs] == ["ok", "ok", "not run"]
    raw = next(p for p in report.parts if p.part == "raw")
    assert raw.repeated and [r.runs for r in raw.rows] == ["3", "3", ""]
    assert raw.rows[0].test_accuracy == f"{100 * mean:.2f}% ± {100 * std:.2f}%"
    c = next(c for c in report.claims if c.anchor == "exp-raw-a" and c.what == "standard deviation of the test"
             " accuracy of raw-a")
    assert c.source.startswith("formula: sample standard deviation (n − 1) of results:raw-a/metrics/test_accuracy")
    run2 = next(c for c in report.claims if c.what == "test accuracy of raw-a run 2")
    assert run2.source == "results:raw-a/more_runs/0/metrics/test_accuracy"


def test_the_median_runs_confusion_matrix_and_a_band_are_drawn(lab_pdf):
    figs = sorted((lab_pdf["build"] / "figures").glob("curves-*.png"))
    assert len(figs) == 4  # one per experiment, band or not
    runs = lab_pdf["runs"]
    median = runs["raw-a"].aggregate.median
    from labreport.report.figures import Figures

    ref = Figures(lab_pdf["build"] / "figures").confusion("raw-a", median.result["confusion"], median.class_names)
    assert ref.path.exists()  # the card's matrix is the median run's
    if median.repeat != 1:
        first = Figures(lab_pdf["build"] / "figures").confusion("raw-a", runs["raw-a"].result["confusion"],
                                                                runs["raw-a"].class_names)
        assert not first.path.exists()


def test_comparisons_use_the_seed_spread_and_the_test_set_error(lab_pdf):
    runs = lab_pdf["runs"]
    a, b = runs["raw-a"], runs["raw-b"]
    comp = comparisons.compare(a, b, "activation")
    sa, sb = a.headline("test_accuracy"), b.headline("test_accuracy")
    se = [math.sqrt(s.mean * (1 - s.mean) / 10_000) for s in (sa, sb)]
    want = math.sqrt(se[0] ** 2 + se[1] ** 2 + sa.std ** 2 / 3 + sb.std ** 2 / 3)
    assert comparisons.noise(a, b) == pytest.approx(want)
    assert comp.repeated and comp.significant == (abs(sa.mean - sb.mean) >= 2 * want)
    assert f"{100 * 2 * want:.2f} points" in comp.sentence
    assert ("within noise" in comp.sentence) != comp.significant
    # One side without repeats borrows the other side's spread; one run each keeps today's rule.
    c = runs["raw-c"]
    sc = c.headline("test_accuracy")
    se_c = math.sqrt(sc.mean * (1 - sc.mean) / 10_000)
    assert comparisons.noise(a, c) == pytest.approx(math.sqrt(se[0] ** 2 + se_c ** 2 + sa.std ** 2 / 3
                                                              + sa.std ** 2 / 1))
    single = [Run(s, lab_pdf["results"][(s.name, 1)]) for s in (a.spec, c.spec)]
    single = [Run(dataclass_replace(r.spec, repeats=1), r.result) for r in single]
    assert comparisons.noise(*single) is None and "within noise" not in comparisons.compare(*single, "hidden").sentence
    noise_claim = next(cl for cl in lab_pdf["report"].claims if cl.anchor == "conclusions-raw"
                       and cl.what.startswith("noise of the difference raw-a − raw-b"))
    assert noise_claim.text == f"{100 * 2 * want:.2f}"
    from markupsafe import escape

    assert str(escape(comparisons.NOISE_RULE)) in lab_pdf["html"]  # the rule, stated in the conclusions


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


# --------------------------------------------------------------------------- verify
def test_the_report_with_repeats_verifies(lab_pdf):
    v = verify.verify(lab_pdf["good"])
    assert [f.line() for f in v.mismatches] == []
    checked = [f.line() for f in v.findings if f.subject == "raw-a" and f.check.startswith("run 2 ")]
    assert any("spec" in line and "cache key reproduced" in line for line in checked), checked
    assert any(f.subject == "cnn-a" and f.check == "run 3" and f.status == verify.NOTE for f in v.findings)


def _tampered(lab_pdf, name, anchor, old, new, after=""):
    from test_claims import tampered

    return tampered(lab_pdf, name, anchor, old, new, after)


def _claim(report, anchor, what):
    found = [c for c in report.claims if c.anchor == anchor and c.what == what]
    assert found, (anchor, what)
    return found[0]


@pytest.mark.parametrize("what, anchor, after", [
    ("mean test accuracy of raw-a", "exp-raw-a", ""),
    ("standard deviation of the test accuracy of raw-a", "exp-raw-a", ""),
    ("test accuracy of raw-a run 2", "exp-raw-a", 'class="data runs"'),
    ("mean macro F1 of raw-b", "row-raw-b", ""),
])
def test_an_edited_mean_std_or_run_is_a_mismatch_with_its_page(lab_pdf, what, anchor, after):
    c = _claim(lab_pdf["report"], anchor, what)
    new = "12.34%" if c.text.endswith("%") else "0.1234"
    bad = [f.line() for f in verify.verify(_tampered(lab_pdf, what.replace(" ", "-"), anchor, c.text, new,
                                                     after)).mismatches]
    assert any(f"#{anchor}" in line and "page " in line and "'" + new + "'" in line for line in bad), bad


def test_an_edited_noise_figure_is_a_mismatch(lab_pdf):
    c = next(c for c in lab_pdf["report"].claims if c.anchor == "conclusions-raw" and c.what.startswith("noise of"))
    bad = [f.line() for f in verify.verify(_tampered(lab_pdf, "noise", "conclusions-raw", f"{c.text} points",
                                                     "9.99 points", 'class="comparisons"')).mismatches]
    assert any("#conclusions-raw" in line and "'9.99'" in line for line in bad), bad


def test_a_run_edited_in_results_json_is_a_mismatch(lab_pdf):
    from test_verify import edit_results

    def forge(doc):
        entry = next(e for e in doc["experiments"] if e["name"] == "raw-a")
        entry["more_runs"][0]["metrics"]["test_accuracy"] += 0.01

    v = verify.verify(edit_results(lab_pdf["good"], lab_pdf["tmp"] / "forged-run.pdf", forge))
    bad = [f.line() for f in v.mismatches]
    assert any(line.startswith("MISMATCH raw-a: run 2 measurements: test accuracy") for line in bad), bad
    assert any("#exp-raw-a" in line for line in bad), bad  # the mean printed is not the attachments' mean


def test_a_huge_or_wrong_more_runs_is_a_mismatch_not_a_crash(lab_pdf):
    from test_verify import edit_results

    def huge(doc):
        entry = next(e for e in doc["experiments"] if e["name"] == "raw-a")
        entry["more_runs"] = entry["more_runs"] + [None] * 200_000

    v = verify.verify(edit_results(lab_pdf["good"], lab_pdf["tmp"] / "huge.pdf", huge))
    assert [f.line() for f in v.mismatches if f.check == "repeats"] == [
        "MISMATCH raw-a: repeats: experiments.toml declares 3 runs, results.json says repeats = 3 with"
        " 200002 more_runs (should be 2)"]

    def wrong(doc):
        entry = next(e for e in doc["experiments"] if e["name"] == "raw-b")
        entry["more_runs"] = {"a": 1}
        entry["repeats"] = "3"

    v = verify.verify(edit_results(lab_pdf["good"], lab_pdf["tmp"] / "wrong.pdf", wrong))
    assert any(f.subject == "raw-b" and f.check == "repeats" for f in v.mismatches)


def test_more_runs_for_an_experiment_declared_with_one_run_says_run_in_the_singular(lab_pdf):
    from test_verify import edit_results

    def extra(doc):
        entry = next(e for e in doc["experiments"] if e["name"] == "raw-c")
        entry["repeats"], entry["more_runs"] = 3, [None, None]

    v = verify.verify(edit_results(lab_pdf["good"], lab_pdf["tmp"] / "extra.pdf", extra))
    assert [f.line() for f in v.mismatches if f.check == "repeats"] == [
        "MISMATCH raw-c: repeats: experiments.toml declares 1 run, results.json says repeats = 3 with"
        " 2 more_runs (should be 0)"]


def test_rerun_tolerance_is_the_measured_spread_when_there_is_one(lab_pdf):
    from labreport.results.run import Stat

    spec = lab_pdf["lab"].by_name("raw-a")
    claimed = lab_pdf["results"][("raw-a", 1)]
    fresh = dict(claimed, metrics={**claimed["metrics"], "test_accuracy": claimed["metrics"]["test_accuracy"] + 0.015})
    f = verify.compare_rerun(spec, claimed, fresh, 0.01, Stat(0.97, 0.01, 3))
    assert f.status == verify.OK and "tolerance ±2.00 points = max(default 1.00, 2 x std 1.00 over 3 runs):" \
        " 2 x the std of the 3 measured runs" in f.detail
    f = verify.compare_rerun(spec, claimed, fresh, 0.01, Stat(0.97, 0.001, 3))
    assert f.status == verify.MISMATCH and f.detail.endswith("over 3 runs): the default)")
    f = verify.compare_rerun(spec, claimed, fresh, 0.01, Stat(0.97, None, 1))
    assert f.status == verify.MISMATCH and f.detail.endswith("tolerance ±1.00 points)")


def test_rerun_trains_run_1_and_one_picked_run_and_uses_the_spread(lab_pdf, tmp_path):
    import io

    from test_verify import FakeTrainer, fake_dataset

    sub = verify.read_submission(lab_pdf["good"])
    claimed = {"raw-a": acc(lab_pdf["results"], "raw-a", 1), "cnn-a": acc(lab_pdf["results"], "cnn-a", 1)}
    trainer = FakeTrainer(claimed, {"raw-a": 0.0, "cnn-a": 0.0})
    findings = verify.rerun(sub, 2, build=tmp_path / "build", train=trainer, load_dataset=fake_dataset,
                            progress=io.StringIO(), choose=max)
    # Two trainings each, not three: run 1 and one of the measured runs 2..N (tests/test_verify_rerun.py).
    assert sorted(trainer.calls) == [("cnn-a", False)] * 2 + [("raw-a", False)] * 2
    assert [f.detail.split(":")[0] for f in findings] == [
        "run 1/3 (seed 1)", f"run 3/3 (seed {repeat_seed(1, 3)}, picked at random among the measured runs 2, 3)",
        "run 1/3 (seed 1)", f"run 2/3 (seed {repeat_seed(1, 2)}, the only measured run besides run 1)"]
    assert "over 3 runs" in findings[0].detail and "over 2 runs" in findings[2].detail
    assert all("over 3 runs" in f.detail for f in findings[:2]) and all("over 2 runs" in f.detail for f in findings[2:])


def test_check_counts_a_failed_run_of_a_repeated_experiment(lab_pdf, tmp_path):
    from labreport.grading import checks

    build = tmp_path / "build"
    shutil.copytree(lab_pdf["build"], build)
    spec = lab_pdf["lab"].by_name("raw-b").runs()[2]
    failed = make_result(spec, seed=3, status="failed")
    failed["repeat"] = 3
    store.write_json_atomic(result_path(build, "raw-b", 3), {"schema": store.RESULT_SCHEMA, **failed})
    statuses = {s.name: "fresh" for s in lab_pdf["lab"].experiments}
    found = next(c for c in checks.evaluate(lab_pdf["lab"], build, statuses=statuses)
                 if c.rule == "no failed or diverged experiment")
    assert not found.ok and found.detail.startswith("raw-b run 3/3 (failed: RuntimeError: synthetic failure")


def test_without_a_measured_spread_a_comparison_keeps_the_test_set_rule(lab_pdf):
    a, c = lab_pdf["runs"]["raw-a"], lab_pdf["runs"]["raw-c"]
    only_first = Run(a.spec, a.result, tuple(Run(m.spec, None) for m in a.more_runs))  # runs 2, 3 not yet made
    comp = comparisons.compare(only_first, c, "hidden")
    assert comparisons.noise(only_first, c) is None and not comp.repeated
    assert "(1 run)" in comp.sentence and "within noise" not in comp.sentence
    assert comp.significant or "not significant (no spread between seeds measured yet)" in comp.sentence


def test_grade_reads_the_best_mean_the_report_prints(lab_pdf):
    from labreport.grading import grade

    g = grade.grade_submission(verify.read_submission(lab_pdf["good"]))
    cnn = next(p for p in g.parts if p.part == "cnn")
    best = lab_pdf["runs"][cnn.best_name]  # cnn-a: runs 1 and 2 measured
    assert best.repeated and best.test_accuracy != best.headline("test_accuracy").mean
    assert cnn.best_accuracy == best.headline("test_accuracy").mean
    assert f"{100 * cnn.best_accuracy:.2f}%" in next(p.best_sentence for p in lab_pdf["report"].parts if p.part == "cnn")


def test_check_lists_every_run_not_yet_trained(lab_pdf):
    from labreport.grading import checks

    found = {c.rule: c for c in checks.evaluate(lab_pdf["lab"], lab_pdf["build"])}
    stale = found["every experiment trained with its current settings"]
    assert not stale.ok and stale.detail == "not run or out of date: cnn-a run 3/3"
    # cnn-a still counts as a variant of its part: its first run is there and fresh.
    assert found["at least 3 variants of part 'cnn'"].detail.endswith("1 trained of 1 declared")


def test_grade_sees_a_failed_run_2_and_a_missing_run_3(lab_pdf, tmp_path):
    from labreport.grading import grade

    g = grade.grade_submission(verify.read_submission(lab_pdf["good"]))
    assert g.stale == ("cnn-a run 3/3",)

    build = tmp_path / "build"
    shutil.copytree(lab_pdf["build"], build)
    spec = lab_pdf["lab"].by_name("raw-b").runs()[1]
    failed = {**make_result(spec, seed=2, status="failed"), "repeat": 2}
    store.write_json_atomic(result_path(build, "raw-b", 2), {"schema": store.RESULT_SCHEMA, **failed})
    pdf = render.render(lab_pdf["lab"], build, data_dir=lab_pdf["data"]).pdf_path
    g = grade.grade_submission(verify.read_submission(pdf))
    rule = next(c for c in g.requirements if c.rule == "no failed or diverged experiment")
    assert not rule.ok and rule.detail.startswith("raw-b run 2/3 (failed")
    assert "raw-b run 2/3" in g.stale


def test_a_run_stored_twice_is_a_mismatch(lab_pdf):
    """The student who wants a small std copies run 1's curves into runs 2 and 3."""
    from test_verify import edit_results

    def twice(doc):
        entry = next(e for e in doc["experiments"] if e["name"] == "raw-a")
        for run in entry["more_runs"]:
            run["history"] = json.loads(json.dumps(entry["result"]["history"]))

    v = verify.verify(edit_results(lab_pdf["good"], lab_pdf["tmp"] / "twice.pdf", twice))
    lines = [f.line() for f in v.mismatches if f.subject == "raw-a" and "stored twice" in f.detail]
    assert len(lines) == 2 and lines[0].startswith("MISMATCH raw-a: run 2: its 20-epoch test-loss curve is run 1's"), lines
    assert not [f for f in verify.verify(lab_pdf["good"]).mismatches if "stored twice" in f.detail]


@pytest.mark.parametrize("where, key, value", [
    ("run 2", "history", "x"),                       # malformed: reported, not read again
    ("run 2", "history", [1]),
    ("run 2", "confusion", [[1, 2], [3]]),           # ragged: the part's confusion summary skips it
    ("run 2", "confusion", [["a"] * 10] * 10),
    ("raw-c", "confusion", [[1, 2], [3]]),
    ("raw-c", "confusion", [["a"] * 10] * 10),
    ("run 2", "class_names", 5),                     # the names the report prints are checked too
    ("run 2", "class_names", ["a"]),
    ("raw-c", "class_names", 5),
])
def test_a_malformed_run_is_a_mismatch_for_verify_and_grade_not_a_crash(lab_pdf, where, key, value):
    from labreport.grading import grade
    from test_verify import edit_results

    def forge(doc):
        if where == "run 2":
            target = next(e for e in doc["experiments"] if e["name"] == "raw-a")["more_runs"][0]
        else:
            target = next(e for e in doc["experiments"] if e["name"] == where)["result"]
        target[key] = value

    pdf = edit_results(lab_pdf["good"], lab_pdf["tmp"] / f"malformed-{key}-{len(str(value))}.pdf", forge)
    subject = "raw-a" if where == "run 2" else where
    assert [f for f in verify.verify(pdf).mismatches if f.subject == subject]
    assert grade.grade_submission(verify.read_submission(pdf)).parts  # graded, with its mismatches


# --------------------------------------------------------------------------- run 1 failed or missing
# raw-a: run 1 failed, runs 2-3 measured; raw-b: run 1 not run, runs 2-3 measured; cnn-a: run 3 not run.
@pytest.fixture(scope="module")
def left_out_pdf(tmp_path_factory):
    return rendered_lab(tmp_path_factory.mktemp("left-out"), skip={("raw-b", 1), ("cnn-a", 3)},
                        statuses={("raw-a", 1): "failed"})


def test_a_failed_or_missing_run_1_next_to_measured_runs_is_printed_as_the_measured_runs(left_out_pdf):
    """Run 1 left out is "2 of 3 runs", as a failed run 3 is: the card (no FAILED box, a note saying
    which run is left out and why), the part table, the comparisons and the title page all print
    the mean over runs 2-3; the appendix lists the failed run."""
    report, results = left_out_pdf["report"], left_out_pdf["results"]
    cards = {c.name: c for p in report.parts for c in p.cards}
    rows = {r.name: r for p in report.parts for r in p.rows}
    for name in ("raw-a", "raw-b"):
        accs = [acc(results, name, r) for r in (2, 3)]
        mean, std = statistics.mean(accs), statistics.stdev(accs)
        card = cards[name]
        assert card.status == "ok" and card.error == ""
        assert dict(card.metrics)[model.METRIC_LABELS["test_accuracy"]] == \
            f"{100 * mean:.2f}% ± {100 * std:.2f}% (2 of 3 runs)"
        assert (rows[name].status, rows[name].runs) == ("ok", "2 of 3")
        assert rows[name].test_accuracy == f"{100 * mean:.2f}% ± {100 * std:.2f}%"
    error = left_out_pdf["results"][("raw-a", 1)]["error"]
    assert cards["raw-a"].runs_note == f"Numbers over 2 of 3 runs; run 1 failed: {error}."
    assert cards["raw-b"].runs_note == "Numbers over 2 of 3 runs; run 1 not run yet."
    assert cards["cnn-a"].runs_note == "Numbers over 2 of 3 runs; run 3 not run yet."
    assert cards["raw-c"].runs_note == ""  # one run: nothing left out
    raw = next(p for p in report.parts if p.part == "raw")
    assert any("(raw-a vs raw-b)" in s for s in raw.comparisons)  # compared, not dropped as failed
    assert not any("Failed or diverged" in w or "Not run yet" in w for w in raw.warnings)
    assert report.counts["ok"] == "4" and report.counts["failed"] == report.counts["not_run"] == ""
    assert [(p["label"], p["status"]) for p in report.appendix["problems"]] == [("raw-a run 1", "failed")]


def test_verify_accepts_a_report_with_run_1_left_out_and_catches_a_changed_run_2(left_out_pdf):
    from test_verify import edit_results

    v = verify.verify(left_out_pdf["good"])
    assert [f.line() for f in v.mismatches] == []
    notes = [f.line() for f in v.findings if f.status == verify.NOTE]
    assert "NOTE     raw-b: run 1: not run: left out of the mean" in notes

    def forge(doc):
        entry = next(e for e in doc["experiments"] if e["name"] == "raw-b")
        entry["more_runs"][0]["metrics"]["test_accuracy"] -= 0.01

    v = verify.verify(edit_results(left_out_pdf["good"], left_out_pdf["tmp"] / "forged.pdf", forge))
    assert any(f.subject == "raw-b" and "#exp-raw-b" in f.line() for f in v.mismatches), [f.line() for f in v.mismatches]


def test_a_repeated_experiment_with_no_run_stored_lists_no_runs(lab_pdf):
    """The card of an experiment none of whose runs is stored says "not run" and prints no table
    of runs, so it records no claim (a seed) the page does not print."""
    run = _runs(lab_pdf["lab"], "cnn-a", [None, None, None])
    assert run.outcome == "not run" and not run.ok
    with model.claims.recording() as rec:
        assert model.run_rows(run) == ()
    assert rec.claims == []


def test_a_rerun_says_when_the_claim_was_trained_by_another_engine_version(lab_pdf):
    spec = lab_pdf["lab"].by_name("raw-a")
    claimed = lab_pdf["results"][("raw-a", 1)]
    old = dict(claimed, versions={**claimed["versions"], "engine": "0"})
    fresh = dict(claimed, metrics={**claimed["metrics"], "test_accuracy": claimed["metrics"]["test_accuracy"] + 0.005})
    f = verify.compare_rerun(spec, old, fresh, 0.01)
    assert f.status == verify.OK and f.detail.endswith(
        f"; claimed with engine 0, re-trained with engine {claimed['versions']['engine']}: its numbers changed"
        " at the rounding level in between, so expect a seed-noise difference")
    assert "engine" not in verify.compare_rerun(spec, claimed, fresh, 0.01).detail  # same engine: not a word
