"""`make report` in miniature: real data, real TensorFlow, the default experiments.toml, --quick.

The one test that runs the whole pipeline as a user does (subprocesses, the real CLI):
data -> 24 quick runs -> render -> PDF, then a second, fully cached `report` that must not
import TensorFlow. About two minutes on 2 cores; needs build/data (made by `make test`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pypdf
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LABREPORT_DATA_DIR", ROOT / "build" / "data"))

pytestmark = pytest.mark.skipif(not (DATA / "mnist.npz").exists() or not (DATA / "fashion.npz").exists(),
                                reason=f"no data in {DATA}: run `make data` (make test does)")


def labreport(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABREPORT_DATA_DIR": str(DATA), "LABREPORT_QUICK_EPOCHS": "2",
           "LABREPORT_QUICK_TRAIN": "1000", "LABREPORT_QUICK_TEST": "500"}
    return subprocess.run([sys.executable, "-m", "labreport", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "experiments.toml", root / "experiments.toml")
    out = labreport("report", "--quick", "--jobs", "2", cwd=root)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return root


def test_quick_report_has_every_experiment_and_the_four_questions(project):
    results = json.loads((project / "build" / "results.json").read_text())
    experiments = results["experiments"] if isinstance(results, dict) else results
    assert len(experiments) == 24
    html = (project / "build" / "report.html").read_text()
    for q in ("q1", "q2", "q3", "q4"):
        assert f'id="{q}"' in html
    assert "SMOKE RUN (--quick)" in html
    reader = pypdf.PdfReader(project / "build" / "report.pdf")
    assert len(reader.pages) > 20
    assert set(reader.attachments) == {"experiments.toml", "results.json", "claims.json"}
    text = "".join(page.extract_text() for page in reader.pages[:10])
    for count in ("198,760", "80,610", "4,365", "177,600"):  # chosen models' parameters, from Keras-checked specs
        assert count in text


def test_each_quick_result_is_checked_against_keras(project):
    for run in (project / "build" / "quick" / "runs").iterdir():
        result = json.loads((run / "result.json").read_text())
        assert result["status"] == "ok", (run.name, result.get("error"))
        assert result["quick"] is True
        assert result["params"]["keras_total"] == result["params"]["total"]
        assert len(result["history"]["loss"]) == 2


def test_cached_report_trains_nothing_and_does_not_import_tensorflow(project):
    code = ("import sys; from labreport import cli; rc = cli.main(['report', '--quick']); "
            "sys.exit(rc or (3 if 'tensorflow' in sys.modules else 0))")
    env = {**os.environ, "LABREPORT_DATA_DIR": str(DATA), "LABREPORT_QUICK_EPOCHS": "2",
           "LABREPORT_QUICK_TRAIN": "1000", "LABREPORT_QUICK_TEST": "500"}
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "24 experiment(s) up to date" in out.stdout + out.stderr


def test_check_says_quick_runs_are_not_a_hand_in(project):
    out = labreport("check", "--quick", cwd=project)
    assert out.returncode == 1
    assert "[ ] full runs, not --quick smoke runs" in out.stdout
    assert "[x] at least 3 variants of part 'fashion'" in out.stdout
