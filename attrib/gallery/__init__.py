"""The gallery: one SQLite database (the truth) plus FAISS indexes (caches rebuilt from it).

The public API is re-exported here; each concept has its own module:

* :mod:`.facade` — :class:`Gallery`, what the CLI, the service and library users hold;
* :mod:`.store` — the database: settings, transactions, rows (:class:`SampleRecord`,
  :class:`EnrollResult`, the float32 blob format);
* :mod:`.schema` — one sqlite-utils migration per schema change;
* :mod:`.prototypes` — prototypes of a source and the search over them;
* :mod:`.discovery` — clusters of rejected queries proposed as new sources;
* :mod:`.memory` — :class:`MemoryGallery`, a gallery enrolled from arrays (evaluation).

The calibration maths (score models, thresholds) is :mod:`attrib.openset`.
"""

from __future__ import annotations

from ..openset import IMPOSTOR_POOL, Calibration, leave_one_out_scores
from .facade import Gallery
from .memory import MemoryGallery
from .prototypes import MAX_PROTOTYPES, MULTI_PROTO_MIN, prototypes_of
from .schema import SCHEMA_VERSION, migrations
from .store import DB_NAME, THUMBS_PER_SOURCE, EnrollResult, SampleRecord, Store, from_blobs, to_blob

__all__ = [
    "DB_NAME",
    "IMPOSTOR_POOL",
    "MAX_PROTOTYPES",
    "MULTI_PROTO_MIN",
    "SCHEMA_VERSION",
    "THUMBS_PER_SOURCE",
    "Calibration",
    "EnrollResult",
    "Gallery",
    "MemoryGallery",
    "SampleRecord",
    "Store",
    "from_blobs",
    "leave_one_out_scores",
    "migrations",
    "prototypes_of",
    "to_blob",
]
