"""Copies between submissions: which pairs share measurements that independent runs never share.

Each submission is reduced to a ``Fingerprint`` (in the process that graded it): per
experiment, a hash of each per-epoch curve, of the confusion matrix, the run's timestamps
and wall time, its seed and the hash of its training settings; the hashes of the comments,
the config, the results.json and the PDF file. Two independent trainings never produce
the same 17-digit loss curve or the same confusion matrix of a non-trivial model -- unless
they trained the same settings with the same seed on the same software, which is why the
seed is part of the verdict. Timestamps have one-second resolution and wall times one
millisecond: in a class that starts together, either alone coincides now and then, both
together do not.

- ``copy``: the same PDF or results.json bytes; the same curve or confusion matrix although
  the seeds or settings differ (impossible for two real trainings); or the same start time,
  end time and wall time of a run.
- ``note``: the same measurements from the same settings and seed, at different times:
  two deterministic independent runs, or a copy whose timestamps were edited. Shown, not
  penalised.

A lone timing coincidence is not reported. Identical configs or comments alone are normal
(the default lab) and never flag a pair: they are listed as supporting evidence of a pair
flagged for its measurements. Comparison goes through an index (evidence -> submissions),
not every pair of files.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

COPY, NOTE = "copy", "note"
CURVE_LABELS = {"val_loss": "test-loss", "loss": "training-loss", "val_accuracy": "test-accuracy",
                "accuracy": "training-accuracy"}


def digest(value: Any) -> str:
    """sha256 of a JSON value (floats by repr: every digit counts)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class RunPrint:
    """What one stored run carries that two independent trainings would not share."""

    experiment: str
    seed: Any
    settings: str  # digest of the spec's training settings (everything but name/comment/chosen)
    curves: tuple[tuple[str, int, str], ...]  # (history key, epochs, digest)
    confusion: str  # digest, "" when absent or degenerate (one predicted class only)
    timestamps: str  # digest of (started_at, finished_at), "" when absent
    duration: str  # repr of duration_s, "" when absent


@dataclass(frozen=True)
class Fingerprint:
    runs: tuple[RunPrint, ...]
    comments: tuple[tuple[str, str], ...]  # (experiment, digest) of non-empty comments
    config: str  # digest of the experiments.toml text
    results: str  # digest of results.json
    pdf: str  # sha256 of the file


# `repeats` says how many runs a group trained, not how this run was trained: two groups
# with the same seed and settings legitimately share repeat 1's curves whatever their repeats.
SETTINGS_SKIP = ("name", "comment", "chosen", "part", "repeats")


def run_print(name: str, result: dict) -> RunPrint | None:
    """A RunPrint of one stored result; None when it carries nothing measurable."""
    if not isinstance(result, dict):
        return None
    spec = result.get("spec") if isinstance(result.get("spec"), dict) else {}
    settings = {k: v for k, v in spec.items() if k not in SETTINGS_SKIP}
    history = result.get("history") if isinstance(result.get("history"), dict) else {}
    curves = []
    for key in CURVE_LABELS:
        values = history.get(key)
        if isinstance(values, list) and values:
            curves.append((key, len(values), digest(values)))
    cm = result.get("confusion")
    confusion = ""
    if isinstance(cm, list) and cm and all(isinstance(r, list) for r in cm):
        # A model that predicts one class for everything gives the same matrix every time.
        predicted = {j for row in cm for j, v in enumerate(row) if v}
        if len(predicted) > 1:
            confusion = digest(cm)
    started, finished = result.get("started_at"), result.get("finished_at")
    timestamps = digest([started, finished]) if started or finished else ""
    duration = result.get("duration_s")
    duration_text = repr(duration) if isinstance(duration, float) and duration > 0 else ""
    if not (curves or confusion or timestamps or duration_text):
        return None
    return RunPrint(name, spec.get("seed"), digest(settings), tuple(curves), confusion, timestamps, duration_text)


def fingerprint(toml_text: str, results: dict, results_bytes: bytes | None, pdf_bytes: bytes,
                comments: Iterable[tuple[str, str]]) -> Fingerprint:
    runs = []
    for entry in results.get("experiments") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            rp = run_print(entry["name"], entry.get("result"))
            if rp is not None:
                runs.append(rp)
    return Fingerprint(
        runs=tuple(runs),
        comments=tuple((name, digest(text.strip())) for name, text in comments if text.strip()),
        config=digest(toml_text),
        results=hashlib.sha256(results_bytes).hexdigest() if results_bytes is not None else digest(results),
        pdf=hashlib.sha256(pdf_bytes).hexdigest(),
    )


# --------------------------------------------------------------------------- comparison
MAX_LISTED = 4  # experiments spelled out per pair; the rest are counted


@dataclass(frozen=True)
class Pair:
    """Two submissions (indices into the graded list) and why they look alike."""

    a: int
    b: int
    verdict: str  # COPY | NOTE
    evidence: tuple[str, ...]  # "raw-tanh-250: identical 150-epoch test-loss curve (seeds 3 and 9)"

    def sentence(self, labels: Sequence[str]) -> str:
        return f"{labels[self.a]} and {labels[self.b]}: {self.verdict}: " + "; ".join(self.evidence)


def compare(prints: Sequence[Fingerprint | None]) -> list[Pair]:
    """Every pair of submissions that shares evidence of copying, copies first."""
    index: dict[tuple, list[tuple[int, Any]]] = defaultdict(list)
    for i, fp in enumerate(prints):
        if fp is None:
            continue
        index[("pdf", fp.pdf)].append((i, None))
        index[("results", fp.results)].append((i, None))
        for rp in fp.runs:
            for key, n, d in rp.curves:
                index[("curve", key, n, d)].append((i, rp))
            if rp.confusion:
                index[("confusion", rp.confusion)].append((i, rp))
            if rp.timestamps:
                index[("timestamps", rp.timestamps)].append((i, rp))
            if rp.duration:
                index[("duration", rp.duration)].append((i, rp))

    # (a, b) -> whole-file facts, and (experiment in a, experiment in b) -> what they share
    files: dict[tuple[int, int], list[str]] = defaultdict(list)
    shared: dict[tuple[int, int], dict[tuple[RunPrint, RunPrint], list[tuple]]] = defaultdict(lambda: defaultdict(list))
    for token, holders in index.items():
        if len({i for i, _ in holders}) < 2:
            continue
        for ia, ra in holders:
            for ib, rb in holders:
                if ia >= ib:
                    continue
                if ra is None:
                    files[(ia, ib)].append(token[0])
                else:
                    shared[(ia, ib)][(ra, rb)].append(token)

    pairs = []
    for key in sorted(set(files) | set(shared)):
        lines, level = [], 0
        if "pdf" in files[key]:
            lines.append("the same PDF file, byte for byte")
            level = 2
        elif "results" in files[key]:
            lines.append("the same results.json, byte for byte")
            level = 2
        runs = sorted(shared[key].items(), key=lambda kv: (kv[0][0].experiment, kv[0][1].experiment))
        described = [d for d in (_describe(ra, rb, tokens) for (ra, rb), tokens in runs) if d[1]]
        level = max([level] + [lv for _, lv in described])
        if not level:
            continue  # only lone timing coincidences
        listed = [text for text, lv in sorted(described, key=lambda d: -d[1])]
        if len(listed) > MAX_LISTED:
            listed = listed[:MAX_LISTED] + [f"and {len(listed) - MAX_LISTED} more experiments alike"]
        support = _supporting(prints[key[0]], prints[key[1]])
        pairs.append(Pair(key[0], key[1], COPY if level == 2 else NOTE, tuple(lines + listed) + support))
    pairs.sort(key=lambda p: (p.verdict != COPY, p.a, p.b))
    return pairs


def _describe(ra: RunPrint, rb: RunPrint, tokens: list[tuple]) -> tuple[str, int]:
    """One experiment pair's shared facts as a sentence, and their weight: 2 copy, 1 note, 0 nothing."""
    names = ra.experiment if ra.experiment == rb.experiment else f"{ra.experiment} / {rb.experiment}"
    kinds = {t[0] for t in tokens}
    facts = []
    curves = sorted((t for t in tokens if t[0] == "curve"), key=lambda t: list(CURVE_LABELS).index(t[1]))
    if curves:
        facts.append(f"identical {curves[0][2]}-epoch {CURVE_LABELS[curves[0][1]]} curve"
                     + (f" (and {len(curves) - 1} more curves)" if len(curves) > 1 else ""))
    if "confusion" in kinds:
        facts.append("identical confusion matrix")
    if "timestamps" in kinds:
        facts.append("the same training start and end time")
    if "duration" in kinds:
        facts.append(f"the same wall time to the millisecond ({ra.duration} s)")
    measured = bool(kinds & {"curve", "confusion"})
    same_seed = ra.seed == rb.seed and ra.settings == rb.settings
    timed = {"timestamps", "duration"} <= kinds
    level = 2 if timed or (measured and not same_seed) else 1 if measured else 0
    note = ""
    if measured:
        note = (" (same settings and seed)" if same_seed else
                f" (seeds {ra.seed} and {rb.seed})" if ra.seed != rb.seed else " (different settings)")
    return f"{names}: " + ", ".join(facts) + note, level


def _supporting(a: Fingerprint | None, b: Fingerprint | None) -> tuple[str, ...]:
    """Shared comments and config: never evidence alone, worth reading next to measurements."""
    if a is None or b is None:
        return ()
    out = []
    shared = {d for _, d in a.comments} & {d for _, d in b.comments}
    if shared:
        out.append(f"{len(shared)} identical comment{'s' * (len(shared) != 1)} (supporting)")
    if a.config == b.config:
        out.append("identical experiments.toml (supporting)")
    return tuple(out)


def flagged(pairs: Sequence[Pair]) -> dict[int, list[int]]:
    """submission index -> the submissions it is flagged as a copy with."""
    out: dict[int, list[int]] = defaultdict(list)
    for p in pairs:
        if p.verdict == COPY:
            out[p.a].append(p.b)
            out[p.b].append(p.a)
    return dict(out)
