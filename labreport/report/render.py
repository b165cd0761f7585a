"""Stored results -> build/report.html, build/results.json and build/report.pdf.

Two phases (pelican-style): first gather everything -- results (``store.read_result``),
words (``commentary``), figures (``figures``, drawn only when missing) -- into one
context of small frozen values; then write: the HTML through Jinja2 (StrictUndefined,
autoescape), the aggregated results.json, and the PDF through WeasyPrint.

Safety: the students' ``comment`` is Markdown rendered with raw HTML disabled, links
limited to http(s) and no images; WeasyPrint gets a URL fetcher that serves only files
under build/ and the template folders (``LocalFetcher``) and refuses everything else, so
neither a comment nor a customised template can make the PDF read /etc/passwd or the web.

Speed: figures are named by a hash of their inputs, and the PDF is skipped when its
inputs (HTML, attachments, WeasyPrint version) are unchanged, so a re-render with
unchanged results draws nothing and lays out nothing. No TensorFlow is imported.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import mimetypes
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from labreport import __version__
from labreport.report import commentary
from labreport.results import store
from labreport.report.commentary import Run
from labreport.report.figures import EQUATIONS, FigureRef, Figures
from labreport.config.param_counts import fmt
from labreport.config.spec import CLASS_NAMES, PART_TITLES, PARTS, ExperimentSpec, LabConfig
from labreport.errors import RenderError, TemplateError
from labreport.results import staleness
from labreport.results.layout import BuildLayout

RESULTS_SCHEMA = 1
BANNER = "SMOKE RUN (--quick): numbers are not the lab's"
PDF_STAMP = ".report.pdf.stamp"
ENTRY_TEMPLATE = "report.html.j2"
STYLESHEET = "style.css"


class URLRefused(ValueError):
    """The PDF tried to load something outside build/ and the template folders."""


@dataclass(frozen=True)
class RenderResult:
    html_path: Path
    pdf_path: Path | None
    results_path: Path
    n_pages: int | None
    duration_s: float
    figures_drawn: int = 0
    pdf_cached: bool = False
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- templates
def default_templates_dir() -> Path:
    """The project's templates/ (next to the package: a source checkout or an editable install)."""
    here = Path(__file__).resolve().parent
    package = here.parent  # labreport/; the checkout's templates/ sits next to it
    for candidate in (package.parent / "templates", package / "templates"):
        if (candidate / ENTRY_TEMPLATE).is_file():
            return candidate
    raise RenderError(f"cannot find the report templates ({ENTRY_TEMPLATE}) next to {here};"
                      " pass templates_dir= (CLI: --templates DIR)")


def template_dirs(templates_dir: Path | None = None) -> list[Path]:
    """User folder first (it may override any subset of files), then the defaults."""
    if templates_dir and not Path(templates_dir).is_dir():
        raise TemplateError(f"{templates_dir}: no such templates folder")
    dirs = [Path(templates_dir).resolve()] if templates_dir else []
    default = default_templates_dir()
    if default not in dirs:
        dirs.append(default)
    return dirs


def make_environment(templates_dir: Path | None = None):
    import jinja2

    dirs = template_dirs(templates_dir)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
        undefined=jinja2.StrictUndefined,
        autoescape=True,  # every template is HTML; CSS is passed in as Markup, not templated
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        pct=commentary.pct,
        num=commentary.num,
        intc=lambda n: "—" if n is None else fmt(int(n)),
        seconds=commentary.seconds,
        slug=slug,
    )
    return env


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(name))


def _template_frame(code_file: str, dirs: Sequence[Path]) -> bool:
    return code_file.endswith((".j2", ".html", ".jinja")) or any(code_file.startswith(str(d)) for d in dirs)


def _in_template(exc: BaseException, dirs: Sequence[Path]) -> bool:
    """Whether the error was raised while executing template code (e.g. ``{{ 1/0 }}``)."""
    tb = exc.__traceback__
    while tb is not None:
        if _template_frame(tb.tb_frame.f_code.co_filename, dirs):
            return True
        tb = tb.tb_next
    return False


def _template_error(exc: Exception, dirs: Sequence[Path]) -> TemplateError:
    """Name the template file and line of a Jinja error (syntax, or undefined at render time)."""
    import jinja2

    filename, lineno = None, None
    if isinstance(exc, jinja2.TemplateSyntaxError):
        filename, lineno = exc.filename or exc.name, exc.lineno
        message = exc.message or str(exc)
    else:
        message = getattr(exc, "message", None) or str(exc)
        # Jinja rewrites tracebacks so template frames carry the template's file and line.
        tb = exc.__traceback__
        while tb is not None:
            code_file = tb.tb_frame.f_code.co_filename
            if _template_frame(code_file, dirs):
                filename, lineno = code_file, tb.tb_lineno
            tb = tb.tb_next
    if isinstance(exc, UnicodeDecodeError):
        # Raised while *loading* a template: name the file being read and the bad byte's line.
        tb = exc.__traceback__
        while tb is not None:
            loading = tb.tb_frame.f_locals.get("filename")
            if tb.tb_frame.f_code.co_name == "get_source" and isinstance(loading, str):
                filename = loading
                lineno = bytes(exc.object[: exc.start]).count(b"\n") + 1
            tb = tb.tb_next
    where = f"{filename}:{lineno}" if filename else "template"
    kind = type(exc).__name__
    return TemplateError(f"{where}: {kind}: {message}")


def _stylesheet(env) -> str:
    source, _filename, _uptodate = env.loader.get_source(env, STYLESHEET)
    return source


# --------------------------------------------------------------------------- markdown
_MARKDOWN = None


def _markdown():
    global _MARKDOWN
    if _MARKDOWN is None:
        from markdown_it import MarkdownIt
        from markupsafe import escape

        md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        md.validateLink = lambda url: urlsplit(url.strip()).scheme.lower() in ("http", "https")

        def image(self, tokens, idx, options, env):
            # Never an <img>: the PDF must not fetch anything a comment names.
            token = tokens[idx]
            alt = "".join(t.content for t in (token.children or [])) or token.content
            return f'<span class="image-removed">[image not shown: {escape(alt)}]</span>'

        md.add_render_rule("image", image)
        _MARKDOWN = md
    return _MARKDOWN


def markdown_to_html(text: str):
    """Students' Markdown -> safe HTML (Markup): no raw HTML, http(s) links only, no images."""
    from markupsafe import Markup

    if not text.strip():
        return Markup("")
    return Markup(_markdown().render(text))


# --------------------------------------------------------------------------- URL fetcher
def allowed_path(url: str, roots: Sequence[Path]) -> Path:
    """The local file ``url`` names if it lies under one of ``roots``; else raise URLRefused."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise URLRefused(f"refused to fetch {url!r}: only local files under build/ and the templates are allowed")
    if parts.netloc not in ("", "localhost"):
        raise URLRefused(f"refused to fetch {url!r}: remote file URL")
    path = Path(url2pathname(unquote(parts.path))).resolve()  # resolves symlinks and '..'
    for root in roots:
        if path.is_relative_to(Path(root).resolve()):
            if not path.is_file():
                raise URLRefused(f"refused to fetch {url!r}: not a file")
            return path
    raise URLRefused(f"refused to fetch {url!r}: outside {', '.join(str(r) for r in roots)}")


def make_url_fetcher(roots: Sequence[Path]):
    """A WeasyPrint URL fetcher that serves files under ``roots`` (and data: URLs) only."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class LocalFetcher(URLFetcher):
        def __init__(self) -> None:
            super().__init__(timeout=1, allowed_protocols=("file", "data"), allow_redirects=False)
            self.roots = [Path(r).resolve() for r in roots]
            self.refused: list[str] = []
            self.served: list[str] = []

        def fetch(self, url, headers=None):
            if url.lower().startswith("data:"):
                return super().fetch(url, headers)  # inline bytes: nothing is read or downloaded
            try:
                path = allowed_path(url, self.roots)
            except URLRefused as e:
                self.refused.append(url)
                raise e
            self.served.append(str(path))
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return URLFetcherResponse(path.as_uri(), path.read_bytes(), {"Content-Type": mime})

    return LocalFetcher()


# --------------------------------------------------------------------------- context
@dataclass(frozen=True)
class Fig:
    """What a template needs to print one figure."""

    src: str
    width_mm: float
    height_mm: float
    alt: str


@dataclass(frozen=True)
class Card:
    """One experiment as printed in its part."""

    name: str
    anchor: str
    part: str
    status: str  # ok | diverged | failed | not run
    error: str
    stale: bool
    chosen: bool
    best: bool
    description: str
    short: str
    hyper: tuple[tuple[str, str], ...]
    metrics: tuple[tuple[str, str], ...]
    curves: Fig | None
    confusion: Fig | None
    pairs: tuple[dict, ...]
    observations: tuple[str, ...]
    comment: Any  # Markup
    quick: bool


@dataclass(frozen=True)
class PartView:
    part: str
    title: str
    number: int
    anchor: str
    dataset: str
    intro: tuple[str, ...]
    summary: commentary.PartSummary
    compare: Fig | None
    samples: Fig | None
    hog: Fig | None
    cards: tuple[Card, ...]


@dataclass(frozen=True)
class ModelView:
    model: commentary.ModelComplexity
    part_title: str
    anchor: str


def _fig(ref: FigureRef | None, out_dir: Path) -> Fig | None:
    if ref is None or not ref.path.exists():
        return None
    return Fig(ref.src(out_dir), ref.width_mm, ref.height_mm, ref.alt)


def _is_stale(spec: ExperimentSpec, result: dict | None) -> bool:
    """The result was computed for other settings, data or engine than today's (one decision for every command)."""
    return bool(result) and staleness.decide(spec, result, quick=bool(result.get("quick"))).out_of_date


def load_runs(config: LabConfig, build: Path, quick: bool = False) -> list[Run]:
    return [Run(spec, store.read_result(build, spec.name, quick)) for spec in config.experiments]


def _metrics_rows(run: Run) -> tuple[tuple[str, str], ...]:
    if not run.result:
        return ()
    f = run.facts
    rows = [
        ("Test loss (score)", commentary.num(run.test_loss)),
        ("Test accuracy", commentary.pct(run.test_accuracy)),
        ("Macro F1", commentary.num(run.macro_f1)),
    ]
    m = run.metrics
    if isinstance(m.get("train_loss"), (int, float)):
        rows.append(("Training loss (last epoch)", commentary.num(m["train_loss"])))
    if isinstance(m.get("train_accuracy"), (int, float)):
        rows.append(("Training accuracy", commentary.pct(m["train_accuracy"])))
    rows.append(("Epochs run", f"{f['epochs_run']} of {run.spec.epochs}"))
    if f["best_epoch"]:
        rows.append(("Min. test loss", f"{commentary.num(f['min_test_loss'])} at epoch {f['best_epoch']}"))
    rows.append(("Run time", commentary.seconds(run.duration_s)))
    return tuple(rows)


def _part_intro(part: str, runs: Sequence[Run]) -> tuple[str, ...]:
    mine = [r.spec for r in runs if r.spec.part == part]
    if not mine:
        return ()
    datasets = sorted({s.dataset for s in mine})
    out = [f"{plural_exp(len(mine))} on {', '.join(commentary.dataset_title(d) for d in datasets)};"
           " 60,000 training and 10,000 test images, the test set doubling as validation data during"
           " training (so the 'test' curves are measured on it after every epoch)."]
    hogs = sorted({(s.hog.pixels_per_cell, s.hog.orientations) for s in mine if s.hog})
    for p, o in hogs:
        cells = 28 // p
        out.append(f"HOG with {p} x {p}-pixel cells and {o} orientations: ({28} // {p})^2 x {o} ="
                   f" {cells} x {cells} x {o} = {fmt(cells * cells * o)} features per image.")
    if any(s.conv for s in mine):
        stacks = sorted({commentary.flat_spec(s)["conv"] for s in mine if s.conv})
        out.append("Convolution stacks used (filters@kernel activation, each followed by 2 x 2 max pooling"
                   " unless stated otherwise in the spec): " + "; ".join(stacks) + ".")
    return tuple(out)


def plural_exp(n: int) -> str:
    return commentary.plural(n, "experiment")


def gather(config: LabConfig, build: Path, *, quick: bool = False, out_dir: Path | None = None,
           data_dir: Path | None = None, workers: int = 1) -> tuple[dict, int, list[Run]]:
    """Everything the templates print, as frozen values; returns (context, figures drawn, runs)."""
    build = Path(build)
    out_dir = Path(out_dir or build)
    runs = load_runs(config, build, quick)
    figs = Figures(build / "figures")
    data_dir = BuildLayout(build).data_dir if data_dir is None else data_dir

    # Phase 1: plan every figure (cheap: hashes only).
    refs: dict[str, FigureRef | None] = {}
    for r in runs:
        if r.result and any(r.history.values()):
            refs[f"curves:{r.name}"] = figs.curves(r.name, r.history, r.facts["best_epoch"])
        cm = (r.result or {}).get("confusion")
        if cm and r.status != "failed":
            refs[f"confusion:{r.name}"] = figs.confusion(r.name, cm, r.class_names)
    summaries = {p: commentary.part_summary(p, runs, config.requirements.min_variants_per_part)
                 for p in PARTS if any(r.spec.part == p for r in runs)}
    for p, s in summaries.items():
        rows = [{"name": row.name, "test_accuracy": row.test_accuracy, "test_loss": row.test_loss,
                 "chosen": row.chosen, "best": row.best}
                for row in s.rows if row.test_accuracy is not None and row.status == "ok"]
        refs[f"compare:{p}"] = figs.part_comparison(p, rows) if rows else None
    points = [{"name": r.name, "part": r.spec.part, "n_params": r.n_params, "test_accuracy": r.test_accuracy,
               "chosen": r.spec.chosen} for r in runs if r.status == "ok" and r.measured]
    refs["capacity"] = figs.capacity(points) if points else None
    datasets = {r.spec.dataset for r in runs}
    for d in sorted(datasets):
        refs[f"samples:{d}"] = figs.samples(d, data_dir, CLASS_NAMES[d])
    if any(r.spec.hog for r in runs):
        refs["hog"] = figs.hog_illustration(data_dir)
    for key, tex in EQUATIONS.items():
        refs[f"eq:{key}"] = figs.equation(tex, alt=key)

    # Phase 2: draw what is missing.
    drawn = figs.draw_pending(workers=workers)
    warnings = list(figs.errors)

    def fig(key: str) -> Fig | None:
        return _fig(refs.get(key), out_dir)

    best_names = {s.best for s in summaries.values()}
    cards_by_part: dict[str, list[Card]] = {p: [] for p in summaries}
    for r in runs:
        error = str((r.result or {}).get("error") or "")
        try:
            observations = tuple(commentary.observations(r))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            # A malformed result.json must not hide the other 23 experiments.
            observations = (f"This result could not be analysed ({type(exc).__name__}: {exc}).",)
            warnings.append(f"{r.name}: result could not be analysed: {type(exc).__name__}: {exc}")
        cards_by_part[r.spec.part].append(Card(
            name=r.name, anchor=f"exp-{slug(r.name)}", part=r.spec.part, status=r.status, error=error,
            stale=_is_stale(r.spec, r.result), chosen=r.spec.chosen, best=r.name in best_names,
            description=commentary.model_description(r.spec), short=commentary.short_model(r.spec),
            hyper=tuple(commentary.hyperparameters(r.spec)), metrics=_metrics_rows(r),
            curves=fig(f"curves:{r.name}"), confusion=fig(f"confusion:{r.name}"),
            pairs=tuple((r.result or {}).get("confused_pairs") or ()) if r.measured else (),
            observations=observations, comment=markdown_to_html(r.spec.comment),
            quick=bool((r.result or {}).get("quick")),
        ))
    parts = []
    for i, (p, s) in enumerate(summaries.items(), 1):
        mine = [r for r in runs if r.spec.part == p]
        dataset = mine[0].spec.dataset
        parts.append(PartView(
            part=p, title=PART_TITLES.get(p, p), number=i, anchor=f"part-{p}", dataset=dataset,
            intro=_part_intro(p, runs), summary=s, compare=fig(f"compare:{p}"),
            samples=fig(f"samples:{dataset}"), hog=fig("hog") if any(r.spec.hog for r in mine) else None,
            cards=tuple(cards_by_part[p]),
        ))
    models = []
    for p in summaries:
        run, why = commentary.chosen_run(p, runs)
        if run is not None:
            models.append(ModelView(commentary.model_complexity(run.spec, run.result, why), PART_TITLES.get(p, p),
                                    f"q2-{p}"))
    timing_rows, total_s = commentary.timings(runs)
    today = _dt.date.today().isoformat()
    n_status = {k: sum(1 for r in runs if r.status == k) for k in ("ok", "diverged", "failed", commentary.NOT_RUN)}
    context = {
        "meta": {
            "title": config.report.title,
            "authors": tuple(config.report.authors),
            "course": config.report.course,
            "group": config.report.group,
            "date": config.report.date or today,
        },
        "quick": quick,
        "banner": BANNER,
        "config_name": Path(config.path).name,
        "counts": {
            "experiments": len(runs),
            "parts": len(summaries),
            "ok": n_status["ok"],
            "diverged": n_status["diverged"],
            "failed": n_status["failed"],
            "not_run": n_status[commentary.NOT_RUN],
            "stale": sum(1 for cards in cards_by_part.values() for c in cards if c.stale),
            "quick_results": sum(1 for r in runs if (r.result or {}).get("quick")),
        },
        "q1": commentary.learning_algorithm([r.spec for r in runs]),
        "eq": {key: fig(f"eq:{key}") for key in EQUATIONS},
        "q2": tuple(models),
        "q3": commentary.capacity(runs),
        "capacity_fig": fig("capacity"),
        "parts": tuple(parts),
        "samples": {d: fig(f"samples:{d}") for d in sorted(datasets)},
        "appendix": {
            "toml": config.source_text,
            "render_versions": _render_versions(),
            "run_versions": commentary.versions_used(runs),
            "checksums": commentary.data_checksums(runs),
            "timings": timing_rows,
            "total_s": total_s,
            "problems": commentary.problems(runs),
        },
        "generator": f"labreport {__version__}",
        "warnings": tuple(warnings),
    }
    return context, drawn, runs


def _render_versions() -> tuple[tuple[str, str], ...]:
    from importlib import metadata

    out = [("labreport", __version__), ("python", platform.python_version())]
    for pkg in ("jinja2", "matplotlib", "weasyprint", "markdown-it-py", "numpy", "scikit-image"):
        try:
            out.append((pkg, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            out.append((pkg, "not installed"))
    return tuple(out)


# --------------------------------------------------------------------------- outputs
def results_document(config: LabConfig, runs: Sequence[Run], quick: bool) -> dict:
    """build/results.json: every result in config order plus the config text (stable bytes)."""
    return {
        "schema": RESULTS_SCHEMA,
        "generator": f"labreport {__version__}",
        "quick": quick,
        "config": Path(config.path).name,
        "experiments_toml": config.source_text,
        "experiments": [
            {"name": r.name, "part": r.spec.part, "status": r.status, "n_params": r.n_params,
             "stale": _is_stale(r.spec, r.result), "result": r.result}
            for r in runs
        ],
    }


def render_html(config: LabConfig, build: Path, *, quick: bool = False, templates_dir: Path | None = None,
                data_dir: Path | None = None, workers: int = 1) -> tuple[str, int, list[Run], list[str]]:
    """The report as HTML (figures drawn as needed); returns (html, figures drawn, runs, warnings)."""
    env = make_environment(templates_dir)
    dirs = template_dirs(templates_dir)
    context, drawn, runs = gather(config, build, quick=quick, data_dir=data_dir, workers=workers)
    try:
        from markupsafe import Markup

        template = env.get_template(ENTRY_TEMPLATE)
        html = template.render(**context, css=Markup(_stylesheet(env)))
    except Exception as exc:  # noqa: BLE001 - Jinja errors are user errors; others are bugs
        import jinja2

        if isinstance(exc, (jinja2.TemplateError, UnicodeDecodeError, OSError)) or _in_template(exc, dirs):
            raise _template_error(exc, dirs) from None
        raise
    return html, drawn, runs, list(context["warnings"])


def _pdf_key(html: str, attachments: Sequence[tuple[str, bytes]], user_dir: Path | None) -> str:
    """Everything the PDF depends on; figures are covered by their content-hashed names in the HTML."""
    import weasyprint

    h = hashlib.sha256()
    h.update(f"weasyprint {weasyprint.__version__}\n".encode())
    h.update(html.encode())
    for name, data in attachments:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    if user_dir is not None:  # assets a customised template may load (logo.png, ...)
        for path in sorted(Path(user_dir).rglob("*")):
            if path.is_file():
                st = path.stat()
                h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def write_pdf(html: str, pdf_path: Path, *, base_dir: Path, roots: Sequence[Path],
              attachments: Sequence[tuple[str, bytes, str]]) -> tuple[int, list[str]]:
    """HTML -> PDF with the safe fetcher; returns (pages, refused URLs)."""
    from weasyprint import HTML, Attachment
    import io

    fetcher = make_url_fetcher(roots)
    # WeasyPrint logs every refused/missing resource as a warning: collect them for the caller.
    log = logging.getLogger("weasyprint")
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    handler = _Collect()
    log.addHandler(handler)
    old_propagate = log.propagate
    log.propagate = False
    try:
        doc = HTML(string=html, base_url=str(base_dir.resolve()) + os.sep, url_fetcher=fetcher).render()
        pdf_attachments = [
            Attachment(file_obj=io.BytesIO(data), name=name, description=description, url_fetcher=fetcher)
            for name, data, description in attachments
        ]
        data = doc.write_pdf(attachments=pdf_attachments)
    finally:
        log.removeHandler(handler)
        log.propagate = old_propagate
    store.write_bytes_atomic(pdf_path, data)
    warnings = [f"refused: {u}" for u in fetcher.refused] + [r for r in records if "refused" not in r.lower()]
    return len(doc.pages), warnings


def render(config: LabConfig, build: Path, *, quick: bool = False, pdf: bool = True,
           templates_dir: Path | None = None, data_dir: Path | None = None,
           workers: int | None = None) -> RenderResult:
    """Write build/report.html, build/results.json and (``pdf``) build/report.pdf.

    ``quick`` reads build/quick/runs and stamps every page with the smoke-run banner.
    ``templates_dir``: a folder whose files override the default templates (any subset).
    ``workers``: processes for drawing figures (default: the CPU count, max 4).
    Raises TemplateError (file:line) for a broken template, RenderError if WeasyPrint fails.
    """
    t0 = time.perf_counter()
    build = Path(build)
    build.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, 4))
    html, drawn, runs, warnings = render_html(config, build, quick=quick, templates_dir=templates_dir,
                                              data_dir=data_dir, workers=workers)
    html_path = build / "report.html"
    store.write_text_atomic(html_path, html)

    results_bytes = (json.dumps(results_document(config, runs, quick), indent=1, allow_nan=False,
                                ensure_ascii=False) + "\n").encode()
    results_path = build / "results.json"
    store.write_bytes_atomic(results_path, results_bytes)

    pdf_path, n_pages, cached = None, None, False
    if pdf:
        pdf_path = build / "report.pdf"
        toml_name = Path(config.path).name or "experiments.toml"
        attachments = [
            (toml_name, config.source_text.encode("utf-8"), "The experiments.toml this report was built from"),
            ("results.json", results_bytes, "Every measured result of this report (labreport results.json)"),
        ]
        roots = [build, *template_dirs(templates_dir)]
        key = _pdf_key(html, [(n, d) for n, d, _ in attachments], templates_dir)
        stamp_path = build / PDF_STAMP
        stamp = _read_stamp(stamp_path)
        if pdf_path.exists() and stamp.get("key") == key:
            n_pages, cached = stamp.get("pages"), True
        else:
            try:
                n_pages, pdf_warnings = write_pdf(html, pdf_path, base_dir=build, roots=roots,
                                                  attachments=attachments)
            except Exception as exc:  # noqa: BLE001 - WeasyPrint internals; keep the cause
                raise RenderError(f"writing {pdf_path} failed: {type(exc).__name__}: {exc}") from exc
            warnings += pdf_warnings
            store.write_json_atomic(stamp_path, {"key": key, "pages": n_pages})
    return RenderResult(html_path, pdf_path, results_path, n_pages, time.perf_counter() - t0, drawn, cached,
                        tuple(warnings))


def _read_stamp(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
