"""Bounded input (issue R, items 2 and 3): whatever a config asks labreport to allocate or compute is
limited, and each limit is refused with one line naming the file, the line, the experiment and the
key, with the limit's value; exit 2, no traceback, build/ untouched.

Each case runs ``validate`` in-process and ``run`` in-process (``cli.main``, the code path of
``python -m labreport``); a representative few also as real subprocesses.
"""

from __future__ import annotations

import json

import pytest
from robust_cli import lr  # noqa: F401 - the fixture
from robust_helpers import MINIMAL_TOML, cli, snapshot

from labreport.config import loader

BASE = MINIMAL_TOML  # [[experiment]] 'raw-1' at line 4; hidden at 7, batch_size at 9


def _with(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


def sweep(vary: str, name: str | None = None) -> str:
    """BASE + a sweep from raw-1 (header at line 12)."""
    return BASE + '\n[[sweep]]\nfrom = "raw-1"\n' + (f'name = "{name}"\n' if name else "") + f"vary = {vary}\n"


MILLION_SWEEP = sweep("{ " + ", ".join(f"{k} = [{', '.join(str(i) for i in range(1, 41))}]"
                                       for k in ("hidden", "epochs", "seed", "batch_size")) + " }")
LONG_NAME = "x" * (loader.MAX_NAME_CHARS + 1)
LONG_VARIANT = repr("raw-1-hidden" + "1x" * 48 + "1")[:60] + "..."  # messages cut long names

CASES = [
    ("a 1 kB sweep expanding to millions of experiments", MILLION_SWEEP,
     ["experiments.toml:14: sweep #1 (from 'raw-1'): key 'vary': expands to 2,560,000 experiments, 2,560,001 in all;"
      " the limit is 1,000 (set LABREPORT_MAX_EXPERIMENTS to change it)"]),
    ("a billion-unit hidden layer", _with("hidden = 16", "hidden = 1000000000"),
     ["experiments.toml:7: experiment 'raw-1': key 'hidden': layer sizes must be <= 1,000,000, got 1,000,000,000"]),
    ("65 hidden layers", _with("hidden = 16", "hidden = [" + ", ".join(["8"] * 65) + "]"),
     ["experiments.toml:7: experiment 'raw-1': key 'hidden': 65 hidden layers; at most 64"]),
    ("33 conv layers", _with('part = "raw"', 'part = "cnn"\nconv = [' + ", ".join(
        ['{ filters = 1, kernel = 1, pool = 1 }'] * 33) + "]"),
     ["experiments.toml:7: experiment 'raw-1': key 'conv': 33 conv layers; at most 32"]),
    ("a name longer than a file name may be", _with('name = "raw-1"', f'name = "{LONG_NAME}"'),
     [f"experiments.toml:5: experiment '{'x' * 59}...: key 'name': '{'x' * 59}... is 101 characters long; names are at most"
      " 100 (they become file names)"]),
    ("a sweep generating names that are too long", sweep("{ hidden = [[" + ", ".join(["1"] * 49) + "]] }"),
     [f"experiments.toml:12: sweep #1 (from 'raw-1'), variant {LONG_VARIANT}: generated name: "
      f"{LONG_VARIANT} is 109 characters long; names are at most 100 (they become file names)"]),
    ("a sweep name template longer than a name", sweep("{ hidden = [1, 2] }", name="{from}-" + "y" * 95),
     ["experiments.toml:14: sweep #1 (from 'raw-1'): key 'name': 102 characters long; names are at most 100"]),
    ("a sweep name template with a format spec", sweep("{ hidden = [1, 2] }", name="v-{hidden:>999999999}"),
     ["experiments.toml:14: sweep #1 (from 'raw-1'): key 'name': bad template 'v-{hidden:>999999999}': "
      "'{hidden:>999999999}': no format specs or conversions; write the plain field, e.g. {hidden}"]),
    ("a sweep name template with attribute access", sweep("{ hidden = [1, 2] }", name="v-{hidden.__class__}"),
     ["experiments.toml:14: sweep #1 (from 'raw-1'): key 'name': bad template 'v-{hidden.__class__}': unknown field "
      "'hidden.__class__' (only plain field names, no attribute or index); available: from, hidden"]),
    ("a sweep name template with an index", sweep("{ hidden = [1, 2] }", name="v-{from[0]}"),
     ["experiments.toml:14: sweep #1 (from 'raw-1'): key 'name': bad template 'v-{from[0]}': unknown field "
      "'from[0]' (only plain field names, no attribute or index); available: from, hidden"]),
    ("a sweep name template with a conversion", sweep("{ hidden = [1, 2] }", name="v-{hidden!r}"),
     ["experiments.toml:14: sweep #1 (from 'raw-1'): key 'name': bad template 'v-{hidden!r}': '{hidden!r}': "
      "no format specs or conversions; write the plain field, e.g. {hidden}"]),
    ("a sweep name template with an unclosed brace", sweep("{ hidden = [1, 2] }", name="v-{hidden"),
     ["experiments.toml:14: sweep #1 (from 'raw-1'): key 'name': bad template 'v-{hidden': expected '}' before "
      "end of string"]),
    ("arrays nested 5,000 deep", BASE + "dropout = " + "[" * 5000 + "]" * 5000 + "\n",
     ["experiments.toml:11: nested deeper than 32 levels of [ and {"]),
    ("inline tables nested 2,000 deep", BASE + "optimizer = " + "{ a = " * 2000 + "1" + " }" * 2000 + "\n",
     ["experiments.toml:11: nested deeper than 32 levels of [ and {"]),
    ("a 200 kB dotted key (quadratic in tomllib)", BASE + "a" + ".a" * 100_000 + " = 1\n",
     ["experiments.toml:11: a dotted key with more than 32 parts"]),
    ("a table header 40 levels deep", BASE + "[" + ".".join(["t"] * 40) + "]\n",
     ["experiments.toml:11: a dotted key with more than 32 parts"]),
    ("an integer of 5,000 digits (beyond Python's int parsing limit)", _with("epochs = 2", "epochs = " + "9" * 5000),
     ["experiments.toml:10: a number with more than 30 digits"]),
    ("an integer of 40 digits", _with("batch_size = 64", "batch_size = " + "1" * 40),
     ["experiments.toml:9: a number with more than 30 digits"]),
    ("a float that overflows to infinity", BASE + "dropout = 1e400\n",
     ["experiments.toml:11: experiment 'raw-1': key 'dropout': must be a finite number, got inf"]),
    ("a UTF-8 byte-order mark", "\ufeff" + BASE,
     ["experiments.toml:1: the file starts with a UTF-8 byte-order mark (BOM), which TOML does not allow; save it "
      "as UTF-8 without BOM"]),
    ("a 30,000-character comment", BASE + 'comment = "' + "c" * 30_000 + '"\n',
     ["experiments.toml:11: experiment 'raw-1': key 'comment': 30,000 characters long; at most 20,000"]),
    ("101 authors", '[report]\nauthors = [' + ", ".join(['"a"'] * 101) + "]\n" + BASE.split("\n", 3)[3],
     ["experiments.toml:2: [report]: key 'authors': 101 authors; at most 100"]),
]


@pytest.fixture
def project(lr):
    """A project whose build/ holds a result and a report from an earlier, good run."""
    build = lr.folder / "build"
    (build / "runs" / "raw-1").mkdir(parents=True)
    (build / "runs" / "raw-1" / "result.json").write_text(json.dumps({"schema": 1, "name": "raw-1", "status": "ok"}))
    (build / "report.html").write_text("<p>the previous report</p>\n")
    return lr


def refused(lr, expected: list[str], *commands: tuple[str, ...], config: str = "experiments.toml") -> None:
    before = snapshot(lr.folder / "build")
    n = len(expected)
    want = expected + [f"{n} error{'s' * (n != 1)} in {config}; nothing was run or written."]
    for command in commands or (("validate",), ("run",)):
        out = lr(*command, "-c", config)
        assert (out.status, out.stdout, out.err_lines) == (2, "", want), command
        assert snapshot(lr.folder / "build") == before, f"{command} changed build/"


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_a_config_over_a_limit_is_refused_with_the_limit_in_one_line(project, text, expected):
    (project.folder / "experiments.toml").write_text(text, encoding="utf-8")
    refused(project, expected)


def test_a_model_larger_than_the_machine_memory_is_refused(project):
    (project.folder / "experiments.toml").write_text(_with("hidden = 16", "hidden = [1000000, 1000000]"))
    memory_gib = loader.machine_memory_bytes() / 2 ** 30
    refused(project, [
        "experiments.toml:7: experiment 'raw-1': the model has 1,000,796,000,010 parameters and needs about 14,913.5"
        " GiB to train at batch size 64 (16 bytes per parameter, 4 per activation of a batch), more than this"
        f" machine's {memory_gib:,.1f} GiB"])


def test_the_reference_lab_fits_every_limit_with_room_to_spare():
    from pathlib import Path

    lab = loader.load(Path(__file__).resolve().parents[2] / "experiments.toml")
    assert len(lab.experiments) == 24 < loader.DEFAULT_MAX_EXPERIMENTS
    worst = max(loader.training_bytes(s)[1] for s in lab.experiments)
    assert worst < 4 * 2 ** 30  # the 64-filter CNN at batch 8192: ~2.4 GiB, trains on an 8 GiB laptop


def test_the_experiment_limit_counts_sweeps_and_is_set_by_an_environment_variable(project):
    (project.folder / "experiments.toml").write_text(sweep("{ hidden = [1, 2, 3, 4] }"))
    assert project("validate").stdout == "experiments.toml: OK, 5 experiments\n"
    out = project("validate", LABREPORT_MAX_EXPERIMENTS="4")
    assert (out.status, out.err_lines[0]) == (2, (
        "experiments.toml:14: sweep #1 (from 'raw-1'): key 'vary': expands to 4 experiments, 5 in all; the limit is 4"
        " (set LABREPORT_MAX_EXPERIMENTS to change it)"))
    many = "".join(BASE.split("\n", 3)[3].replace('"raw-1"', f'"raw-{i}"') + "\n" for i in range(3))
    (project.folder / "experiments.toml").write_text(many)
    out = project("list", LABREPORT_MAX_EXPERIMENTS="2")
    assert (out.status, out.err_lines[0]) == (2, (
        "experiments.toml:1: 3 [[experiment]] tables; the limit is 2 experiments in all (set LABREPORT_MAX_EXPERIMENTS"
        " to change it)"))


def test_the_runs_limit_message_counts_one_experiment_and_a_limit_of_one_in_the_singular(project):
    (project.folder / "experiments.toml").write_text(BASE)
    assert project("validate").stdout == "experiments.toml: OK, 1 experiment\n"
    (project.folder / "experiments.toml").write_text(BASE + "\n" + BASE.split("\n", 3)[3].replace('"raw-1"', '"raw-2"'))
    out = project("validate", LABREPORT_MAX_EXPERIMENTS="1")
    assert (out.status, out.err_lines[0]) == (2, (
        "experiments.toml:4: 2 [[experiment]] tables; the limit is 1 experiment in all (set LABREPORT_MAX_EXPERIMENTS"
        " to change it)"))
    (project.folder / "experiments.toml").write_text(BASE + "repeats = 5\n")
    out = project("validate", LABREPORT_MAX_EXPERIMENTS="1")
    assert (out.status, out.err_lines[0]) == (2, (
        "experiments.toml:11: experiment 'raw-1': key 'repeats': 1 experiment with its repeats makes 5 runs;"
        " the limit is 1 run in all (experiments x repeats; set LABREPORT_MAX_EXPERIMENTS to change it)"))
    (project.folder / "experiments.toml").write_text(BASE + 'repeats = 2\n\n[[sweep]]\nfrom = "raw-1"\n'
                                                      "vary = { hidden = [3] }\n")
    out = project("validate", LABREPORT_MAX_EXPERIMENTS="3")
    assert (out.status, out.err_lines[0]) == (2, (
        "experiments.toml:15: sweep #1 (from 'raw-1'): key 'vary': expands to 1 experiment (2 runs with their"
        " repeats), 4 runs in all; the limit is 3 runs (experiments x repeats; set LABREPORT_MAX_EXPERIMENTS to"
        " change it)"))


def test_the_limit_counts_runs_experiments_times_repeats(project):
    """repeats multiplies the training: 51 experiments x 20 repeats = 1,020 runs > 1,000; the message
    names the experiment where the count crosses the limit, and a sweep's variants count their runs."""
    many = "[defaults]\nrepeats = 20\n" + "".join(
        BASE.split("\n", 3)[3].replace('"raw-1"', f'"raw-{i}"') + "\n" for i in range(51))
    (project.folder / "experiments.toml").write_text(many)
    out = project("validate")
    crossing = 3 + 8 * 49  # the 50th experiment's header: 51 + 50 x 19 = 1,001 runs
    assert (out.status, out.err_lines) == (2, [
        f"experiments.toml:{crossing}: experiment 'raw-49': key 'repeats': 51 experiments with their repeats make"
        " 1,020 runs; the limit is 1,000 runs in all (experiments x repeats; set LABREPORT_MAX_EXPERIMENTS to"
        " change it)", "1 error in experiments.toml; nothing was run or written."])
    (project.folder / "experiments.toml").write_text(BASE + "repeats = 3\n" + '\n[[sweep]]\nfrom = "raw-1"\n'
                                                      "vary = { hidden = [1, 2] }\n")
    assert project("validate").stdout == "experiments.toml: OK, 3 experiments (9 runs with their repeats)\n"
    out = project("validate", LABREPORT_MAX_EXPERIMENTS="8")
    assert (out.status, out.err_lines[0]) == (2, (
        "experiments.toml:15: sweep #1 (from 'raw-1'): key 'vary': expands to 2 experiments (6 runs with their"
        " repeats), 9 runs in all; the limit is 8 runs (experiments x repeats; set LABREPORT_MAX_EXPERIMENTS to"
        " change it)"))


def test_a_config_file_larger_than_the_limit_or_endless_is_refused_unread(project, tmp_path):
    big = project.folder / "big.toml"
    big.write_text(BASE + "# " + "x" * loader.MAX_CONFIG_BYTES + "\n")
    refused(project, ["big.toml: larger than 1,000,000 bytes; an experiments file is a few kB"], config="big.toml")
    out = project("validate", "-c", "/dev/zero")  # endless: read up to the limit, never more
    assert (out.status, out.err_lines[0]) == (2, "/dev/zero: larger than 1,000,000 bytes; an experiments file is a few kB")


def test_a_config_path_naming_a_folder_is_refused(project):
    (project.folder / "conf").mkdir()
    refused(project, ["conf: is a folder; name the experiments file (e.g. -c experiments.toml)"], config="conf")


def test_bom_deep_nesting_and_a_huge_sweep_through_real_subprocesses(tmp_path):
    """The same code path as the in-process cases, as a user's shell runs it."""
    for text, first in (("\ufeff" + BASE, "experiments.toml:1: the file starts with a UTF-8 byte-order mark (BOM)"),
                        (BASE + "x = " + "[" * 100_000 + "\n", "experiments.toml:11: nested deeper than 32 levels"),
                        (MILLION_SWEEP, "experiments.toml:14: sweep #1 (from 'raw-1'): key 'vary': expands to 2,560,000")):
        (tmp_path / "experiments.toml").write_text(text, encoding="utf-8")
        for command in ("validate", "run", "list"):
            out = cli(command, cwd=tmp_path)
            assert out.returncode == 2 and out.stderr.startswith(first), (command, out.stderr)
            assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 2
    assert not (tmp_path / "build").exists()


def test_a_long_chain_of_from_links_is_cut_instead_of_overflowing_the_stack(project):
    """Declared backwards, each experiment inherits from the next: resolving was one Python frame per link."""
    n = 200
    text = "".join(f'[[experiment]]\nname = "a{i}"\nfrom = "a{i + 1}"\n\n' for i in range(n - 1))
    text += BASE.split("\n", 3)[3].replace('"raw-1"', f'"a{n - 1}"')
    (project.folder / "experiments.toml").write_text(text)
    refused(project, [f"experiments.toml:{4 * i + 3}: experiment 'a{i}': key 'from': a chain of more than 64 'from'"
                      " links" for i in (64, 129, 194)])


def test_eighty_thousand_mistakes_print_a_hundred_lines_and_the_count(project):
    text = BASE + "".join(f"k{i}x = 1\n" for i in range(80_000))
    (project.folder / "experiments.toml").write_text(text)
    out = project("validate")
    assert out.status == 2 and len(out.err_lines) == 102
    assert out.err_lines[0] == "experiments.toml:11: experiment 'raw-1': unknown key 'k0x'"
    assert out.err_lines[-2:] == ["experiments.toml: ... and 79,900 more errors",
                                  "80,000 errors in experiments.toml; nothing was run or written."]


CASE_TWINS = [
    ("two experiments", BASE + "\n" + BASE.split("\n", 3)[3].replace('"raw-1"', '"RAW-1"'),
     ["experiments.toml:12: experiment 'RAW-1': name 'RAW-1' differs from 'raw-1' (line 4) only by case; their results"
      " would share a folder on macOS and Windows"]),
    ("a sweep variant", sweep("{ hidden = [1] }", name="Raw-1"),
     ["experiments.toml:12: sweep #1 (from 'raw-1'), variant 'Raw-1': expands to 'Raw-1', which differs from 'raw-1'"
      " only by case; their results would share a folder on macOS and Windows"]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASE_TWINS], ids=[c[0] for c in CASE_TWINS])
def test_names_differing_only_by_case_are_refused(project, text, expected):
    (project.folder / "experiments.toml").write_text(text)
    refused(project, expected)


def test_huge_values_and_keys_are_cut_in_messages(project):
    (project.folder / "experiments.toml").write_text(
        _with("batch_size = 64", 'batch_size = "' + "6" * 50_000 + '"') + "k" * 5000 + " = 1\n")
    refused(project, [
        f"experiments.toml:9: experiment 'raw-1': key 'batch_size': expected an integer, got a string ('{'6' * 59}...)",
        f"experiments.toml:11: experiment 'raw-1': unknown key '{'k' * 59}...",
    ])
