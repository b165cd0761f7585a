"""Bad experiments.toml through the real CLI: one exact line per problem, exit 2, no traceback, build/ untouched.

Each case runs ``labreport run`` and ``labreport list`` in a folder whose build/ already holds a
stored result and a report: both commands must refuse with the same message and leave every
byte and mtime of build/ as it was, creating nothing.
"""

from __future__ import annotations

import json

import pytest
from robust_helpers import MINIMAL_TOML, cli, isolated_env, snapshot

BASE = MINIMAL_TOML  # lines 1-10; [[experiment]] 'raw-1' is declared at line 4


def _with(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


HOG = _with('part = "raw"', 'part = "hog"\nhog = { pixels_per_cell = PPC, orientations = 8 }')
CNN = _with('part = "raw"', 'part = "cnn"\nconv = CONV')
SWEEP = BASE + "\n[[sweep]]\nfrom = \"raw-1\"\n"  # sweep header at line 12, its keys from line 13

CASES = [
    ("syntax error in a value", BASE + "dropout = = 0.5\n",
     ["experiments.toml:11:11: TOML syntax error: Invalid value"]),
    ("syntax error: unclosed table header", '[[experiment\nname = "a"\n',
     ["experiments.toml:1:13: TOML syntax error: Expected ']]' at the end of an array declaration"]),
    ("unknown key", BASE + "epoch = 3\n",
     ["experiments.toml:11: experiment 'raw-1': unknown key 'epoch' (did you mean 'epochs'?)"]),
    ("wrong type: string for an integer", _with("batch_size = 64", 'batch_size = "64"'),
     ["experiments.toml:9: experiment 'raw-1': key 'batch_size': expected an integer, got a string ('64')"]),
    ("wrong type: float layer size", _with("hidden = 16", "hidden = 16.5"),
     ["experiments.toml:7: experiment 'raw-1': key 'hidden': expected an integer or an array of integers, "
      "got a number (16.5)"]),
    ("wrong type: string for a boolean", BASE + 'chosen = "yes"\n',
     ["experiments.toml:11: experiment 'raw-1': key 'chosen': expected true or false, got a string ('yes')"]),
    ("negative layer size", _with("hidden = 16", "hidden = [300, -1]"),
     ["experiments.toml:7: experiment 'raw-1': key 'hidden': layer sizes must be >= 1, got -1"]),
    ("zero epochs", _with("epochs = 2", "epochs = 0"),
     ["experiments.toml:10: experiment 'raw-1': key 'epochs': must be >= 1, got 0"]),
    ("negative batch size", _with("batch_size = 64", "batch_size = -64"),
     ["experiments.toml:9: experiment 'raw-1': key 'batch_size': must be >= 1, got -64"]),
    ("dropout = 1", BASE + "dropout = 1.0\n",
     ["experiments.toml:11: experiment 'raw-1': key 'dropout': must be < 1, got 1"]),
    ("negative dropout", BASE + "dropout = -0.1\n",
     ["experiments.toml:11: experiment 'raw-1': key 'dropout': must be >= 0, got -0.1"]),
    ("dropout nan", BASE + "dropout = nan\n",
     ["experiments.toml:11: experiment 'raw-1': key 'dropout': must be a finite number, got nan"]),
    ("pixels_per_cell larger than the image", HOG.replace("PPC", "30"),
     ["experiments.toml:7: experiment 'raw-1': key 'hog.pixels_per_cell': must be <= 28, got 30"]),
    ("pixels_per_cell zero", HOG.replace("PPC", "0"),
     ["experiments.toml:7: experiment 'raw-1': key 'hog.pixels_per_cell': must be >= 1, got 0"]),
    ("conv stack pooled to nothing", CNN.replace("CONV", "[" + ", ".join(["{ filters = 4, kernel = 3 }"] * 5) + "]"),
     ["experiments.toml:7: experiment 'raw-1': key 'conv': conv layer 5: pooling 2x2 on a 1x1 feature map "
      "leaves no pixels"]),
    ("conv 'valid' kernels shrink the image to nothing",
     CNN.replace("CONV", '[{ filters = 4, kernel = 28, padding = "valid", pool = 1 }, '
                         '{ filters = 4, kernel = 2, padding = "valid" }]'),
     ["experiments.toml:7: experiment 'raw-1': key 'conv': conv layer 2 (2x2, valid) leaves no pixels"]),
    ("conv with zero filters", CNN.replace("CONV", "[{ filters = 0, kernel = 3 }]"),
     ["experiments.toml:7: experiment 'raw-1': key 'conv[1].filters': must be >= 1, got 0"]),
    ("unknown activation", _with('activation = "relu"', 'activation = "tanhh"'),
     ["experiments.toml:8: experiment 'raw-1': key 'activation': expected one of: relu, tanh, sigmoid, elu, selu, "
      "softplus, softsign, linear, gelu, swish; got 'tanhh' (did you mean 'tanh'?)"]),
    ("unknown dataset", BASE + 'dataset = "cifar10"\n',
     ["experiments.toml:11: experiment 'raw-1': key 'dataset': expected one of: mnist, fashion; got 'cifar10'"]),
    ("unknown optimizer", BASE + 'optimizer = { name = "adamw", learning_rate = 0.01 }\n',
     ["experiments.toml:11: experiment 'raw-1': key 'optimizer.name': expected one of: rmsprop, adam, sgd; "
      "got 'adamw' (did you mean 'adam'?)"]),
    ("argument of another optimizer", BASE + 'optimizer = { name = "sgd", rho = 0.9 }\n',
     ["experiments.toml:11: experiment 'raw-1': unknown key 'optimizer.rho' for sgd; "
      "sgd takes: learning_rate, momentum, nesterov"]),
    ("duplicate names", BASE + "\n" + BASE.split("\n", 3)[3],
     ["experiments.toml:12: experiment 'raw-1': duplicate name 'raw-1' (first declared at line 4)"]),
    ("empty file", "",
     ["experiments.toml: the file declares nothing; add at least one [[experiment]] table"]),
    ("only comments", "# nothing yet\n\n# really\n",
     ["experiments.toml: the file declares nothing; add at least one [[experiment]] table"]),
    ("no experiments, misspelt table", BASE.replace("[[experiment]]", "[[experiments]]"),
     ["experiments.toml: no experiments: add at least one [[experiment]] table",
      "experiments.toml:4: unknown table 'experiments' (did you mean 'experiment'?)"]),
    ("two sweeps expand to the same name",
     SWEEP + 'name = "v-{hidden}"\nvary = { hidden = [1, 2] }\n\n[[sweep]]\nfrom = "raw-1"\n'
             'name = "v-{hidden}"\nvary = { hidden = [2, 3] }\n',
     ["experiments.toml:17: sweep #2 (from 'raw-1'), variant 'v-2': expands to the duplicate name 'v-2'"]),
    ("a sweep expands to an existing experiment", SWEEP + 'name = "raw-1"\nvary = { hidden = [3] }\n',
     ["experiments.toml:12: sweep #1 (from 'raw-1'), variant 'raw-1': expands to the duplicate name 'raw-1'"]),
    ("a bad vary value under a name template without its key: the value first, then the duplicate",
     SWEEP + 'name = "v-{hidden}"\nvary = { hidden = [8], repeats = [2, 0] }\n',
     ["experiments.toml:15: sweep #1 (from 'raw-1'), variant 'v-8': key 'vary.repeats': must be >= 1, got 0",
      "experiments.toml:15: sweep #1 (from 'raw-1'), variant 'v-8': expands to the duplicate name 'v-8'"]),
    ("a bad vary epochs under a template without it", SWEEP + 'name = "w-{hidden}"\nvary = { hidden = [8], epochs = [3, -1] }\n',
     ["experiments.toml:15: sweep #1 (from 'raw-1'), variant 'w-8': key 'vary.epochs': must be >= 1, got -1",
      "experiments.toml:15: sweep #1 (from 'raw-1'), variant 'w-8': expands to the duplicate name 'w-8'"]),
    ("a sweep repeats a value", SWEEP + "vary = { epochs = [3, 3] }\n",
     ["experiments.toml:12: sweep #1 (from 'raw-1'), variant 'raw-1-epochs3': expands to the duplicate name "
      "'raw-1-epochs3'"]),
    ("a sweep name template with an unknown field", SWEEP + 'name = "v-{hiden}"\nvary = { hidden = [3] }\n',
     ["experiments.toml:14: sweep #1 (from 'raw-1'): key 'name': bad template 'v-{hiden}': unknown field "
      "'hiden'; available: from, hidden"]),
    ("several problems at once, in file order", _with("epochs = 2", "epochs = 0") + "dropout = 2\nepoch = 1\n",
     ["experiments.toml:10: experiment 'raw-1': key 'epochs': must be >= 1, got 0",
      "experiments.toml:11: experiment 'raw-1': key 'dropout': must be < 1, got 2",
      "experiments.toml:12: experiment 'raw-1': unknown key 'epoch' (did you mean 'epochs'?)"]),
    # repeats (issue U): an integer from 1 to MAX_REPEATS, per experiment or in [defaults]
    *[(f"repeats = {value}", BASE + f"repeats = {value}\n",
       [f"experiments.toml:11: experiment 'raw-1': key 'repeats': {problem}"]) for value, problem in (
        ("0", "must be >= 1, got 0"),
        ("-1", "must be >= 1, got -1"),
        ("21", "must be <= 20, got 21"),
        ("2.5", "expected an integer, got a number (2.5)"),
        ('"3"', "expected an integer, got a string ('3')"),
        ("true", "expected an integer, got a boolean (True)"))],
    ("repeats = 0 in [defaults]", "[defaults]\nrepeats = 0\n" + BASE,
     ["experiments.toml:2: [defaults]: key 'repeats': must be >= 1, got 0"]),
    ("misspelled repeats", BASE + "repeat = 3\n",
     ["experiments.toml:11: experiment 'raw-1': unknown key 'repeat' (did you mean 'repeats'?)"]),
]


@pytest.fixture
def project(tmp_path):
    """A project folder whose build/ holds a result and a report from an earlier, good run."""
    build = tmp_path / "build"
    (build / "runs" / "raw-1").mkdir(parents=True)
    (build / "runs" / "raw-1" / "result.json").write_text(json.dumps({"schema": 1, "name": "raw-1", "status": "ok"}))
    (build / "report.html").write_text("<p>the previous report</p>\n")
    return tmp_path


def refuses(project, config_bytes: bytes | None, expected: list[str], config_name: str = "experiments.toml"):
    """``run`` and ``list`` both print exactly ``expected`` + the count line, exit 2, and touch nothing."""
    if config_bytes is not None:
        (project / config_name).write_bytes(config_bytes)
    before = snapshot(project / "build")
    n = len(expected)
    want = expected + [f"{n} error{'s' * (n != 1)} in {config_name}; nothing was run or written."]
    for command in ("run", "list"):
        out = cli(command, "-c", config_name, "-b", "build", cwd=project)
        assert (out.returncode, out.stdout, out.stderr.splitlines()) == (2, "", want), command
        assert "Traceback" not in out.stderr
        assert snapshot(project / "build") == before, f"{command} changed build/"


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_refused_with_one_exact_line_per_problem(project, text, expected):
    refuses(project, text.encode("utf-8"), expected)


def test_config_that_is_not_utf8(project):
    refuses(project, b"\xff\xfe[[experiment]]\n",
            ["experiments.toml: cannot read: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"])


def test_missing_config_file(project):
    where = project.resolve()
    refuses(project, None, [f"nope.toml: no such file in {where} (run labreport from the project folder,"
                            " or pass -c PATH)"], config_name="nope.toml")


def test_command_run_from_another_folder_says_where_it_looked(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = isolated_env(tmp_path)  # its HOME-like folders live in tmp_path, not where the user is
    out = cli("list", cwd=elsewhere, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines()[0] == (f"experiments.toml: no such file in {elsewhere.resolve()}"
                                          " (run labreport from the project folder, or pass -c PATH)")
    assert list(elsewhere.iterdir()) == []  # nothing created where the user happened to be


@pytest.mark.parametrize("typo,guess", [("lsit", "list"), ("verfy", "verify"), ("reprot", "report")])
def test_misspelled_command_gets_the_likely_one(project, typo, guess):
    before = snapshot(project / "build")
    out = cli(typo, cwd=project)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    first = out.stderr.splitlines()[0]
    assert first.startswith(f"labreport: unknown command {typo!r} (did you mean {guess!r}?); commands: list,")
    assert snapshot(project / "build") == before


def test_unknown_command_without_a_close_one_lists_the_commands(project):
    out = cli("frobnicate", cwd=project)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["labreport: unknown command 'frobnicate'; commands: list, validate, data, run,"
                                       " status, render, report, check, export, clean, verify, grade"]


def test_line_numbers_ignore_key_lookalikes_inside_multiline_strings(project):
    text = ('[[experiment]]\nname = "a"\ncomment = """\nepochs = 3 was our first try\n"""\n'
            'part = "raw"\nhidden = 16\nactivation = "relu"\nbatch_size = 64\nepochs = 0\n')
    refuses(project, text.encode(), ["experiments.toml:10: experiment 'a': key 'epochs': must be >= 1, got 0"])
