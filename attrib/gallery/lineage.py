"""Lineage: sources in trees (family -> model line -> release -> fine-tune), and identify over them.

A source may have a parent source; a source with children is an **inner node** (it may have no
samples of its own: its prototypes are its descendants'). Every tree hangs under its root's
family, so a source's **lineage** is ``[family, root, ..., source]``. A gallery where no source
has a parent is **flat**: nothing here runs and identify answers exactly as before.

In a tree gallery every inner node and every family is a node with its own calibrated threshold,
held against its whole subtree (:func:`node_models`): its impostors are the pool samples of
sources *outside* the subtree, scored by the node's score (:data:`NODE_SCORE`: ``"pooled"``, the
subtree's own prototypes from all its samples, which ``bench/lineage.py`` measured against
``"max"``, the best prototype anywhere in the subtree: as many or more right answers per level). A leaf's threshold is the flat one: its siblings
are among its impostors, so two close leaves hold each other's thresholds up, while their parent,
whose impostors are the outsiders only, can be sure of the pair.

Identify is **bottom-up** (:func:`walk_up`): the best leaf is found exactly as in a flat gallery;
if it clears its own threshold it is the answer, else its parent is tried with the parent's score
and threshold, then the grandparent, up to the family. The answer is the deepest node of the best
leaf's path that clears its own threshold (``source``), and ``lineage`` is the path from the family
to it. Why bottom-up and not top-down: the leaf decision is the flat one, so adding parents never
changes an answer a flat gallery would give; a top-down descent would first have to clear the
family and every ancestor, whose thresholds over whole subtrees are stricter than a leaf's where
the leaves are distinct (measured: ``tconv-k3`` 0.391 over seeds at 0.376 and 0.378), and a wrong
turn near the root cannot be undone further down.

Plain functions over arrays and one small :class:`Tree`: the on-disk gallery and the in-memory
one (evaluation) run the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import openset
from ..errors import GalleryError
from ..scorenorm import ScoreNorm, normalise
from . import prototypes

#: a family node's key in calibration and vector maps (source names cannot contain ':')
FAMILY_PREFIX = "family:"
#: how an inner node scores a query: "max" (its subtree's best prototype) or "pooled" (prototypes
#: of all its subtree's samples together); chosen by measurement (bench/lineage.py, README)
NODE_SCORE = "pooled"
NODE_SCORES = ("max", "pooled")
#: samples an inner node's prototypes and genuine model are computed from, at most (the first by
#: sha256: a stable subset, so a family of a million samples costs what 20,000 do)
NODE_SAMPLES = 20000


def family_key(family: str) -> str:
    return FAMILY_PREFIX + family


def label(key: str) -> str:
    """What a node key is called in answers: a source's name, or a family's."""
    return key[len(FAMILY_PREFIX) :] if key.startswith(FAMILY_PREFIX) else key


@dataclass
class Tree:
    """Parents and families of a gallery's sources (``parents[name]`` None for a root)."""

    parents: dict[str, str | None]
    families: dict[str, str]
    children: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.children = {}
        for name in sorted(self.parents):
            p = self.parents[name]
            if p is not None:
                self.children.setdefault(p, []).append(name)

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping]) -> Tree:
        """From source rows (``name``, ``family``, ``parent``)."""
        return cls({r["name"]: r.get("parent") for r in rows}, {r["name"]: r["family"] for r in rows})

    @property
    def active(self) -> bool:
        """True when some source has a parent: a flat gallery has no tree to walk."""
        return any(p is not None for p in self.parents.values())

    def path(self, name: str) -> list[str]:
        """Sources from the root of ``name``'s tree down to ``name``."""
        out, seen = [name], {name}
        while (p := self.parents.get(out[-1])) is not None and p not in seen:
            out.append(p)
            seen.add(p)
        return out[::-1]

    def family_of(self, name: str) -> str:
        return self.families.get(self.path(name)[0], "other")

    def lineage(self, key: str | None) -> list[str]:
        """``[family, root, ..., node]`` of a source or family node key; [] for None (unknown)."""
        if key is None:
            return []
        if key.startswith(FAMILY_PREFIX):
            return [label(key)]
        return [self.family_of(key)] + self.path(key)

    def subtree(self, name: str) -> list[str]:
        """``name`` and its descendants, depth first."""
        out, stack = [], [name]
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(reversed(self.children.get(n, [])))
        return out

    def members(self, key: str) -> set[str]:
        """Sources a node stands for: a source's subtree, or every source of a family."""
        if key.startswith(FAMILY_PREFIX):
            fam = label(key)
            return {n for n in self.parents if self.family_of(n) == fam}
        return set(self.subtree(key))

    def up(self, name: str) -> list[str]:
        """Node keys from ``name`` up to its family: the candidates of :func:`walk_up`."""
        return self.path(name)[::-1] + [family_key(self.family_of(name))]

    def inner_keys(self) -> list[str]:
        """Keys of every node scored over a subtree: sources with children, and the families."""
        fams = sorted({self.family_of(n) for n in self.parents})
        return sorted(self.children) + [family_key(f) for f in fams]

    def depth(self, name: str) -> int:
        return len(self.path(name)) - 1

    def check_parent(self, name: str, parent: str | None) -> None:
        """Raise a one-line :class:`GalleryError` when ``parent`` cannot be ``name``'s parent."""
        if parent is None:
            return
        if parent not in self.parents:
            known = ", ".join(sorted(self.parents)[:20]) or "none"
            raise GalleryError(f"unknown parent {parent!r}: add it first (`attrib sources add {parent} --family FAMILY`); sources: {known}")
        if name in self.parents and parent in self.subtree(name):
            raise GalleryError(f"{parent!r} cannot be the parent of {name!r}: it is {name!r} or one of its descendants (a cycle)")

    def ordered(self) -> list[str]:
        """Every source, roots by family then name, each followed by its subtree (display order)."""
        roots = sorted((n for n, p in self.parents.items() if p is None), key=lambda n: (self.families.get(n, ""), n))
        out: list[str] = []
        for r in roots:
            out += self.subtree(r)
        return out


def sample_rows(shas: Sequence[str], rows: Sequence[int], limit: int = NODE_SAMPLES) -> list[int]:
    """Of ``rows`` (indices into ``shas``), the first ``limit`` by sha256: the store's rule over
    arrays, the impostor pool's (:func:`attrib.openset.impostor_pool`)."""
    rows = list(rows)
    return [rows[i] for i in openset.impostor_pool([shas[i] for i in rows], limit)]


def node_vectors(
    tree: Tree,
    keys: Sequence[str],
    protos: np.ndarray,
    proto_sources: Sequence[str],
    samples_of: Callable[[set[str]], np.ndarray],
    mode: str = NODE_SCORE,
) -> dict[str, np.ndarray]:
    """Vectors each node in ``keys`` scores a query against (its score: the best one).

    ``max``: the prototypes of every source in its subtree; ``pooled``: prototypes of all its
    subtree's samples taken together (:func:`attrib.gallery.prototypes.prototypes_of`).
    ``samples_of(members)`` returns the embeddings of those sources' samples (at most
    :data:`NODE_SAMPLES`, chosen by :func:`sample_rows`' rule)."""
    if mode not in NODE_SCORES:
        raise ValueError(f"node score {mode!r}: one of {NODE_SCORES}")
    src = np.array(proto_sources, dtype=object)
    out = {}
    for key in keys:
        members = tree.members(key)
        if mode == "max":
            vecs = protos[np.isin(src, list(members))] if len(src) else protos[:0]
        else:
            emb = samples_of(members)
            vecs = prototypes.prototypes_of(emb)[0] if len(emb) else protos[:0]
        if len(vecs):
            out[key] = np.ascontiguousarray(vecs, dtype=np.float32)
    return out


def node_models(
    tree: Tree,
    vectors: Mapping[str, np.ndarray],
    pool: np.ndarray,
    pool_sources: Sequence[str],
    samples_of: Callable[[set[str]], np.ndarray],
    norm: ScoreNorm | None = None,
) -> dict[str, tuple[openset.ScoreModel | None, openset.ScoreModel | None]]:
    """Per inner node: (impostor, genuine) models over its subtree, as a leaf's are over its samples.

    Impostor: pool samples of sources outside the node's subtree, scored by the node (best of its
    vectors); genuine: the subtree's samples scored leave-one-out against their centre; both
    normalised by the encoder's ``norm`` when it has one."""
    src = np.array(pool_sources, dtype=object)
    stats = norm.stats(pool) if norm is not None and len(pool) else None  # once: every node scores the pool
    out = {}
    for key, vecs in vectors.items():
        members = tree.members(key)
        outside = ~np.isin(src, list(members)) if len(src) else np.zeros(0, bool)
        imp = None
        if outside.any():
            part = None if stats is None else (stats[0][outside], stats[1][outside])
            imp = openset.ScoreModel.from_scores(normalise(norm, (pool[outside] @ vecs.T).max(axis=1), pool[outside], part))
        out[key] = (imp, openset.genuine_model(samples_of(members), norm))
    return out


def walk_up(
    decision: openset.Decision,
    query: np.ndarray,
    tree: Tree,
    vectors: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    scored: Sequence[tuple[str, float]],
    norm: ScoreNorm | None = None,
) -> openset.Decision:
    """The deepest node on the best leaf's path that clears its own threshold (see the module).

    ``decision`` is the flat decision (its best candidate is the leaf); ``scored`` every source
    score searched for the query, best first (the margin of an inner node is to the best source
    outside its subtree). Returns ``decision`` itself, with its ``lineage``, when the leaf is
    accepted by its own threshold or nothing on the path is."""
    if not decision.candidates:
        return decision
    best = decision.candidates[0]["source"]
    for key in tree.up(best):
        if key == best and key not in vectors:  # a leaf: the flat decision stands
            if decision.source is not None:
                decision.lineage = tree.lineage(best)
                return decision
            continue
        if key not in vectors or key not in thresholds:
            continue
        score = float(normalise(norm, np.array([(vectors[key] @ query).max()]), query[None])[0])
        if score >= thresholds[key]:
            members = tree.members(key)
            runner = next((v for s, v in scored if s not in members), None)
            decision.source = label(key)
            decision.score, decision.threshold = score, float(thresholds[key])
            decision.margin = score - runner if runner is not None else score
            decision.lineage = tree.lineage(key)
            return decision
    decision.source, decision.lineage = None, []
    return decision


def identify(
    index,
    calibration: openset.Calibration,
    embeddings: np.ndarray,
    top_k: int,
    far: float,
    tree: Tree,
    vectors: Mapping[str, np.ndarray],
    norm: ScoreNorm | None = None,
) -> list[openset.Decision]:
    """Identify in a tree gallery: the flat search, then :func:`walk_up` per query (scores
    normalised by the encoder's ``norm`` when it has one)."""
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    scored = prototypes.source_scores(index, embeddings, max(top_k, 2, 20), norm)
    keys = set(vectors) | {c[0][0] for c in scored if c}
    for c in scored:
        if c:
            keys.update(tree.up(c[0][0]))
    thresholds = calibration.thresholds(far, sources=keys)
    out = []
    for q, c in zip(embeddings, scored):
        d = openset.decide(c[: max(top_k, 2)], thresholds, far)
        d = walk_up(d, q, tree, vectors, thresholds, c, norm)
        d.candidates = d.candidates[:top_k]
        out.append(d)
    return out


def flat_lineage(decisions: Sequence[openset.Decision], tree: Tree | None) -> None:
    """Fill ``lineage`` of flat decisions: ``[family, source]`` when a source is accepted."""
    for d in decisions:
        if d.source is None:
            d.lineage = []
        else:
            d.lineage = tree.lineage(d.source) if tree is not None and d.source in tree.parents else [d.source]
