"""The standard attribution protocol on a folder-per-source data set.

Sources are split into **known** (enrolled K-shot) and **unknown** (never enrolled). For each K
and trial: K random samples of each known source are enrolled into a fresh gallery held in memory
(:class:`attrib.gallery.MemoryGallery`: the product's own prototypes, calibration and search, run
on arrays without a database); the remaining samples of known sources are queries that should be attributed,
and all samples of unknown sources are queries that should be rejected. Reported:

* ``accuracy``: closed-set top-1 accuracy on known queries (best source, threshold ignored);
* ``auroc``: known vs unknown queries by best score (open-set separation);
* ``oscr``: area under correct-classification rate vs unknowns' false-positive rate;
* ``eer``: verification equal error rate, genuine = query vs its own source,
  impostor = query vs every other source (unknown queries included);
* ``openset_accuracy``, ``observed_far``, ``tar``: what the calibrated thresholds actually did
  at the gallery's FAR (known correctly accepted, unknown rejected; fraction of unknowns accepted).

Asked for (``details=[]``), each trial also leaves its raw material behind as a
:class:`TrialDetail` (every query's score against every enrolled source, the calibrated decision,
each source's threshold and expected TAR): what :mod:`attrib.evalreport` draws its plots from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .encoders import Encoder
from .errors import AttribError
from .gallery import MemoryGallery
from .gallery.lineage import NODE_SCORE, Tree
from .pipeline import StageTimer, embed_items, expand_paths, load_many, query_embeddings, view_embeddings
from .views import VIEWS, view_of


@dataclass
class Dataset:
    """Embedded images of a folder-per-source data set."""

    names: list[str]  # source per image
    paths: list[str]
    shas: list[str]
    embeddings: np.ndarray
    views: dict[str, np.ndarray] | None = None  # each image's embeddings in the gallery's views (attrib.views)
    query_views: list[str | None] | None = None  # the view each image is scored in as a query (its file's)
    # each image as it is scored as a query: its embedding in its view where the encoder has a fit of
    # its own for that view (attrib.pipeline.query_embeddings); None: ``embeddings``
    queries: np.ndarray | None = None

    def sources(self) -> list[str]:
        return sorted(set(self.names))


def embed_dataset(
    encoder: Encoder,
    data_dir: str | Path,
    timer: StageTimer | None = None,
    progress=None,
    max_per_source: int | None = None,
    views: Sequence[str] = VIEWS,
) -> Dataset:
    """Embed a folder-per-source data set as the product would: each image also in ``views`` (as
    enrollment does) and with the view its file is scored in as a query (:mod:`attrib.views`)."""
    data_dir = Path(data_dir)
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise AttribError(f"{data_dir}: expected one folder per source, found none")
    paths, names = [], []
    for folder in folders:
        files = expand_paths([folder])
        if max_per_source:
            files = files[:max_per_source]
        paths += files
        names += [folder.name] * len(files)
    items, emb = embed_items(encoder, load_many(paths), timer=timer, progress=progress, views=views)
    keep = [i for i, it in enumerate(items) if it.error is None]
    good = [items[i] for i in keep]
    return Dataset(
        [names[i] for i in keep],
        [it.path for it in good],
        [it.record.sha256 for it in good],
        emb,
        view_embeddings(good),
        [it.view for it in good],
        query_embeddings(good, emb),
    )


def post_quality(post: str | Sequence[str]) -> int | None:
    """The JPEG quality of a query post-processed by ``post``: the last step's when it is ``jpegQ``
    (the query is then that JPEG file), else None (decoded pixels, as a PNG)."""
    from .degrade import parse_post

    steps = parse_post(post)
    last = steps[-1] if steps else ""
    return int(last[4:]) if last.startswith("jpeg") else None


def post_view(post: str | Sequence[str]) -> str | None:
    """The view a query post-processed by ``post`` is scored in (:func:`post_quality`'s)."""
    return view_of(post_quality(post))


def split_sources(sources: Sequence[str], unknown: Sequence[str] | None, unknown_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    sources = sorted(sources)
    if unknown:
        missing = set(unknown) - set(sources)
        if missing:
            raise AttribError(f"--unknown names sources that are not in the data: {', '.join(sorted(missing))}")
        unk = sorted(unknown)
    else:
        rng = np.random.default_rng(seed)
        n_unk = max(1, int(round(len(sources) * unknown_fraction))) if unknown_fraction > 0 else 0
        unk = sorted(rng.permutation(sources)[:n_unk].tolist())
    known = [s for s in sources if s not in unk]
    if len(known) < 2:
        raise AttribError("need at least two known sources")
    return known, unk


def run_protocol(
    ds: Dataset,
    encoder: Encoder,
    known: Sequence[str],
    unknown: Sequence[str],
    shots: Sequence[int] = (1, 5, 10),
    trials: int = 3,
    max_queries: int = 50,
    far: float | None = None,
    seed: int = 0,
    progress: Callable[[], None] | None = None,
    query_embeddings: np.ndarray | None = None,
    rejects: Sequence[str] = (),
    details: list[TrialDetail] | None = None,
    tree: Tree | None = None,
    node_score: str | None = None,
    enroll_views: dict[str, np.ndarray] | None = None,
    query_views: Sequence[str | None] | None = None,
    references: Sequence[str] = (),
) -> dict[str, Any]:
    """K-shot trials on ``ds`` (see the module docstring) -> ``{"known", "unknown", "shots": {K:
    summary}}``.

    ``query_embeddings`` (rows aligned with ``ds``): what queries are embedded as, when they differ
    from what is enrolled (queries re-saved as JPEG, resized). ``rejects``: sources whose images are
    queried only to be rejected and counted apart (camera photos): each summary then has
    ``attributed``, the fraction of them accepted as some enrolled source at the gallery's FAR.
    ``details``: a list to append one :class:`TrialDetail` per K and trial to (the return value
    is the same with or without it). ``tree``: the sources' lineage (:class:`attrib.gallery.lineage.Tree`
    over the data's sources and their ancestors): each summary then also has ``levels``, accuracy
    per level of the tree (:func:`level_figures`), measured on the same enrollment held as a tree
    gallery; every other figure is the flat gallery's, as without it. ``enroll_views`` (``{view:
    embeddings}``, rows aligned with ``ds``) and ``query_views`` (one view or None per row): each
    enrolled sample also in those views, each query scored in its own (:mod:`attrib.views`); by
    default ``ds``'s (its queries' only when they are its own embeddings). ``references``: sources
    enrolled in every trial with all of their images and never queried (a camera class built from
    many photos beside K-shot generators): a known query or an unknown one named after a reference
    is counted as a wrong name or an accepted unknown as usual, and each summary also has
    ``known_named_reference`` and ``unknown_named_reference`` (how often each kind was), and with
    ``rejects``, ``named_reference`` (rejects named after a reference); ``attributed`` then counts
    rejects named after a source that is not a reference."""
    names = np.array(ds.names)
    own = ds.embeddings if ds.queries is None else ds.queries
    queries = own if query_embeddings is None else np.asarray(query_embeddings, np.float32)
    if queries.shape != ds.embeddings.shape:
        raise AttribError(f"query_embeddings has shape {queries.shape}, the data set {ds.embeddings.shape}")
    enroll_views, qv = _trial_views(ds, enroll_views, query_views, own_queries=query_embeddings is None)
    results: dict[str, Any] = {"known": list(known), "unknown": list(unknown), "shots": {}}
    for k in shots:
        per_trial, per_level = [], []
        per_source: dict[str, list[tuple[float, float]]] = {s: [] for s in known}
        for t in range(trials):
            enroll_idx, query_idx, unk_idx = _draw(names, known, unknown, k, max_queries, np.random.default_rng([seed, k, t]))
            enroll_idx.update({r: np.flatnonzero(names == r) for r in references})
            g = _enroll_trial(ds, encoder, enroll_idx, views=enroll_views)
            m = _score_trial(g, queries, names, query_idx, unk_idx, far, qv)
            rej = np.flatnonzero(np.isin(names, list(rejects))) if rejects else np.zeros(0, np.int64)
            m["summary"].update(_reject_figures(g, queries, rej, m["decided"], far, _rows(qv, rej), rejects, references))
            if details is not None:
                idx = {"known": query_idx, "unknown": unk_idx, "rejects": rej}
                details.append(_trial_detail(g, queries, names, idx, far, k, t, {s: len(v) for s, v in enroll_idx.items()}, qv))
            if tree is not None:
                tg = _enroll_trial(ds, encoder, enroll_idx, trial_tree(tree, enroll_idx), node_score, enroll_views)
                per_level.append(level_figures(tg, tree, queries, names, query_idx, unk_idx, far, qv))
            per_trial.append(m["summary"])
            for s, (acc, e) in m["per_source"].items():
                if s in per_source:  # not the references
                    per_source[s].append((acc, e))
            if progress:
                progress()
        summary = {key: _mean([p[key] for p in per_trial]) for key in per_trial[0]}
        summary["per_source"] = {
            s: {"accuracy": _mean([v[0] for v in vals]), "eer": _mean([v[1] for v in vals])} for s, vals in per_source.items()
        }
        if per_level:
            summary["levels"] = _mean_nested(per_level)
        results["shots"][str(k)] = summary
    return results


def _trial_views(ds: Dataset, enroll_views, query_views, own_queries: bool) -> tuple[dict | None, list | None]:
    """The views shots are enrolled in and each query row is scored in: those given, else ``ds``'s
    (its queries' views only when the queries are its own embeddings)."""
    if query_views is not None and len(query_views) != len(ds.names):
        raise AttribError(f"{len(query_views)} query views for {len(ds.names)} rows")
    if query_views is None and own_queries:
        query_views = ds.query_views
    return (ds.views if enroll_views is None else enroll_views), (None if query_views is None else list(query_views))


def _draw(names: np.ndarray, known, unknown, k: int, max_queries: int, rng: np.random.Generator):
    """One trial's rows: K to enroll per known source, their queries, the unknowns' queries."""
    enroll_idx, query_idx = {}, []
    for s in known:
        idx = rng.permutation(np.flatnonzero(names == s))
        if len(idx) <= k:
            raise AttribError(f"source {s} has {len(idx)} images: too few for {k}-shot plus queries")
        enroll_idx[s] = idx[:k]
        query_idx += idx[k : k + max_queries].tolist()
    unk_idx = []
    for s in unknown:
        unk_idx += rng.permutation(np.flatnonzero(names == s))[:max_queries].tolist()
    return enroll_idx, query_idx, unk_idx


@dataclass
class QuerySet:
    """Queries of one kind in one trial: true source per row, score against every enrolled source
    (columns in :attr:`TrialDetail.sources` order; NaN where the index returned none) and the
    calibrated decision (a source, or None for unknown)."""

    truth: list[str]
    scores: np.ndarray
    decided: list[str | None]

    def own_scores(self, sources: Sequence[str]) -> np.ndarray:
        """Each row's score against its own source (rows of known queries only)."""
        col = {s: i for i, s in enumerate(sources)}
        return np.array([self.scores[r, col[t]] for r, t in enumerate(self.truth)], dtype=float)

    def best(self) -> np.ndarray:
        """Each row's best score (what the open-set decision and the ROC use)."""
        return np.nanmax(self.scores, axis=1) if len(self.truth) else np.zeros(0)

    def top1(self, sources: Sequence[str]) -> list[str]:
        """The closed-set decision: the best-scoring source of each row, threshold ignored."""
        return [sources[i] for i in np.nanargmax(self.scores, axis=1)] if len(self.truth) else []


@dataclass
class TrialDetail:
    """The raw material of one K-shot trial (see :func:`run_protocol`'s ``details``)."""

    shots: int
    trial: int
    far: float  # the FAR thresholds were read at
    sources: list[str]  # enrolled sources, sorted: the columns of every score matrix
    enrolled: dict[str, int]  # samples drawn per source
    thresholds: dict[str, float]
    expected_tar: dict[str, float | None]  # from each source's genuine model at its threshold
    known: QuerySet
    unknown: QuerySet  # never-enrolled sources
    rejects: QuerySet = field(default_factory=lambda: QuerySet([], np.zeros((0, 0)), []))


def _rows(views: list | None, rows) -> list | None:
    """The views of ``rows`` (None when queries have none)."""
    return None if views is None else [views[i] for i in rows]


def _query_set(g, queries: np.ndarray, names: np.ndarray, rows, far, views=None) -> QuerySet:
    sources = g.source_names()
    rows = np.asarray(rows, dtype=np.int64)
    scores = np.full((len(rows), len(sources)), np.nan)
    if not len(rows):
        return QuerySet([], scores, [])
    col = {s: i for i, s in enumerate(sources)}
    for r, cands in enumerate(g.source_scores(queries[rows], top_k=len(sources), views=_rows(views, rows))):
        for s, v in cands:
            scores[r, col[s]] = v
    decided = [d.source for d in g.identify(queries[rows], top_k=1, far=far, views=_rows(views, rows))]
    return QuerySet([str(n) for n in names[rows]], scores, decided)


def _trial_detail(g, queries, names, idx: dict[str, Any], far, k: int, t: int, enrolled: dict[str, int], views=None) -> TrialDetail:
    far_used = g.far if far is None else far
    thresholds = g.thresholds(far_used)
    expected = {}
    for s, thr in thresholds.items():
        gen = g.calibration.genuine(s)
        expected[s] = None if gen is None else gen.tail(thr)
    sets = {kind: _query_set(g, queries, names, rows, far, views) for kind, rows in idx.items()}
    return TrialDetail(k, t, far_used, g.source_names(), enrolled, thresholds, expected, **sets)


def embed_post(encoder: Encoder, ds: Dataset, post: str | Sequence[str], progress=None) -> np.ndarray:
    """Embeddings of ``ds``'s images after the post-processing ``post`` (``jpeg75``,
    ``resize0.5``: :func:`attrib.degrade.parse_post`), rows aligned with ``ds``: the queries of a
    robustness run (enroll clean, query re-encoded), each in the view it is scored in (:func:`post_view`)."""
    from .degrade import parse_post, post_process

    steps, quality = parse_post(post), post_quality(post)

    def processed():
        for item in load_many(ds.paths):
            if item.image is not None:
                item.image.pixels = post_process(item.image.pixels, steps)
                item.image.jpeg_quality = quality  # the query is now that file
            yield item

    items, emb = embed_items(encoder, processed(), progress=progress)
    failed = [it.path for it in items if it.error is not None]
    if failed:
        raise AttribError(f"{failed[0]}: could not be read again for post-processing")
    return query_embeddings(items, emb)


def _enroll_trial(
    ds: Dataset, encoder: Encoder, enroll_idx: dict[str, np.ndarray], tree: Tree | None = None, node_score=None, views=None
) -> MemoryGallery:
    """A fresh gallery holding each known source's K shots, enrolled in the order of ``enroll_idx``
    (a tree gallery with ``tree``, its inner nodes scored by ``node_score``: default the product's;
    ``views``: ``{view: embeddings}`` rows aligned with ``ds``, each shot enrolled in them too)."""
    batches = [
        (s, ds.embeddings[ids], [ds.shas[i] for i in ids], {v: e[ids] for v, e in (views or {}).items()}) for s, ids in enroll_idx.items()
    ]
    norm, heads = getattr(encoder, "score_norm", None), getattr(encoder, "view_heads", None)
    if tree is None:
        return MemoryGallery.enroll(batches, encoder.calibration, norm=norm, heads=heads)
    return MemoryGallery.enroll(batches, encoder.calibration, norm=norm, tree=tree, node_score=node_score or NODE_SCORE, heads=heads)


# -- lineage: accuracy per level ----------------------------------------------------------------
LEVELS = ("family", "line", "leaf")


def load_tree(data_dir: str | Path, spec: str | Path, sources: Sequence[str] = ()) -> Tree:
    """The lineage of a data set's sources (``attrib eval --tree``).

    ``"zoo"``: from the zoo's ``zoo.json`` in ``data_dir``: family -> line (the source's name
    without its ``-sN`` seed) -> source. Else a TSV file, one source a line: ``name``, ``parent``
    (empty for a root) and optionally ``family``; a node without a family takes its first child's.
    ``sources`` (the data's folders) not named anywhere are roots of family ``other``."""
    parents: dict[str, str | None] = {}
    families: dict[str, str] = {}
    if str(spec) == "zoo":
        try:
            zoo = json.loads((Path(data_dir) / "zoo.json").read_text())["sources"]
        except (OSError, ValueError, KeyError) as exc:
            raise AttribError(f"--tree zoo: {data_dir} has no readable zoo.json ({exc})") from None
        for src in zoo:
            line = re.sub(r"-s\d+$", "", src["name"])
            parents[src["name"]] = line if line != src["name"] else None
            families[src["name"]] = families[line] = src.get("family") or "other"
            if line != src["name"]:
                parents.setdefault(line, None)
    else:
        _read_tree_tsv(Path(spec), parents, families)
    for name in sources:
        parents.setdefault(name, None)
    for name, parent in list(parents.items()):
        if parent is not None and parent not in families and name in families:
            families[parent] = families[name]
    return Tree(parents, families)


def _read_tree_tsv(path: Path, parents: dict, families: dict) -> None:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise AttribError(f"--tree: cannot read {path} ({exc.strerror})") from None
    for line in lines:
        cells = [c.strip() for c in line.split("\t")]
        if not cells[0] or cells[0].startswith("#"):
            continue
        parent = cells[1] if len(cells) > 1 and cells[1] else None
        parents[cells[0]] = parent
        if parent is not None:
            parents.setdefault(parent, None)
        if len(cells) > 2 and cells[2]:
            families[cells[0]] = cells[2]
    for name in parents:
        seen, node = {name}, parents[name]
        while node is not None:
            if node in seen:
                raise AttribError(f"--tree: {path}: {name!r} is its own ancestor (a cycle)")
            seen.add(node)
            node = parents.get(node)


def trial_tree(tree: Tree, enrolled) -> Tree:
    """The part of ``tree`` a trial's gallery holds: the enrolled sources and their ancestors."""
    keep: set[str] = set()
    for s in enrolled:
        keep.update(tree.path(s))
    return Tree({n: tree.parents.get(n) for n in keep}, {n: tree.families.get(n, "other") for n in keep})


def level_depths(truth: Sequence[str]) -> dict[str, int]:
    """How much of a lineage ``[family, ..., leaf]`` each level compares: the family, the line (the
    leaf's parent; the leaf itself for a source with no parent) and the whole path."""
    return {"family": 1, "line": max(2, len(truth) - 1), "leaf": len(truth)}


def right_at(decided: Sequence[str], truth: Sequence[str], depth: int) -> bool:
    """Is ``decided`` (a lineage) right down to ``depth`` levels of ``truth``?"""
    return len(decided) >= depth and list(decided[:depth]) == list(truth[:depth])


def level_figures(
    g: MemoryGallery, tree: Tree, queries: np.ndarray, names: np.ndarray, known_idx, unk_idx, far, views=None
) -> dict[str, Any]:
    """Per level (:data:`LEVELS`): how often the best leaf (``top1``, closed set) and the tree
    gallery's decision (``decided``) are right, for known queries; of the known queries the decision
    gets wrong at the leaf, how many it gets right at the line and at the family; and where
    never-enrolled queries land (their line or family named, a wrong node named (and of all
    queries, how many of those wrong nodes were under their own line: a sibling), rejected)."""
    out: dict[str, Any] = {}
    for kind, rows in (("known", known_idx), ("unknown", unk_idx)):
        rows = list(rows)
        if not rows:
            continue
        truths = [tree.lineage(str(n)) for n in names[rows]]
        decided = [d.lineage for d in g.identify(queries[rows], top_k=1, far=far, views=_rows(views, rows))]
        if kind == "known":
            best = [g.tree.lineage(c[0][0]) if c else [] for c in g.source_scores(queries[rows], 1, views=_rows(views, rows))]
            out[kind] = _known_levels(truths, best, decided)
        else:
            out[kind] = _unknown_levels(truths, decided)
    return out


def _known_levels(truths, best, decided) -> dict[str, Any]:
    depths = [level_depths(t) for t in truths]
    fig: dict[str, Any] = {
        "top1": {lv: float(np.mean([right_at(b, t, d[lv]) for b, t, d in zip(best, truths, depths)])) for lv in LEVELS},
        "decided": {lv: float(np.mean([right_at(x, t, d[lv]) for x, t, d in zip(decided, truths, depths)])) for lv in LEVELS},
    }
    wrong = [(x, t, d) for x, t, d in zip(decided, truths, depths) if not right_at(x, t, d["leaf"])]
    fig["wrong_at_leaf"] = len(wrong) / len(truths)
    fig["wrong_node"] = float(np.mean([bool(x) and not right_at(x, t, len(x)) for x, t in zip(decided, truths)]))
    fig["wrong_at_leaf_right_line"] = float(np.mean([right_at(x, t, d["line"]) for x, t, d in wrong])) if wrong else None
    fig["wrong_at_leaf_right_family"] = float(np.mean([right_at(x, t, 1) for x, t, _ in wrong])) if wrong else None
    return fig


def _unknown_levels(truths, decided) -> dict[str, Any]:
    """Never-enrolled leaves: the best a gallery can say is an enrolled ancestor."""
    on_path = [bool(x) and right_at(x, t, len(x)) for x, t in zip(decided, truths)]
    return {
        "right_line": float(np.mean([p and right_at(x, t, level_depths(t)["line"]) for p, x, t in zip(on_path, decided, truths)])),
        "right_family_only": float(np.mean([p and len(x) == 1 for p, x in zip(on_path, decided)])),
        "wrong_node": float(np.mean([bool(x) and not p for p, x in zip(on_path, decided)])),
        # of those, named a relative: a node off their path under their own line (a sibling)
        "wrong_node_right_line": float(
            np.mean([bool(x) and not p and right_at(x, t, level_depths(t)["line"]) for p, x, t in zip(on_path, decided, truths)])
        ),
        "rejected": float(np.mean([not x for x in decided])),
    }


def _mean_nested(dicts: list[dict]) -> dict:
    """Mean of same-shaped nested dicts of numbers (None where no trial had one), rounded."""
    out = {}
    for key, value in dicts[0].items():
        vals = [d[key] for d in dicts if key in d]
        out[key] = _mean_nested(vals) if isinstance(value, dict) else _mean(vals)
    return out


def _mean(values):
    arr = np.array([v for v in values if v is not None and v == v], dtype=float)
    return round(float(arr.mean()), 4) if len(arr) else None


def _reject_figures(g, queries: np.ndarray, rej, decided: dict[str, list], far, views, rejects, references) -> dict[str, float | None]:
    """A trial's figures on rejects (rows ``rej``, in ``views``) and references (:func:`run_protocol`):
    ``attributed``, and with references ``known_named_reference``, ``unknown_named_reference``
    (from ``decided``: :func:`_score_trial`'s decisions) and ``named_reference`` (the rejects)."""
    out: dict[str, float | None] = {}
    kinds = {f"{kind}_named_reference": decided[kind] for kind in ("known", "unknown")} if references else {}
    if rejects:
        rejected = [d.source for d in g.identify(queries[rej], top_k=1, far=far, views=views)] if len(rej) else []
        out["attributed"] = float(np.mean([s is not None and s not in references for s in rejected])) if rejected else None
        if references:
            kinds["named_reference"] = rejected
    for key, sources in kinds.items():
        out[key] = float(np.mean([s in references for s in sources])) if sources else None
    return out


def _score_trial(g, queries: np.ndarray, names: np.ndarray, query_idx, unk_idx, far, views=None) -> dict[str, Any]:
    sources = g.source_names()
    q = queries[query_idx]
    u = queries[unk_idx]
    q_true = names[query_idx]
    vq, vu = _rows(views, query_idx), _rows(views, unk_idx)
    full_q = g.source_scores(q, top_k=len(sources), views=vq)
    full_u = g.source_scores(u, top_k=len(sources), views=vu) if len(u) else []
    dec_q = g.identify(q, top_k=1, far=far, views=vq)
    dec_u = g.identify(u, top_k=1, far=far, views=vu) if len(u) else []
    best_q = np.array([c[0][1] for c in full_q])
    pred_q = np.array([c[0][0] for c in full_q])
    correct = pred_q == q_true
    best_u = np.array([c[0][1] for c in full_u]) if len(u) else np.zeros(0)
    genuine, impostor = [], []
    for c, true in zip(full_q, q_true):
        for s, v in c:
            (genuine if s == true else impostor).append(v)
    for c in full_u:
        impostor += [v for _, v in c]
    accepted_right = np.array([d.source == t for d, t in zip(dec_q, q_true)])
    rejected_unk = np.array([d.source is None for d in dec_u]) if dec_u else np.zeros(0, bool)
    n_all = len(accepted_right) + len(rejected_unk)
    summary = {
        "accuracy": float(correct.mean()),
        "auroc": metrics.auroc(best_q, best_u) if len(u) else None,
        "oscr": metrics.oscr(best_q, correct, best_u) if len(u) else None,
        "eer": metrics.eer(np.array(genuine), np.array(impostor)),
        "openset_accuracy": float((accepted_right.sum() + rejected_unk.sum()) / n_all),
        "tar": float(accepted_right.mean()),
        "observed_far": float(1 - rejected_unk.mean()) if len(rejected_unk) else None,
        "known_queries": int(len(q)),
        "unknown_queries": int(len(u)),
    }
    per_source = {}
    for s in sources:
        sel = q_true == s
        gen = [v for c, t in zip(full_q, q_true) if t == s for name, v in c if name == s]
        imp = [v for c, t in zip(full_q, q_true) if t != s for name, v in c if name == s] + [
            v for c in full_u for name, v in c if name == s
        ]
        per_source[s] = (float(correct[sel].mean()) if sel.any() else None, metrics.eer(np.array(gen), np.array(imp)))
    decided = {"known": [d.source for d in dec_q], "unknown": [d.source for d in dec_u]}
    return {"summary": summary, "per_source": per_source, "decided": decided}


#: figures of a run with reference sources (:func:`run_protocol`'s ``references``)
REFERENCE_FIGURES = ("named_reference", "known_named_reference", "unknown_named_reference")
#: column heads of the optional figures in :func:`format_report`
EXTRA_HEADS = {
    "attributed": "rejects-attributed",
    "named_reference": "rejects->ref",
    "known_named_reference": "known->ref",
    "unknown_named_reference": "unknown->ref",
}


def format_report(res: dict[str, Any]) -> str:
    lines = [
        f"known sources ({len(res['known'])}): {', '.join(res['known'])}",
        f"unknown sources ({len(res['unknown'])}): {', '.join(res['unknown']) or '-'}",
        "",
        f"{'shots':>5} {'top-1':>7} {'AUROC':>7} {'OSCR':>7} {'EER':>7} {'open-acc':>8} {'TAR':>7} {'obs.FAR':>7}",
    ]

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    extra = [key for key in ("attributed",) + REFERENCE_FIGURES if any(key in s for s in res["shots"].values())]
    if extra:  # rejects (--reject) and reference sources (--reference)
        lines[-1] += "".join(f" {EXTRA_HEADS[key]:>{len(EXTRA_HEADS[key])}}" for key in extra)
    for k, s in res["shots"].items():
        lines.append(
            f"{k:>5} {f(s['accuracy']):>7} {f(s['auroc']):>7} {f(s['oscr']):>7} {f(s['eer']):>7} "
            f"{f(s['openset_accuracy']):>8} {f(s['tar']):>7} {f(s['observed_far']):>7}"
            + "".join(f" {f(s.get(key)):>{len(EXTRA_HEADS[key])}}" for key in extra)
        )
    if any("levels" in s for s in res["shots"].values()):
        lines += ["", format_levels(res)]
    return "\n".join(lines)


def format_levels(res: dict[str, Any]) -> str:
    """The per-level table of a run with a tree (see :func:`level_figures`)."""

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    lines = [
        "per level (known queries: top-1 closed set / calibrated decision right at family, line, leaf;"
        " wrong at the leaf but right at the line / family; never-enrolled: line named, family only, wrong node (a sibling), rejected)",
        f"{'shots':>5} {'fam':>11} {'line':>11} {'leaf':>11}  {'wrong->line':>11} {'->fam':>6}  {'unk:line':>8} {'fam':>6} {'wrong':>6} {'(sib)':>6} {'rej':>6}",
    ]
    for k, s in res["shots"].items():
        kn, un = s.get("levels", {}).get("known", {}), s.get("levels", {}).get("unknown", {})
        top, dec = kn.get("top1", {}), kn.get("decided", {})
        cells = " ".join(f"{f(top.get(lv)) + '/' + f(dec.get(lv)):>11}" for lv in LEVELS)
        lines.append(
            f"{k:>5} {cells}  {f(kn.get('wrong_at_leaf_right_line')):>11} {f(kn.get('wrong_at_leaf_right_family')):>6}  "
            f"{f(un.get('right_line')):>8} {f(un.get('right_family_only')):>6} {f(un.get('wrong_node')):>6} "
            f"{f(un.get('wrong_node_right_line')):>6} {f(un.get('rejected')):>6}"
        )
    return "\n".join(lines)
