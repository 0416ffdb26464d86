"""The gallery's schema: one named, transactional sqlite-utils migration per change.

A gallery records in ``_sqlite_migrations`` which steps it has; opening one applies the steps it
lacks (an older gallery is upgraded in place) and refuses one that has a step this attrib does
not know (it was written by a newer attrib: reading it could misread or damage it).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

migrations = sqlite_utils.Migrations("attrib.gallery")

#: names of the schema steps, oldest first. Kept here, beside the decorators, because
#: sqlite-utils lists a set's registered steps only through a private attribute.
STEPS: list[str] = []


def step(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    """Register ``fn`` as the next schema step, named after the function (names are never reused)."""
    STEPS.append(fn.__name__)
    return migrations(name=fn.__name__)(fn)


@step
def m001_initial(db: sqlite_utils.Database) -> None:
    db["settings"].create({"key": str, "value": str}, pk="key")
    db["sources"].create({"name": str, "family": str, "metadata": str, "created_at": str, "updated_at": str}, pk="name")
    db["samples"].create(
        {
            "id": int,
            "source": str,
            "sha256": str,
            "embedding": bytes,
            "width": int,
            "height": int,
            "format": str,
            "origin": str,
            "added_at": str,
        },
        pk="id",
        foreign_keys=[("source", "sources", "name")],
    )
    db["samples"].create_index(["sha256"], unique=True)
    db["samples"].create_index(["source"])
    db["prototypes"].create(
        {"id": int, "source": str, "idx": int, "embedding": bytes, "members": int},
        pk="id",
        foreign_keys=[("source", "sources", "name")],
    )
    db["prototypes"].create_index(["source"])
    db["calibration"].create(
        {"source": str, "impostor": str, "genuine": str, "updated_at": str},
        pk="source",
        foreign_keys=[("source", "sources", "name")],
    )


@step
def m002_rejected(db: sqlite_utils.Database) -> None:
    """Queries identify rejected as unknown, kept on request to propose new sources later."""
    db["rejected"].create(
        {"id": int, "sha256": str, "embedding": bytes, "origin": str, "score": float, "nearest": str, "added_at": str},
        pk="id",
    )
    db["rejected"].create_index(["sha256"], unique=True)


@step
def m003_thumbnails(db: sqlite_utils.Database) -> None:
    """A small JPEG of a few samples per source (at most :data:`attrib.imageio.THUMB_SIDE` px a side,
    the first :data:`attrib.gallery.store.THUMBS_PER_SOURCE` of each source), for the web page.
    Older samples have none (NULL); nothing else changes."""
    db["samples"].add_column("thumbnail", bytes)


@step
def m004_lineage(db: sqlite_utils.Database) -> None:
    """A source may have a parent source (:mod:`attrib.gallery.lineage`): NULL for every existing
    source, so an upgraded gallery is flat and answers as before."""
    db["sources"].add_column("parent", str)
    db["sources"].create_index(["parent"])


@step
def m005_views(db: sqlite_utils.Database) -> None:
    """Each sample's embedding in the gallery's views (:mod:`attrib.views`: the sample re-saved as
    JPEG), and each source's prototypes and measured score models per view. Older samples have
    none: they stand in a view as they are, and a source enrolled before views is matched in a
    view by its plain prototypes and models until it is enrolled again."""
    db["sample_views"].create(
        {"sample_id": int, "source": str, "view": str, "embedding": bytes},
        pk=("sample_id", "view"),
        foreign_keys=[("sample_id", "samples", "id"), ("source", "sources", "name")],
    )
    db["sample_views"].create_index(["source", "view"])
    db["view_prototypes"].create(
        {"id": int, "source": str, "view": str, "idx": int, "embedding": bytes, "members": int},
        pk="id",
        foreign_keys=[("source", "sources", "name")],
    )
    db["view_prototypes"].create_index(["view", "source"])
    db["view_calibration"].create(
        {"source": str, "view": str, "impostor": str, "genuine": str, "updated_at": str},
        pk=("source", "view"),
        foreign_keys=[("source", "sources", "name")],
    )


SCHEMA_VERSION = len(STEPS)


def applied(db: sqlite_utils.Database) -> list[str]:
    """Names of the steps this database has, in the order they were applied."""
    return [m.name for m in migrations.applied(db)]


def unknown_steps(db: sqlite_utils.Database) -> list[str]:
    """Steps this database has that this attrib does not know (it was written by a newer one)."""
    return sorted(set(applied(db)) - set(STEPS))


def pending(db: sqlite_utils.Database) -> bool:
    return bool(migrations.pending(db))


def upgrade(db: sqlite_utils.Database) -> None:
    """Apply the steps the database lacks (call inside the store's write transaction)."""
    migrations.apply(db)
