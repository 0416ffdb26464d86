"""The evaluation report: ``attrib eval --report report.html`` (and ``--plots DIR``).

One self-contained HTML file (inline CSS, plots embedded as base64 PNGs, no script, no external
reference: it opens offline) built from what :func:`attrib.evaluate.run_protocol` measured:

* **K-shot curves**: top-1, AUROC, OSCR, EER against K, with the number of sources and queries;
* **operating point**: ROC and DET of known vs never-enrolled queries by best score, the point
  the calibrated thresholds reached at the nominal FAR marked, observed FAR and TAR beside it;
* **confusion matrix** of the calibrated decisions (sources ordered by family, then name), with
  ``unknown`` as a column and never-enrolled queries as a row;
* **per source**: samples enrolled, threshold, expected TAR (genuine model), observed TAR and FAR
  (1:1 at that threshold), top-1, EER, and the source most often confused with it;
* **score histograms**: genuine, impostor, never-enrolled (and rejects such as real photos);
* **robustness** (``--post``): the same headline figures with queries re-encoded, beside the clean;
* **run metadata**: encoder id, data folder, seed, attrib version, date, command line.

The figures in tables are those of the run (``run_protocol``'s summary, rounded to 4 decimals as
``attrib eval --json`` prints them) or counted from its per-trial details (pooled over trials).
Every string that comes from the user (source names, paths, the command line) is escaped.
Plotting uses matplotlib's object API (no pyplot, no global state, Agg canvas).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from .evaluate import TrialDetail
from .sources import FAMILIES

#: the headline figures of one K, in the order the K-shot table shows them
HEADLINE = (
    ("accuracy", "top-1"),
    ("auroc", "AUROC"),
    ("oscr", "OSCR"),
    ("eer", "EER"),
    ("openset_accuracy", "open-set acc."),
    ("tar", "TAR"),
    ("observed_far", "observed FAR"),
)
UNKNOWN = "unknown"
NEVER_ENROLLED = "never enrolled"


@dataclass
class Robustness:
    """The same protocol with queries post-processed (``steps``, e.g. ``["jpeg75"]``)."""

    steps: list[str]
    results: dict[str, Any]
    details: list[TrialDetail]


@dataclass
class Report:
    """The HTML page and the PNGs embedded in it (name -> bytes)."""

    html: str
    plots: dict[str, bytes] = field(default_factory=dict)

    def write(self, path: str | Path | None = None, plots_dir: str | Path | None = None) -> list[Path]:
        """Write the page to ``path`` and/or each plot to ``plots_dir/<name>.png``; returns the files."""
        written = []
        if path is not None:
            Path(path).write_text(self.html, encoding="utf-8")
            written.append(Path(path))
        if plots_dir is not None:
            Path(plots_dir).mkdir(parents=True, exist_ok=True)
            for name, data in self.plots.items():
                (Path(plots_dir) / f"{name}.png").write_bytes(data)
                written.append(Path(plots_dir) / f"{name}.png")
        return written


# --------------------------------------------------------------------------- families, order


def load_families(data_dir: str | Path) -> dict[str, str]:
    """Families of the sources in ``data_dir`` when it says (a zoo's ``zoo.json``), else ``{}``."""
    manifest = Path(data_dir) / "zoo.json"
    try:
        sources = json.loads(manifest.read_text())["sources"]
        return {str(s["name"]): str(s["family"]) for s in sources if s.get("name") and s.get("family")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def order_sources(sources: Iterable[str], families: Mapping[str, str]) -> list[str]:
    """Sources grouped by family (the design's order, unknown families after), then by name."""

    def key(name):
        fam = families.get(name)
        return (FAMILIES.index(fam) if fam in FAMILIES else len(FAMILIES), fam or "", name)

    return sorted(sources, key=key)


def pick_shots(results: Mapping[str, Any], wanted: int | None = None) -> int:
    """The K the detailed sections show: ``wanted``, else 5 when it was run, else the largest."""
    run = sorted(int(k) for k in results["shots"])
    if wanted is not None:
        if wanted not in run:
            raise ValueError(f"{wanted}-shot was not run (shots: {', '.join(map(str, run))})")
        return wanted
    return 5 if 5 in run else run[-1]


# --------------------------------------------------------------------------- analysis


@dataclass
class SourceRow:
    """One line of the per-source table (pooled over the trials of one K)."""

    name: str
    family: str
    shots: float  # samples enrolled, mean over trials
    threshold: float  # mean over trials
    expected_tar: float | None
    observed_tar: float | None  # own queries scoring >= threshold (1:1)
    observed_far: float | None  # other sources' and never-enrolled queries scoring >= threshold (1:1)
    queries: int
    confused_with: str | None  # most frequent wrong top-1 among its own queries
    confused_count: int


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _counts_for(d: TrialDetail, s: str) -> tuple[int, int, int, int, Counter]:
    """(own accepted, own, impostors accepted, impostors, wrong top-1 names) of source ``s`` in one trial."""
    col = d.sources.index(s)
    thr = d.thresholds[s]
    own = np.array([t == s for t in d.known.truth], dtype=bool)
    kscores = d.known.scores[:, col] if len(own) else np.zeros(0)
    uscores = d.unknown.scores[:, col] if len(d.unknown.truth) else np.zeros(0)
    impostors = np.concatenate([kscores[~own], uscores])
    wrong = Counter(p for p, t in zip(d.known.top1(d.sources), d.known.truth) if t == s and p != s)
    return int((kscores[own] >= thr).sum()), int(own.sum()), int((impostors >= thr).sum()), len(impostors), wrong


def per_source(details: Sequence[TrialDetail], order: Sequence[str], families: Mapping[str, str]) -> list[SourceRow]:
    rows = []
    for s in order:
        trials = [d for d in details if s in d.sources]
        sums = np.zeros(4, dtype=np.int64)
        wrong: Counter = Counter()
        for d in trials:
            *counts, w = _counts_for(d, s)
            sums += counts
            wrong += w
        top = sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0]))[:1]
        rows.append(
            SourceRow(
                s,
                families.get(s, "-"),
                float(np.mean([d.enrolled.get(s, 0) for d in trials])),
                float(np.mean([d.thresholds[s] for d in trials])),
                _mean_or_none([d.expected_tar.get(s) for d in trials]),
                _rate(int(sums[0]), int(sums[1])),
                _rate(int(sums[2]), int(sums[3])),
                int(sums[1]),
                top[0][0] if top else None,
                top[0][1] if top else 0,
            )
        )
    return rows


def confusion(
    details: Sequence[TrialDetail], order: Sequence[str], rejects_label: str | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """Counts of calibrated decisions pooled over trials: rows are true sources (then never-enrolled
    queries, then rejects), columns the enrolled sources in ``order`` then ``unknown``."""
    cols = list(order) + [UNKNOWN]
    rows = list(order)
    groups = [("known", None)]
    if any(len(d.unknown.truth) for d in details):
        rows.append(NEVER_ENROLLED)
        groups.append(("unknown", NEVER_ENROLLED))
    if rejects_label and any(len(d.rejects.truth) for d in details):
        rows.append(rejects_label)
        groups.append(("rejects", rejects_label))
    m = np.zeros((len(rows), len(cols)), dtype=np.int64)
    ci = {c: i for i, c in enumerate(cols)}
    ri = {r: i for i, r in enumerate(rows)}
    for d in details:
        for kind, label in groups:
            qs = getattr(d, kind)
            for truth, decided in zip(qs.truth, qs.decided):
                m[ri[label or truth], ci[decided or UNKNOWN]] += 1
    return rows, cols, m


def _pooled(details: Sequence[TrialDetail], kind: str) -> tuple[np.ndarray, list[str | None]]:
    best, decided = [], []
    for d in details:
        qs = getattr(d, kind)
        best.append(qs.best())
        decided += qs.decided
    return (np.concatenate(best) if best else np.zeros(0)), decided


def operating_point(details: Sequence[TrialDetail]) -> dict[str, Any]:
    """Where the calibrated thresholds landed on the known-vs-never-enrolled ROC (pooled)."""
    _, kdec = _pooled(details, "known")
    _, udec = _pooled(details, "unknown")
    return {
        "far": details[0].far if details else None,
        "known_accepted": _rate(sum(x is not None for x in kdec), len(kdec)),
        "unknown_accepted": _rate(sum(x is not None for x in udec), len(udec)),
    }


def roc_curve(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) as a threshold on the score sweeps down (``>=`` accepts)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    tpr = np.array([0.0] + [(pos >= t).mean() for t in thresholds])
    fpr = np.array([0.0] + [(neg >= t).mean() for t in thresholds])
    return fpr, tpr


def score_groups(details: Sequence[TrialDetail], rejects_label: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Scores for the histograms, pooled over trials: ``all`` (every comparison: genuine = query vs
    its own source, impostor = known query vs the other sources, never-enrolled and rejects vs every
    source) and ``best`` (each query's best score, what the decision reads)."""
    all_: dict[str, list] = {"genuine": [], "impostor": [], NEVER_ENROLLED: [], rejects_label or "rejects": []}
    best: dict[str, list] = {"known": [], NEVER_ENROLLED: [], rejects_label or "rejects": []}
    for d in details:
        own = np.array([[t == s for s in d.sources] for t in d.known.truth], dtype=bool).reshape(d.known.scores.shape)
        all_["genuine"].append(d.known.scores[own])
        all_["impostor"].append(d.known.scores[~own])
        all_[NEVER_ENROLLED].append(d.unknown.scores.ravel())
        all_[rejects_label or "rejects"].append(d.rejects.scores.ravel())
        best["known"].append(d.known.best())
        best[NEVER_ENROLLED].append(d.unknown.best())
        best[rejects_label or "rejects"].append(d.rejects.best())

    def flat(groups):
        out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in groups.items()}
        return {k: v[np.isfinite(v)] for k, v in out.items() if np.isfinite(v).any()}

    return {"all": flat(all_), "best": flat(best)}


# --------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _shots_series(results: Mapping[str, Any], key: str) -> tuple[list[int], list[float]]:
    ks = sorted(int(k) for k in results["shots"])
    return ks, [math.nan if results["shots"][str(k)].get(key) is None else results["shots"][str(k)][key] for k in ks]


def plot_kshot(results: Mapping[str, Any], robust: Robustness | None = None) -> bytes:
    fig = _figure(10, 2.8)
    axes = fig.subplots(1, 4)
    for ax, key, label in zip(axes, ("accuracy", "auroc", "oscr", "eer"), ("top-1", "AUROC", "OSCR", "EER")):
        ks, ys = _shots_series(results, key)
        ax.plot(ks, ys, "o-", label="clean")
        if robust is not None:
            ax.plot(*_shots_series(robust.results, key), "s--", label="+".join(robust.steps))
            ax.legend(fontsize=7)
        ax.set_title(label)
        ax.set_xlabel("K (shots)")
        ax.set_xticks(ks)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    last = results["shots"][str(max(int(k) for k in results["shots"]))]
    fig.suptitle(
        f"{len(results['known'])} known sources, {len(results['unknown'])} never-enrolled; "
        f"queries per trial at K={max(int(k) for k in results['shots'])}: {num(last.get('known_queries'), 0)} known, "
        f"{num(last.get('unknown_queries'), 0)} never-enrolled",
        fontsize=9,
    )
    return _png(fig)


def _probit(p: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(np.clip(p, 1e-4, 1 - 1e-4))


def plot_roc_det(details: Sequence[TrialDetail], op: Mapping[str, Any], robust: Robustness | None = None) -> bytes:
    fig = _figure(9, 4)
    roc, det = fig.subplots(1, 2)
    curves = [("clean", details)] + ([("+".join(robust.steps), robust.details)] if robust else [])
    for label, dets in curves:
        fpr, tpr = roc_curve(_pooled(dets, "known")[0], _pooled(dets, "unknown")[0])
        roc.plot(fpr, tpr, drawstyle="steps-post", label=label)
        det.plot(_probit(fpr), _probit(1 - tpr), label=label)
    if op["unknown_accepted"] is not None:
        x, y = op["unknown_accepted"], op["known_accepted"]
        roc.plot([x], [y], "o", color="crimson", label=f"thresholds at FAR {op['far']:g}")
        det.plot(_probit(np.array([x])), _probit(np.array([1 - y])), "o", color="crimson", label=f"thresholds at FAR {op['far']:g}")
        roc.axvline(op["far"], color="grey", ls=":", lw=1, label="nominal FAR")
        det.axvline(_probit(np.array([op["far"]]))[0], color="grey", ls=":", lw=1, label="nominal FAR")
    roc.set(title="ROC: known vs never-enrolled (best score)", xlabel="never-enrolled accepted (FPR)", ylabel="known accepted (TPR)")
    roc.set_xlim(-0.01, 1.01)
    roc.set_ylim(-0.01, 1.01)
    ticks = np.array([0.001, 0.01, 0.1, 0.5, 0.9, 0.99])
    det.set(title="DET (normal deviate scales; 0 drawn at 1e-4)", xlabel="never-enrolled accepted", ylabel="known rejected")
    det.set_xticks(_probit(ticks), [f"{t:g}" for t in ticks])
    det.set_yticks(_probit(ticks), [f"{t:g}" for t in ticks])
    det.set_xlim(_probit(np.array([5e-5, 0.9999])))
    det.set_ylim(_probit(np.array([5e-5, 0.9999])))
    for ax in (roc, det):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "upper right")
    return _png(fig)


def plot_confusion(rows: Sequence[str], cols: Sequence[str], m: np.ndarray, families: Mapping[str, str] | None = None) -> bytes:
    size = max(4.0, 0.35 * len(cols) + 2.5)
    fig = _figure(size, max(3.5, 0.35 * len(rows) + 2))
    ax = fig.subplots()
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    families = families or {}

    def label(name):
        return f"{name} ({families[name]})" if name in families else name

    ax.set_xticks(range(len(cols)), [label(c) for c in cols], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), [label(r) for r in rows], fontsize=7)
    ax.set_xlabel("decision (calibrated)")
    ax.set_ylabel("true source")
    if len(rows) * len(cols) <= 400:
        for (r, c), v in np.ndenumerate(m):
            if v:
                ax.text(c, r, str(v), ha="center", va="center", fontsize=6, color="white" if norm[r, c] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="share of the row")
    return _png(fig)


def plot_histograms(groups: Mapping[str, Mapping[str, np.ndarray]], thresholds: Sequence[float]) -> bytes:
    fig = _figure(10, 3.5)
    axes = fig.subplots(1, 2)
    titles = {"all": "every comparison (query vs each source)", "best": "best score per query"}
    for ax, (name, data) in zip(axes, groups.items()):
        values = [v for v in data.values() if len(v)]
        lo = min(float(v.min()) for v in values) if values else -1.0
        hi = max(float(v.max()) for v in values) if values else 1.0
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 40)
        for label, v in data.items():
            ax.hist(v, bins=bins, density=True, histtype="step", lw=1.5, label=f"{label} ({len(v)})")
        if len(thresholds):
            ax.axvspan(min(thresholds), max(thresholds), color="crimson", alpha=0.12, label="thresholds (range)")
            ax.axvline(float(np.median(thresholds)), color="crimson", lw=1, label="median threshold")
        ax.set(title=titles[name], xlabel="score (cosine)", ylabel="density")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _png(fig)


# --------------------------------------------------------------------------- HTML

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; color: #1b1b1b; max-width: 1100px; margin: 1.5rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6rem 0; font-size: 13px; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: right; }
th { background: #eef1f5; } td.name, th.name { text-align: left; }
.scroll { overflow-x: auto; } img { max-width: 100%; height: auto; }
p.note { color: #444; font-size: 13px; }
</style>
</head>
<body>
<h1>$title</h1>
$body
</body>
</html>
""")


def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` (quotes included)."""
    return html.escape(str(value), quote=True)


def num(x: float | None, digits: int = 4) -> str:
    """A figure as the report prints it: ``digits`` decimals, ``-`` when missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _table(table_id: str, header: Sequence[str], rows: Iterable[Sequence[Any]], names: int = 1) -> str:
    """A table whose first ``names`` columns are text (left-aligned); every cell escaped."""
    head = "".join(f'<th class="name">{esc(h)}</th>' if i < names else f"<th>{esc(h)}</th>" for i, h in enumerate(header))
    body = []
    for row in rows:
        cells = "".join(f'<td class="name">{esc(c)}</td>' if i < names else f"<td>{esc(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _img(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{esc(alt)}">'


def _section(section_id: str, title: str, *parts: str) -> str:
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>{"".join(parts)}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _kshot_rows(results: Mapping[str, Any], with_attributed: bool) -> list[list[str]]:
    rows = []
    for k in sorted(results["shots"], key=int):
        s = results["shots"][k]
        row = [k] + [num(s.get(key)) for key, _ in HEADLINE] + [num(s.get("known_queries"), 1), num(s.get("unknown_queries"), 1)]
        rows.append(row + ([num(s.get("attributed"))] if with_attributed else []))
    return rows


def _kshot_section(results, meta, plots) -> str:
    attributed = any("attributed" in s for s in results["shots"].values())
    header = ["K"] + [label for _, label in HEADLINE] + ["known queries / trial", "never-enrolled queries / trial"]
    header += ["rejects attributed"] if attributed else []
    plots["kshot"] = plot_kshot(results)
    counts = (
        f"{len(results['known'])} known sources, {len(results['unknown'])} never-enrolled sources, "
        f"{meta.get('trials', '?')} trials per K; queries per trial in the table. "
        "TAR: known queries accepted as their own source; observed FAR: never-enrolled queries accepted."
    )
    return _section(
        "kshot",
        "K-shot curves",
        _note(counts),
        _img(plots["kshot"], "top-1, AUROC, OSCR and EER against K"),
        _table("kshot-table", header, _kshot_rows(results, attributed)),
    )


def _operating_section(summary, details, op, robust, plots, k) -> str:
    if op["unknown_accepted"] is None:
        return _section("roc", f"ROC and DET ({k}-shot)", _note("No never-enrolled sources: no ROC."))
    plots["roc_det"] = plot_roc_det(details, op, robust)
    rows = [
        ["nominal FAR", num(op["far"])],
        ["observed FAR (never-enrolled queries accepted)", num(summary.get("observed_far"))],
        ["TAR (known queries accepted as their own source)", num(summary.get("tar"))],
        ["known queries accepted (any source)", num(op["known_accepted"])],
        ["open-set accuracy", num(summary.get("openset_accuracy"))],
        ["AUROC", num(summary.get("auroc"))],
    ]
    return _section(
        "roc",
        f"ROC and DET: known vs never-enrolled ({k}-shot)",
        _img(plots["roc_det"], "ROC and DET curves with the calibrated operating point"),
        _table("operating-point", ["", "value"], rows),
        _note(
            "Curves sweep one threshold over each query's best score; the marked point is where the "
            "per-source thresholds calibrated at the nominal FAR landed (pooled over trials)."
        ),
    )


def _confusion_section(details, order, families, rejects_label, plots, k) -> str:
    rows, cols, m = confusion(details, order, rejects_label)
    plots["confusion"] = plot_confusion(rows, cols, m, families)
    table = _table("confusion", ["true \\ decided"] + cols, [[r] + [int(v) for v in m[i]] for i, r in enumerate(rows)])
    return _section(
        "confusion",
        f"Confusion matrix ({k}-shot, calibrated decisions)",
        _note(f"Counts pooled over {len(details)} trials; sources ordered by family, then name; 'unknown' = rejected by the thresholds."),
        _img(plots["confusion"], "confusion matrix of the calibrated decisions"),
        table,
    )


def _per_source_section(details, order, families, summary, k) -> str:
    ps = summary.get("per_source", {})
    rows = []
    for r in per_source(details, order, families):
        confused = f"{r.confused_with} ({r.confused_count})" if r.confused_with else "-"
        acc = ps.get(r.name, {})
        rows.append(
            [r.name, r.family, num(r.shots, 1), num(r.threshold), num(r.expected_tar), num(r.observed_tar), num(r.observed_far)]
            + [num(acc.get("accuracy")), num(acc.get("eer")), r.queries, confused]
        )
    header = ["source", "family", "samples", "threshold", "expected TAR", "observed TAR", "observed FAR", "top-1", "EER"]
    header += ["queries", "most often confused with (count)"]
    return _section(
        "per-source",
        f"Per source ({k}-shot)",
        _table("per-source", header, rows, names=2),
        _note(
            "samples, threshold, expected TAR: means over trials; observed TAR: its own queries scoring at or above "
            "its threshold; observed FAR: other sources' and never-enrolled queries scoring at or above it (1:1, "
            "pooled over trials); top-1 and EER as attrib eval computes them; confused: the most frequent wrong "
            "top-1 among its own queries."
        ),
    )


def _histogram_section(details, rejects_label, plots, k) -> str:
    groups = score_groups(details, rejects_label)
    thresholds = [v for d in details for v in d.thresholds.values()]
    plots["scores"] = plot_histograms(groups, thresholds)
    rows = [
        [f"{name}: {label}", len(v), num(float(v.mean())), num(float(np.median(v)))] for name, g in groups.items() for label, v in g.items()
    ]
    return _section(
        "scores",
        f"Score histograms ({k}-shot)",
        _img(plots["scores"], "histograms of genuine, impostor and never-enrolled scores"),
        _table("score-groups", ["group", "scores", "mean", "median"], rows),
    )


def _levels_section(results: Mapping[str, Any]) -> str:
    """Accuracy per level of the sources' tree (``attrib eval --tree``)."""
    rows = []
    for k, summary in results["shots"].items():
        kn, un = summary.get("levels", {}).get("known", {}), summary.get("levels", {}).get("unknown", {})
        top, dec = kn.get("top1", {}), kn.get("decided", {})
        rows.append(
            [k]
            + [f"{num(top.get(lv), 3)} / {num(dec.get(lv), 3)}" for lv in ("family", "line", "leaf")]
            + [num(kn.get("wrong_at_leaf_right_line"), 3), num(kn.get("wrong_at_leaf_right_family"), 3)]
            + [num(un.get(key), 3) for key in ("right_line", "right_family_only", "wrong_node", "rejected")]
        )
    header = ["shots", "family", "line", "leaf", "wrong leaf: right line", "right family"]
    header += ["unknown: line named", "family only", "wrong node", "rejected"]
    return _section(
        "levels",
        "Lineage: accuracy per level",
        _note(
            "Known queries: closed-set top-1 / calibrated decision right down to the family, the line (the leaf's parent) "
            "and the leaf; of those wrong at the leaf, how many are right at the line and at the family. Never-enrolled "
            "queries: their line named, only their family, a node off their path, rejected."
        ),
        _table("levels-table", header, rows),
    )


def _robust_section(results, robust, plots) -> str:
    plots["robustness"] = plot_kshot(results, robust)
    label = "+".join(robust.steps)
    header = ["K", "figure", "clean", label, "change"]
    rows = []
    for k in sorted(results["shots"], key=int):
        clean, post = results["shots"][k], robust.results["shots"].get(k, {})
        for key, name in HEADLINE + (("attributed", "rejects attributed"),):
            a, b = clean.get(key), post.get(key)
            if a is None and b is None:
                continue
            rows.append([k, name, num(a), num(b), num(b - a) if a is not None and b is not None else "-"])
    return _section(
        "robustness",
        f"Robustness: queries post-processed ({label})",
        _note("Enrolled from the clean images, queried with the same images after " + label + "; same seed, same draws."),
        _img(plots["robustness"], "K-shot figures, clean and post-processed queries"),
        _table("robustness-table", header, rows, names=2),
    )


def _meta_section(results, meta) -> str:
    rows = [
        ["encoder", meta.get("encoder", "-")],
        ["gallery", meta.get("gallery", "in memory, one per trial (attrib eval enrolls no gallery on disk)")],
        ["data folder", meta.get("data", "-")],
        ["images", meta.get("images", "-")],
        ["known sources", ", ".join(results["known"]) or "-"],
        ["never-enrolled sources", ", ".join(results["unknown"]) or "-"],
        ["rejects", ", ".join(meta.get("rejects", ())) or "-"],
        ["shots", ", ".join(sorted(results["shots"], key=int))],
        ["trials", meta.get("trials", "-")],
        ["max queries per source", meta.get("queries", "-")],
        ["FAR", meta.get("far", "-")],
        ["post-processing", ", ".join(meta.get("post", ())) or "-"],
        ["seed", meta.get("seed", "-")],
        ["attrib version", meta.get("version", "-")],
        ["date", meta.get("date", "-")],
        ["command line", meta.get("command", "-")],
    ]
    return _section("meta", "Run", _table("meta", ["", "value"], rows, names=2))


def build_report(
    results: Mapping[str, Any],
    details: Sequence[TrialDetail],
    meta: Mapping[str, Any] | None = None,
    families: Mapping[str, str] | None = None,
    robust: Robustness | None = None,
    shots: int | None = None,
) -> Report:
    """The report of one ``run_protocol`` run: ``results`` its return value, ``details`` the
    :class:`~attrib.evaluate.TrialDetail` list it filled, ``meta`` the run's metadata (encoder,
    data, seed, version, date, command, trials, queries, far, rejects, post), ``families`` source
    -> family for the order, ``robust`` the post-processed run. The detailed sections show the
    K from :func:`pick_shots`."""
    meta = dict(meta or {})
    families = dict(families or {})
    k = pick_shots(results, shots)
    dk = [d for d in details if d.shots == k]
    if not dk:
        raise ValueError(f"no trial details for {k}-shot")
    summary = results["shots"][str(k)]
    order = order_sources(dk[0].sources, families)
    rejects = meta.get("rejects") or ()
    rejects_label = f"{', '.join(rejects)} (rejects)" if rejects else None
    plots: dict[str, bytes] = {}
    op = operating_point(dk)
    robust_k = None if robust is None else Robustness(robust.steps, robust.results, [d for d in robust.details if d.shots == k])
    parts = [
        _kshot_section(results, meta, plots),
        _operating_section(summary, dk, op, robust_k, plots, k),
        _confusion_section(dk, order, families, rejects_label, plots, k),
        _per_source_section(dk, order, families, summary, k),
        _histogram_section(dk, rejects_label, plots, k),
    ]
    if any("levels" in s for s in results["shots"].values()):
        parts.append(_levels_section(results))
    if robust is not None:
        parts.append(_robust_section(results, robust, plots))
    parts.append(_meta_section(results, meta))
    title = f"attrib eval: {meta.get('encoder', 'encoder')} on {meta.get('data', 'data')}"
    return Report(PAGE.substitute(title=esc(title), body="\n".join(parts)), plots)
