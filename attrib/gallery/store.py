"""The gallery's SQLite database: the source of truth. Rows in, rows out, one writer at a time.

Vectors are stored as little-endian float32 blobs; the encoder id and dimension are stored in
the ``settings`` table. Every write runs in one ``BEGIN IMMEDIATE`` transaction and bumps the
``generation`` counter: a write that fails or is interrupted half-way leaves the gallery as it
was, and readers notice the change and rebuild their index. No maths lives here: what to store
is computed by :mod:`attrib.openset` and :mod:`attrib.gallery.prototypes`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from ..errors import GalleryError
from . import schema

DB_NAME = "gallery.db"
#: thumbnails kept per source (the first ones enrolled that came with one): enough for the web
#: page to show what a source's images look like, bounded whatever the source's size
THUMBS_PER_SOURCE = 6


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def to_blob(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


@dataclass
class SampleRecord:
    """What the gallery stores about an enrolled image besides its embedding."""

    sha256: str
    width: int = 0
    height: int = 0
    format: str | None = None
    origin: str | None = None
    #: a small JPEG (:func:`attrib.imageio.thumbnail`), or None; the gallery keeps only the first
    #: :data:`THUMBS_PER_SOURCE` of each source
    thumbnail: bytes | None = None


@dataclass
class EnrollResult:
    source: str
    enrolled: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "enrolled": self.enrolled,
            "duplicate": len(self.duplicates),
            "failed": len(self.failed),
            "duplicates": self.duplicates,
            "failures": self.failed,
        }


class Store:
    """One gallery database: connection, schema, settings, transactions and the rows of each table."""

    def __init__(self, db_path: Path, label: Path | None = None):
        self.db_path = db_path
        label = label or db_path
        conn = None
        try:
            conn = sqlite3.connect(str(db_path), timeout=60, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 60000")
            self.db.execute("PRAGMA foreign_keys = ON")
            newer = schema.unknown_steps(self.db)
            if newer:  # checked before anything is written: a newer attrib's gallery is left as it is
                raise GalleryError(f"{label}: gallery was written by a newer attrib (schema steps {newer}); upgrade attrib")
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            if schema.pending(self.db):
                with self.transaction():
                    schema.upgrade(self.db)
        except BaseException as exc:
            if conn is not None:
                conn.close()  # a refused gallery is left as it was, with no connection held open
            if isinstance(exc, sqlite3.DatabaseError):
                raise GalleryError(f"{db_path}: not a readable gallery database ({exc})") from None
            raise
        self._dim: int | None = None

    # -- settings and transactions ---------------------------------------------------------
    def setting(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("select value from settings where key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else default

    def put_setting(self, key: str, value: Any) -> None:
        """Set ``key`` (call inside :meth:`transaction`)."""
        self.db["settings"].upsert({"key": key, "value": json.dumps(value)}, pk="key")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One writer at a time (BEGIN IMMEDIATE waits for the lock); all or nothing; bumps the
        generation. Nested use joins the outer transaction."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.put_setting("generation", self.generation + 1)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @property
    def generation(self) -> int:
        return int(self.setting("generation", 0))

    @property
    def schema_version(self) -> int:
        return len(schema.applied(self.db))

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.setting("dim"))
        return self._dim

    def count(self, table: str) -> int:
        return self.db.execute(f"select count(*) from {table}").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    # -- sources -----------------------------------------------------------------------------
    def has_source(self, name: str) -> bool:
        return self.db.execute("select 1 from sources where name = ?", [name]).fetchone() is not None

    def source_names(self, limit: int | None = None) -> list[str]:
        sql = "select name from sources order by name" + ("" if limit is None else f" limit {int(limit)}")
        return [r[0] for r in self.db.execute(sql)]

    def source_rows(self) -> list[dict[str, Any]]:
        """Every source's row, metadata decoded, by name."""
        rows = [dict(r) for r in self.db.query("select * from sources order by name")]
        for r in rows:
            r["metadata"] = json.loads(r["metadata"] or "{}")
        return rows

    def counts_by_source(self, table: str) -> dict[str, int]:
        return dict(self.db.execute(f"select source, count(*) from {table} group by source").fetchall())

    def sample_list(self, name: str) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self.db.query(
                "select id, sha256, width, height, format, origin, added_at from samples where source = ? order by id", [name]
            )
        ]

    def delete_source(self, name: str) -> int:
        """Delete a source and its rows (call inside :meth:`transaction`); returns its sample count."""
        n = self.db.execute("select count(*) from samples where source = ?", [name]).fetchone()[0]
        for table in ("calibration", "view_calibration", "view_prototypes", "prototypes", "sample_views", "samples"):
            self.db.execute(f"delete from {table} where source = ?", [name])
        self.db.execute("delete from sources where name = ?", [name])
        return n

    def upsert_source(self, source: str, family: str | None, metadata: dict[str, Any] | None, parent: str | None = None) -> bool:
        """Create ``source`` (under ``parent``) or update its family and merge its metadata; True
        when it is new. An existing source's parent is changed only by :meth:`set_parent`."""
        stamp = now()
        existing = self.db.execute("select family, metadata from sources where name = ?", [source]).fetchone()
        if existing is None:
            self.db["sources"].insert(
                {
                    "name": source,
                    "family": family or "other",
                    "metadata": json.dumps(metadata or {}),
                    "created_at": stamp,
                    "updated_at": stamp,
                    "parent": parent,
                }
            )
            return True
        meta = json.loads(existing[1] or "{}")
        meta.update(metadata or {})
        self.db["sources"].update(source, {"family": family or existing[0], "metadata": json.dumps(meta), "updated_at": stamp})
        return False

    def set_parent(self, source: str, parent: str | None) -> None:
        """Hang ``source`` under ``parent`` (None: a root); checks are the caller's (lineage.Tree)."""
        self.db.execute("update sources set parent = ?, updated_at = ? where name = ?", [parent, now(), source])

    def set_family(self, sources: Sequence[str], family: str) -> None:
        for name in sources:
            self.db.execute("update sources set family = ?, updated_at = ? where name = ?", [family, now(), name])

    def embeddings_of(self, sources: Sequence[str], limit: int) -> np.ndarray:
        """Sample embeddings of several sources: the first ``limit`` by sha256 (a stable
        pseudo-random subset; :func:`attrib.gallery.lineage.sample_rows` is the same rule)."""
        names = sorted(sources)
        rows: list[tuple[str, bytes]] = []
        for chunk in range(0, len(names), 500):
            part = names[chunk : chunk + 500]
            q = f"select sha256, embedding from samples where source in ({','.join('?' * len(part))}) order by sha256 limit ?"
            rows = sorted(rows + list(self.db.execute(q, [*part, limit])))[:limit]
        return from_blobs([r[1] for r in rows], self.dim)

    # -- samples -----------------------------------------------------------------------------
    def add_samples(
        self, source: str, embeddings: np.ndarray, records: Sequence[SampleRecord], views: dict[str, np.ndarray] | None = None
    ) -> EnrollResult:
        """Insert samples of ``source``, with their embeddings in ``views`` (``{view: rows aligned
        with embeddings}``); images whose sha256 is already stored (or repeated in ``records``) are
        skipped and reported as duplicates."""
        result = EnrollResult(source)
        stamp = now()
        seen = self.sources_of([r.sha256 for r in records])
        thumbs_left = THUMBS_PER_SOURCE - self.thumbnail_count(source)
        rows, kept = [], []
        for i, (vec, rec) in enumerate(zip(embeddings, records)):
            if rec.sha256 in seen:
                result.duplicates.append({"path": rec.origin, "source": seen[rec.sha256]})
                continue
            seen[rec.sha256] = source
            thumb = rec.thumbnail if thumbs_left > 0 else None
            thumbs_left -= thumb is not None
            kept.append(i)
            rows.append(
                {
                    "source": source,
                    "sha256": rec.sha256,
                    "embedding": to_blob(vec),
                    "width": rec.width,
                    "height": rec.height,
                    "format": rec.format,
                    "origin": rec.origin,
                    "added_at": stamp,
                    "thumbnail": thumb,
                }
            )
        self.db["samples"].insert_all(rows, batch_size=500)
        if views and rows:
            ids = {sha: sid for sid, sha in self.db.execute("select id, sha256 from samples where source = ?", [source])}
            self.db["sample_views"].insert_all(
                [
                    {"sample_id": ids[rows[j]["sha256"]], "source": source, "view": view, "embedding": to_blob(emb[i])}
                    for view, emb in views.items()
                    for j, i in enumerate(kept)
                ],
                batch_size=500,
            )
        result.enrolled = len(rows)
        return result

    def thumbnail_count(self, source: str) -> int:
        return self.db.execute("select count(*) from samples where source = ? and thumbnail is not null", [source]).fetchone()[0]

    def thumbnail_ids(self) -> dict[str, list[int]]:
        """``{source: [sample id, ...]}`` of the samples that have a thumbnail, in enrollment order."""
        out: dict[str, list[int]] = {}
        for source, sid in self.db.execute("select source, id from samples where thumbnail is not null order by source, id"):
            out.setdefault(source, []).append(sid)
        return out

    def thumbnail(self, sample_id: int) -> bytes | None:
        row = self.db.execute("select thumbnail from samples where id = ?", [sample_id]).fetchone()
        return row[0] if row else None

    def sources_of(self, shas: Sequence[str]) -> dict[str, str]:
        """``{sha256: source}`` of those of ``shas`` already enrolled."""
        seen: dict[str, str] = {}
        for chunk in range(0, len(shas), 500):
            part = list(shas[chunk : chunk + 500])
            q = f"select sha256, source from samples where sha256 in ({','.join('?' * len(part))})"
            seen.update(dict(self.db.execute(q, part).fetchall()))
        return seen

    def source_embeddings(self, source: str) -> np.ndarray:
        """A source's sample embeddings, in enrollment order."""
        blobs = [r[0] for r in self.db.execute("select embedding from samples where source = ? order by id", [source])]
        return from_blobs(blobs, self.dim)

    def view_embeddings(self, source: str, view: str) -> np.ndarray:
        """A source's sample embeddings in ``view``, in enrollment order: a sample enrolled without
        that view stands in it as it is (its plain embedding)."""
        q = (
            "select coalesce(v.embedding, s.embedding) from samples s left join sample_views v on v.sample_id = s.id and v.view = ? "
            "where s.source = ? order by s.id"
        )
        return from_blobs([r[0] for r in self.db.execute(q, [view, source])], self.dim)

    def views(self) -> list[str]:
        """The views some sample of the gallery is enrolled in."""
        return [r[0] for r in self.db.execute("select distinct view from sample_views order by view")]

    def impostor_pool(self, limit: int, view: str | None = None) -> tuple[np.ndarray, list[str]]:
        """The first ``limit`` samples by sha256: a stable pseudo-random subset of the gallery
        (:func:`attrib.openset.impostor_pool` is the same rule over arrays), in ``view`` (as
        :meth:`view_embeddings`) or as they are."""
        if view is None:
            rows = self.db.execute("select source, embedding from samples order by sha256 limit ?", [limit]).fetchall()
        else:
            q = (
                "select s.source, coalesce(v.embedding, s.embedding) from samples s left join sample_views v "
                "on v.sample_id = s.id and v.view = ? order by s.sha256 limit ?"
            )
            rows = self.db.execute(q, [view, limit]).fetchall()
        return from_blobs([r[1] for r in rows], self.dim), [r[0] for r in rows]

    # -- prototypes and calibration ----------------------------------------------------------
    def prototypes(self, source: str | None = None) -> tuple[np.ndarray, list[str]]:
        """Prototype vectors and their sources, ordered by source (all sources, or one)."""
        if source is None:
            rows = self.db.execute("select source, embedding from prototypes order by source, idx").fetchall()
        else:
            rows = self.db.execute("select source, embedding from prototypes where source = ? order by idx", [source]).fetchall()
        return from_blobs([r[1] for r in rows], self.dim), [r[0] for r in rows]

    def replace_prototypes(self, source: str, centres: np.ndarray, members: Sequence[int]) -> None:
        self.db.execute("delete from prototypes where source = ?", [source])
        self.db["prototypes"].insert_all(
            [{"source": source, "idx": i, "embedding": to_blob(c), "members": int(m)} for i, (c, m) in enumerate(zip(centres, members))]
        )

    def view_prototypes(self, view: str, source: str | None = None) -> tuple[np.ndarray, list[str]]:
        """``view``'s prototype vectors and their sources, ordered by source (all sources with
        samples in the view, or one)."""
        q, args = "select source, embedding from view_prototypes where view = ?", [view]
        if source is not None:
            q, args = q + " and source = ?", [view, source]
        rows = self.db.execute(q + " order by source, idx", args).fetchall()
        return from_blobs([r[1] for r in rows], self.dim), [r[0] for r in rows]

    def replace_view_prototypes(self, source: str, view: str, centres: np.ndarray, members: Sequence[int]) -> None:
        self.db.execute("delete from view_prototypes where source = ? and view = ?", [source, view])
        self.db["view_prototypes"].insert_all(
            [
                {"source": source, "view": view, "idx": i, "embedding": to_blob(c), "members": int(m)}
                for i, (c, m) in enumerate(zip(centres, members))
            ]
        )

    def calibration(self) -> dict[str, tuple[dict | None, dict | None]]:
        """``{source: (impostor model, genuine model)}`` as stored (dicts, or None)."""
        return {
            name: (json.loads(imp) if imp else None, json.loads(gen) if gen else None)
            for name, imp, gen in self.db.execute("select source, impostor, genuine from calibration")
        }

    def replace_calibration(self, models: dict[str, tuple[dict | None, dict | None]], view: str | None = None) -> None:
        """Replace the measured models of every source (in ``view``, or the plain ones)."""
        stamp = now()
        rows = [
            {"source": name, "impostor": json.dumps(imp), "genuine": json.dumps(gen), "updated_at": stamp}
            for name, (imp, gen) in models.items()
        ]
        if view is None:
            self.db.execute("delete from calibration")
            if rows:
                self.db["calibration"].insert_all(rows, pk="source", batch_size=1000)
            return
        self.db.execute("delete from view_calibration where view = ?", [view])
        if rows:
            self.db["view_calibration"].insert_all([r | {"view": view} for r in rows], pk=("source", "view"), batch_size=1000)

    def view_calibration(self, view: str) -> dict[str, tuple[dict | None, dict | None]]:
        """``{source: (impostor model, genuine model)}`` measured in ``view``, as stored."""
        q = "select source, impostor, genuine from view_calibration where view = ?"
        return {name: (json.loads(imp) if imp else None, json.loads(gen) if gen else None) for name, imp, gen in self.db.execute(q, [view])}

    # -- rejected queries --------------------------------------------------------------------
    def add_rejected(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            r["embedding"] = to_blob(r["embedding"])
            r.setdefault("added_at", now())
        self.db["rejected"].insert_all(rows, ignore=True)

    def rejected(self, limit: int) -> tuple[np.ndarray, list[str | None]]:
        """Embeddings and origins of kept unknowns, oldest first."""
        rows = self.db.execute("select origin, embedding from rejected order by id limit ?", [limit]).fetchall()
        return from_blobs([r[1] for r in rows], self.dim), [r[0] for r in rows]
