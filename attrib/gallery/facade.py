"""The gallery: one SQLite database (the truth) plus FAISS indexes (caches rebuilt from it).

Layout of a gallery folder::

    gallery.db        sources, samples (embedding blobs), prototypes, calibration, settings
    index/            FAISS caches, tagged with the generation they were built from

:class:`Gallery` is the facade the CLI, the service, the benches and library users hold. It binds
one encoder to one folder and composes the parts, each in its own module: the database
(:mod:`.store`, :mod:`.schema`), the calibration maths (:mod:`attrib.openset`), prototypes and
search (:mod:`.prototypes`) and discovery of new sources (:mod:`.discovery`). Every write runs in
one transaction: an enrollment that fails or is interrupted half-way leaves the gallery as it was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import openset
from ..encoders import Encoder, get_encoder, l2_normalize
from ..errors import EncoderMismatch, GalleryError, UnknownSource
from ..index import VectorIndex
from ..scorenorm import normalise
from ..sources import FAMILIES, check_name
from ..views import VIEWS, by_view, norm_in, prior_in
from . import discovery, lineage, prototypes
from .store import DB_NAME, EnrollResult, SampleRecord, Store, now


class Gallery:
    """An enrolled set of sources bound to one encoder."""

    def __init__(self, path: str | os.PathLike, encoder: Encoder | str | None = None, create: bool = True, pm=None):
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        if self.path.exists() and not self.path.is_dir():
            raise GalleryError(f"{self.path}: a gallery is a folder, and this is a file")
        if not self.db_path.exists() and not create:
            raise GalleryError(f"no gallery at {self.path} (enroll a source first, or pass --gallery)")
        self.path.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.db_path, label=self.path)
        self.db = self.store.db
        self.encoder = self._bind(encoder, pm)
        self.dim = self.store.dim
        self._proto_index: dict[str | None, VectorIndex | None] = {}  # per view
        self._proto_gen: int | None = None
        self._calibration: tuple[int, dict[str | None, openset.Calibration]] | None = None  # per view
        self._tree: tuple[int, lineage.Tree, dict[str, np.ndarray] | None] | None = None

    def _bind(self, encoder: Encoder | str | None, pm) -> Encoder:
        """The encoder of this gallery: recorded on first use; later ones must have the same id."""
        stored = self.setting("encoder_id")
        if stored is None:
            enc = encoder if isinstance(encoder, Encoder) else get_encoder(encoder, pm=pm)
            with self.store.transaction():
                for key, value in (
                    ("encoder_id", enc.id),
                    ("encoder_spec", getattr(enc, "spec", None) or enc.name),
                    ("encoder", enc.describe()),
                    ("dim", enc.dim),
                    ("created_at", now()),
                    ("far", openset.DEFAULT_FAR),
                ):
                    self.store.put_setting(key, value)
            return enc
        enc = encoder if isinstance(encoder, Encoder) else get_encoder(encoder or self.setting("encoder_spec"), pm=pm)
        if enc.id != stored:
            raise EncoderMismatch(
                f"gallery {self.path} is bound to encoder {stored}; {enc.id} cannot be mixed into it (use another --gallery)"
            )
        return enc

    # -- settings ----------------------------------------------------------------------------
    def setting(self, key: str, default: Any = None) -> Any:
        return self.store.setting(key, default)

    @property
    def generation(self) -> int:
        return self.store.generation

    @property
    def schema_version(self) -> int:
        return self.store.schema_version

    @property
    def far(self) -> float:
        return float(self.setting("far", openset.DEFAULT_FAR))

    @property
    def recipe(self) -> str | None:
        """Name of the recipe that built this gallery, if one did."""
        return self.setting("recipe")

    def set_recipe(self, name: str) -> None:
        with self.store.transaction():
            self.store.put_setting("recipe", name)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sources -----------------------------------------------------------------------------
    def has_source(self, name: str) -> bool:
        return self.store.has_source(name)

    def require_source(self, name: str) -> None:
        if not self.has_source(name):
            known = self.store.source_names(limit=20)
            hint = f" (enrolled: {', '.join(known)})" if known else " (the gallery is empty)"
            raise UnknownSource(f"no source named {name!r} in this gallery{hint}")

    def require_node(self, name: str) -> str:
        """The key of what ``name`` verifies against: a source, or in a gallery with a tree a family
        (no source of that name); else :class:`UnknownSource`, as :meth:`require_source`."""
        if not self.has_source(name):
            tree, vectors = self._lineage()
            if lineage.family_key(name) in vectors:
                return lineage.family_key(name)
            self.require_source(name)
        return name

    def source_names(self) -> list[str]:
        return self.store.source_names()

    def sources(self, far: float | None = None) -> list[dict[str, Any]]:
        far = self.far if far is None else far
        counts = self.store.counts_by_source("samples")
        protos = self.store.counts_by_source("prototypes")
        cal = self.calibration()
        rows = self.store.source_rows()
        tree = lineage.Tree.from_rows(rows)
        thresholds = cal.thresholds(far, sources=[r["name"] for r in rows])
        out = []
        for row in rows:
            gen = cal.genuine(row["name"])
            thr = thresholds[row["name"]]
            out.append(
                {
                    "name": row["name"],
                    "family": row["family"],
                    "metadata": row["metadata"],
                    "samples": counts.get(row["name"], 0),
                    "prototypes": protos.get(row["name"], 0),
                    "threshold": round(thr, 6),
                    "far": far,
                    "expected_tar": None if gen is None else round(gen.tail(thr), 4),
                    "created_at": row["created_at"],
                    "updated_at": row["updated_at"],
                    "parent": row.get("parent"),
                    "children": tree.children.get(row["name"], []),
                    "lineage": tree.lineage(row["name"]),
                }
            )
        return out

    def source(self, name: str, far: float | None = None) -> dict[str, Any]:
        self.require_source(name)
        info = next(s for s in self.sources(far) if s["name"] == name)
        info["sample_list"] = self.store.sample_list(name)
        return info

    def tree(self) -> lineage.Tree:
        """The sources' parents and families (:class:`lineage.Tree`), cached per generation."""
        gen = self.generation
        if self._tree is None or self._tree[0] != gen:
            self._tree = (gen, lineage.Tree.from_rows(self.store.source_rows()), None)
        return self._tree[1]

    def lineage(self) -> tuple[lineage.Tree, dict[str, np.ndarray]]:
        """The tree of sources and its inner nodes' vectors (what :mod:`.lineage` identifies with)."""
        return self._lineage()

    def _lineage(self) -> tuple[lineage.Tree, dict[str, np.ndarray]]:
        """The tree and the vectors its inner nodes score queries with, cached per generation."""
        tree = self.tree()
        if self._tree[2] is None:
            self._tree = (self._tree[0], tree, self._node_vectors(tree) if tree.active else {})
        return tree, self._tree[2]

    def _node_vectors(self, tree: lineage.Tree) -> dict[str, np.ndarray]:
        return lineage.node_vectors(tree, tree.inner_keys(), *self.store.prototypes(), self._node_samples)

    def _node_samples(self, sources) -> np.ndarray:
        return self.store.embeddings_of(sources, lineage.NODE_SAMPLES)

    def add_node(self, name: str, family: str | None = None, parent: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Create a source with no samples of its own (an inner node: its descendants' samples
        stand for it), under ``parent`` or as a root of ``family``."""
        self._check_batch(name, np.zeros((0, self.dim)), [], family)
        if self.has_source(name):
            raise GalleryError(f"source {name!r} exists already (move it with `attrib sources move`)")
        family = self._family_under(name, parent, family)
        with self.store.transaction():
            self.store.upsert_source(name, family, metadata, parent=parent)
            self._recalibrate(touched=[])

    def _family_under(self, name: str, parent: str | None, family: str | None) -> str | None:
        """The family ``name`` gets under ``parent`` (its root's); refuses a contradicting one."""
        if parent is None:
            return family
        tree = self.tree()
        tree.check_parent(name, parent)
        inherited = tree.family_of(parent)
        if family is not None and family != inherited:
            raise GalleryError(f"{name!r} cannot be of family {family!r} under {parent!r}, whose tree is {inherited!r}")
        return inherited

    def move_source(self, name: str, parent: str | None) -> dict[str, Any]:
        """Hang ``name`` (with its subtree) under ``parent`` (None: make it a root). The subtree
        takes the new tree's family; every threshold is recalibrated in the same transaction."""
        self.require_source(name)
        family = self._family_under(name, parent, None)
        tree = self.tree()
        with self.store.transaction():
            self.store.set_parent(name, parent)
            if family is not None:
                self.store.set_family(tree.subtree(name), family)
            self._recalibrate(touched=[])
        return {"source": name, "parent": parent, "lineage": self.tree().lineage(name)}

    def remove_source(self, name: str, children: str = "refuse") -> int:
        """Remove a source and its samples; returns how many samples went with it.

        A source with children is removed only when told what becomes of them: ``children``
        ``"reparent"`` hangs them under the removed source's parent (roots when it had none),
        ``"cascade"`` removes the whole subtree; ``"refuse"`` (default) raises a one-line error."""
        self.require_source(name)
        tree = self.tree()
        kids = tree.children.get(name, [])
        if kids and children not in ("reparent", "cascade"):
            shown = ", ".join(kids[:5]) + (" ..." if len(kids) > 5 else "")
            raise GalleryError(
                f"source {name!r} has {len(kids)} child source(s) ({shown}): pass --reparent to hang them under "
                f"{tree.parents[name] or 'no parent (roots)'!s}, or --recursive to remove them too"
            )
        doomed = tree.subtree(name)[::-1] if children == "cascade" else [name]
        with self.store.transaction():
            for kid in kids if children == "reparent" else []:
                self.store.set_parent(kid, tree.parents[name])
            n = sum(self.store.delete_source(s) for s in doomed)
            self._recalibrate(touched=[])
        return n

    # -- enrollment --------------------------------------------------------------------------
    def enroll(
        self,
        source: str,
        embeddings: np.ndarray,
        records: Sequence[SampleRecord],
        family: str | None = None,
        metadata: dict[str, Any] | None = None,
        parent: str | None = None,
        views: dict[str, np.ndarray] | None = None,
    ) -> EnrollResult:
        """Add embedded samples to ``source`` (created if new, under ``parent``) in one transaction.

        Images whose sha256 is already in the gallery are skipped and reported as duplicates.
        Prototypes and calibration are updated in the same transaction. A source under a parent
        takes its tree's family; an existing source keeps its parent (``parent`` must be it, or
        None: move a source with :meth:`move_source`). ``views``: the samples' embeddings in the
        gallery's views (``{view: rows aligned with embeddings}``, :mod:`attrib.views`).
        """
        return self.enroll_many([(source, embeddings, records, family, metadata, parent, views)])[0]

    def enroll_many(self, batches: Sequence[tuple]) -> list[EnrollResult]:
        """Enroll several sources in one transaction, calibrating once at the end.

        ``batches`` holds ``(source, embeddings, records, family, metadata[, parent[, views]])`` tuples.
        """
        batches = [tuple(b) + (None,) * (7 - len(b)) for b in batches]
        for source, embeddings, records, family, _, parent, views in batches:
            self._check_batch(source, embeddings, records, family)
            for view, emb in (views or {}).items():
                if view not in VIEWS:
                    raise GalleryError(f"unknown view {view!r}: one of {', '.join(VIEWS)}")
                self._check_batch(source, emb, records, family)
            if parent is not None:
                self.check_enroll_parent(source, parent, family)
            else:
                self._check_tree_family(source, family)
        results = []
        with self.store.transaction():
            touched = []
            for source, embeddings, records, family, metadata, parent, views in batches:
                if parent is not None:
                    family = self.tree().family_of(parent)
                new = self.store.upsert_source(source, family, metadata, parent=parent)
                views = {v: np.asarray(e, dtype=np.float32) for v, e in (views or {}).items()}
                result = self.store.add_samples(source, np.asarray(embeddings, dtype=np.float32), records, views)
                results.append(result)
                if result.enrolled or new:
                    self._rebuild_prototypes(source)
                    touched.append(source)
            if touched:
                self._recalibrate(touched=touched)
        return results

    def _check_batch(self, source: str, embeddings, records, family: str | None) -> None:
        check_name(source)
        if family is not None and family not in FAMILIES:
            raise GalleryError(f"unknown family {family!r}: one of {', '.join(FAMILIES)}")
        if len(embeddings) != len(records):
            raise ValueError("one record per embedding")
        if len(embeddings) and np.asarray(embeddings).shape[1] != self.dim:
            raise EncoderMismatch(f"embeddings of dimension {np.asarray(embeddings).shape[1]} cannot enter a {self.dim}-d gallery")

    def check_enroll_parent(self, source: str, parent: str, family: str | None) -> None:
        if self.has_source(source):
            current = self.tree().parents.get(source)
            if current != parent:
                raise GalleryError(
                    f"source {source!r} exists with parent {current!r}; move it with `attrib sources move {source} --parent {parent}`"
                )
        self._family_under(source, parent, family)

    def _check_tree_family(self, source: str, family: str | None) -> None:
        """A source in a tree has its tree's family: another one given on enroll is refused."""
        if family is None or not self.has_source(source):
            return
        tree = self.tree()
        current = tree.family_of(source)
        if family != current and (tree.parents.get(source) or tree.children.get(source)):
            raise GalleryError(f"{source!r} is in a tree of family {current!r}: its family follows its tree (move it to change it)")

    def _rebuild_prototypes(self, source: str) -> None:
        emb = self.store.source_embeddings(source)
        if not len(emb):
            self.store.replace_prototypes(source, emb, [])
            return
        centres, members = prototypes.prototypes_of(emb)
        self.store.replace_prototypes(source, centres, members)
        for view in self.store.views():  # a sample enrolled without a view stands in it as it is
            centres, members = prototypes.prototypes_of(self.store.view_embeddings(source, view))
            self.store.replace_view_prototypes(source, view, centres, members)

    # -- calibration -------------------------------------------------------------------------
    def _recalibrate(self, touched: Sequence[str]) -> None:
        """Re-measure impostor models of every source and genuine models of ``touched`` ones
        (the others keep theirs: their samples did not change)."""
        pool, pool_src = self.store.impostor_pool(openset.IMPOSTOR_POOL)
        norm = self.encoder.score_norm
        impostor = openset.impostor_models(pool, pool_src, *self.store.prototypes(), norm)
        models = self._source_models(impostor, self.store.calibration(), touched, self.store.source_embeddings, norm)
        families = self._calibrate_nodes(models, pool, pool_src)
        self.store.put_setting("family_calibration", families)
        self.store.replace_calibration(models)
        for view in self.store.views():
            self._recalibrate_view(view, touched)
        pair_imp, pair_gen = openset.pair_models(pool, pool_src)
        self.store.put_setting("pair_impostor", pair_imp.to_dict() if pair_imp else None)
        self.store.put_setting("pair_genuine", pair_gen.to_dict() if pair_gen else None)

    def _recalibrate_view(self, view: str, touched: Sequence[str]) -> None:
        """The models of every source in ``view`` (:mod:`attrib.views`), measured as the plain ones:
        the view's impostor pool against its prototypes, and ``touched`` sources' own samples in it,
        with the view's score normalisation (its own where the encoder has a head for it)."""
        norm = norm_in(self.encoder, view)
        pool, pool_src = self.store.impostor_pool(openset.IMPOSTOR_POOL, view)
        impostor = openset.impostor_models(pool, pool_src, *self.view_prototypes(view), norm)
        stored = self.store.view_calibration(view)
        remeasure = set(touched) | (set(impostor) - set(stored))  # and sources the view has no models of yet
        models = self._source_models(impostor, stored, remeasure, lambda name: self.store.view_embeddings(name, view), norm)
        self.store.replace_calibration(models, view)

    def _source_models(self, impostor: dict, stored: dict, remeasure, samples_of, norm) -> dict[str, tuple[dict | None, dict | None]]:
        """Per source: its impostor model and its genuine model, measured on ``samples_of(name)``
        for the sources in ``remeasure``, kept from ``stored`` for the others (their samples did
        not change), as dicts to store."""
        models = {}
        for name, imp in impostor.items():
            if name in remeasure:
                gen = openset.genuine_model(samples_of(name), norm)
                gen_dict = gen.to_dict() if gen else None
            else:
                gen_dict = stored.get(name, (None, None))[1]
            models[name] = (imp.to_dict() if imp else None, gen_dict)
        return models

    def _calibrate_nodes(self, models: dict, pool: np.ndarray, pool_src: list[str]) -> dict | None:
        """In a tree gallery: the subtree models of inner sources (into ``models``, replacing
        their own-sample ones) and of families (returned, kept in a setting); None when flat."""
        tree = lineage.Tree.from_rows(self.store.source_rows())
        if not tree.active:
            return None
        vectors = self._node_vectors(tree)
        families = {}
        for key, (imp, gen) in lineage.node_models(tree, vectors, pool, pool_src, self._node_samples, self.encoder.score_norm).items():
            pair = (imp.to_dict() if imp else None, gen.to_dict() if gen else None)
            if key.startswith(lineage.FAMILY_PREFIX):
                families[key] = pair
            else:
                models[key] = pair
        return families

    def stored_models(self) -> dict[str, tuple[dict | None, dict | None]]:
        """The measured (impostor, genuine) score models as stored: per source, and per family of a
        gallery with a tree (what :meth:`calibration` pools with the encoder's prior)."""
        models = dict(self.store.calibration())
        models.update({key: tuple(pair) for key, pair in (self.setting("family_calibration") or {}).items()})
        return models

    def calibration(self, view: str | None = None) -> openset.Calibration:
        """The stored score models (of ``view``, or the plain ones) pooled with the encoder's prior
        (of the view: :func:`attrib.views.prior_in`); cached per generation. In a view, a source enrolled before views has its plain models, and
        inner nodes and families keep theirs."""
        gen = self.generation
        if self._calibration is None or self._calibration[0] != gen:
            self._calibration = (gen, {})
        cache = self._calibration[1]
        if view not in cache:
            stored = self.stored_models()
            if view is not None:
                stored |= self.store.view_calibration(view)
            observed = {
                name: (openset.ScoreModel.from_dict(imp), openset.ScoreModel.from_dict(genuine)) for name, (imp, genuine) in stored.items()
            }
            cache[view] = openset.Calibration(observed, prior_in(self.encoder, view))
        return cache[view]

    def thresholds(self, far: float | None = None, sources=None, view: str | None = None) -> dict[str, float]:
        """Thresholds at ``far`` of ``sources`` (default: all; a 10,000-source gallery asks for few)
        in ``view`` (None: the plain one). A source not yet calibrated is held to the encoder's
        prior alone."""
        return self.calibration(view).thresholds(self.far if far is None else far, sources)

    def prototypes(self) -> tuple[np.ndarray, list[str]]:
        """Every prototype and its source, ordered by source."""
        return self.store.prototypes()

    # -- search ------------------------------------------------------------------------------
    def view_prototypes(self, view: str | None) -> tuple[np.ndarray, list[str]]:
        """Every prototype of ``view`` (None: the plain view) and its source, ordered by source: a
        source with no sample in the view keeps its plain prototypes (:func:`prototypes.in_view`)."""
        plain = self.prototypes()
        return plain if view is None else prototypes.in_view(*plain, *self.store.view_prototypes(view))

    def prototype_index(self, view: str | None = None) -> VectorIndex | None:
        """The FAISS index of the prototypes of ``view`` (None: the plain view), loaded from cache or
        rebuilt if the gallery moved on."""
        gen = self.generation
        if self._proto_gen != gen:
            self._proto_index, self._proto_gen = {}, gen
        if view in self._proto_index:
            return self._proto_index[view]
        cache = self.path / "index" / ("prototypes.faiss" if view is None else f"prototypes-{view}.faiss")
        expect = {"generation": gen, "encoder_id": self.encoder.id}
        index = VectorIndex.load(cache, expect)
        if index is None:
            protos, labels = self.view_prototypes(view)
            if not len(protos):
                return None
            index = VectorIndex.build(protos, labels)
            try:
                index.save(cache, expect)
            except OSError:
                pass  # a read-only gallery still answers; it just rebuilds next time
        self._proto_index[view] = index
        return index

    def source_scores(self, embeddings: np.ndarray, top_k: int, views=None) -> list[list[tuple[str, float]]]:
        """Per query, ``(source, score)`` best first, each source scored by its best prototype in the
        query's view (``views``: one per query, None for the plain view; :mod:`attrib.views`)."""
        emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        return by_view(
            views, len(emb), lambda v, rows: prototypes.source_scores(self.prototype_index(v), emb[rows], top_k, norm_in(self.encoder, v))
        )

    def identify(self, embeddings: np.ndarray, top_k: int = 5, far: float | None = None, views=None) -> list[openset.Decision]:
        """Open-set identification of each embedding: a source, or unknown (source None); each
        scored in its view (``views``: one per embedding, None for the plain view; :mod:`attrib.views`)."""
        far = self.far if far is None else far
        tree, vectors = self._lineage()
        emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))

        def answer(view, rows):
            index, calibration, norm = self.prototype_index(view), self.calibration(view), norm_in(self.encoder, view)
            if tree.active:
                return lineage.identify(index, calibration, emb[rows], top_k, far, tree, vectors, norm)
            decisions = prototypes.identify(index, calibration, emb[rows], top_k, far, norm)
            lineage.flat_lineage(decisions, tree)
            return decisions

        return by_view(views, len(emb), answer)

    def verify(self, embeddings: np.ndarray, source: str, far: float | None = None, views=None) -> list[dict[str, Any]]:
        """1:1 verification against one source at false-accept rate ``far`` (an inner node or, in a
        gallery with a tree, a family: against its subtree, at its threshold); each embedding held
        to the source's prototypes in its view (``views``, as :meth:`identify`)."""
        key = self.require_node(source)
        far = self.far if far is None else far
        tree, vectors = self._lineage()
        protos = vectors[key] if key in vectors else self.store.prototypes(source)[0]
        if not len(protos):
            raise GalleryError(f"source {source!r} has no samples, nor has any source under it: nothing to verify against")
        emb = np.atleast_2d(embeddings)

        def held(view, rows):  # (score, threshold) of each row, in its view
            own = protos
            if view is not None and key not in vectors:
                own = self.store.view_prototypes(view, source)[0]
                own = own if len(own) else protos
            thr = self.calibration(view).thresholds(far, [key])[key]
            scores = normalise(norm_in(self.encoder, view), (emb[rows] @ own.T).max(axis=1), emb[rows])
            return [(float(s), thr) for s in scores]

        return [
            {"generator": source, "score": round(s, 6), "threshold": round(thr, 6), "accepted": bool(s >= thr), "far": far}
            for s, thr in by_view(views, len(emb), held)
        ]

    def pair_threshold(self, far: float | None = None) -> float:
        far = self.far if far is None else far
        observed = openset.ScoreModel.from_dict(self.setting("pair_impostor"))
        return self.calibration().pair_threshold(far, observed)

    def verify_pair(self, a: np.ndarray, b: np.ndarray, far: float | None = None) -> dict[str, Any]:
        """Were two images made by the same source? Thresholded at ``far`` of the pair-impostor model."""
        far = self.far if far is None else far
        thr = self.pair_threshold(far)
        score = float(np.dot(l2_normalize(a), l2_normalize(b)))
        return {"score": round(score, 6), "threshold": round(thr, 6), "accepted": score >= thr, "far": far}

    # -- rejected queries and discovery ------------------------------------------------------
    def keep_rejected(self, embeddings: np.ndarray, records: Sequence[SampleRecord], decisions) -> int:
        """Keep the queries ``decisions`` rejected as unknown, for :meth:`propose_sources`."""
        rows = [
            {
                "sha256": r.sha256,
                "embedding": e,
                "origin": r.origin,
                "score": d.score,
                "nearest": d.candidates[0]["source"] if d.candidates else None,
            }
            for e, r, d in zip(embeddings, records, decisions)
            if d.source is None
        ]
        if rows:
            with self.store.transaction():
                self.store.add_rejected(rows)
        return len(rows)

    def propose_sources(self, min_size: int = 3, far: float | None = None, limit: int = 20000) -> list[dict[str, Any]]:
        """Clusters of kept unknowns that may be new sources.

        Two rejected images are linked when their pair score clears the pair-verification
        threshold at ``far`` (the same test as ``verify a.png b.png``); clusters are the connected
        components (FAISS range search, union-find) with at least ``min_size`` members, largest
        first. Each proposal lists its members' origins, its cohesion (mean similarity to the
        centre) and the enrolled source nearest to it."""
        emb, origins = self.store.rejected(limit)
        if len(emb) < min_size:
            return []
        return discovery.propose(emb, origins, self.pair_threshold(far), min_size, lambda c: self.source_scores(c, 1)[0])

    def stats(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "encoder_id": self.encoder.id,
            "dim": self.dim,
            "schema_version": self.schema_version,
            "generation": self.generation,
            "sources": self.store.count("sources"),
            "samples": self.store.count("samples"),
            "prototypes": self.store.count("prototypes"),
            "views": {view: len(self.store.view_prototypes(view)[1]) for view in self.store.views()},  # prototypes per view
            "rejected": self.store.count("rejected"),
            "far": self.far,
        }
