"""The report model: one pure value holding everything the report prints, built once.

``build(config, runs, info)`` turns the config and the stored runs into a :class:`Report`:
numbered sections with their titles and anchors (the table of contents is read from
them), the experiment cards, the part tables, questions 1-4, the conclusions and the
appendix -- every number already formatted, and recorded as a :class:`~claims.Claim`
(where it is printed, what it is, the printed text, its source). Templates only read
the model; figures are named here by key and planned/drawn afterwards
(``render.plan_figures``); verify imports the same builder and constants, so nothing
is copied between templates and code.

Pure: no I/O, no clock (the render date and versions come in ``RenderInfo``), no
matplotlib, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from labreport.config.spec import PART_TITLES, PARTS, ExperimentSpec, LabConfig
from labreport.report import appendix as appendix_mod, comparisons as comparisons_mod
from labreport.report import claims, describe, observations as observations_mod, parts as parts_mod, q1 as q1_mod
from labreport.report import q2 as q2_mod, q3 as q3_mod
from labreport.report.claims import Claim
from labreport.report.figures import EQUATIONS
from labreport.results.run import NOT_RUN, Aggregate, Run, best_run

BANNER = "SMOKE RUN (--quick): numbers are not the lab's"
# The labels of a card's metric table; verify reads them from here.
METRIC_LABELS = {
    "test_loss": "Test loss (score)",
    "test_accuracy": "Test accuracy",
    "macro_f1": "Macro F1",
    "train_loss": "Training loss (last epoch)",
    "train_accuracy": "Training accuracy",
    "epochs_run": "Epochs run",
    "min_test_loss": "Min. test loss",
    "duration_s": "Run time",
}
CARD_PREFIX, ROW_PREFIX = "exp-", "row-"


# --------------------------------------------------------------------------- anchors
def slug(name: str) -> str:
    """An HTML id from a name: letters, digits, '-' and '_' kept, anything else '-'."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in str(name))


def unique_slugs(names: Sequence[str]) -> dict[str, str]:
    """name -> slug, unique by construction: a colliding name gets '-2', '-3', ... in declaration order."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = slug(name)
        candidate, k = base, 2
        while candidate in taken:
            candidate, k = f"{base}-{k}", k + 1
        taken.add(candidate)
        out[name] = candidate
    return out


@dataclass(frozen=True)
class Anchors:
    """The ids of each experiment's card and table row (a PDF named destination each)."""

    slugs: dict[str, str]

    @classmethod
    def of(cls, names: Sequence[str]) -> Anchors:
        return cls(unique_slugs(names))

    def card(self, name: str) -> str:
        return CARD_PREFIX + self.slugs[name]

    def row(self, name: str) -> str:
        return ROW_PREFIX + self.slugs[name]


# --------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Section:
    anchor: str
    number: str
    title: str
    qref: str = ""  # "(question 1)" printed after the title
    level: int = 1

    @property
    def heading(self) -> str:
        return f"{self.number} {self.title}"


TITLE_ANCHOR, TOC_ANCHOR = "title", "toc"
TOP_SECTIONS = (
    Section("q1", "1", "Learning algorithm", "question 1"),
    Section("q2", "2", "Model complexity", "question 2"),
    Section("q3", "3", "Capacity: shallow vs deep", "question 3"),
    Section("q4", "4", "Tests", "question 4"),
    Section("conclusions", "5", "Conclusions"),
    Section("appendix", "A", "Appendix"),
)
QUESTION_ANCHORS = ("q1", "q2", "q3", "q4")
Q1_SUBSECTIONS = (Section("q1-rmsprop", "", "RMSprop update rule", level=2),
                  Section("q1-loss", "", "Cost function: categorical cross-entropy", level=2))
APPENDIX_SECTIONS = (
    ("appendix-problems", "Failed, diverged and missing experiments"),
    ("appendix-times", "Run times"),
    ("appendix-data", "Data checksums"),
    ("appendix-versions", "Software versions"),
    ("appendix-config", "The experiments file used ({config})"),
)


# --------------------------------------------------------------------------- values
@dataclass(frozen=True)
class RenderInfo:
    """What the model needs from outside and must not compute itself (so verify can rebuild it)."""

    date: str
    generator: str
    render_versions: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"date": self.date, "generator": self.generator,
                "render_versions": [list(v) for v in self.render_versions], "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict) -> RenderInfo:
        return cls(str(d.get("date", "")), str(d.get("generator", "")),
                   tuple((str(a), str(b)) for a, b in d.get("render_versions") or ()),
                   tuple(str(w) for w in d.get("warnings") or ()))


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
    curves: str | None  # figure keys
    confusion: str | None
    pairs: tuple[dict, ...]  # true_name, predicted_name, count, share (printed strings)
    observations: tuple[str, ...]
    comment: str  # the students' Markdown (rendered by the HTML writer)
    quick: bool
    # Repeats (N > 1): every run's seed and numbers, and which run the details are of.
    runs: tuple[dict, ...] = ()  # repeat, seed, status, test_accuracy, test_loss, macro_f1, median (printed)
    median_note: str = ""
    band: bool = False  # the curves are the mean ± std of the runs
    runs_note: str = ""  # "2 of 3 runs measured; run 1 failed: ..." when some runs are left out of the mean


@dataclass(frozen=True)
class TableRow:
    """One row of a part table, every cell as printed."""

    name: str
    anchor: str
    card_anchor: str
    status: str
    chosen: bool
    best: bool
    model: str
    n_params: str
    batch_size: str
    epochs: str
    test_loss: str
    test_accuracy: str
    macro_f1: str
    best_epoch: str
    duration: str
    epochs_run: str
    runs: str = ""  # "3" or "2 of 3" when the part has repeats


@dataclass(frozen=True)
class PartView:
    part: str
    title: str
    section: Section
    conclusions_section: Section
    dataset: str
    intro: tuple[str, ...]
    warnings: tuple[str, ...]
    rows: tuple[TableRow, ...]
    best_anchor: str
    best_sentence: str
    conclusions: tuple[str, ...]
    comparisons: tuple[str, ...]
    compare: str | None
    samples: str | None
    hog: str | None
    cards: tuple[Card, ...]
    repeated: bool = False  # an experiment of the part declares repeats > 1: the table has a Runs column

    @property
    def anchor(self) -> str:
        return self.section.anchor

    @property
    def number(self) -> str:
        return self.section.number.split(".")[-1]


@dataclass(frozen=True)
class ModelView:
    model: q2_mod.ModelComplexity
    part_title: str
    section: Section

    @property
    def anchor(self) -> str:
        return self.section.anchor


@dataclass(frozen=True)
class CapacityRowView:
    title: str
    kind: str
    n_models: str
    params: str  # "min – max"
    accuracy: str  # "min – max" or "not run"


@dataclass(frozen=True)
class TimingView:
    name: str
    part: str
    status: str
    epochs_run: str
    epoch_s: str
    duration: str


@dataclass(frozen=True)
class ChecksumView:
    dataset: str
    sha256: str
    source: str
    sizes: str
    experiments: str


@dataclass(frozen=True)
class Report:
    meta: dict
    quick: bool
    banner: str
    config_name: str
    counts: dict  # printed strings
    sections: dict[str, Section]
    toc: tuple[Section, ...]
    q1: q1_mod.LearningAlgorithm
    q2: tuple[ModelView, ...]
    q3_rows: tuple[CapacityRowView, ...]
    q3: q3_mod.Capacity
    parts: tuple[PartView, ...]
    appendix: dict
    generator: str
    warnings: tuple[str, ...]
    anchors: Anchors
    claims: tuple[Claim, ...] = field(repr=False, default=())
    figure_keys: tuple[str, ...] = ()
    info: RenderInfo | None = None
    repeated: bool = False  # some experiment declares repeats > 1 (the noise rule is explained)

    def context(self, fig: Callable[[str | None], Any], markdown: Callable[[str], Any]) -> dict:
        """The Jinja context: the model, plus ``fig(key)`` and ``markdown(text)`` from the writer."""
        return {"report": self, "meta": self.meta, "quick": self.quick, "banner": self.banner,
                "config_name": self.config_name, "counts": self.counts, "sections": self.sections,
                "toc": self.toc, "q1": self.q1, "q2": self.q2, "q3": self.q3, "q3_rows": self.q3_rows,
                "parts": self.parts, "appendix": self.appendix, "generator": self.generator,
                "warnings": self.warnings, "fig": fig, "markdown": markdown,
                "eq": {key: fig(f"eq:{key}") for key in EQUATIONS}, "capacity_fig": fig("capacity"),
                "noise_rule": comparisons_mod.NOISE_RULE}


# --------------------------------------------------------------------------- helpers
def is_stale(spec: ExperimentSpec, result: dict | None) -> bool:
    """The result was computed for other settings, data or engine than today's (``staleness.decide``)."""
    from labreport.results import staleness

    return bool(result) and staleness.decide(spec, result, quick=bool(result.get("quick"))).out_of_date


def _res(name: str, *path: str) -> str:
    return f"results:{name}/" + "/".join(path)


def _src(run: Run, *path: str) -> str:
    """A source in results.json of this run (repeat 1: the entry's result; repeat r: more_runs/r-2)."""
    return f"{run.source}/" + "/".join(path)


HEADLINE_LABELS = {"test_accuracy": "test accuracy", "test_loss": "test loss", "macro_f1": "macro F1"}


def headline_text(run: Run, key: str, fmt: Callable[..., str]) -> str:
    """The printed value of ``key`` for an experiment: repeat 1's value with one run (as before
    repeats), 'mean ± std' over the measured runs with several (std left out below 2 runs)."""
    h, n, label = run.headline(key), run.name, HEADLINE_LABELS[key]
    if not run.repeated:
        return fmt(h.mean, what=f"{label} of {n}", src=run.headline_source(key))
    text = fmt(h.mean, what=f"mean {label} of {n}", src=Aggregate.mean_source(n, key))
    if h.std is not None:
        text += " ± " + fmt(h.std, what=f"standard deviation of the {label} of {n}", src=Aggregate.std_source(n, key))
    return text


def runs_count(run: Run, *, word: bool = True) -> str:
    """'3 runs' or '2 of 3 runs' (measured of declared); without ``word``: '3', '2 of 3'."""
    n, agg = run.name, run.aggregate
    k = claims.count(agg.n_measured, what=f"measured runs of {n}",
                     src=f"formula: runs of {n} with status ok in results:{n} and results:{n}/more_runs")
    if agg.n_measured != agg.n_declared:
        k += f" of {claims.count(agg.n_declared, what=f'runs declared for {n}', src=f'config:{n}/repeats')}"
    return f"{k} run{'' if agg.n_declared == 1 else 's'}" if word else k


def metric_rows(run: Run) -> tuple[tuple[str, str], ...]:
    if not run.detail.result:  # with repeats: run 1 may be missing while runs 2-3 are measured
        return ()
    n, L = run.name, METRIC_LABELS
    rows = [(L[k], headline_text(run, k, fmt)
             + (f" ({runs_count(run)})" if run.repeated and k == "test_accuracy" else ""))
            for k, fmt in (("test_loss", claims.num), ("test_accuracy", claims.pct), ("macro_f1", claims.num))]
    detail = run.detail  # with repeats, the other rows are the median run's
    f, m = detail.facts, detail.metrics
    if isinstance(m.get("train_loss"), (int, float)):
        rows.append((L["train_loss"], claims.num(m["train_loss"], what=f"training loss of {n}",
                                                 src=_src(detail, "metrics", "train_loss"))))
    if isinstance(m.get("train_accuracy"), (int, float)):
        rows.append((L["train_accuracy"], claims.pct(m["train_accuracy"], what=f"training accuracy of {n}",
                                                     src=_src(detail, "metrics", "train_accuracy"))))
    rows.append((L["epochs_run"], f"{claims.count(f['epochs_run'], what=f'epochs run by {n}', src=_src(detail, 'history'))}"
                                  f" of {claims.count(run.spec.epochs, what=f'epochs of {n}', src=f'config:{n}/epochs')}"))
    if f["best_epoch"]:
        rows.append((L["min_test_loss"],
                     f"{claims.num(f['min_test_loss'], what=f'minimum test loss of {n}', src=_src(detail, 'history', 'val_loss'))}"
                     f" at epoch {claims.count(f['best_epoch'], what=f'best epoch of {n}', src=_src(detail, 'history', 'val_loss'))}"))
    rows.append((L["duration_s"], claims.seconds(detail.duration_s, what=f"run time of {n}", src=_src(detail, "duration_s"))))
    return tuple(rows)


def runs_note(run: Run) -> str:
    """With repeats, when the numbers printed are over some of the runs only: which runs are left
    out and why ("2 of 3 runs measured; run 1 failed: RuntimeError: ...; run 3 not run yet")."""
    if not run.repeated or run.outcome != "ok" or run.aggregate.n_measured == run.aggregate.n_declared:
        return ""
    n, out = run.name, []
    with claims.about(n):
        for r in run.aggregate.runs:
            if r.status == "ok" and r.measured:
                continue
            k = claims.count(r.repeat, what=f"run number of {n}", src=f"config:{n}/repeats")
            error = str((r.result or {}).get("error") or "")
            out.append(f"run {k} not run yet" if r.status == NOT_RUN else
                       f"run {k} {r.status}" + (f": {error}" if error else ""))
        return f"Numbers over {runs_count(run)}; " + "; ".join(out) + "."


def run_rows(run: Run) -> tuple[dict, ...]:
    """Every run of a repeated experiment: its number, seed, status and test numbers (as printed);
    none while no run is stored (the card says "not run" and prints no table)."""
    if not run.repeated or run.outcome == NOT_RUN:
        return ()
    n, median = run.name, run.aggregate.median
    out = []
    for r in run.aggregate.runs:
        k = r.repeat
        measured = r.status not in (NOT_RUN, "failed") and r.result is not None
        with claims.about(n):
            out.append({
                "repeat": claims.count(k, what=f"run number of {n}", src=f"config:{n}/repeats"),
                "seed": claims.text(str(r.spec.seed), what=f"seed of run {k} of {n}",
                                    src=f"formula: repeat_seed(config:{n}/seed, {k})", value=r.spec.seed),
                "status": r.status,
                "test_accuracy": claims.pct(r.test_accuracy, what=f"test accuracy of {n} run {k}",
                                            src=_src(r, "metrics", "test_accuracy")) if measured else "",
                "test_loss": claims.num(r.test_loss, what=f"test loss of {n} run {k}",
                                        src=_src(r, "metrics", "test_loss")) if measured else "",
                "macro_f1": claims.num(r.macro_f1, what=f"macro F1 of {n} run {k}",
                                       src=_src(r, "metrics", "macro_f1")) if measured else "",
                "median": median is not None and r.repeat == median.repeat,
            })
    return tuple(out)


def part_intro(part: str, runs: Sequence[Run]) -> tuple[str, ...]:
    mine = [r.spec for r in runs if r.spec.part == part]
    if not mine:
        return ()
    fmt = claims.count
    datasets = sorted({s.dataset for s in mine})
    out = [f"{claims.plural(len(mine), 'experiment')} on {', '.join(describe.dataset_title(d) for d in datasets)};"
           f" {fmt(60_000)} training and {fmt(10_000)} test images, the test set doubling as validation data during"
           " training (so the 'test' curves are measured on it after every epoch)."]
    hogs = sorted({(s.hog.pixels_per_cell, s.hog.orientations) for s in mine if s.hog})
    for p, o in hogs:
        cells = 28 // p
        out.append(f"HOG with {fmt(p)} x {fmt(p)}-pixel cells and {fmt(o)} orientations: ({fmt(28)} // {fmt(p)})^2 x"
                   f" {fmt(o)} = {fmt(cells)} x {fmt(cells)} x {fmt(o)} = {fmt(cells * cells * o)} features per image.")
    if any(s.conv for s in mine):
        stacks = sorted({describe.conv_text(s) for s in mine if s.conv})
        out.append("Convolution stacks used (filters@kernel activation, each followed by 2 x 2 max pooling"
                   " unless stated otherwise in the spec): " + "; ".join(stacks) + ".")
    return tuple(out)


def _row(r: Run, anchors: Anchors, best: str | None) -> TableRow:
    n, c = r.name, claims
    measured = r.outcome not in (NOT_RUN, "failed")  # with repeats: some run is (the mean over those)
    detail = r.detail  # best epoch and time: the median run's; the failed run's epochs
    f = detail.facts if detail.result else {"best_epoch": None, "epochs_run": 0}
    with claims.about(n):
        return TableRow(
            name=n, anchor=anchors.row(n), card_anchor=anchors.card(n), status=r.outcome, chosen=r.spec.chosen,
            best=best == n, model=describe.short_model(r.spec),
            n_params=c.count(r.n_params, what=f"parameters of {n}", src=f"config:{n}/total"),
            batch_size=c.count(r.spec.batch_size, what=f"batch size of {n}", src=f"config:{n}/batch_size"),
            epochs=c.count(r.spec.epochs, what=f"epochs of {n}", src=f"config:{n}/epochs"),
            test_loss=headline_text(r, "test_loss", c.num) if measured else "",
            test_accuracy=headline_text(r, "test_accuracy", c.pct) if measured else "",
            macro_f1=headline_text(r, "macro_f1", c.num) if measured else "",
            best_epoch=(c.count(f["best_epoch"], what=f"best epoch of {n}", src=_src(detail, "history", "val_loss"))
                        if measured and f["best_epoch"] else "—"),
            duration=(_total_time(r) if r.repeated else
                      c.seconds(r.duration_s, what=f"run time of {n}", src=_res(n, "duration_s"))) if measured else "",
            epochs_run=(c.count(f["epochs_run"], what=f"epochs run by {n}", src=_src(detail, "history"))
                        if r.outcome == "failed" else ""),  # printed only as "FAILED after N epochs"
            runs=runs_count(r, word=False) if r.repeated and measured else "",
        )


def _total_time(r: Run) -> str:
    total = sum(x.duration_s for x in r.aggregate.runs if x.duration_s is not None)
    return claims.seconds(total, what=f"run time of all runs of {r.name}",
                          src=f"formula: sum of results:{r.name}/duration_s and results:{r.name}/more_runs/*/duration_s")


def _card(r: Run, anchors: Anchors, best_names: set[str], warnings: list[str]) -> Card:
    n = r.name
    # With repeats, the confusion matrix, the pairs and the observations are the median run's,
    # and the status and error the experiment shows are its (``Run.outcome``).
    d = r.detail
    error = str((d.result or {}).get("error") or "")
    median_note = ""
    if r.repeated and r.aggregate.median is not None:
        with claims.about(n):
            median_note = (f"Confusion matrix, most confused pairs, observations and the detail rows above: run"
                           f" {claims.count(d.repeat, what=f'median run of {n}', src=f'formula: median of the test accuracies of the measured runs of {n}')}"
                           f" (the median run by test accuracy, seed {claims.text(str(d.spec.seed), what=f'seed of run {d.repeat} of {n}', src=f'formula: repeat_seed(config:{n}/seed, {d.repeat})', value=d.spec.seed)}).")
    with claims.about(n, source=f"formula: from {d.source}/history and {d.source}/confusion"):
        try:
            observations = tuple(observations_mod.observations(d))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            # A malformed result.json must not hide the other 23 experiments.
            observations = (f"This result could not be analysed ({type(exc).__name__}: {exc}).",)
            warnings.append(f"{n}: result could not be analysed: {type(exc).__name__}: {exc}")
    with claims.about(n, source=f"config:{n}"):
        description = describe.model_description(r.spec)
        short = describe.short_model(r.spec)
        hyper = tuple(describe.hyperparameters(r.spec))
    metrics = metric_rows(r)
    runs = run_rows(r)
    pairs: tuple[dict, ...] = ()
    if d.measured:
        with claims.about(n, source=_src(d, "confused_pairs")):
            pairs = tuple({"true_name": p.get("true_name"), "predicted_name": p.get("predicted_name"),
                           "count": claims.count(p.get("count"), what=f"confusions of {n}"),
                           "share": claims.pct(p.get("share_of_true"), 1, what=f"share of true class ({n})")}
                          for p in (d.result or {}).get("confused_pairs") or ())
    has_curves = bool(d.result) and any(d.history.values())
    has_cm = bool((d.result or {}).get("confusion")) and d.status != "failed"
    return Card(
        name=n, anchor=anchors.card(n), part=r.spec.part, status=r.outcome, error=error,
        stale=any(is_stale(x.spec, x.result) for x in r.aggregate.runs), chosen=r.spec.chosen, best=n in best_names,
        description=description, short=short, hyper=hyper, metrics=metrics,
        curves=f"curves:{n}" if has_curves else None, confusion=f"confusion:{n}" if has_cm else None,
        pairs=pairs, observations=observations, comment=r.spec.comment, quick=bool((d.result or {}).get("quick")),
        runs=runs, median_note=median_note, band=r.repeated and r.aggregate.n_measured >= 2,
        runs_note=runs_note(r),
    )


# --------------------------------------------------------------------------- build
def build(config: LabConfig, runs: Sequence[Run], info: RenderInfo, *, quick: bool = False) -> Report:
    """The report of ``runs`` (one per declared experiment, in config order). Pure."""
    with claims.recording() as rec:
        report = _build(config, runs, info, quick)
    return Report(**{**report, "claims": tuple(rec.claims)})


def _build(config: LabConfig, runs: Sequence[Run], info: RenderInfo, quick: bool) -> dict:
    anchors = Anchors.of([r.name for r in runs])
    warnings = list(info.warnings)
    present = [p for p in PARTS if any(r.spec.part == p for r in runs)]
    sections = {s.anchor: s for s in TOP_SECTIONS}
    toc: list[Section] = []
    for s in TOP_SECTIONS:
        toc.append(s)
        if s.anchor == "q2":
            q2_index = len(toc)
        if s.anchor == "q4":
            q4_index = len(toc)

    # Question 4's parts and their conclusions.
    summaries = {}
    for p in present:
        summaries[p] = parts_mod.part_summary(p, runs, config.requirements.min_variants_per_part)
    best_names = {s.best for s in summaries.values()}
    part_views = []
    for i, p in enumerate(present, 1):
        s = summaries[p]
        mine = [r for r in runs if r.spec.part == p]
        sec = Section(f"part-{p}", f"4.{i}", PART_TITLES.get(p, p), f"part {p}", level=2)
        con = Section(f"conclusions-{p}", f"5.{i}", PART_TITLES.get(p, p), level=2)
        sections[sec.anchor], sections[con.anchor] = sec, con
        best = best_run(mine)
        with claims.at(sec.anchor, p):
            intro = part_intro(p, runs)
            part_warnings = tuple(parts_mod.part_warnings(mine, config.requirements.min_variants_per_part))
        rows = []
        for r in mine:
            with claims.at(anchors.row(r.name), r.name):
                rows.append(_row(r, anchors, s.best))
        with claims.at(f"part-{p}-best", p):
            best_sentence = parts_mod.best_sentence(best)
        with claims.at(con.anchor, p):
            parts_mod.best_sentence(best)  # printed again at the head of the part's conclusions
            comps = comparisons_mod.comparisons(mine)
            conclusions = parts_mod.part_conclusions(mine, best, comps)
            comp_sentences = tuple(c.sentence for c in comps)
        cards = []
        for r in mine:
            with claims.at(anchors.card(r.name), r.name):
                cards.append(_card(r, anchors, best_names, warnings))
        measured_rows = [row for row in s.rows if row.test_accuracy is not None and row.status == "ok"]
        dataset = mine[0].spec.dataset
        part_views.append(PartView(
            part=p, title=PART_TITLES.get(p, p), section=sec, conclusions_section=con, dataset=dataset,
            intro=intro, warnings=part_warnings, rows=tuple(rows), best_anchor=f"part-{p}-best",
            best_sentence=best_sentence, conclusions=tuple(conclusions), comparisons=comp_sentences,
            compare=f"compare:{p}" if measured_rows else None, samples=f"samples:{dataset}",
            hog=("hog" if any(r.spec.hog for r in mine) else None), cards=tuple(cards),
            repeated=any(r.repeated for r in mine),
        ))

    # Question 2: the chosen model of each part.
    models = []
    for i, p in enumerate(present, 1):
        run, why = q2_mod.chosen_run(p, runs)
        if run is None:
            continue
        sec = Section(f"q2-{p}", f"2.{len(models) + 1}", f"{PART_TITLES.get(p, p)}: {run.name}", level=2)
        sections[sec.anchor] = sec
        with claims.at(sec.anchor, run.name), claims.about(run.name, source=f"config:{run.name}/layers"):
            models.append(ModelView(q2_mod.model_complexity(run.spec, run.result, why), PART_TITLES.get(p, p), sec))
    toc[q2_index:q2_index] = [m.section for m in models]
    q4_index += len(models)
    toc[q4_index:q4_index] = [pv.section for pv in part_views]

    with claims.at("q1"), claims.about(source="config: the optimizer of every experiment"):
        q1 = q1_mod.learning_algorithm([r.spec for r in runs])
    with claims.at("q3"):
        q3 = q3_mod.capacity(runs)
        q3_rows = tuple(CapacityRowView(
            row.title, row.kind, claims.count(row.n_models, what=f"models of part {row.part}"),
            f"{claims.count(row.params_min, what=f'fewest parameters in part {row.part}')} –"
            f" {claims.count(row.params_max, what=f'most parameters in part {row.part}')}",
            (f"{claims.pct(row.acc_min, what=f'lowest test accuracy in part {row.part}')} –"
             f" {claims.pct(row.acc_max, what=f'highest test accuracy in part {row.part}')}"
             if row.acc_min is not None else "not run"))
            for row in q3.rows)

    # Title page.
    n_status = {k: sum(1 for r in runs if r.outcome == k) for k in ("ok", "diverged", "failed", NOT_RUN)}
    n_stale = sum(1 for pv in part_views for c in pv.cards if c.stale)
    with claims.at(TITLE_ANCHOR), claims.about(source="formula: counted over the experiments in results.json"):
        counts = {
            "experiments": claims.count(len(runs), what="experiments"),
            "parts": claims.count(len(present), what="parts"),
            "ok": claims.count(n_status["ok"], what="experiments measured"),
            "diverged": claims.count(n_status["diverged"], what="experiments diverged") if n_status["diverged"] else "",
            "failed": claims.count(n_status["failed"], what="experiments failed") if n_status["failed"] else "",
            "not_run": claims.count(n_status[NOT_RUN], what="experiments not run") if n_status[NOT_RUN] else "",
            "stale": claims.count(n_stale, what="experiments out of date") if n_stale else "",
            "runs": "", "runs_measured": "",
        }
        if any(r.repeated for r in runs):
            counts["runs"] = claims.count(sum(r.spec.repeats for r in runs), what="runs declared",
                                          src="formula: sum of config:*/repeats")
            counts["runs_measured"] = claims.count(
                sum(r.aggregate.n_measured for r in runs), what="runs measured",
                src="formula: runs with status ok in results:* and results:*/more_runs")

    # Appendix.
    app_sections = []
    for j, (anchor, title) in enumerate(APPENDIX_SECTIONS, 1):
        sec = Section(anchor, f"A.{j}", title.format(config=_config_name(config)), level=2)
        sections[anchor] = sec
        app_sections.append(sec)
    with claims.at("appendix-problems"):
        problems = appendix_mod.problems(runs)
    with claims.at("appendix-times"):
        timing_rows, total_s = appendix_mod.timings(runs)
        timings = tuple(TimingView(
            t.label, t.part, t.status,
            claims.count(t.epochs_run, what=f"epochs run by {t.label}", src=f"{t.source}/history"),
            claims.num(t.epoch_s, 2, what=f"seconds per epoch of {t.label}", src=f"{t.source}/epoch_s")
            if t.epoch_s is not None else "—",
            claims.seconds(t.duration_s, what=f"run time of {t.label}", src=f"{t.source}/duration_s"))
            for t in timing_rows)
        total = claims.seconds(total_s, what="total training time",
                               src=("formula: sum of results:*/duration_s and results:*/more_runs/*/duration_s"
                                    if any(r.repeated for r in runs) else "formula: sum of results:*/duration_s"))
    with claims.at("appendix-data"):
        checksums = tuple(ChecksumView(
            c.dataset, c.sha256, c.source,
            f"{claims.count(c.n_train, what=f'training images of {c.dataset}')} /"
            f" {claims.count(c.n_test, what=f'test images of {c.dataset}')}",
            claims.count(c.experiments, what=f"experiments on {c.dataset}"))
            for c in appendix_mod.data_checksums(runs))
    run_versions = appendix_mod.versions_used(runs)
    config_name = _config_name(config)
    meta = {"title": config.report.title, "authors": tuple(config.report.authors), "course": config.report.course,
            "group": config.report.group, "date": config.report.date or info.date}
    return dict(
        meta=meta, quick=quick, banner=BANNER, config_name=config_name, counts=counts, sections=sections,
        toc=tuple(toc), q1=q1, q2=tuple(models), q3_rows=q3_rows, q3=q3, parts=tuple(part_views),
        appendix={"sections": tuple(app_sections), "toml": config.source_text, "render_versions": info.render_versions,
                  "run_versions": run_versions, "checksums": checksums, "timings": timings, "total": total,
                  "problems": tuple({"name": pr.name, "label": pr.label or pr.name, "anchor": anchors.card(pr.name),
                                     "status": pr.status, "error": pr.error} for pr in problems)},
        generator=info.generator, warnings=tuple(warnings), anchors=anchors, info=info,
        figure_keys=_figure_keys(part_views, runs), repeated=any(r.repeated for r in runs),
    )


def _config_name(config: LabConfig) -> str:
    from pathlib import PurePath

    return PurePath(str(config.path)).name


def _figure_keys(part_views: Sequence[PartView], runs: Sequence[Run]) -> tuple[str, ...]:
    keys: list[str] = []
    for pv in part_views:
        for c in pv.cards:
            keys += [k for k in (c.curves, c.confusion) if k]
        keys += [k for k in (pv.compare, pv.samples, pv.hog) if k]
    keys.append("capacity")
    keys += [f"eq:{k}" for k in EQUATIONS]
    return tuple(dict.fromkeys(keys))


def claims_document(report: Report, templates: dict) -> dict:
    """The claims attachment (claims.json): the render info, the templates' digest and every claim."""
    return {"schema": 1, "generator": report.generator, "render": report.info.as_dict() if report.info else {},
            "templates": templates, "claims": [c.as_dict() for c in report.claims]}
