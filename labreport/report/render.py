"""Stored results -> build/report.html, build/results.json and build/report.pdf (the writers).

Gather, then write (mkdocs' build, pelican's generate_context/generate_output): load the
runs (``store.read_result``) -> build the pure report model (``model.build``: sections,
anchors, cards, every printed number as a claim) -> plan and draw the figures it names
(``figures``, drawn only when missing) -> write the HTML through Jinja2 (StrictUndefined,
autoescape; the templates only read the model), check its internal links, then the
aggregated results.json and the PDF through WeasyPrint, with experiments.toml,
results.json and claims.json attached.

Safety: the students' ``comment`` is Markdown rendered with raw HTML disabled, links
limited to http(s) and no images; WeasyPrint gets a URL fetcher that serves only files
under build/ and the template folders (``LocalFetcher``) and refuses everything else, so
neither a comment nor a customised template can make the PDF read /etc/passwd or the web.

Speed: figures are named by a hash of their inputs, and the PDF is skipped when its
inputs (HTML, attachments, WeasyPrint version) are unchanged and the PDF on disk is the
one the stamp was written for, so a re-render with unchanged results draws nothing and
lays out nothing. No TensorFlow is imported.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import mimetypes
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from labreport import __version__
from labreport.report import claims, model
from labreport.report.figures import EQUATIONS, FigureRef, Figures
from labreport.report.model import BANNER, slug  # noqa: F401 - re-exported for verify and the tests
from labreport.results import store
from labreport.results.run import Run, best_run
from labreport.config.param_counts import fmt
from labreport.config.spec import CLASS_NAMES, LabConfig
from labreport.errors import RenderError, TemplateError  # noqa: F401 - render.RenderError/TemplateError
from labreport.results.layout import BuildLayout

RESULTS_SCHEMA = 1
CLAIMS_NAME = "claims.json"
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
    env.filters.update(  # for user templates; the default ones print the model's formatted strings
        pct=claims.pct,
        num=claims.num,
        intc=lambda n: "—" if n is None else fmt(int(n)),
        seconds=claims.seconds,
        slug=slug,
    )
    return env


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


# --------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class Fig:
    """What a template needs to print one figure."""

    src: str
    width_mm: float
    height_mm: float
    alt: str


def _fig(ref: FigureRef | None, out_dir: Path) -> Fig | None:
    if ref is None or not ref.path.exists():
        return None
    return Fig(ref.src(out_dir), ref.width_mm, ref.height_mm, ref.alt)


def load_runs(config: LabConfig, build: Path, quick: bool = False) -> list[Run]:
    """One Run per declared experiment (repeat 1), carrying its repeats 2..N in ``more_runs``."""
    out = []
    for spec in config.experiments:
        first, *more = spec.runs()
        out.append(Run(first, store.read_result(build, spec.name, quick),
                       tuple(Run(s, store.read_result(build, spec.name, quick, repeat=s.repeat)) for s in more)))
    return out


def plan_figures(report: model.Report, runs: Sequence[Run], figs: Figures, data_dir: Path) -> dict[str, FigureRef | None]:
    """A FigureRef for every figure key of the model (cheap: hashes only; nothing is drawn)."""
    by_name = {r.name: r for r in runs}
    refs: dict[str, FigureRef | None] = {}
    for key in report.figure_keys:
        kind, _, arg = key.partition(":")
        if kind == "curves":
            r = by_name[arg]
            agg = r.aggregate
            if r.repeated and agg.n_measured >= 2:  # the mean of the runs with a band of ± one std
                curves = agg.curves()
                refs[key] = figs.curves(r.name, {k: m for k, (m, _) in curves.items()}, None,
                                        std={k: sd for k, (_, sd) in curves.items()}, n_runs=agg.n_measured)
            else:
                d = r.detail
                refs[key] = figs.curves(r.name, d.history, d.facts["best_epoch"])
        elif kind == "confusion":
            r = by_name[arg]
            d = r.detail
            refs[key] = figs.confusion(r.name, d.result["confusion"], d.class_names)
        elif kind == "compare":
            rows = [{"name": r.name, "test_accuracy": r.headline("test_accuracy").mean,
                     "test_loss": r.headline("test_loss").mean,
                     "chosen": r.spec.chosen, "best": r.name == (best.name if best else None)}
                    for best in [best_run(x for x in runs if x.spec.part == arg)]
                    for r in runs if r.spec.part == arg and r.ok]
            refs[key] = figs.part_comparison(arg, rows) if rows else None
        elif kind == "capacity":
            points = [{"name": r.name, "part": r.spec.part, "n_params": r.n_params,
                       "test_accuracy": r.headline("test_accuracy").mean,
                       "chosen": r.spec.chosen} for r in runs if r.ok]
            refs[key] = figs.capacity(points) if points else None
        elif kind == "samples":
            refs[key] = figs.samples(arg, data_dir, CLASS_NAMES[arg])
        elif kind == "hog":
            refs[key] = figs.hog_illustration(data_dir)
        elif kind == "eq":
            refs[key] = figs.equation(EQUATIONS[arg], alt=arg)
    return refs


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
        "experiments": [_entry(r) for r in runs],
    }


def _entry(r: Run) -> dict:
    """One experiment of results.json: ``result`` is repeat 1's (as before repeats); with
    ``repeats = N > 1`` also ``repeats`` and ``more_runs`` (repeat 2..N, null if not run yet)."""
    entry = {"name": r.name, "part": r.spec.part, "status": r.status, "n_params": r.n_params,
             "stale": model.is_stale(r.spec, r.result), "result": r.result}
    if r.spec.repeats > 1:
        entry["repeats"] = r.spec.repeats
        entry["more_runs"] = [m.result for m in r.more_runs]
    return entry


def template_digest(templates_dir: Path | None = None) -> dict:
    """sha256 of the template files the report is rendered with (a user folder overrides by name)."""
    def files(dirs: Sequence[Path]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for d in reversed(list(dirs)):  # later dirs first, so the user folder's files win
            root = Path(d).resolve()
            for path in sorted(Path(d).rglob("*")):
                if "__pycache__" in path.parts:
                    continue
                name = path.relative_to(d).as_posix()
                if path.is_symlink():  # never follow it: it may point anywhere (the fetcher refuses those)
                    out[name] = b"symlink:" + os.readlink(path).encode()
                elif path.is_file() and path.resolve().is_relative_to(root):
                    out[name] = path.read_bytes()
        return out

    def digest(fs: dict[str, bytes]) -> str:
        h = hashlib.sha256()
        for name in sorted(fs):
            h.update(name.encode() + b"\0" + hashlib.sha256(fs[name]).digest())
        return h.hexdigest()

    default = digest(files([default_templates_dir()]))
    used = digest(files(template_dirs(templates_dir))) if templates_dir else default
    return {"digest": used, "default": used == default}


def html_writer(templates_dir: Path | None = None):
    """A function ``report, fig -> HTML`` with the (possibly user-overridden) templates."""
    env = make_environment(templates_dir)
    dirs = template_dirs(templates_dir)

    def write(report: model.Report, fig) -> str:
        try:
            from markupsafe import Markup

            template = env.get_template(ENTRY_TEMPLATE)
            return template.render(**report.context(fig, markdown_to_html), css=Markup(_stylesheet(env)))
        except Exception as exc:  # noqa: BLE001 - Jinja errors are user errors; others are bugs
            import jinja2

            if isinstance(exc, (jinja2.TemplateError, UnicodeDecodeError, OSError)) or _in_template(exc, dirs):
                raise _template_error(exc, dirs) from None
            raise

    return write


_ID = re.compile(r"""<[^>]*?\sid\s*=\s*["']([^"']*)["']""")
_HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*["']#([^"']*)["']""")


def check_links(html: str) -> list[str]:
    """Internal links (#id) without a target, and ids used twice: what a reader would trip over."""
    from collections import Counter
    from html import unescape

    ids = Counter(unescape(i) for i in _ID.findall(html))
    problems = [f"the id #{i} is used {n} times" for i, n in sorted(ids.items()) if n > 1]
    problems += [f"the link #{unescape(h)} has no target" for h in dict.fromkeys(_HREF.findall(html))
                 if unescape(h) not in ids]
    return problems


def render_html(config: LabConfig, build: Path, *, quick: bool = False, templates_dir: Path | None = None,
                data_dir: Path | None = None, workers: int = 1,
                date: str | None = None) -> tuple[str, int, list[Run], list[str], model.Report]:
    """The report as HTML (figures drawn as needed); returns (html, figures drawn, runs, warnings, model)."""
    build = Path(build)
    write = html_writer(templates_dir)  # a missing templates folder fails before anything is drawn
    data_dir = BuildLayout(build).data_dir if data_dir is None else data_dir
    runs = load_runs(config, build, quick)
    info = model.RenderInfo(date or config.report.date or _dt.date.today().isoformat(), f"labreport {__version__}",
                            _render_versions())
    report = model.build(config, runs, info, quick=quick)
    figs = Figures(build / "figures")
    refs = plan_figures(report, runs, figs, data_dir)
    drawn = figs.draw_pending(workers=workers)
    if figs.errors:  # the appendix lists the problems met while rendering: rebuild with them
        info = dataclasses.replace(info, warnings=tuple(figs.errors))
        report = model.build(config, runs, info, quick=quick)
    html = write(report, lambda key: _fig(refs.get(key), build) if key else None)
    return html, drawn, runs, list(report.warnings), report


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
    Raises TemplateError (file:line) for a broken template, RenderError if WeasyPrint fails
    or an internal link of the report has no target. Nothing is written before the HTML is
    complete and its links check out.
    """
    t0 = time.perf_counter()
    build = Path(build)
    build.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, 4))
    html, drawn, runs, warnings, report = render_html(config, build, quick=quick, templates_dir=templates_dir,
                                                      data_dir=data_dir, workers=workers)
    broken = check_links(html)
    if broken:
        raise RenderError("the report's internal links are broken: " + "; ".join(broken))
    if runs and all(r.result is None for r in runs):
        where = store.runs_dir(build, quick)
        warnings.insert(0, f"no stored results in {where}: every experiment is printed as not run"
                           f" (run `labreport run{' --quick' if quick else ''}` first)")
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
        claims_bytes = (json.dumps(model.claims_document(report, template_digest(templates_dir)), indent=0,
                                   allow_nan=False, ensure_ascii=False) + "\n").encode()
        attachments = [
            (toml_name, config.source_text.encode("utf-8"), "The experiments.toml this report was built from"),
            ("results.json", results_bytes, "Every measured result of this report (labreport results.json)"),
            (CLAIMS_NAME, claims_bytes, "Every number printed in this report: where, what, the text, its source"),
        ]
        roots = [build, *template_dirs(templates_dir)]
        key = _pdf_key(html, [(n, d) for n, d, _ in attachments], templates_dir)
        stamp_path = build / PDF_STAMP
        stamp = _read_stamp(stamp_path)
        if stamp.get("key") == key and _file_sha256(pdf_path) == stamp.get("pdf_sha256"):
            n_pages, cached = stamp.get("pages"), True
            warnings += [str(w) for w in stamp.get("warnings") or ()]  # the PDF's own, said again
        else:
            try:
                n_pages, pdf_warnings = write_pdf(html, pdf_path, base_dir=build, roots=roots,
                                                  attachments=attachments)
            except Exception as exc:  # noqa: BLE001 - WeasyPrint internals; keep the cause
                raise RenderError(f"writing {pdf_path} failed: {type(exc).__name__}: {exc}") from exc
            warnings += pdf_warnings
            store.write_json_atomic(stamp_path, {"key": key, "pages": n_pages, "pdf_sha256": _file_sha256(pdf_path),
                                                 "warnings": pdf_warnings})
    return RenderResult(html_path, pdf_path, results_path, n_pages, time.perf_counter() - t0, drawn, cached,
                        tuple(warnings))


def _file_sha256(path: Path) -> str | None:
    """The PDF's bytes as written: a stamp is trusted only for the very file it was made for."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _read_stamp(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
