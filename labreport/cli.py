"""Command line: ``labreport {list,validate,data,run,status,render,report,check,export,clean,verify,grade}``.

Heavy modules (TensorFlow via the engine, matplotlib/WeasyPrint via render) are imported
inside the command that needs them, so ``list``/``check`` answer instantly and a fully
cached ``report`` never loads TensorFlow.
Exit status: 0 ok, 1 a run or render failed, 2 bad input (config, arguments, data),
3 build/ locked by another process, 130 interrupted.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from labreport import __version__, env
from labreport.config.loader import load, select
from labreport.config.param_counts import breakdown, fmt
from labreport.errors import ConfigError, UserError
from labreport.results.layout import BuildLayout

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
# OSErrors that mean "this machine's files or disk", not "labreport is wrong".
_FIXABLE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                   errno.EISDIR, errno.ENAMETOOLONG}


def _jobs(text: str) -> int:
    """--jobs: 0 (one per core) .. env.MAX_JOBS."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {env.MAX_JOBS}, got {text!r}") from None
    if not 0 <= value <= env.MAX_JOBS:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {env.MAX_JOBS}, got {value}")
    return value


def _options(*add: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """An option group shared by several subcommands (an argparse parent, mkdocs' common_options)."""
    group = argparse.ArgumentParser(add_help=False)
    for adder in add:
        adder(group)
    return group


def _parser(settings: dict | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``settings`` are the parsed LABREPORT_* variables (env.read()) giving defaults."""
    settings = settings or {}
    build_default = settings.get("LABREPORT_BUILD", "build")

    def config_and_build(g: argparse.ArgumentParser) -> None:
        g.add_argument("-c", "--config", default="experiments.toml", help="the experiments file (default: %(default)s)")
        g.add_argument("-b", "--build", default=build_default, help="output folder (default: %(default)s)")

    def quick(g: argparse.ArgumentParser) -> None:
        g.add_argument("--quick", action="store_true", default=bool(settings.get("LABREPORT_QUICK")),
                       help="smoke run: few epochs on a data subsample, stored apart from full runs (env LABREPORT_QUICK=1)")

    def training(g: argparse.ArgumentParser) -> None:
        g.add_argument("-j", "--jobs", type=_jobs, default=settings.get("LABREPORT_JOBS", 1),
                       help="experiments trained in parallel processes, 0 = one per core (default: %(default)s)")
        g.add_argument("--scheduler", default=settings.get("LABREPORT_SCHEDULER"),
                       help="Dask scheduler address tcp://HOST:PORT to ship experiments to a cluster")

    def rendering(g: argparse.ArgumentParser) -> None:
        g.add_argument("--no-pdf", action="store_true", help="only write the HTML")
        g.add_argument("--templates", help="a folder of templates overriding the bundled ones")
        # --- issue G (render side): warnings are printed; --strict makes them fail the command
        g.add_argument("--strict", action="store_true", help="exit 1 when rendering printed a warning")

    p = argparse.ArgumentParser(
        prog="labreport",
        description="Run the experiments of experiments.toml and render build/report.{html,pdf}.",
    )
    p.add_argument("--version", action="version", version=f"labreport {__version__}")
    common, quick_group = _options(config_and_build), _options(quick)
    training_group, rendering_group = _options(training), _options(rendering)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("list", parents=[common], help="print the resolved experiments (after defaults and sweeps)")
    s.add_argument("--params", action="store_true", help="add each model's trainable parameters (no TensorFlow)")
    s.add_argument("--layers", action="store_true", help="add the per-layer parameter arithmetic")

    sub.add_parser("validate", parents=[common], help="only validate the experiments file (exit 2 on errors)")

    s = sub.add_parser("data", parents=[common], help="fetch and verify MNIST and Fashion-MNIST into build/data"
                       " (or $LABREPORT_DATA_DIR)")

    s = sub.add_parser("run", parents=[common, quick_group, training_group],
                       help="train the experiments whose results are missing or stale")
    s.add_argument("names", nargs="*", help="only these experiments (default: all)")
    s.add_argument("--force", action="store_true", help="re-train even if a fresh result exists")
    s.add_argument("--dry-run", action="store_true", help="only show what would be trained, and why")

    s = sub.add_parser("status", parents=[common, quick_group],
                       help="which results are up to date, and why the others are not (no training)")
    s.add_argument("names", nargs="*", help="only these experiments (default: all)")

    s = sub.add_parser("render", parents=[common, quick_group, rendering_group],
                       help="render build/report.html and .pdf from stored results (no training)")

    s = sub.add_parser("report", parents=[common, quick_group, training_group, rendering_group],
                       help="run what is stale, then render (what `make report` does)")

    s = sub.add_parser("check", parents=[common, quick_group], help="check the lab's hand-in requirements ([requirements] in the TOML)")

    s = sub.add_parser("export", parents=[common, quick_group],
                       help="the results table (one row per run: per experiment, or per repeat; the report's numbers) as CSV, Markdown or JSON")
    s.add_argument("--format", choices=("csv", "md", "json"), default="csv", help="(default: %(default)s)")
    s.add_argument("-o", "--output", help="write to this file (default: standard output)")

    s = sub.add_parser("clean", parents=[common], help="delete generated output (keeps data, features and runs unless --all)")
    s.add_argument("--all", action="store_true", help="also delete trained results, features and data")

    s = sub.add_parser("verify", help="check a report PDF against the experiments.toml and results.json attached to it"
                       " (exit 0 all match, 1 a mismatch, 2 unreadable)")
    s.add_argument("pdf", metavar="REPORT.pdf", help="a report made by `labreport render`")
    s.add_argument("--rerun", type=int, default=0, metavar="K",
                   help="also re-train K experiments (chosen ones first) and compare their test accuracy:"
                   " run 1 of each, and of each experiment with 2 or more measured runs (repeats) also one"
                   " of its runs 2..N picked at random, so a repeated experiment costs two trainings")
    s.add_argument("--rerun-run", type=int, default=None, metavar="R",
                   help="with --rerun: re-train run R (2 or more) of the repeated experiments instead of a"
                   " random one")
    s.add_argument("--tolerance", type=float, default=0.01,
                   help="largest accepted |re-trained - claimed| test accuracy for --rerun (default: %(default)s)")
    s.add_argument("-b", "--build", default=build_default,
                   help="where --rerun finds (or fetches) the data sets (default: %(default)s)")
    s.add_argument("-q", "--quiet", action="store_true", help="print only the mismatches, notes and the verdict")
    s.add_argument("--allow-templates", action="store_true",
                   help="accept reports rendered with non-default templates (noted instead of a mismatch)")

    s = sub.add_parser("grade", help="a grading table (CSV + HTML) over many report PDFs")
    s.add_argument("inputs", nargs="+", metavar="DIR_OR_PDF", help="report PDFs, or folders searched for *.pdf")
    s.add_argument("-o", "--output", default="build/grades", help="folder for grades.csv, grades.html,"
                   " overview.html and the LMS file (default: %(default)s)")
    # --- grading a class (issue T): rubric, LMS export, isolation limits
    s.add_argument("--rubric", metavar="FILE", help="a TOML file with a [grading] table (the teacher's"
                   " experiments.toml or a rubric file; default: the lab's rubric, out of 20)")
    s.add_argument("--lms", choices=("moodle", "csv"), help="also write one row per student for an LMS:"
                   " moodle.csv (Moodle grade import) or students.csv")
    s.add_argument("-j", "--jobs", type=int, default=None, help="submissions graded at once, each in its"
                   " own process (default: the number of cores)")
    s.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds allowed per submission before it is stopped (default: %(default)s)")
    s.add_argument("--memory", type=int, default=2048, metavar="MB",
                   help="memory allowed per submission, in MiB (default: %(default)s)")
    return p


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given and not given[0].startswith("-") and given[0] not in COMMANDS:
        # argparse lists the choices but does not guess; a typo deserves the likely command.
        guess = difflib.get_close_matches(given[0], COMMANDS, n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        print(f"labreport: unknown command {given[0]!r}{hint}; commands: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return EXIT_USAGE
    settings, env_problems = env.read()  # before parsing: the variables give the options' defaults
    args = _parser(settings).parse_args(argv)
    bad = [env_problems[name] for name in ENV_USED_BY[args.command] if name in env_problems]
    if bad:  # only the variables this command reads: a bad LABREPORT_JOBS does not stop `list`
        print(f"labreport: {bad[0]}", file=sys.stderr)
        return EXIT_USAGE
    explicit = any(a in ("-b", "--build") or a.startswith(("-b", "--build=")) for a in given)
    # Messages about the build folder name where it came from.
    args.build_option = "LABREPORT_BUILD" if "LABREPORT_BUILD" in settings and not explicit else "-b"
    # TensorFlow's C++ start-up chatter (oneDNN, CPU features) buries the progress lines;
    # set before any worker is spawned so they inherit it. An explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        n = e.total
        print(f"{n:,} error{'s' * (n != 1)} in {args.config}; nothing was run or written.", file=sys.stderr)
        return e.exit_status
    except BrokenPipeError:  # `labreport list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as e:
        if args.command in ("run", "report"):  # the runner's line says what was kept, if it got that far
            print("\n" + (getattr(e, "message", "")
                          or "interrupted: finished experiments are kept; run again to continue."), file=sys.stderr)
        else:  # nothing was being trained: no promise about experiments
            print(f"\ninterrupted: labreport {args.command} stopped; files already written are whole.",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        if e.errno not in _FIXABLE_ERRNOS or not e.filename:
            raise
        # A folder made read-only or a full disk half-way: the user's to fix, not a bug. Every
        # file is written atomically, so what was there before is intact.
        target = e.filename2 or e.filename  # os.replace(temp, target): name the file the user knows
        print(f"labreport: {target}: {e.strerror}; files written before are intact", file=sys.stderr)
        return EXIT_USAGE
    except UserError as e:  # anything else is a bug and keeps its traceback
        print(f"labreport: {e}", file=sys.stderr)
        return e.exit_status


# --------------------------------------------------------------------------- commands
def cmd_list(args) -> int:
    config = load(args.config)
    rows = []
    for spec in config.experiments:
        row = [spec.name + (" *" if spec.chosen else ""), spec.part, spec.summary, str(spec.batch_size),
               str(spec.epochs)]
        if args.params:
            row.append(fmt(breakdown(spec).total))
        rows.append(row)
    header = ["name", "part", "model", "batch", "epochs"] + (["params"] if args.params else [])
    n_runs = sum(spec.repeats for spec in config.experiments)
    if n_runs > len(config.experiments):  # the column only when some experiment repeats
        header.append("runs")
        for row, spec in zip(rows, config.experiments):
            row.append(str(spec.repeats))
    _print_table(header, rows, right={"batch", "epochs", "params", "runs"})
    chosen = ", ".join(f"{s.part}: {s.name}" for s in config.experiments if s.chosen)
    runs = f" ({n_runs} runs with their repeats)" if n_runs > len(config.experiments) else ""
    n = len(config.experiments)
    print(f"\n{n} experiment{'s' * (n != 1)}{runs} in {args.config}; * = chosen ({chosen or 'none'})")
    if args.layers:
        for spec in config.experiments:
            b = breakdown(spec)
            print(f"\n{spec.name}: {b.topology}")
            for layer in b.layers:
                arith = ""
                if layer.n_params:
                    arith = f"  {layer.params_formula}"
                print(f"  {layer.description:<48}{arith}")
            print(f"  total: {b.total_formula}")
    return 0


def cmd_validate(args) -> int:
    config = load(args.config)
    n_runs = sum(spec.repeats for spec in config.experiments)
    runs = f" ({n_runs} runs with their repeats)" if n_runs > len(config.experiments) else ""
    n = len(config.experiments)
    print(f"{args.config}: OK, {n} experiment{'s' * (n != 1)}{runs}")
    return 0


def cmd_data(args) -> int:
    from labreport.train import datasets

    data_dir = BuildLayout(_build(args, create=False)).data_dir  # $LABREPORT_DATA_DIR wins, as for run and render
    for name in datasets.NAMES:
        t0 = time.perf_counter()
        ds = datasets.load(name, data_dir=data_dir, log=lambda m: print(f"  {m}", file=sys.stderr))
        print(f"{name}: {len(ds.x_train):,} train + {len(ds.x_test):,} test images, verified,"
              f" from {ds.source} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_run(args) -> int:
    config = load(args.config)
    select(config, args.names)  # a name that matches nothing: one line, before anything is done
    from labreport.train import runner

    if args.dry_run:  # writes nothing: no build folder needed
        build = Path(args.build)
        if build.exists() and not build.is_dir():
            _build(args)  # the same message as the commands that write
        _print_staleness(config, build, args, only_stale=not args.force)
        return 0
    build = _build(args)
    summary = runner.run(config, build, quick=args.quick, names=args.names or None, jobs=args.jobs,
                         force=args.force, executor=_executor(args))
    return EXIT_FAILED if summary.failed else 0


def cmd_status(args) -> int:
    config = load(args.config)
    select(config, args.names)  # a name that matches nothing: one line, before anything is done
    build = Path(args.build)
    if build.exists() and not build.is_dir():
        _build(args)  # the same message as the commands that write
    _print_staleness(config, build, args, only_stale=False)
    return 0


def _print_staleness(config, build: Path, args, *, only_stale: bool) -> None:
    """One line per selected experiment: its status and why (dvc status style), then a count.

    An experiment with repeats is decided run by run: ``status`` prints one line for it
    ("2 of 3 runs stored" and why the others are not), ``run --dry-run`` one line per run
    it would train ("raw-tanh-300 run 3/3").
    """
    from labreport.results import staleness, store

    layout = BuildLayout(build, args.quick)
    specs = select(config, args.names or None)
    per_experiment = staleness.check_all_runs(config, layout, specs=specs)
    lines = []
    for spec, runs in zip(specs, per_experiment):
        kept = [r for r in store.stored_repeats(build, spec.name, args.quick) if r > spec.repeats]
        if only_stale:
            lines += [(d.status, d.label, d.why()) for d in runs if not d.fresh]
        elif spec.repeats == 1 and not kept:
            lines.append((runs[0].status, spec.name, runs[0].why()))
        else:
            lines.append(_runs_line(spec, runs, kept))
    width = max((len(label) for _, label, _ in lines), default=0)
    for status, label, why in lines:
        print(f"{status:<8} {label:<{width}}  {why}".rstrip())
    decisions = [d for runs in per_experiment for d in runs]
    n_todo = sum(not d.fresh for d in decisions)
    verb = "would be trained" if only_stale else "to train"
    what = " run(s)" if len(decisions) > len(specs) else ""
    print(f"{len(decisions) - n_todo}{what} up to date, {n_todo} {verb}"
          f"{' (--force: all)' if only_stale and args.force else ''}"
          f"{' (--quick results)' if args.quick else ''}")


def _runs_line(spec, runs, kept: list[int]) -> tuple[str, str, str]:
    """(status, name, why) of an experiment with repeats: fresh only when every run is; the
    runs to train grouped by reason ("runs 2, 3: new: never run")."""
    stale = [d for d in runs if not d.fresh]
    status = next((st for st in ("failed", "stale", "missing") if any(d.status == st for d in stale)), "fresh")
    by_reason: dict[str, list[int]] = {}
    for d in stale:
        by_reason.setdefault(d.why(), []).append(d.repeat)
    parts = [f"{len(runs) - len(stale)} of {spec.repeats} run{'s' * (spec.repeats > 1)} stored"]
    parts += [f"run{'s' * (len(rs) > 1)} {', '.join(map(str, rs))}: {why}" for why, rs in by_reason.items()]
    if kept:
        parts.append(f"{len(kept)} more run{'s' * (len(kept) > 1)} kept on disk (repeat{'s' * (len(kept) > 1)}"
                     f" {', '.join(map(str, kept))}; unused with repeats = {spec.repeats})")
    return status, spec.name, "; ".join(parts)


def _executor(args):
    """A Dask executor when --scheduler is given, else None (the runner's local pool)."""
    if not args.scheduler:
        return None
    from labreport.train import dask_executor

    return dask_executor.DaskExecutor(args.scheduler)


def cmd_render(args) -> int:
    config = load(args.config)
    from labreport.report import render

    result = render.render(config, _build(args), quick=args.quick, pdf=not args.no_pdf,
                           templates_dir=Path(args.templates) if args.templates else None)
    for path in (result.html_path, result.pdf_path):
        if path:
            cached = path == result.pdf_path and result.pdf_cached
            print(f"{'unchanged' if cached else 'wrote'} {path}")
    # --- issue G: render's warnings reach the terminal; --strict turns them into exit 1
    for warning in result.warnings:
        print(f"labreport: warning: {warning}", file=sys.stderr)
    if result.warnings and getattr(args, "strict", False):
        print(f"labreport: {len(result.warnings)} warning(s) and --strict: exit 1", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_report(args) -> int:
    config = load(args.config)
    from labreport.train import runner

    build = _build(args)
    summary = runner.run(config, build, quick=args.quick, jobs=args.jobs, executor=_executor(args))
    status = cmd_render(args)
    if summary.failed:
        unit = "run(s)" if any(s.repeats > 1 for s in config.experiments) else "experiment(s)"
        print(f"{summary.failed} {unit} failed; the report marks them.", file=sys.stderr)
        return EXIT_FAILED
    return status


def cmd_check(args) -> int:
    from labreport.grading import checks

    config = load(args.config)
    build = Path(args.build)
    html_path = build / "report.html"
    html = html_path.read_text(encoding="utf-8") if html_path.exists() else None
    results = checks.evaluate(config, build, quick=args.quick, html=html)
    print(checks.format_checks(results))
    if html is None:
        print(f"(no {html_path} yet: run `make report` to check the report itself)")
    return 0 if all(c.ok for c in results) else EXIT_FAILED


def cmd_export(args) -> int:
    config = load(args.config)
    from labreport.results import frame, store

    table = frame.load_results(config, Path(args.build), quick=args.quick)
    text = frame.export(table, args.format)
    if args.output:
        store.write_text_atomic(Path(args.output), text)
        n_experiments = table["name"].nunique()
        runs = f", {len(table)} runs" if len(table) != n_experiments else ""
        print(f"wrote {args.output} ({n_experiments} experiment{'s' * (n_experiments != 1)}{runs}, {args.format})")
    else:
        sys.stdout.write(text)
    return 0


def cmd_clean(args) -> int:
    from labreport.results import store

    keep = set() if args.all else set(BuildLayout.EXPENSIVE)
    for path in store.clean_build(Path(args.build), keep=keep, option=args.build_option):
        print(f"removed {path}")
    return 0


def cmd_verify(args) -> int:
    from labreport.grading import verify

    if args.rerun < 0:
        raise UserError(f"--rerun must be >= 0, got {args.rerun}")
    if not 0 <= args.tolerance < 1:
        raise UserError(f"--tolerance is an absolute test accuracy between 0 and 1, got {args.tolerance:g}")
    if args.rerun_run is not None and not args.rerun:
        raise UserError("--rerun-run R needs --rerun K (it says which run of the K experiments to re-train)")
    build = _build(args) if args.rerun else Path(args.build)  # --rerun caches data sets there
    result = verify.verify(args.pdf, rerun_k=args.rerun, tolerance=args.tolerance, build=build,
                           allow_templates=args.allow_templates, rerun_run=args.rerun_run)
    print(verify.format_report(result, quiet=args.quiet))
    return 0 if result.ok else EXIT_FAILED


def cmd_grade(args) -> int:
    from labreport.grading import grade, rubric
    from labreport.results import store

    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; -o/--output names the folder for {grade.CSV_NAME} and {grade.HTML_NAME}")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    if not args.timeout > 0 or args.memory < 64:
        raise UserError(f"--timeout must be > 0 and --memory >= 64 (MiB); got {args.timeout:g} and {args.memory}")
    the_rubric = rubric.load(args.rubric) if args.rubric else rubric.DEFAULT  # bad rubric: exit 2 before grading
    store.output_folder(out_dir, option="-o")  # unwritable, or a path through a file: before grading
    files = grade.collect(args.inputs)
    finished = []

    def progress(g) -> None:  # grading a class takes minutes: say what is done (stderr: stdout is the table)
        finished.append(g)
        print(f"[{len(finished)}/{len(files)}] {g.verification:<12} {g.file}", file=sys.stderr, flush=True)

    grades = grade.grade(files, jobs=args.jobs, timeout_s=args.timeout, memory_mb=args.memory, on_done=progress)
    classed = grade.assess(grades, the_rubric)
    for line in grade.summary_lines(grades, classed):
        print(line)
    paths = grade.write(grades, out_dir, classed, lms_format=args.lms)
    if args.lms == "moodle":
        rows, nobody = grade.students(classed)
        no_id = [f"{r.name} ({r.group or r.file})" for r in rows if not r.student_id] + nobody
        if no_id:  # Moodle matches rows by identifier: these students would get no grade
            print(f"warning: {len(no_id)} student(s) without an id are not in moodle.csv: {'; '.join(no_id[:10])}"
                  + (" ..." if len(no_id) > 10 else "") + " (give authors as { name = ..., id = ... })",
                  file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in paths[:-1])} and {paths[-1]}"
          f" ({len(grades)} submission{'s' * (len(grades) != 1)})")
    return 0


_CONFIG_ENV = ("LABREPORT_MAX_EXPERIMENTS",)
_BUILD_ENV = ("LABREPORT_BUILD", "LABREPORT_DATA_DIR")
_QUICK_ENV = ("LABREPORT_QUICK", "LABREPORT_QUICK_EPOCHS", "LABREPORT_QUICK_TRAIN", "LABREPORT_QUICK_TEST")
_TRAIN_ENV = ("LABREPORT_QUICK", "LABREPORT_OFFLINE", "LABREPORT_JOBS", "LABREPORT_SCHEDULER",
              "LABREPORT_QUICK_EPOCHS", "LABREPORT_QUICK_TRAIN", "LABREPORT_QUICK_TEST", "LABREPORT_FUSION",
              "LABREPORT_MEMORY_GB")
# The LABREPORT_* variables each command reads (env.VARIABLES says what they mean).
ENV_USED_BY = {
    "list": _CONFIG_ENV,
    "validate": _CONFIG_ENV,
    "data": _BUILD_ENV + ("LABREPORT_OFFLINE",),
    "run": _CONFIG_ENV + _BUILD_ENV + _TRAIN_ENV,
    "status": _CONFIG_ENV + _BUILD_ENV + _QUICK_ENV,
    "render": _CONFIG_ENV + _BUILD_ENV + ("LABREPORT_QUICK",),
    "report": _CONFIG_ENV + _BUILD_ENV + _TRAIN_ENV,
    "check": _CONFIG_ENV + _BUILD_ENV + ("LABREPORT_QUICK",),
    "export": _CONFIG_ENV + _BUILD_ENV + _QUICK_ENV,
    "clean": ("LABREPORT_BUILD",),
    "verify": _CONFIG_ENV + _BUILD_ENV + _TRAIN_ENV,
    "grade": _CONFIG_ENV,
}

COMMANDS = {
    "list": cmd_list,
    "validate": cmd_validate,
    "data": cmd_data,
    "run": cmd_run,
    "status": cmd_status,
    "render": cmd_render,
    "report": cmd_report,
    "check": cmd_check,
    "export": cmd_export,
    "clean": cmd_clean,
    "verify": cmd_verify,
    "grade": cmd_grade,
}


# --------------------------------------------------------------------------- helpers
def _build(args, create: bool = True) -> Path:
    """The -b folder of a command that writes there, checked (store.check_build_folder)."""
    from labreport.results import store

    build = Path(args.build)
    store.check_build_folder(build, option=getattr(args, "build_option", "-b"), create=create)
    data_dir = os.environ.get("LABREPORT_DATA_DIR")
    if data_dir and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise store.BuildFolderError(f"LABREPORT_DATA_DIR={data_dir}: is a file, not a folder")
    return build


def _print_table(header: list[str], rows: list[list[str]], right: set[str] = frozenset()) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    def line(cells):
        return "  ".join(
            str(c).rjust(w) if h in right else str(c).ljust(w) for c, w, h in zip(cells, widths, header)
        ).rstrip()
    print(line(header))
    for row in rows:
        print(line(row))

