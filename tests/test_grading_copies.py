"""Copy detection: real quick runs of two groups are independent; a copy with renamed authors is flagged.

The real part trains a two-experiment lab twice with ``--quick`` (real data, real TensorFlow,
a few seconds each): group 1 and group 2 share the config, and their seeds differ only
because the seed is derived from the group. Group 3 then copies group 1's stored runs,
renames the authors and the group, pins group 1's seed (else its copied results would be
stale) and re-renders the PDF. The unit part checks the verdict rules on small fingerprints.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labreport.config.spec import group_seed
from labreport.grading import copies

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LABREPORT_DATA_DIR", ROOT / "build" / "data"))

LAB = """\
[report]
title = "PW04"
authors = ["{a}", "{b}"]
group = "{group}"

[defaults]
optimizer = {{ name = "rmsprop" }}
{seed}

[[experiment]]
name = "raw-tanh-32"
part = "raw"
hidden = 32
activation = "tanh"
batch_size = 128
epochs = 2
chosen = true

[[experiment]]
name = "raw-relu-32"
from = "raw-tanh-32"
activation = "relu"
"""


# --------------------------------------------------------------------------- unit: the rules
def result(seed: int, curve: list[float], *, started: str = "2026-01-01T10:00:00+00:00", duration: float = 4.2,
           hidden: int = 32) -> dict:
    return {"spec": {"name": "x", "seed": seed, "hidden": [hidden]}, "history": {"val_loss": curve, "loss": curve},
            "confusion": [[5 + int(100 * curve[-1]), 1], [2, 7]], "started_at": started, "finished_at": started, "duration_s": duration}


def fp(*runs: tuple[str, dict], toml: str = "t", comments=()) -> copies.Fingerprint:
    doc = {"experiments": [{"name": n, "result": r} for n, r in runs]}
    return copies.fingerprint(toml, doc, json.dumps(doc).encode(), toml.encode() + json.dumps(doc).encode(), comments)


def test_same_measurements_with_different_seeds_is_a_copy_even_renamed():
    a = fp(("raw-a", result(1, [0.5, 0.4], started="2026-01-01T10:00:00+00:00")), toml="A")
    b = fp(("renamed", result(9, [0.5, 0.4], started="2026-01-02T11:00:00+00:00", duration=5.0)), toml="B")
    [pair] = copies.compare([a, b])
    assert (pair.a, pair.b, pair.verdict) == (0, 1, copies.COPY)
    assert pair.evidence == ("raw-a / renamed: identical 2-epoch test-loss curve (and 1 more curves),"
                             " identical confusion matrix (seeds 1 and 9)",)
    assert pair.sentence(["group 3", "group 7"]).startswith("group 3 and group 7: copy: raw-a / renamed:")


def test_same_seed_same_settings_at_other_times_is_only_a_note():
    a = fp(("raw-a", result(1, [0.5, 0.4], started="2026-01-01T10:00:00+00:00", duration=4.2)), toml="A")
    b = fp(("raw-a", result(1, [0.5, 0.4], started="2026-01-03T09:00:00+00:00", duration=4.9)), toml="B")
    [pair] = copies.compare([a, b])
    assert pair.verdict == copies.NOTE
    assert pair.evidence[0].endswith("(same settings and seed)")
    assert copies.flagged([pair]) == {}


def test_another_number_of_repeats_is_not_another_setting():
    """Group B declared repeats = 3, group A none: same seed and settings, so repeat 1's curves agree."""
    a = fp(("raw-a", result(1, [0.5, 0.4], started="2026-01-01T10:00:00+00:00", duration=4.2)), toml="A")
    three = result(1, [0.5, 0.4], started="2026-01-03T09:00:00+00:00", duration=4.9)
    three["spec"]["repeats"] = 3
    [pair] = copies.compare([a, fp(("raw-a", three), toml="B")])
    assert pair.verdict == copies.NOTE and pair.evidence[0].endswith("(same settings and seed)")


def test_same_run_times_prove_a_copy_but_a_lone_coincidence_is_not_reported():
    same_time = dict(started="2026-01-01T10:00:00+00:00", duration=4.2)
    a = fp(("raw-a", result(1, [0.5, 0.4], **same_time)), toml="A")
    b = fp(("raw-a", result(1, [0.5, 0.4], **same_time)), toml="B")
    assert copies.compare([a, b])[0].verdict == copies.COPY
    # Other measurements, same start second (a class starting together) or same wall time: nothing.
    c = fp(("raw-a", result(2, [0.7, 0.6], started="2026-01-01T10:00:00+00:00", duration=7.0)), toml="C")
    d = fp(("raw-a", result(3, [0.8, 0.7], started="2026-01-05T10:00:00+00:00", duration=4.2)), toml="D")
    assert [(p.a, p.b) for p in copies.compare([a, c, d])] == []


def test_identical_configs_and_comments_alone_are_normal():
    a = fp(("raw-a", result(1, [0.5, 0.4])), toml="same", comments=[("raw-a", "We chose tanh.")])
    b = fp(("raw-a", result(2, [0.6, 0.5], started="2026-02-01T10:00:00+00:00", duration=3.0)), toml="same",
           comments=[("raw-a", "We chose tanh.")])
    assert copies.compare([a, b]) == []


def test_a_degenerate_confusion_matrix_is_not_evidence():
    r1 = result(1, [0.5])
    r1["confusion"] = [[0, 5], [0, 9]]  # predicts one class: any two such models agree
    r2 = dict(r1, history={"val_loss": [0.9]}, started_at="2026-03-01T00:00:00+00:00", duration_s=1.5,
              spec={"seed": 2})
    assert copies.compare([fp(("a", r1)), fp(("a", r2))]) == []


def test_the_same_file_twice():
    a = fp(("raw-a", result(1, [0.5, 0.4])))
    [pair] = copies.compare([a, a, None])
    assert pair.evidence[0] == "the same PDF file, byte for byte" and pair.verdict == copies.COPY


# --------------------------------------------------------------------------- real quick runs
def labreport(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABREPORT_DATA_DIR": str(DATA), "LABREPORT_QUICK_EPOCHS": "2",
           "LABREPORT_QUICK_TRAIN": "2000", "LABREPORT_QUICK_TEST": "1000"}
    return subprocess.run([sys.executable, "-m", "labreport", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def class_of_three(tmp_path_factory):
    if not (DATA / "mnist.npz").exists():
        pytest.skip(f"no data in {DATA}: run `make data` (make test does)")
    root = tmp_path_factory.mktemp("class")
    subs = root / "subs"
    subs.mkdir()
    for group, a, b in (("Group 1", "Ada", "Alan"), ("Group 2", "Grace", "Edsger")):
        d = root / group.replace(" ", "")
        d.mkdir()
        (d / "experiments.toml").write_text(LAB.format(group=group, a=a, b=b, seed=""))
        out = labreport("report", "--quick", cwd=d)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        shutil.copy(d / "build" / "report.pdf", subs / f"{d.name}.pdf")
    # Group 3 copies group 1's runs, renames everything it can, and re-renders.
    d3 = root / "Group3"
    d3.mkdir()
    shutil.copytree(root / "Group1" / "build" / "quick", d3 / "build" / "quick")
    (d3 / "experiments.toml").write_text(LAB.format(group="Group 3", a="Mallory", b="Trudy",
                                                    seed=f"seed = {group_seed('Group 1')}"))
    out = labreport("render", "--quick", cwd=d3)
    assert out.returncode == 0, out.stderr[-2000:]
    shutil.copy(d3 / "build" / "report.pdf", subs / "Group3.pdf")
    out = labreport("grade", "subs", "-o", "grades", cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO((root / "grades" / "grades.csv").read_text(encoding="utf-8"))))
    return {"root": root, "stdout": out.stdout, "rows": {Path(r["file"]).stem: r for r in rows}}


def test_each_group_trains_from_its_own_seed_printed_in_the_report(class_of_three):
    rows, root = class_of_three["rows"], class_of_three["root"]
    assert rows["Group1"]["seeds"] == str(group_seed("Group 1")) != rows["Group2"]["seeds"] == str(group_seed("Group 2"))
    html = (root / "Group1" / "build" / "report.html").read_text(encoding="utf-8")
    assert f"{group_seed('Group 1')}" in html  # each card prints its seed


def test_two_independent_groups_are_not_flagged(class_of_three):
    rows = class_of_three["rows"]
    assert rows["Group2"]["copies"] == ""
    assert "Group 2" not in rows["Group1"]["copies"]
    pairs = [x for x in class_of_three["stdout"].splitlines() if x.startswith(("COPY", "NOTE"))]
    assert not [x for x in pairs if "Group 2" in x]  # neither a copy nor a note


def test_a_copy_with_renamed_authors_and_a_rerendered_pdf_is_flagged(class_of_three):
    rows, stdout = class_of_three["rows"], class_of_three["stdout"]
    assert (rows["Group3"]["authors"], rows["Group3"]["group"]) == ("Mallory, Trudy", "Group 3")
    assert rows["Group3"]["verification"] == "VERIFIED"  # a consistent copy: only the detector sees it
    assert rows["Group1"]["copies"] == "Group 3" and rows["Group3"]["copies"] == "Group 1"
    [line] = [x for x in stdout.splitlines() if x.startswith("COPY")]
    assert line.startswith("COPY         Group 1 and Group 3: copy: raw-relu-32: identical 2-epoch test-loss curve")
    assert "the same training start and end time" in line and "(same settings and seed)" in line
