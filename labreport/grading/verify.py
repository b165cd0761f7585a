"""Check a report PDF against the experiments.toml and results.json attached to it.

A labreport PDF carries its own inputs as attachments, so a teacher can check, from the
PDF alone, that it is what the tool made of them:

1. the document: both attachments are there; results.json's copy of experiments.toml is
   the attached one; both declare the same experiments; the smoke-run banner is printed
   exactly when the results come from ``--quick`` runs;
2. each experiment: its stored spec is the config's (``result_dict``); its parameter
   count, recomputed by ``params.breakdown`` from the attached config, equals results.json's
   ``params.total`` and Keras' ``keras_total``; its numbers agree with each other (accuracy
   and macro F1 with the confusion matrix, test loss and accuracy with the last epoch);
   and the numbers printed in its card, its row of the part table and (for the model of
   question 2) the layer table are results.json's, formatted as the templates format them;
3. optionally (``rerun``), K experiments are trained again and their test accuracy is
   compared with the claimed one, within a tolerance (another machine gives slightly
   different numbers): run 1, and for an experiment with 2+ measured runs also one of runs
   2..N drawn at random (or named by the teacher). This is the only path that imports the
   runner, hence TensorFlow.

Finding the printed numbers: WeasyPrint turns every HTML ``id`` into a PDF named
destination (page + top). The text between one destination and the next in reading
order is the element's: ``exp-NAME`` is a card, ``row-NAME`` a row of a part table,
``q2-PART`` a model of question 2. Text is compared with whitespace collapsed and names
and labels matched across line breaks and hyphenation, so the layout never matters.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import random
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, TextIO

import numpy as np

from labreport.results import metrics
from labreport.report import claims as claims_mod, model
from labreport.results import store
from labreport.results.run import Run, Stat
from labreport.config.loader import ConfigError, loads
from labreport.errors import UserError
from labreport.grading import attachments as bounded, copies
from labreport.config.param_counts import breakdown, fmt
from labreport.report.model import BANNER, METRIC_LABELS
from labreport.report.render import CLAIMS_NAME, RESULTS_SCHEMA
from labreport.report.q2 import chosen_run as q2_chosen_run
from labreport.config.spec import ExperimentSpec, LabConfig

OK, MISMATCH, NOTE = "OK", "MISMATCH", "NOTE"
SMOKE_RUN, CLAIM, TEXT, TEMPLATES = "smoke-run", "claim", "text", "templates"
# What each verdict rests on, printed under it: a teacher must know what a check cannot prove.
PROOF_NOTE = (
    "What this proves: the numbers printed in the PDF's text layer are the ones the attached results.json"
    " and experiments.toml give (every claim re-derived, every printed number accounted for), and the"
    " stored results agree with each other and with the declared settings. It does not prove that training"
    " happened (a consistent results.json can be written by hand; the cache key only proves consistency):"
    " `verify --rerun K` re-trains K models. It cannot see numbers drawn as pictures: reports rendered with"
    " non-default templates are flagged.")

DOCUMENT = "document"
RESULTS_NAME = "results.json"
DEFAULT_TOLERANCE = 0.01  # absolute test accuracy: 1 point, well above run-to-run noise on CPU
# Stored numbers that must be equal up to float noise (the engine copies them from one
# another; the synthetic fixture rounds the history to 6 decimals).
SAME = 1e-6


class UnreadableReport(UserError):
    """Not a PDF, or a PDF without usable attachments: nothing can be verified (exit 2)."""


# --------------------------------------------------------------------------- findings
@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``subject`` is an experiment name or 'document'."""

    subject: str
    check: str
    status: str  # OK | MISMATCH | NOTE
    detail: str
    kind: str = ""  # a family grade can show without logic of its own: smoke-run, claim, templates, ...

    def line(self) -> str:
        return f"{self.status:<8} {self.subject}: {self.check}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    path: Path
    title: str
    findings: tuple[Finding, ...]

    @property
    def mismatches(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == MISMATCH)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def of_kind(self, kind: str) -> tuple[Finding, ...]:
        """The non-OK findings of one kind, e.g. "smoke-run" (results that contradict a full run)."""
        return tuple(f for f in self.findings if f.kind == kind and f.status != OK)

    @property
    def smoke_runs(self) -> tuple[Finding, ...]:
        return self.of_kind(SMOKE_RUN)

    def summary(self) -> str:
        n, bad = len(self.findings), len(self.mismatches)
        notes = sum(f.status == NOTE for f in self.findings)
        note_text = f" ({claims_mod.plural(notes, 'note')})" if notes else ""
        if bad:
            return f"NOT VERIFIED: {self.path.name}: {bad} of {n} checks MISMATCH{note_text}."
        return f"VERIFIED: {self.path.name}: all {n} checks OK{note_text}."


def format_report(v: Verification, *, quiet: bool = False) -> str:
    """One line per finding (only the non-OK ones when ``quiet``), then the verdict."""
    lines = [f"{v.path}: {v.title}"]
    lines += [f.line() for f in v.findings if not quiet or f.status != OK]
    lines.append(v.summary())
    if not quiet:
        lines.append(PROOF_NOTE)
    return "\n".join(lines)


# --------------------------------------------------------------------------- PDF text
@dataclass(frozen=True)
class Fragment:
    """A piece of text as pypdf reads it: 0-based page, baseline y in PDF points (up = larger)."""

    page: int
    y: float
    text: str

    @property
    def key(self) -> tuple[int, float]:
        return (self.page, -self.y)  # reading order: by page, then top to bottom


@dataclass(frozen=True)
class Anchor:
    """A named destination: where the element with that HTML id starts."""

    name: str
    page: int
    top: float

    @property
    def key(self) -> tuple[int, float]:
        return (self.page, -self.top)


@dataclass(frozen=True)
class Region:
    """The text of one element (from its anchor to the next one), whitespace collapsed."""

    anchor: str
    page: int  # 1-based, for messages
    text: str


def normalize(text: str) -> str:
    """Collapse whitespace; drop soft hyphens and zero-width spaces (invisible line-break hints)."""
    return re.sub(r"\s+", " ", text.replace("\u00ad", "").replace("\u200b", "")).strip()


def loose(literal: str) -> str:
    """A regex for ``literal`` that also matches it broken over lines, hyphenated or not."""
    chars = [re.escape(c) for c in literal if not c.isspace()]
    return r"(?:-? ?)".join(chars)


@dataclass(frozen=True)
class PdfText:
    fragments: tuple[Fragment, ...]
    anchors: tuple[Anchor, ...]  # in reading order

    def anchor(self, name: str) -> Anchor | None:
        return next((a for a in self.anchors if a.name == name), None)

    def has_anchors(self, prefix: str) -> bool:
        return any(a.name.startswith(prefix) for a in self.anchors)

    def region(self, name: str, min_y: float = -math.inf) -> Region | None:
        start = self.anchor(name)
        if start is None:
            return None
        keys = [a.key for a in self.anchors]
        i = bisect.bisect_right(keys, start.key)
        end = keys[i] if i < len(keys) else (math.inf, math.inf)
        text = " ".join(f.text for f in self.fragments if start.key < f.key < end and f.y >= min_y)
        return Region(name, start.page + 1, normalize(text))

    @property
    def full(self) -> str:
        return normalize(" ".join(f.text for f in self.fragments))


def extract_text(reader) -> PdfText:
    """Every text fragment with its position, and every named destination (pypdf)."""
    fragments: list[Fragment] = []
    for page_no, page in enumerate(reader.pages):
        def visit(text, cm, tm, _font, _size, page_no=page_no):
            if text.strip():
                # The text matrix times the current transformation matrix: page coordinates.
                fragments.append(Fragment(page_no, cm[1] * tm[4] + cm[3] * tm[5] + cm[5], text))

        page.extract_text(visitor_text=visit)
    anchors = []
    for name, dest in reader.named_destinations.items():
        page_no = reader.get_destination_page_number(dest)
        top = dest.get("/Top")
        if top is None:  # a /Fit destination: the whole page
            top = float(reader.pages[page_no].mediabox.top)
        anchors.append(Anchor(str(name), page_no, float(top)))
    anchors.sort(key=lambda a: (a.key, a.name))
    return PdfText(tuple(fragments), tuple(anchors))


# --------------------------------------------------------------------------- reading a PDF
@dataclass(frozen=True)
class Submission:
    """A report PDF's attachments, parsed, and its text."""

    path: Path
    toml_name: str
    toml_text: str
    config: LabConfig
    results: dict  # the results.json document (render.results_document)
    text: PdfText
    claims: dict | None = None  # the claims.json document (model.claims_document); None in older PDFs

    @property
    def anchors(self) -> model.Anchors:
        return model.Anchors.of([s.name for s in self.config.experiments])

    @property
    def entries(self) -> dict[str, dict]:
        return {e["name"]: e for e in self.results["experiments"]
                if isinstance(e, dict) and isinstance(e.get("name"), str)}

    @property
    def quick(self) -> bool:
        return bool(self.results.get("quick"))

    def result(self, name: str) -> dict | None:
        """The stored result of ``name``; None if not run, or malformed (see ``result_problem``)."""
        r = (self.entries.get(name) or {}).get("result")
        return r if r is not None and result_problem(r) is None else None

    def more_results(self, spec: ExperimentSpec) -> list[dict | None]:
        """Repeat 2..N's stored results (N = the attached config's ``repeats``), None where not run or
        malformed. Only the first N - 1 entries of ``more_runs`` are read, however long the list is:
        the config bounds the work (MAX_REPEATS), a longer list is a mismatch (``check_repeats``)."""
        more = (self.entries.get(spec.name) or {}).get("more_runs")
        more = more if isinstance(more, list) else []
        out: list[dict | None] = []
        for r in range(2, spec.repeats + 1):
            res = more[r - 2] if r - 2 < len(more) else None
            out.append(res if res is not None and result_problem(res) is None and res.get("repeat") == r else None)
        return out

    def runs(self) -> list[Run]:
        out = []
        for s in self.config.experiments:
            first, *more = s.runs()
            out.append(Run(first, self.result(s.name),
                           tuple(Run(m, res) for m, res in zip(more, self.more_results(s)))))
        return out


# The containers the checks (and Run) read; results.json is untrusted input, so a
# wrong type here is reported as a mismatch instead of failing deep inside a check.
RESULT_SHAPE = {"spec": dict, "metrics": dict, "params": dict, "data": dict, "versions": dict,
                "history": dict, "confusion": list}


def result_problem(result: Any) -> str | None:
    """Why a results.json result cannot be checked (a wrong JSON type), or None."""
    names = {dict: "an object", list: "an array"}
    if not isinstance(result, dict):
        return f"the result is {type(result).__name__}, not an object"
    for key, kind in RESULT_SHAPE.items():
        if result.get(key) is not None and not isinstance(result[key], kind):
            return f"{key!r} is {type(result[key]).__name__}, not {names[kind]}"
    if result.get("status") not in store.STATUSES:  # issue R: the status is validated like the rest
        return f"'status' is {json.dumps(result.get('status'))[:40]}, not one of {', '.join(store.STATUSES)}"
    return None


def read_submission(path: Path | str) -> Submission:
    """Open ``path`` and parse its attachments; raise UnreadableReport (naming the file) if it cannot."""
    path = Path(path)
    reader = open_pdf(path)
    # --- issue R: attachments read and parsed within limits (grading/attachments.py) ---
    try:
        attachments = _pdf_call(path, lambda: bounded.read(reader, path))
        results = _results_attachment(path, attachments)
    except bounded.AttachmentError as e:
        raise UnreadableReport(str(e)) from None
    # --- end issue R ---
    toml_name = _toml_name(path, attachments, results)
    toml_text = _decode(path, toml_name, attachments[toml_name])
    try:
        config = loads(toml_text, path=toml_name)
    except ConfigError as e:
        raise UnreadableReport(f"{path}: the attached {toml_name} is invalid:\n  " + "\n  ".join(e.errors)) from None
    text = _pdf_call(path, lambda: extract_text(reader))
    claims_doc = None
    if CLAIMS_NAME in attachments:
        try:  # within the same limits as results.json (grading/attachments.py)
            claims_doc = bounded.parse_json(attachments[CLAIMS_NAME], path, CLAIMS_NAME)
        except bounded.AttachmentError as e:
            raise UnreadableReport(str(e)) from None
        if not isinstance(claims_doc, dict) or not isinstance(claims_doc.get("claims"), list):
            raise UnreadableReport(f"{path}: the attached {CLAIMS_NAME} is not a labreport claims file")
    return Submission(path, toml_name, toml_text, config, results, text, claims_doc)


def open_pdf(path: Path):
    from pypdf import PdfReader

    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except FileNotFoundError:
        raise UnreadableReport(f"{path}: no such file") from None
    except OSError as e:
        raise UnreadableReport(f"{path}: cannot be read ({e.strerror})") from None
    if b"%PDF-" not in head:
        raise UnreadableReport(f"{path}: not a PDF file")
    reader = _pdf_call(path, lambda: PdfReader(str(path)))
    if reader.is_encrypted:
        raise UnreadableReport(f"{path}: the PDF is encrypted")
    return reader


def _pdf_call(path: Path, fn: Callable[[], Any]) -> Any:
    """Run a pypdf operation; a damaged PDF can make pypdf raise almost anything: say which file."""
    try:
        return fn()
    except (UnreadableReport, bounded.AttachmentError):  # issue R: a limit's own message
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf's errors on malformed files are not one family
        raise UnreadableReport(f"{path}: not a readable PDF ({type(exc).__name__}: {exc})") from None


def _listing(attachments: dict) -> str:
    return ", ".join(sorted(attachments)) or "none"


def _decode(path: Path, name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableReport(f"{path}: the attached {name} is not UTF-8 text") from None


def _results_attachment(path: Path, attachments: dict[str, bytes]) -> dict:
    if not attachments:
        raise UnreadableReport(f"{path}: the PDF has no attached files; a labreport report carries its"
                               f" experiments.toml and {RESULTS_NAME} (was it made by `labreport render`?)")
    if RESULTS_NAME not in attachments:
        raise UnreadableReport(f"{path}: no {RESULTS_NAME} attached (attached: {_listing(attachments)})")
    doc = bounded.parse_json(attachments[RESULTS_NAME], path, RESULTS_NAME)  # issue R: bounded JSON
    if not isinstance(doc, dict) or not isinstance(doc.get("experiments"), list):
        raise UnreadableReport(f"{path}: the attached {RESULTS_NAME} is not a labreport results file"
                               " (no list of experiments)")
    if doc.get("schema") != RESULTS_SCHEMA:
        raise UnreadableReport(f"{path}: the attached {RESULTS_NAME} has schema {doc.get('schema')!r};"
                               f" this labreport reads schema {RESULTS_SCHEMA}")
    return doc


def _no_constant(name: str) -> Any:
    # render writes results.json with allow_nan=False: NaN/Infinity mean someone else wrote it.
    raise ValueError(f"{name} is not JSON")


def _toml_name(path: Path, attachments: dict[str, bytes], results: dict) -> str:
    named = results.get("config")
    if isinstance(named, str) and named in attachments:
        return named
    tomls = sorted(n for n in attachments if n.lower().endswith(".toml"))
    if len(tomls) != 1:
        what = "no experiments file (*.toml)" if not tomls else f"{len(tomls)} *.toml files"
        raise UnreadableReport(f"{path}: {what} attached (attached: {_listing(attachments)})")
    return tomls[0]


# --------------------------------------------------------------------------- document checks
def check_document(sub: Submission) -> list[Finding]:
    n_results = len(sub.results["experiments"])
    out = [Finding(DOCUMENT, "attachments", OK,
                   f"{sub.toml_name} ({claims_mod.plural(len(sub.config.experiments), 'experiment')}),"
                   f" {RESULTS_NAME} ({claims_mod.plural(n_results, 'experiment')})")]
    same = sub.results.get("experiments_toml") == sub.toml_text
    out.append(Finding(DOCUMENT, sub.toml_name, OK if same else MISMATCH,
                       f"identical to the copy inside {RESULTS_NAME}" if same
                       else f"differs from the copy inside {RESULTS_NAME} (experiments_toml)"))
    out.append(_check_names(sub))
    out.append(_check_banner(sub))
    return out


def _check_names(sub: Submission) -> Finding:
    declared = [s.name for s in sub.config.experiments]
    stored = [e.get("name") for e in sub.results["experiments"] if isinstance(e, dict)]
    stored = [n if isinstance(n, str) else json.dumps(n) for n in stored]
    missing = [n for n in declared if n not in stored]
    extra = [n for n in stored if n not in declared]
    if not missing and not extra:
        return Finding(DOCUMENT, "experiments", OK, f"the same {len(declared)} in both files")
    problems = []
    if missing:
        problems.append(f"declared in {sub.toml_name} but not in {RESULTS_NAME}: {', '.join(missing)}")
    if extra:
        problems.append(f"in {RESULTS_NAME} but not declared in {sub.toml_name}: {', '.join(extra)}")
    return Finding(DOCUMENT, "experiments", MISMATCH, "; ".join(problems))


def _check_banner(sub: Submission) -> Finding:
    quick_results = [s.name for s in sub.config.experiments if (sub.result(s.name) or {}).get("quick")]
    printed = bool(re.search(loose(BANNER), sub.text.full))
    claim = f"{RESULTS_NAME} says quick = {'true' if sub.quick else 'false'}"
    if quick_results and not sub.quick:
        return Finding(DOCUMENT, "smoke-run banner", MISMATCH,
                       f"{claim} but these results are --quick smoke runs: {', '.join(quick_results)}")
    if printed != sub.quick:
        return Finding(DOCUMENT, "smoke-run banner", MISMATCH,
                       f"{claim} but the banner \"{BANNER}\" is {'printed' if printed else 'not printed'}")
    return Finding(DOCUMENT, "smoke-run banner", OK,
                   "printed, as the results are --quick smoke runs" if sub.quick else "absent: full runs")


# --------------------------------------------------------------------------- spec and parameters
def _json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def spec_differences(spec: ExperimentSpec, result: dict) -> list[str]:
    """How the spec stored in ``result`` differs from ``spec`` (name, part and every result-relevant key)."""
    stored = result.get("spec") if isinstance(result.get("spec"), dict) else {}
    wanted = {"name": spec.name, "part": spec.part, **_json(spec.result_dict())}
    return [f"{key} {json.dumps(stored.get(key))} in {RESULTS_NAME}, {json.dumps(value)} in experiments.toml"
            for key, value in wanted.items() if stored.get(key) != value]


def check_spec(spec: ExperimentSpec, result: dict) -> Finding:
    diffs = spec_differences(spec, result)
    if diffs:
        return Finding(spec.name, "spec", MISMATCH, "; ".join(diffs))
    how = "cache key reproduced" if _cache_key_reproduced(spec, result) else \
        "cache key not reproducible from the recorded data checksum and engine version"
    return Finding(spec.name, "spec", OK, f"as declared in experiments.toml; {how}")


def _cache_key_reproduced(spec: ExperimentSpec, result: dict) -> bool:
    data = result.get("data") if isinstance(result.get("data"), dict) else {}
    engine = (result.get("versions") or {}).get("engine") if isinstance(result.get("versions"), dict) else None
    quick = bool(result.get("quick"))
    if not isinstance(engine, str) or quick:  # quick keys also hash the smoke-run caps, not recorded
        return False
    key = spec.cache_key(data_sha256=str(data.get("sha256") or ""), engine_version=engine, quick=quick)
    return key == result.get("cache_key")


def check_params(spec: ExperimentSpec, entry: dict) -> Finding:
    b = breakdown(spec)
    result = entry.get("result") if isinstance(entry.get("result"), dict) else {}
    stored = (result.get("params") or {}) if isinstance(result.get("params"), dict) else {}
    claims = [(f"{RESULTS_NAME} params.total", stored.get("total")),
              (f"{RESULTS_NAME} n_params", entry.get("n_params")),
              ("Keras count_params()", stored.get("keras_total"))]
    wrong = [f"{what} is {_count(v)}" for what, v in claims
             if (v is not None or what.startswith(RESULTS_NAME)) and v != b.total]
    if wrong:
        return Finding(spec.name, "parameters", MISMATCH,
                       f"experiments.toml gives {b.total_formula} but " + ", ".join(wrong))
    keras = "Keras count_params()" if stored.get("keras_total") is not None else "not counted by Keras"
    return Finding(spec.name, "parameters", OK, f"{fmt(b.total)} = {RESULTS_NAME} params.total = {keras}")


def _count(v: Any) -> str:
    return fmt(v) if isinstance(v, int) and not isinstance(v, bool) else json.dumps(v)


# --------------------------------------------------------------------------- measurements
def check_measurements(spec: ExperimentSpec, result: dict) -> Finding:
    """The stored numbers of an 'ok' run must agree with each other (a hand edit rarely does)."""
    run = Run(spec, result)
    problems = _confusion_problems(run, result) + _history_problems(run)
    if problems:
        return Finding(spec.name, "measurements", MISMATCH, "; ".join(problems))
    return Finding(spec.name, "measurements", OK,
                   "accuracy and macro F1 agree with the confusion matrix; test loss and accuracy"
                   " with the last epoch")


def _confusion_problems(run: Run, result: dict) -> list[str]:
    try:
        cm = np.asarray(result.get("confusion"), dtype=float)
    except (TypeError, ValueError):
        cm = np.zeros((0, 0))
    if (cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.size == 0 or not np.isfinite(cm).all()
            or (cm < 0).any() or cm.sum() <= 0):
        return ["no usable confusion matrix"]
    n, correct = int(cm.sum()), int(np.trace(cm))
    out = []
    acc = run.test_accuracy
    # Keras' accuracy and the predictions may differ by one near-tie image: allow 1/n.
    if acc is None or abs(acc - correct / n) > 1 / n + SAME:
        out.append(f"test accuracy {_raw(acc)} but the confusion matrix gives {correct / n:.6g}"
                   f" ({fmt(correct)} of {fmt(n)} correct)")
    f1 = float(metrics.per_class_scores(cm)[2].mean())
    if run.macro_f1 is None or abs(run.macro_f1 - f1) > SAME:
        out.append(f"macro F1 {_raw(run.macro_f1)} but the confusion matrix gives {f1:.6g}")
    n_test = ((result.get("data") or {}) if isinstance(result.get("data"), dict) else {}).get("n_test")
    if isinstance(n_test, int) and n_test != n:
        out.append(f"the confusion matrix counts {fmt(n)} test images, the data {fmt(n_test)}")
    names = result.get("class_names")
    if names is not None and names != run.class_names:  # Run reads only one name per class
        out.append(f"class_names {json.dumps(names)[:60]} are not the data set's {len(run.class_names)} names")
    return out


def _history_problems(run: Run) -> list[str]:
    h = run.history
    out = []
    for label, key, value in (("test loss", "val_loss", run.test_loss),
                              ("test accuracy", "val_accuracy", run.test_accuracy)):
        last = h.get(key, [])[-1:] or [math.nan]
        if value is None or not abs(value - last[0]) <= SAME:
            out.append(f"{label} {_raw(value)} but the last epoch of the history has {_raw(last[0])}")
    return out


def _raw(v: float | None) -> str:
    return "none" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


# --------------------------------------------------------------------------- printed numbers
@dataclass(frozen=True)
class Printed:
    """One experiment's numbers as the templates print them (claims_mod.num / pct, params.fmt)."""

    test_loss: str
    test_accuracy: str
    macro_f1: str
    n_params: str
    raw: tuple[tuple[str, Any], ...]  # field -> the stored value, for messages

    LABELS: ClassVar[dict[str, str]] = {"test_loss": "test loss", "test_accuracy": "test accuracy",
                                        "macro_f1": "macro F1", "n_params": "parameters"}

    @classmethod
    def of(cls, spec: ExperimentSpec, result: dict, run: Run | None = None) -> Printed:
        """As printed: repeat 1's numbers, or with repeats (``run`` carrying them) the means."""
        run = run or Run(spec, result)
        stored = (result.get("params") or {}).get("total") if isinstance(result.get("params"), dict) else None
        n_params = stored if isinstance(stored, int) else None
        loss, acc, f1 = (run.headline(k).mean for k in ("test_loss", "test_accuracy", "macro_f1"))
        return cls(claims_mod.num(loss), claims_mod.pct(acc), claims_mod.num(f1),
                   "—" if n_params is None else fmt(n_params),
                   (("test_loss", loss), ("test_accuracy", acc), ("macro_f1", f1), ("n_params", n_params)))

    def compare(self, printed: dict[str, str | None]) -> tuple[list[str], list[str]]:
        """(agreeing 'label value' texts, disagreeing explanations) for the fields in ``printed``."""
        same, wrong = [], []
        raw = dict(self.raw)
        for field, seen in printed.items():
            want, label = getattr(self, field), self.LABELS[field]
            if seen == want:
                same.append(f"{label} {want}")
            elif seen is None:
                wrong.append(f"{label} not found (expected {want})")
            else:
                wrong.append(f"{label} printed {seen}, {RESULTS_NAME} has {want} ({_raw(raw[field])})")
        return same, wrong


CARD_LABELS = {"test_loss": METRIC_LABELS["test_loss"], "test_accuracy": METRIC_LABELS["test_accuracy"],
               "macro_f1": METRIC_LABELS["macro_f1"], "n_params": "Parameters:"}
ROW = re.compile(  # with repeats: a Runs column ("3", "2 of 3") and "mean ± std" cells
    r"(?:^| )(?P<n_params>\d{1,3}(?:,\d{3})*) (?P<batch>\d{1,3}(?:,\d{3})*) (?P<epochs>\d{1,3}(?:,\d{3})*)"
    r"(?: (?P<runs>\d+(?: of \d+)?))?"
    r" (?:(?P<test_loss>\S+)(?: ± \S+)? (?P<test_accuracy>\S+%|—)(?: ± \S+%)?(?: \(diverged\))?"
    r" (?P<macro_f1>\S+)(?: ± \S+)?|FAILED)")
Q2_TOTAL = re.compile(r"Total (?P<weights>[\d,]+) weights (?P<biases>[\d,]+) (?P<total>[\d,]+)")
Q2_KERAS = re.compile(r"count_params\(\) for the trained model: (?P<keras>[\d,]+)")


def _titled(region: Region, name: str) -> bool:
    """The element starts with the experiment's name (and not with a longer name it prefixes)."""
    return bool(re.match(loose(name) + r"(?![\w.-])", region.text))


def _printed_finding(spec: ExperimentSpec, where: str, region: Region, printed: dict[str, str | None],
                     expected: Printed) -> Finding:
    same, wrong = expected.compare(printed)
    place = f"{where} (page {region.page})"
    if wrong:
        return Finding(spec.name, place, MISMATCH, "; ".join(wrong))
    return Finding(spec.name, place, OK, ", ".join(same))


def check_card(sub: Submission, spec: ExperimentSpec, result: dict, run: Run | None = None) -> Finding:
    anchor = sub.anchors.card(spec.name)
    region = sub.text.region(anchor)
    if region is None or not _titled(region, spec.name):
        what = "no card" if region is None else f"the card anchored at {anchor} is titled otherwise"
        return Finding(spec.name, "card", MISMATCH, f"{what} in the PDF")
    printed = {}
    for field, label in CARD_LABELS.items():
        m = re.search(loose(label) + r" ?(\S+)", region.text)
        printed[field] = m.group(1) if m else None
    return _printed_finding(spec, "card", region, printed, Printed.of(spec, result, run))


def check_row(sub: Submission, spec: ExperimentSpec, result: dict, run: Run | None = None) -> Finding:
    if not sub.text.has_anchors("row-"):
        return Finding(spec.name, "part table", NOTE,
                       "not checked: the table rows of this PDF carry no anchors (made by an older labreport)")
    anchor = sub.anchors.row(spec.name)
    region = sub.text.region(anchor)
    if region is None or not _titled(region, spec.name):
        what = "no row" if region is None else f"the row anchored at {anchor} is named otherwise"
        return Finding(spec.name, "part table", MISMATCH, f"{what} in the part table")
    m = ROW.search(region.text)
    if m is None:
        return Finding(spec.name, f"part table (page {region.page})", MISMATCH,
                       f"cannot read the row: \"{region.text[:160]}\"")
    fields = ["n_params"] + (["test_loss", "test_accuracy", "macro_f1"] if m.group("test_accuracy") else [])
    return _printed_finding(spec, "part table", region, {f: m.group(f) for f in fields},
                            Printed.of(spec, result, run))


def check_q2(sub: Submission, spec: ExperimentSpec, result: dict | None) -> Finding:
    """The layer table of question 2: totals from experiments.toml, the Keras count from results.json."""
    region = sub.text.region(f"q2-{spec.part}")
    if region is None or not re.search(r": " + loose(spec.name) + r"(?![\w.-])", region.text):
        return Finding(spec.name, "question 2", MISMATCH, f"its layer table (anchor q2-{spec.part}) is not in the PDF")
    b = breakdown(spec)
    total, keras_m = Q2_TOTAL.search(region.text), Q2_KERAS.search(region.text)
    wanted = {"weights": fmt(b.weights), "biases": fmt(b.biases), "total": fmt(b.total)}
    seen = {k: (total.group(k) if total else None) for k in wanted}
    keras = ((result or {}).get("params") or {}).get("keras_total")
    if keras is not None:
        wanted["Keras count"] = _count(keras)
        seen["Keras count"] = keras_m.group("keras") if keras_m else None
    wrong = [f"{k} printed {seen[k] or 'nothing'}, expected {v}" for k, v in wanted.items() if seen[k] != v]
    place = f"question 2 (page {region.page})"
    if wrong:
        return Finding(spec.name, place, MISMATCH, "; ".join(wrong))
    return Finding(spec.name, place, OK, ", ".join(f"{k} {v}" for k, v in wanted.items()))


# --------------------------------------------------------------------------- per experiment
def check_experiment(sub: Submission, spec: ExperimentSpec, q2_model: bool, run: Run | None = None) -> list[Finding]:
    entry = sub.entries.get(spec.name)
    if entry is None:
        return []  # reported once by the document check
    if entry.get("result") is None:
        if any(sub.more_results(spec)):  # runs 2..N stored: the report prints them, run 1 left out of the mean
            out = [Finding(spec.name, "run 1", NOTE, "not run: left out of the mean")]
        else:
            out = [Finding(spec.name, "result", NOTE, "not run: the report prints no numbers for it")]
        return out + ([check_q2(sub, spec, None)] if q2_model else []) + check_repeats(sub, spec)
    problem = result_problem(entry["result"])
    if problem:
        return [Finding(spec.name, "result", MISMATCH, f"malformed in {RESULTS_NAME}: {problem}")]
    result = entry["result"]
    out = [check_spec(spec, result), check_params(spec, entry)]
    if result.get("status") == "ok":
        out.append(check_measurements(spec, result))
    out += [check_card(sub, spec, result, run), check_row(sub, spec, result, run)]
    if q2_model:
        out.append(check_q2(sub, spec, result))
    out += check_full_run(sub, spec, result)
    return out + check_repeats(sub, spec)


def check_repeats(sub: Submission, spec: ExperimentSpec) -> list[Finding]:
    """An experiment with ``repeats = N``: results.json says N, holds N - 1 more runs, and each one is
    checked like repeat 1 (its spec with its own seed, its numbers against each other, a full run)."""
    entry = sub.entries.get(spec.name) or {}
    declared, more = entry.get("repeats", 1), entry.get("more_runs")
    if spec.repeats == 1 and declared == 1 and not more:
        return []  # one run: exactly as before repeats
    shown = len(more) if isinstance(more, list) else json.dumps(more)[:40]
    if declared != spec.repeats or not isinstance(more, list) or len(more) != spec.repeats - 1:
        return [Finding(spec.name, "repeats", MISMATCH,
                        f"experiments.toml declares {spec.repeats} run{'s' * (spec.repeats != 1)}, {RESULTS_NAME} says repeats ="
                        f" {json.dumps(declared)[:40]} with {shown} more_runs (should be {spec.repeats - 1})")]
    out = []
    for r_spec, res in zip(spec.runs()[1:], more):
        label = f"run {r_spec.repeat}"
        if res is None:
            out.append(Finding(spec.name, label, NOTE, "not run: left out of the mean"))
            continue
        problem = result_problem(res)
        if problem is None and res.get("repeat") != r_spec.repeat:
            problem = f"'repeat' is {json.dumps(res.get('repeat'))[:40]}, not {r_spec.repeat}"
        if problem:
            out.append(Finding(spec.name, label, MISMATCH, f"malformed in {RESULTS_NAME} more_runs: {problem}"))
            continue
        for f in [check_spec(r_spec, res)] + ([check_measurements(r_spec, res)] if res.get("status") == "ok" else []) \
                + check_full_run(sub, r_spec, res):
            out.append(dataclasses.replace(f, check=f"{label} {f.check}"))
    # The well-formed runs only: a malformed one is reported above (its history may be any JSON).
    return out + check_repeats_differ(spec, [sub.result(spec.name), *sub.more_results(spec)])


def check_repeats_differ(spec: ExperimentSpec, results: list) -> list[Finding]:
    """Runs of one experiment train from different seeds: two with the same per-epoch test-loss
    curve, to every digit, are one run stored twice (which shrinks the spread the report prints)."""
    seen: dict[str, int] = {}
    out = []
    for repeat, res in enumerate(results, start=1):
        curve = ((res or {}).get("history") or {}).get("val_loss") if isinstance(res, dict) else None
        if not isinstance(curve, list) or not any(isinstance(v, (int, float)) for v in curve):
            continue
        key = copies.digest(curve)
        if key in seen:
            out.append(Finding(spec.name, f"run {repeat}", MISMATCH,
                               f"its {len(curve)}-epoch test-loss curve is run {seen[key]}'s, to every digit, though"
                               " the two runs train from different seeds: one run was stored twice"))
        else:
            seen[key] = repeat
    return out


# --------------------------------------------------------------------------- smoke runs
def check_full_run(sub: Submission, spec: ExperimentSpec, result: dict) -> list[Finding]:
    """A result handed in as a full run whose own fields contradict one (kind "smoke-run")."""
    if sub.quick:
        return []  # the report says it is a smoke run: the banner check covers it
    reasons = Run(spec, result).full_run_contradictions()
    engine = (result.get("versions") or {}).get("engine") if isinstance(result.get("versions"), dict) else None
    if result.get("status") == "ok" and isinstance(engine, str) and not _cache_key_reproduced(spec, result):
        # A key that does not reproduce contradicts a full run; one that does proves only consistency
        # (anyone can recompute it from public inputs).
        reasons.append("its cache key does not reproduce from its recorded data checksum and engine version")
    if not reasons:
        return []
    return [Finding(spec.name, "full run", MISMATCH,
                    "handed in as a full run, but " + "; ".join(reasons)
                    + " (the stored fields contradict a full run; only --rerun proves what training gives)",
                    SMOKE_RUN)]


# --------------------------------------------------------------------------- claims and the text layer
# A number as printed: digits with thousands separators and decimals, a sign when it starts a word
# ("−0.0123", "(+0.52"), a trailing % when there is one. Digits glued to a letter are part of a word
# ("Macro F1", "HOG p7", a table header WeasyPrint repeats on the next page). Both sides are cut alike.
NUMBER = re.compile(r"(?:(?<=^)|(?<=[\s(\[]))[−+-]\d[\d,]*(?:\.\d+)?%?|(?<![\w.])\d[\d,]*(?:\.\d+)?%?")
FOOTER_PT = 45.0  # text below this height (PDF points from the bottom) is the page footer (page x of y)


def numbers(text: str) -> list[str]:
    return [t.rstrip(",") for t in NUMBER.findall(text)]


def html_regions(html: str) -> dict[str, str]:
    """The text of every element with an id, up to the next id, in document order (as the PDF regions)."""
    from html.parser import HTMLParser

    class Regions(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.current, self.skip = "", 0
            self.text: dict[str, list[str]] = {"": []}
            self.ol: list[int] = []  # item counters of the open <ol>s: their markers are printed numbers

        def handle_starttag(self, tag, attrs):
            if tag in ("style", "script", "head", "title"):
                self.skip += 1
            if tag == "ol":
                self.ol.append(0)
            elif tag == "li" and self.ol:
                self.ol[-1] += 1
                self.text[self.current].append(f" {self.ol[-1]}. ")
            ident = dict(attrs).get("id")
            if ident is not None:
                self.current = ident
                self.text.setdefault(ident, [])

        def handle_endtag(self, tag):
            if tag in ("style", "script", "head", "title"):
                self.skip = max(0, self.skip - 1)
            if tag == "ol" and self.ol:
                self.ol.pop()

        def handle_data(self, data):
            if not self.skip:
                self.text[self.current].append(data)

    parser = Regions()
    parser.feed(html)
    return {k: normalize(" ".join(v)) for k, v in parser.text.items()}


def rebuild(sub: Submission) -> tuple[model.Report, str]:
    """The report model and HTML the attachments give (default templates, figures as placeholders)."""
    from labreport.report import render

    runs = sub.runs()
    info = model.RenderInfo.from_dict((sub.claims or {}).get("render") or {})
    report = model.build(sub.config, runs, info, quick=sub.quick)
    placeholder = render.Fig("figure.png", 10.0, 10.0, "")
    html = render.html_writer(None)(report, lambda key: placeholder if key else None)
    return report, html


def check_templates(sub: Submission) -> Finding:
    from labreport.report import render

    recorded = (sub.claims or {}).get("templates") or {}
    ours = render.template_digest(None)["digest"]
    if recorded.get("digest") == ours:
        return Finding(DOCUMENT, "templates", OK, "rendered with the default templates and stylesheet", TEMPLATES)
    why = ("rendered with its own templates/stylesheet (--templates)" if recorded.get("default") is False
           else "its templates differ from this labreport's defaults (another labreport version?)")
    return Finding(DOCUMENT, "templates", MISMATCH,
                   f"{why}: a stylesheet can hide a printed number and show a picture of another one, so the"
                   " text layer may not be what a reader sees; accept it only if you allowed custom templates"
                   " (verify --allow-templates)", TEMPLATES)


def check_claims(sub: Submission, report: model.Report) -> list[Finding]:
    """The attached claims.json equals the claims of a rebuild, and claims about not-run experiments."""
    if sub.claims is None:
        return [Finding(DOCUMENT, CLAIMS_NAME, NOTE, f"no {CLAIMS_NAME} attached (made by an older labreport):"
                        " only the cards, part tables and question 2 are checked", CLAIM)]
    attached = [c for c in sub.claims["claims"] if isinstance(c, dict)]
    want = [c.as_dict() for c in report.claims]
    keys = ("anchor", "what", "text", "source")
    out = []
    # No run stored at all (with repeats, a missing run 1 next to stored runs 2..N is printed as those runs).
    not_run = {s.name for s in sub.config.experiments if sub.result(s.name) is None and not any(sub.more_results(s))}
    ghost = [c for c in attached if c.get("subject") in not_run and str(c.get("source", "")).startswith("results:")]
    for name in dict.fromkeys(str(c.get("subject")) for c in ghost):
        mine = [c for c in ghost if c.get("subject") == name]
        shown = "; ".join(f"{c.get('what')} {c.get('text')!r} at #{c.get('anchor')}" for c in mine[:3])
        out.append(Finding(name, "claim", MISMATCH,
                           f"{len(mine)} number(s) claimed from its results ({shown}) but {RESULTS_NAME}"
                           " says this experiment was not run", CLAIM))
    # Claims that name a value of results.json: the value they carry must be the stored one.
    seen: set[tuple[str, str]] = set()
    for c in attached:
        if (str(c.get("source")), repr(c.get("value"))) in seen:
            continue
        seen.add((str(c.get("source")), repr(c.get("value"))))
        stored = resolve(sub, str(c.get("source", "")))
        value = c.get("value")
        if stored is not _UNRESOLVED and isinstance(value, (int, float)) and isinstance(stored, (int, float)) \
                and not math.isclose(float(value), float(stored), rel_tol=1e-12, abs_tol=1e-12):
            out.append(Finding(str(c.get("subject") or DOCUMENT), "claim", MISMATCH,
                               f"{c.get('what')}: claims {value!r} from {c.get('source')}, which holds {stored!r}",
                               CLAIM))
    a = [tuple(str(c.get(k)) for k in keys) for c in attached]
    w = [tuple(str(c.get(k)) for k in keys) for c in want]
    if a == w:
        out.append(Finding(DOCUMENT, CLAIMS_NAME, OK, f"{len(w)} claims, each re-derived from the attachments", CLAIM))
        return out
    extra = [x for x in a if x not in set(w)]
    missing = [x for x in w if x not in set(a)]
    sample = "; ".join(f"{x[1]} = {x[2]!r} at #{x[0]}" for x in extra[:3])
    out.append(Finding(DOCUMENT, CLAIMS_NAME, MISMATCH,
                       f"differs from the claims re-derived from the attachments: {len(extra)} not re-derived"
                       f" ({sample or 'none'}), {len(missing)} missing", CLAIM))
    return out


_UNRESOLVED = object()


def resolve(sub: Submission, source: str) -> Any:
    """The value a ``results:NAME/key/...`` source names in the attached results.json (or _UNRESOLVED)."""
    if not source.startswith("results:"):
        return _UNRESOLVED
    name, _, path = source[len("results:"):].partition("/")
    node: Any = sub.result(name)
    keys = path.split("/") if path else []
    if keys[:1] == ["more_runs"]:  # results:NAME/more_runs/I/...: repeat I + 2, read as more_results reads it
        spec = next((s for s in sub.config.experiments if s.name == name), None)
        if spec is None or len(keys) < 2 or not keys[1].isdigit():
            return _UNRESOLVED
        more = sub.more_results(spec)
        node = more[int(keys[1])] if int(keys[1]) < len(more) else None
        keys = keys[2:]
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return _UNRESOLVED
        node = node[key]
    return node


def check_text_layer(sub: Submission, report: model.Report, html: str) -> list[Finding]:
    """Every claim is printed in its place, and every number of the text layer is accounted for."""
    expected = html_regions(html)
    by_anchor: dict[str, list[claims_mod.Claim]] = {}
    for c in report.claims:
        by_anchor.setdefault(c.anchor, []).append(c)
    # No run stored at all (with repeats, a missing run 1 next to stored runs 2..N is printed as those runs).
    not_run = {s.name for s in sub.config.experiments if sub.result(s.name) is None and not any(sub.more_results(s))}
    subject_of = {}
    for spec in sub.config.experiments:
        subject_of[sub.anchors.card(spec.name)] = spec.name
        subject_of[sub.anchors.row(spec.name)] = spec.name
    n_pages = max((f.page for f in sub.text.fragments), default=0) + 1
    out: list[Finding] = []
    checked_claims = 0
    for anchor, want_text in expected.items():
        if not anchor:
            continue
        region = sub.text.region(anchor, min_y=FOOTER_PT)
        if region is None:
            out.append(Finding(DOCUMENT, f"#{anchor}", MISMATCH, "this part of the report is missing from the PDF", TEXT))
            continue
        printed = Counter(numbers(_rejoin(region.text, want_text)))
        wanted = Counter(numbers(want_text))
        if anchor == model.TOC_ANCHOR:  # the page numbers WeasyPrint adds after each entry
            for tok in list(printed):
                if tok.isdigit() and 1 <= int(tok) <= n_pages:
                    printed[tok] = max(0, printed[tok] - (printed[tok] - wanted.get(tok, 0)))
        extra = printed - wanted
        lost = wanted - printed
        subject = subject_of.get(anchor, DOCUMENT)
        where = f"page {region.page}, #{anchor}"
        # A number missing from the page is charged to a claim with a stored source first.
        for c in sorted(by_anchor.get(anchor, ()), key=lambda c: (c.what in claims_mod.KINDS,
                                                                 c.source.startswith("formula"))):
            checked_claims += 1
            toks = numbers(c.text)
            # Missing from the page, or printed fewer times than the rebuilt page prints it.
            short = [t for t in toks if lost[t] > 0]
            for t in short:
                lost[t] -= 1
            if short or not _printed_in(c.text, region.text):
                got = [t for t in extra if t not in wanted] or list(extra)
                detail = (f"{c.what}: the attachments give {c.text!r} ({c.source}), the page prints"
                          f" {', '.join(repr(t) for t in got[:3]) if got else 'something else'}")
                out.append(Finding(c.subject or subject, where, MISMATCH, detail, CLAIM))
        if extra:
            what = ("numbers printed for an experiment that did not run" if subject in not_run
                    else "numbers on the page that neither a claim nor the template's text accounts for")
            out.append(Finding(subject, where, MISMATCH,
                               f"{what}: {', '.join(repr(t) for t in sorted(extra.elements())[:6])}", TEXT))
        elif +lost:
            out.append(Finding(subject, where, MISMATCH,
                               f"numbers of the template's text missing: {', '.join(sorted(lost.elements())[:6])}",
                               TEXT))
    if not any(f.status == MISMATCH for f in out):
        out.append(Finding(DOCUMENT, "text layer", OK,
                           f"{checked_claims} claims found in place; every number on the {n_pages} pages is a claim"
                           " or the template's own text", TEXT))
    return out


def _rejoin(printed: str, wanted: str) -> str:
    """``printed`` with the long words of ``wanted`` (checksums, names) joined again where a line broke them."""
    for word in dict.fromkeys(w for w in wanted.split() if len(w) >= 16 and any(c.isdigit() for c in w)):
        if word not in printed:
            printed = re.sub(loose(word), lambda _m, w=word: w, printed)
    return printed


def _printed_in(text: str, region_text: str) -> bool:
    return bool(re.search(loose(text), region_text))


def verify_submission(sub: Submission, *, allow_templates: bool = False) -> list[Finding]:
    """Every check that needs no training."""
    runs = sub.runs()
    parts = dict.fromkeys(s.part for s in sub.config.experiments)
    q2_models = {run.name for p in parts for run in [q2_chosen_run(p, runs)[0]] if run is not None}
    out = check_document(sub)
    for spec, run in zip(sub.config.experiments, runs):
        out += check_experiment(sub, spec, spec.name in q2_models, run)
    templates = check_templates(sub) if sub.claims is not None else None
    if templates is not None:
        if allow_templates and templates.status == MISMATCH:
            templates = dataclasses.replace(templates, status=NOTE)
        out.append(templates)
    report, html = rebuild(sub)
    out += check_claims(sub, report)
    if sub.claims is not None:  # older PDFs lack the render date and versions a rebuild needs
        out += check_text_layer(sub, report, html)
    return out


# --------------------------------------------------------------------------- rerun
# The run among 2..N is drawn from the operating system's entropy: a hand-in cannot know or
# steer it (a seeded generator could be predicted from the PDF). Tests pass ``choose``.
_ENTROPY = random.SystemRandom()


class BadRerunRun(UserError):
    """``--rerun-run R`` names a run that no experiment of the hand-in declares (exit 2)."""


def rerun_candidates(sub: Submission, k: int) -> list[ExperimentSpec]:
    """``k`` experiments with a measured accuracy: the chosen ones first, then in config order."""
    measured = [s for s in sub.config.experiments
                if (sub.result(s.name) or {}).get("status") == "ok"
                and Run(s, sub.result(s.name)).test_accuracy is not None]
    ordered = [s for s in measured if s.chosen] + [s for s in measured if not s.chosen]
    return ordered[:k]


def check_rerun_run(sub: Submission, repeat: int | None) -> None:
    """Raise BadRerunRun unless ``repeat`` (the teacher's ``--rerun-run``) is a run 2..N of some
    experiment of ``sub``; None (pick at random) is always valid."""
    if repeat is None:
        return
    if repeat < 2:
        raise BadRerunRun(f"--rerun-run must be 2 or more (run 1 is always re-trained), got {repeat}")
    most = max((s.repeats for s in sub.config.experiments), default=1)
    if most == 1:
        raise BadRerunRun(f"--rerun-run {repeat}: {sub.path.name} declares one run per experiment"
                          " (no repeats): there is no run 2 or later to re-train")
    if repeat > most:
        raise BadRerunRun(f"--rerun-run {repeat}: {sub.path.name} declares at most {most} runs per experiment")


@dataclass(frozen=True)
class RerunPlan:
    """What ``--rerun`` trains again of one experiment: run 1, and with 2+ measured runs one of
    runs 2..N (``extra``, its spec with its derived seed), or a ``note`` saying why not."""

    run: Run  # repeat 1, carrying the claimed runs 2..N (Run.more_runs)
    extra: Run | None = None
    how: str = ""  # why that run: "picked at random among ...", "chosen with --rerun-run"
    note: Finding | None = None

    @property
    def run_keys(self) -> tuple[str, ...]:
        """The runner's names of the runs to train (run 1: the name; run r: 'name/repeat-r')."""
        return (self.run.spec.run_key,) + ((self.extra.spec.run_key,) if self.extra else ())


def _runs_text(repeats: list[int]) -> str:
    return f"run {repeats[0]}" if len(repeats) == 1 else "runs " + ", ".join(map(str, repeats))


def plan_rerun(run: Run, repeat: int | None = None,
               choose: Callable[[list[int]], int] | None = None) -> RerunPlan:
    """Which run 2..N of ``run``'s experiment to train again besides run 1.

    ``repeat`` None: one of the *measured* runs 2..N (status ok: the ones the printed mean and
    std are made of), drawn by ``choose`` (default: the OS's entropy); nothing when fewer than
    two runs are measured. ``repeat`` R: that run, or a note when the experiment has no run R
    or results.json does not claim a measured run R (failed, diverged, not run). An
    experiment without repeats is re-trained as always: run 1 only, no note."""
    if not run.repeated:
        return RerunPlan(run)
    n, by_repeat = run.spec.repeats, {m.repeat: m for m in run.more_runs}
    if repeat is None:
        measured = [m.repeat for m in run.aggregate.measured if m.repeat >= 2]
        if not measured:
            return RerunPlan(run)
        picked = (choose or _ENTROPY.choice)(measured)
        if picked not in measured:
            raise ValueError(f"choose() returned {picked!r}, not one of {measured}")
        how = (f"picked at random among the measured {_runs_text(measured)}" if len(measured) > 1
               else "the only measured run besides run 1")
        return RerunPlan(run, by_repeat[picked], how)
    if repeat > n:
        return RerunPlan(run, note=Finding(run.name, "rerun", NOTE,
                                           f"--rerun-run {repeat}: this experiment declares {n} runs;"
                                           " only run 1 is re-trained"))
    other = by_repeat[repeat]
    if repeat not in {m.repeat for m in run.aggregate.measured}:
        error = str((other.result or {}).get("error") or "").strip().splitlines()
        why = other.status + (f": {error[0][:80]}" if error else "")
        return RerunPlan(run, note=Finding(run.name, "rerun", NOTE,
                                           f"run {repeat}/{n} (seed {other.spec.seed}) is not a measured run in"
                                           f" {RESULTS_NAME} ({why}): no accuracy claimed, not re-trained"))
    return RerunPlan(run, other, "chosen with --rerun-run")


def rerun(sub: Submission, k: int, *, tolerance: float = DEFAULT_TOLERANCE, build: Path = Path("build"),
          train: Callable[..., dict] | None = None, load_dataset: Callable[..., Any] | None = None,
          progress: TextIO | None = None, repeat: int | None = None,
          choose: Callable[[list[int]], int] | None = None) -> list[Finding]:
    """Train ``k`` experiments again in a temporary build folder and compare their test accuracy.

    Run 1 of each, and of each with 2+ measured runs also one run 2..N (``plan_rerun``:
    ``repeat`` names it, else ``choose`` draws it), so forged runs 2..N are at risk too. Each
    run is trained by the runner exactly as ``labreport run`` trains it (its derived seed, its
    repeat-R folder), in a scratch build. The data sets and HOG features come from ``build``
    (linked, so a fetch is kept for the next time); ``train``/``load_dataset`` are the
    runner's seams (tests pass fakes).
    """
    check_rerun_run(sub, repeat)
    specs = rerun_candidates(sub, k)
    out = []
    if len(specs) < k:
        out.append(Finding(DOCUMENT, "rerun", NOTE,
                           f"asked for {k}, only {len(specs)} experiments have a measured accuracy"))
    if not specs:
        return out
    from labreport.train import runner  # the engine: TensorFlow is loaded only on this path

    runs = {r.name: r for r in sub.runs()}
    plans = [plan_rerun(runs[s.name], repeat, choose) for s in specs]
    with tempfile.TemporaryDirectory(prefix="labreport-verify-") as tmp:
        scratch = Path(tmp) / "build"
        _share_caches(scratch, Path(build))
        # Each run alone, never fused with the other one: a fused run's data order depends on
        # the runs it was fused with (fusion.epoch_keys draws under the group's global seed),
        # so run 1 + run r fused would reproduce neither a run trained alone nor one fused in
        # another group; alone, a run trained alone on this machine is reproduced exactly.
        runner.run(sub.config, scratch, quick=sub.quick, names=[s.name for s in specs], force=True,
                   run_keys={key for p in plans for key in p.run_keys}, fuse=False,
                   train=train, load_dataset=load_dataset, progress=progress or sys.stderr)
        for p in plans:
            spread = p.run.aggregate.stat("test_accuracy")
            for r, how in ((p.run, ""), (p.extra, p.how)):
                if r is None:
                    continue
                which = f"run {r.repeat}/{r.spec.repeats} (seed {r.spec.seed}{', ' + how if how else ''})" \
                    if r.repeated else ""
                fresh = store.read_result(scratch, r.name, sub.quick, repeat=r.repeat)
                out.append(compare_rerun(r.spec, r.result, fresh, tolerance, spread, which=which))
            if p.note is not None:
                out.append(p.note)
    return out


def _share_caches(scratch: Path, build: Path) -> None:
    """Point the scratch build's data/ and features/ at the real ones: no re-download, no re-HOG."""
    scratch.mkdir(parents=True)
    for sub_dir in ("data", "features"):
        target = (build / sub_dir).resolve()
        target.mkdir(parents=True, exist_ok=True)
        (scratch / sub_dir).symlink_to(target, target_is_directory=True)


def rerun_tolerance(default: float, spread: Stat | None) -> tuple[float, str]:
    """The tolerance of a re-training and why: with >= 2 measured runs, max(default, 2 x their std)."""
    if spread is None or spread.std is None or spread.n < 2:
        return default, f"tolerance ±{100 * default:.2f} points"
    tol = max(default, 2 * spread.std)
    which = "the default" if tol == default else f"2 x the std of the {spread.n} measured runs"
    return tol, (f"tolerance ±{100 * tol:.2f} points = max(default {100 * default:.2f}, 2 x std"
                 f" {100 * spread.std:.2f} over {spread.n} runs): {which}")


def compare_rerun(spec: ExperimentSpec, claimed: dict | None, fresh: dict | None, tolerance: float,
                  spread: Stat | None = None, *, which: str = "") -> Finding:
    """One run's claimed accuracy against its re-training; ``spread``: the measured runs' accuracy;
    ``which``: the run, as the finding names it ("run 2/3 (seed ...)"; empty without repeats)."""
    tolerance, tol_text = rerun_tolerance(tolerance, spread)
    lead = f"{which}: " if which else ""
    claimed_acc = Run(spec, claimed).test_accuracy
    if fresh is None or fresh.get("status") != "ok":
        why = (fresh or {}).get("error") or (fresh or {}).get("status") or "no result stored"
        return Finding(spec.name, "rerun", MISMATCH, f"{lead}the re-training did not finish: {why}")
    acc = Run(spec, fresh).test_accuracy
    if acc is None or claimed_acc is None:
        return Finding(spec.name, "rerun", MISMATCH, f"{lead}the re-training measured no test accuracy")
    diff = acc - claimed_acc
    detail = (f"{lead}test accuracy {claims_mod.pct(claimed_acc)} claimed, {claims_mod.pct(acc)} re-trained"
              f" ({claims_mod.points(diff)} points; {tol_text})")
    engines = [(r.get("versions") or {}).get("engine") if isinstance(r.get("versions"), dict) else None
               for r in (claimed or {}, fresh)]
    if engines[0] is not None and engines[1] is not None and str(engines[0]) != str(engines[1]):
        # e.g. a CNN trained before the conv bias change (engine 1) re-trained with 1+conv2: the
        # same model and seed, float additions in another order, so seed-noise differences.
        detail += (f"; claimed with engine {engines[0]}, re-trained with engine {engines[1]}: its numbers"
                   " changed at the rounding level in between, so expect a seed-noise difference")
    return Finding(spec.name, "rerun", OK if abs(diff) <= tolerance + 1e-12 else MISMATCH, detail)


# --------------------------------------------------------------------------- entry point
def title_of(sub: Submission) -> str:
    meta = sub.config.report
    who = ", ".join(meta.authors)
    extra = "; ".join(x for x in (meta.group, who) if x)
    return meta.title + (f" ({extra})" if extra else "")


def verify(path: Path | str, *, rerun_k: int = 0, tolerance: float = DEFAULT_TOLERANCE,
           build: Path = Path("build"), train: Callable[..., dict] | None = None,
           load_dataset: Callable[..., Any] | None = None, progress: TextIO | None = None,
           allow_templates: bool = False, rerun_run: int | None = None,
           choose: Callable[[list[int]], int] | None = None) -> Verification:
    """Read ``path`` and run every check (plus ``rerun_k`` re-trainings, see ``rerun``); raise
    UnreadableReport, or BadRerunRun for a ``rerun_run`` the hand-in does not declare."""
    sub = read_submission(path)
    if rerun_k:
        check_rerun_run(sub, rerun_run)  # before the checks: a bad option fails at once
    findings = verify_submission(sub, allow_templates=allow_templates)
    if rerun_k:
        findings += rerun(sub, rerun_k, tolerance=tolerance, build=build, train=train,
                          load_dataset=load_dataset, progress=progress, repeat=rerun_run, choose=choose)
    return Verification(Path(path), title_of(sub), tuple(findings))

