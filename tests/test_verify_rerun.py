"""verify --rerun with repeats: besides run 1, one run among 2..N is trained again and compared.

The attack this closes: a student trains run 1 honestly and forges runs 2..N (hand-made
result.json files that agree with themselves, so every check without training passes).
The hand-in is the synthetic repeats lab of test_repeats_report (raw-a, raw-b: 3 runs;
cnn-a: 3 declared, runs 1 and 2 measured; raw-c: one run). Training is a fake (the
runner's ``train`` seam) that "measures" a given accuracy per (experiment, run), so a
forged run is one whose claimed accuracy is not what training its seed gives.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import random

import pytest

from labreport import cli
from labreport.config.spec import repeat_seed
from labreport.grading import verify
from labreport.train import engine
from test_repeats_report import acc, lab_pdf  # noqa: F401 - lab_pdf is a fixture
from test_verify import fake_dataset

FORGED_BY = 0.03  # run 2 of raw-a claims 3 points more than its seed trains to (tolerance: 1 point)


class RunTrainer:
    """A trainer without TensorFlow: run (name, repeat) measures ``truth[(name, repeat)]``."""

    def __init__(self, truth: dict[tuple[str, int], float]):
        self.truth, self.calls = truth, []

    def __call__(self, spec, dataset, *, quick=False, cache_key="", **_):
        self.calls.append((spec.name, spec.repeat, spec.seed))
        result = engine.base_result(spec, status="ok", quick=quick, cache_key=cache_key, dataset=dataset)
        a = self.truth[(spec.name, spec.repeat)]
        result["metrics"] = {"test_accuracy": a, "test_loss": 0.1, "macro_f1": a}
        return result


def honest(lab_pdf) -> dict[tuple[str, int], float]:  # noqa: F811 - the fixture's value
    """What training each stored run gives again: its claim, give or take 0.2 points."""
    return {key: acc(lab_pdf["results"], *key) - 0.002 for key in lab_pdf["results"]}


def forged(lab_pdf) -> dict[tuple[str, int], float]:  # noqa: F811
    truth = honest(lab_pdf)
    truth[("raw-a", 2)] = acc(lab_pdf["results"], "raw-a", 2) - FORGED_BY
    return truth


class Chooser:
    """Picks ``repeat`` and records what it was offered."""

    def __init__(self, repeat: int | None = None):
        self.repeat, self.offered = repeat, []

    def __call__(self, repeats: list[int]) -> int:
        self.offered.append(list(repeats))
        return self.repeat if self.repeat in repeats else repeats[-1]


def rerun(lab_pdf, truth, k=1, sub=None, **kw):  # noqa: F811
    trainer = RunTrainer(truth)
    sub = sub or verify.read_submission(lab_pdf["good"])
    findings = verify.rerun(sub, k, train=trainer, load_dataset=fake_dataset, progress=io.StringIO(),
                            build=kw.pop("build"), **kw)
    return findings, trainer


def test_a_forged_run_2_is_caught_when_run_2_is_picked(lab_pdf, tmp_path):  # noqa: F811
    # The premise: without training, nothing tells the forged run 2 from a trained one.
    assert verify.verify(lab_pdf["good"]).ok
    seed2 = repeat_seed(1, 2)
    chooser = Chooser(2)
    findings, trainer = rerun(lab_pdf, forged(lab_pdf), build=tmp_path / "build", choose=chooser)
    # The runner trained exactly run 1 and run 2 of raw-a (the chosen model), each from its own seed;
    # run 2 was read back from its repeat-2 folder (another run's result there would be "no result").
    assert sorted(trainer.calls) == [("raw-a", 1, 1), ("raw-a", 2, seed2)]
    assert chooser.offered == [[2, 3]]
    claimed = acc(lab_pdf["results"], "raw-a", 2)
    assert [f.status for f in findings] == [verify.OK, verify.MISMATCH]
    assert findings[0].detail.startswith("run 1/3 (seed 1): test accuracy ")
    assert findings[1].line() == (
        f"MISMATCH raw-a: rerun: run 2/3 (seed {seed2}, picked at random among the measured runs 2, 3):"
        f" test accuracy {100 * claimed:.2f}% claimed, {100 * (claimed - FORGED_BY):.2f}% re-trained"
        f" (−3.00 points; {verify.rerun_tolerance(0.01, lab_pdf['runs']['raw-a'].aggregate.stat('test_accuracy'))[1]})")


def test_the_teacher_can_name_the_run(lab_pdf, tmp_path):  # noqa: F811
    chooser = Chooser(3)  # would pick run 3; --rerun-run 2 overrides it
    findings, trainer = rerun(lab_pdf, forged(lab_pdf), build=tmp_path / "build", repeat=2, choose=chooser)
    assert chooser.offered == []
    assert sorted(trainer.calls) == [("raw-a", 1, 1), ("raw-a", 2, repeat_seed(1, 2))]
    assert findings[1].status == verify.MISMATCH
    assert findings[1].detail.startswith(f"run 2/3 (seed {repeat_seed(1, 2)}, chosen with --rerun-run): ")


def test_an_honest_hand_in_passes_whichever_run_is_picked(lab_pdf, tmp_path):  # noqa: F811
    for pick in (2, 3):
        chooser = Chooser(pick)
        findings, trainer = rerun(lab_pdf, honest(lab_pdf), k=4, build=tmp_path / f"build{pick}", choose=chooser)
        # raw-a, raw-b: runs 2 and 3 measured; cnn-a: only run 2 (run 3 not run); raw-c: one run, no pick.
        assert chooser.offered == [[2, 3], [2], [2, 3]]
        assert sorted(trainer.calls) == sorted([("raw-a", 1, 1), ("raw-a", pick, repeat_seed(1, pick)),
                                                ("cnn-a", 1, 1), ("cnn-a", 2, repeat_seed(1, 2)),
                                                ("raw-b", 1, 1), ("raw-b", pick, repeat_seed(1, pick)),
                                                ("raw-c", 1, 1)])
        assert [f.status for f in findings] == [verify.OK] * 7, [f.line() for f in findings]
        assert [(f.subject, f.detail.split(":")[0]) for f in findings] == [
            ("raw-a", "run 1/3 (seed 1)"),
            ("raw-a", f"run {pick}/3 (seed {repeat_seed(1, pick)}, picked at random among the measured runs 2, 3)"),
            ("cnn-a", "run 1/3 (seed 1)"),
            ("cnn-a", f"run 2/3 (seed {repeat_seed(1, 2)}, the only measured run besides run 1)"),
            ("raw-b", "run 1/3 (seed 1)"),
            ("raw-b", f"run {pick}/3 (seed {repeat_seed(1, pick)}, picked at random among the measured runs 2, 3)"),
            ("raw-c", "test accuracy " + f"{100 * acc(lab_pdf['results'], 'raw-c', 1):.2f}% claimed, "
             + f"{100 * (acc(lab_pdf['results'], 'raw-c', 1) - 0.002):.2f}% re-trained (−0.20 points;"
             " tolerance ±1.00 points)"),
        ]


def test_a_one_run_experiment_is_re_trained_as_before(lab_pdf, tmp_path):  # noqa: F811
    sub = verify.read_submission(lab_pdf["good"])
    only_c = dataclasses.replace(sub, config=dataclasses.replace(
        sub.config, experiments=tuple(s for s in sub.config.experiments if s.name == "raw-c")))
    chooser = Chooser()
    findings, trainer = rerun(lab_pdf, honest(lab_pdf), sub=only_c, build=tmp_path / "build", choose=chooser)
    assert trainer.calls == [("raw-c", 1, 1)] and chooser.offered == []
    a = acc(lab_pdf["results"], "raw-c", 1)
    assert [f.line() for f in findings] == [
        f"OK       raw-c: rerun: test accuracy {100 * a:.2f}% claimed, {100 * (a - 0.002):.2f}% re-trained"
        " (−0.20 points; tolerance ±1.00 points)"]


def test_a_named_run_that_is_not_measured_is_a_note_not_a_crash(lab_pdf, tmp_path):  # noqa: F811
    sub = verify.read_submission(lab_pdf["good"])
    doc = copy.deepcopy(sub.results)
    entry = next(e for e in doc["experiments"] if e["name"] == "raw-b")
    entry["more_runs"][1] = {**entry["more_runs"][1], "status": "failed",
                             "error": "RuntimeError: out of memory\nTraceback ...", "metrics": {}}
    failed_b = dataclasses.replace(sub, results=doc)
    findings, trainer = rerun(lab_pdf, honest(lab_pdf), k=4, sub=failed_b, build=tmp_path / "build", repeat=3)
    # cnn-a's run 3 was never made, raw-b's failed: neither is trained; run 1 of each still is.
    assert sorted(trainer.calls) == [("cnn-a", 1, 1), ("raw-a", 1, 1), ("raw-a", 3, repeat_seed(1, 3)),
                                     ("raw-b", 1, 1), ("raw-c", 1, 1)]
    notes = [f.line() for f in findings if f.status == verify.NOTE]
    assert notes == [
        f"NOTE     cnn-a: rerun: run 3/3 (seed {repeat_seed(1, 3)}) is not a measured run in results.json"
        " (not run): no accuracy claimed, not re-trained",
        f"NOTE     raw-b: rerun: run 3/3 (seed {repeat_seed(1, 3)}) is not a measured run in results.json"
        " (failed: RuntimeError: out of memory): no accuracy claimed, not re-trained"]
    assert not [f for f in findings if f.status == verify.MISMATCH]


def test_a_failed_re_training_of_the_picked_run_names_it(lab_pdf, tmp_path):  # noqa: F811
    def broken(spec, dataset, **_):
        if spec.repeat == 3:
            raise RuntimeError("out of memory")
        return RunTrainer(honest(lab_pdf))(spec, dataset, **_)

    findings = verify.rerun(verify.read_submission(lab_pdf["good"]), 1, build=tmp_path / "build", train=broken,
                            load_dataset=fake_dataset, progress=io.StringIO(), choose=Chooser(3))
    assert findings[1].line() == (
        f"MISMATCH raw-a: rerun: run 3/3 (seed {repeat_seed(1, 3)}, picked at random among the measured"
        " runs 2, 3): the re-training did not finish: RuntimeError: out of memory")


def test_the_default_pick_is_the_systems_entropy_and_among_the_measured_runs(lab_pdf, monkeypatch):  # noqa: F811
    assert isinstance(verify._ENTROPY, random.SystemRandom)  # not a seed a hand-in could predict
    offered = []

    class Spy:
        def choice(self, repeats):
            offered.append(list(repeats))
            return repeats[0]

    monkeypatch.setattr(verify, "_ENTROPY", Spy())
    run = {r.name: r for r in verify.read_submission(lab_pdf["good"]).runs()}["cnn-a"]
    plan = verify.plan_rerun(run)
    assert offered == [[2]] and plan.run_keys == ("cnn-a", "cnn-a/repeat-2")
    with pytest.raises(ValueError):  # a chooser cannot make it train a run that claims nothing
        verify.plan_rerun(run, choose=lambda repeats: 3)


def test_rerun_run_is_validated_before_anything_is_checked(lab_pdf, capsys, tmp_path):  # noqa: F811
    good, build = str(lab_pdf["good"]), ["-b", str(tmp_path / "build")]
    assert cli.main(["verify", good, "--rerun-run", "2", *build]) == 2
    assert cli.main(["verify", good, "--rerun", "1", "--rerun-run", "1", *build]) == 2
    assert cli.main(["verify", good, "--rerun", "1", "--rerun-run", "4", *build]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "labreport: --rerun-run R needs --rerun K (it says which run of the K experiments to re-train)",
        "labreport: --rerun-run must be 2 or more (run 1 is always re-trained), got 1",
        "labreport: --rerun-run 4: good.pdf declares at most 3 runs per experiment",
    ]
    sub = verify.read_submission(lab_pdf["good"])
    one_run = dataclasses.replace(sub, config=dataclasses.replace(
        sub.config, experiments=tuple(dataclasses.replace(s, repeats=1) for s in sub.config.experiments)))
    with pytest.raises(verify.BadRerunRun, match=r"^--rerun-run 2: good.pdf declares one run per experiment"
                                                 r" \(no repeats\): there is no run 2 or later to re-train$"):
        verify.check_rerun_run(one_run, 2)


def test_the_runner_trains_exactly_the_named_runs(lab_pdf, tmp_path):  # noqa: F811
    from labreport.results import store
    from labreport.train import runner

    trainer = RunTrainer(honest(lab_pdf))
    build = tmp_path / "build"
    summary = runner.run(lab_pdf["lab"], build, names=["raw-a", "raw-b"], run_keys={"raw-a/repeat-3", "raw-b"},
                         train=trainer, load_dataset=fake_dataset, progress=io.StringIO())
    assert summary.ran == 1 + 1 and summary.skipped == 0
    assert sorted(trainer.calls) == [("raw-a", 3, repeat_seed(1, 3)), ("raw-b", 1, 1)]
    stored = {(n, r) for n in ("raw-a", "raw-b") for r in (1, 2, 3) if store.read_result(build, n, repeat=r)}
    assert stored == {("raw-a", 3), ("raw-b", 1)}  # each in its own folder (repeat-3/ for run 3)
