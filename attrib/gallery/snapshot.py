"""An immutable snapshot of a gallery: what identify needs, as plain data that pickles.

``attrib batch`` reads the gallery once on the driver and ships this to every worker (Ray puts it
in the object store once): workers never open the SQLite file, so a gallery on one machine's
disk serves a whole cluster, and an enrollment during a run changes nothing the run answers.
The snapshot holds the prototype vectors and their sources (the embeddings identify searches),
the stored score models and the encoder's prior (what every threshold is read from, at any FAR),
the thresholds at the gallery's FAR (for the record), the encoder id and spec, the camera
sources (for the verdict), the encoder's score normalisation, the tree of sources with its inner
nodes' vectors (lineage), and the gallery's **generation**, which every output row records.

:meth:`GallerySnapshot.gallery` turns it back into a :class:`MemoryGallery` whose
:meth:`~MemoryGallery.identify` runs the same search and decision as :meth:`Gallery.identify`
(same vectors, same FAISS index kind, same calibration): the answers are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import openset
from ..index import VectorIndex
from ..scorenorm import ScoreNorm
from . import lineage
from .memory import MemoryGallery


@dataclass(frozen=True)
class GallerySnapshot:
    """A gallery frozen at one generation (see the module's doc)."""

    path: str
    generation: int
    encoder_id: str
    encoder_spec: str
    far: float
    sources: tuple[str, ...]
    vectors: np.ndarray  # prototypes, float32, one row per label
    labels: tuple[str, ...]  # the source of each prototype row
    observed: dict[str, tuple[dict | None, dict | None]]  # per source: stored (impostor, genuine) models
    prior: dict[str, Any]  # the encoder's calibration prior
    thresholds: dict[str, float]  # at ``far``: for the record (identify recomputes at the FAR asked)
    camera_sources: tuple[str, ...] = ()
    norm: ScoreNorm | None = None  # the encoder's score normalisation (scores are compared after it)
    tree: lineage.Tree | None = None  # parents and families: lineage of every answer
    node_vectors: dict[str, np.ndarray] = field(default_factory=dict)  # inner nodes' vectors (tree galleries)
    # per view (attrib.views): its prototypes, their sources and its stored (impostor, genuine) models
    views: dict[str, tuple[np.ndarray, tuple[str, ...], dict]] = field(default_factory=dict)
    # per view the encoder has a head for (its ``view_heads``): that view's score normalisation and prior
    view_scoring: dict[str, tuple[ScoreNorm | None, dict | None]] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_gallery(cls, gallery) -> GallerySnapshot:
        """Read ``gallery`` (a :class:`attrib.gallery.Gallery`) once, in one consistent state."""
        from ..verdict import camera_sources

        generation = gallery.generation
        vectors, labels = gallery.prototypes()
        vectors = np.array(vectors, dtype=np.float32, copy=True)
        vectors.flags.writeable = False
        tree, node_vectors = gallery.lineage()
        views = {}
        for view in gallery.store.views():
            vv, vl = gallery.view_prototypes(view)
            vv = np.array(vv, dtype=np.float32, copy=True)
            vv.flags.writeable = False
            views[view] = (vv, tuple(vl), gallery.stored_models() | gallery.store.view_calibration(view))
        spec = gallery.setting("encoder_spec") or gallery.encoder.name
        snap = cls(
            path=str(gallery.path),
            generation=int(generation),
            encoder_id=gallery.encoder.id,
            encoder_spec=str(spec),
            far=gallery.far,
            sources=tuple(gallery.source_names()),
            vectors=vectors,
            labels=tuple(labels),
            observed=gallery.stored_models(),
            prior=dict(gallery.encoder.calibration or {}),
            thresholds=gallery.thresholds(),
            camera_sources=tuple(camera_sources(gallery)),
            norm=gallery.encoder.score_norm,
            tree=tree,
            node_vectors=dict(node_vectors),
            views=views,
            view_scoring={v: (head.score_norm, head.calibration) for v, head in (gallery.encoder.view_heads or {}).items()},
        )
        if gallery.generation != generation:  # an enrollment landed while we read: read again
            return cls.from_gallery(gallery)
        return snap

    def calibration(self, view: str | None = None) -> openset.Calibration:
        """The calibration of ``view`` (None: the plain one), as the gallery's :meth:`calibration`."""
        observed = self.observed if view is None else self.views[view][2]
        models = {name: (openset.ScoreModel.from_dict(imp), openset.ScoreModel.from_dict(gen)) for name, (imp, gen) in observed.items()}
        return openset.Calibration(models, self.view_scoring[view][1] if view in self.view_scoring else self.prior)

    def gallery(self) -> MemoryGallery:
        """A :class:`MemoryGallery` answering identify from this snapshot (built once per process)."""
        if "gallery" not in self._cache:
            index = VectorIndex.build(np.array(self.vectors), list(self.labels)) if len(self.vectors) else None
            view_indexes = {v: VectorIndex.build(np.array(vv), list(vl)) if len(vv) else None for v, (vv, vl, _) in self.views.items()}
            self._cache["gallery"] = MemoryGallery(
                list(self.sources),
                index,
                self.calibration(),
                self.far,
                norm=self.norm,
                tree=self.tree,
                vectors=self.node_vectors,
                view_indexes=view_indexes,
                view_calibrations={v: self.calibration(v) for v in self.views},
                view_norms={v: norm for v, (norm, _) in self.view_scoring.items()},
            )
        return self._cache["gallery"]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}  # the FAISS index is rebuilt where the snapshot lands, never pickled
        return state

    def __setstate__(self, state):
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def describe(self) -> dict[str, Any]:
        return {
            "gallery": self.path,
            "generation": self.generation,
            "encoder_id": self.encoder_id,
            "sources": len(self.sources),
            "prototypes": len(self.labels),
            "far": self.far,
        }
