"""The gallery: one SQLite database (the truth) plus FAISS indexes (caches rebuilt from it).

Layout of a gallery folder::

    gallery.db        sources, samples (embedding blobs), prototypes, calibration, settings
    index/            FAISS caches, tagged with the generation they were built from

Vectors are stored as little-endian float32 blobs; the encoder id and dimension are stored in
the ``settings`` table. Every write runs in one ``BEGIN IMMEDIATE`` transaction and bumps the
``generation`` counter: an enrollment that fails or is interrupted half-way leaves the gallery as
it was, and readers notice the change and rebuild their index.
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import sqlite_utils

from . import openset
from .encoders import Encoder, get_encoder, l2_normalize
from .errors import EncoderMismatch, GalleryError, UnknownSource
from .index import VectorIndex
from .sources import FAMILIES, check_name

DB_NAME = "gallery.db"
#: a source with at least this many samples may get more than one prototype
MULTI_PROTO_MIN = 20
MAX_PROTOTYPES = 4
#: impostor samples drawn (stably) from the whole gallery for calibration
IMPOSTOR_POOL = 4000

migrations = sqlite_utils.Migrations("attrib.gallery")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["settings"].create({"key": str, "value": str}, pk="key")
    db["sources"].create(
        {"name": str, "family": str, "metadata": str, "created_at": str, "updated_at": str}, pk="name"
    )
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


@migrations()
def m002_rejected(db: sqlite_utils.Database) -> None:
    """Queries identify rejected as unknown, kept on request to propose new sources later."""
    db["rejected"].create(
        {"id": int, "sha256": str, "embedding": bytes, "origin": str, "score": float, "nearest": str, "added_at": str},
        pk="id",
    )
    db["rejected"].create_index(["sha256"], unique=True)


SCHEMA_VERSION = len(migrations._migrations)


def _now() -> str:
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


class Gallery:
    """An enrolled set of sources bound to one encoder."""

    def __init__(self, path: str | os.PathLike, encoder: Encoder | str | None = None, create: bool = True, pm=None):
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        if self.path.exists() and not self.path.is_dir():
            raise GalleryError(f"{self.path}: a gallery is a folder, and this is a file")
        exists = self.db_path.exists()
        if not exists and not create:
            raise GalleryError(f"no gallery at {self.path} (enroll a source first, or pass --gallery)")
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.db_path), timeout=60, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 60000")
            self.db.execute("PRAGMA foreign_keys = ON")
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            applied = {m.name for m in migrations.applied(self.db)}
            unknown = applied - {m.name for m in migrations._migrations}
            if unknown:
                raise GalleryError(
                    f"{self.path}: gallery was written by a newer attrib (schema steps {sorted(unknown)}); upgrade attrib"
                )
            if migrations.pending(self.db):
                with self._write():
                    migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.db_path}: not a readable gallery database ({exc})") from None
        stored = self.setting("encoder_id")
        if stored is None:
            self.encoder = encoder if isinstance(encoder, Encoder) else get_encoder(encoder, pm=pm)
            with self._write():
                self._set("encoder_id", self.encoder.id)
                self._set("encoder_spec", getattr(self.encoder, "spec", None) or self.encoder.name)
                self._set("encoder", self.encoder.describe())
                self._set("dim", self.encoder.dim)
                self._set("created_at", _now())
                self._set("far", openset.DEFAULT_FAR)
        else:
            if isinstance(encoder, Encoder):
                self.encoder = encoder
            else:
                self.encoder = get_encoder(encoder or self.setting("encoder_spec"), pm=pm)
            if self.encoder.id != stored:
                raise EncoderMismatch(
                    f"gallery {self.path} is bound to encoder {stored}; {self.encoder.id} cannot be mixed into it "
                    "(use another --gallery)"
                )
        self.dim = int(self.setting("dim"))
        self._proto_index: VectorIndex | None = None
        self._models_cache: tuple[int, dict] | None = None
        self._proto_gen: int | None = None

    # -- settings and transactions ---------------------------------------------------------
    def setting(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("select value from settings where key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else default

    def _set(self, key: str, value: Any) -> None:
        self.db["settings"].upsert({"key": key, "value": json.dumps(value)}, pk="key")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One writer at a time (BEGIN IMMEDIATE waits for the lock); all or nothing."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            gen = int(self.setting("generation", 0)) + 1
            self._set("generation", gen)
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
        return len(migrations.applied(self.db))

    @property
    def far(self) -> float:
        return float(self.setting("far", openset.DEFAULT_FAR))

    @property
    def recipe(self) -> str | None:
        """Name of the recipe that built this gallery, if one did."""
        return self.setting("recipe")

    def set_recipe(self, name: str) -> None:
        with self._write():
            self._set("recipe", name)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- sources -----------------------------------------------------------------------------
    def has_source(self, name: str) -> bool:
        return self.db.execute("select 1 from sources where name = ?", [name]).fetchone() is not None

    def require_source(self, name: str) -> None:
        if not self.has_source(name):
            known = [r[0] for r in self.db.execute("select name from sources order by name limit 20")]
            hint = f" (enrolled: {', '.join(known)})" if known else " (the gallery is empty)"
            raise UnknownSource(f"no source named {name!r} in this gallery{hint}")

    def source_names(self) -> list[str]:
        return [r[0] for r in self.db.execute("select name from sources order by name")]

    def sources(self, far: float | None = None) -> list[dict[str, Any]]:
        far = self.far if far is None else far
        counts = dict(self.db.execute("select source, count(*) from samples group by source").fetchall())
        protos = dict(self.db.execute("select source, count(*) from prototypes group by source").fetchall())
        models = self._models()
        rows = list(self.db.query("select * from sources order by name"))
        thresholds = self.thresholds(far, sources=[r["name"] for r in rows])
        out = []
        for row in rows:
            gen = models[row["name"]][1] if row["name"] in models else None
            thr = thresholds[row["name"]]
            out.append(
                {
                    "name": row["name"],
                    "family": row["family"],
                    "metadata": json.loads(row["metadata"] or "{}"),
                    "samples": counts.get(row["name"], 0),
                    "prototypes": protos.get(row["name"], 0),
                    "threshold": round(thr, 6),
                    "far": far,
                    "expected_tar": None if gen is None else round(gen.tail(thr), 4),
                    "created_at": row["created_at"],
                    "updated_at": row["updated_at"],
                }
            )
        return out

    def source(self, name: str, far: float | None = None) -> dict[str, Any]:
        self.require_source(name)
        info = next(s for s in self.sources(far) if s["name"] == name)
        info["sample_list"] = [
            dict(r) for r in self.db.query(
                "select id, sha256, width, height, format, origin, added_at from samples where source = ? order by id", [name]
            )
        ]
        return info

    def remove_source(self, name: str) -> int:
        """Remove a source and its samples; returns how many samples went with it."""
        self.require_source(name)
        with self._write():
            n = self.db.execute("select count(*) from samples where source = ?", [name]).fetchone()[0]
            for table in ("calibration", "prototypes", "samples"):
                self.db.execute(f"delete from {table} where source = ?", [name])
            self.db.execute("delete from sources where name = ?", [name])
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
    ) -> EnrollResult:
        """Add embedded samples to ``source`` (created if new) in one transaction.

        Images whose sha256 is already in the gallery are skipped and reported as duplicates.
        Prototypes and calibration are updated in the same transaction.
        """
        return self.enroll_many([(source, embeddings, records, family, metadata)])[0]

    def enroll_many(self, batches: Sequence[tuple]) -> list[EnrollResult]:
        """Enroll several sources in one transaction, calibrating once at the end.

        ``batches`` holds ``(source, embeddings, records, family, metadata)`` tuples.
        """
        for source, embeddings, records, family, _ in batches:
            check_name(source)
            if family is not None and family not in FAMILIES:
                raise GalleryError(f"unknown family {family!r}: one of {', '.join(FAMILIES)}")
            if len(embeddings) != len(records):
                raise ValueError("one record per embedding")
            if len(embeddings) and np.asarray(embeddings).shape[1] != self.dim:
                raise EncoderMismatch(
                    f"embeddings of dimension {np.asarray(embeddings).shape[1]} cannot enter a {self.dim}-d gallery"
                )
        results = []
        with self._write():
            touched = []
            for source, embeddings, records, family, metadata in batches:
                result, changed = self._insert(source, np.asarray(embeddings, dtype=np.float32), records, family, metadata)
                results.append(result)
                if changed:
                    self._rebuild_prototypes(source)
                    touched.append(source)
            if touched:
                self._recalibrate(touched=touched)
        return results

    def _insert(self, source, embeddings, records, family, metadata) -> tuple[EnrollResult, bool]:
        result = EnrollResult(source)
        now = _now()
        existing = self.db.execute("select family, metadata from sources where name = ?", [source]).fetchone()
        if existing is None:
            self.db["sources"].insert(
                {
                    "name": source,
                    "family": family or "other",
                    "metadata": json.dumps(metadata or {}),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        else:
            meta = json.loads(existing[1] or "{}")
            meta.update(metadata or {})
            self.db["sources"].update(
                source, {"family": family or existing[0], "metadata": json.dumps(meta), "updated_at": now}
            )
        seen: dict[str, str] = {}
        shas = [r.sha256 for r in records]
        for chunk in range(0, len(shas), 500):
            part = shas[chunk : chunk + 500]
            q = f"select sha256, source from samples where sha256 in ({','.join('?' * len(part))})"
            seen.update(dict(self.db.execute(q, part).fetchall()))
        rows = []
        for vec, rec in zip(embeddings, records):
            if rec.sha256 in seen:
                result.duplicates.append({"path": rec.origin, "source": seen[rec.sha256]})
                continue
            seen[rec.sha256] = source
            rows.append(
                {
                    "source": source,
                    "sha256": rec.sha256,
                    "embedding": to_blob(vec),
                    "width": rec.width,
                    "height": rec.height,
                    "format": rec.format,
                    "origin": rec.origin,
                    "added_at": now,
                }
            )
        self.db["samples"].insert_all(rows, batch_size=500)
        result.enrolled = len(rows)
        return result, bool(rows) or existing is None

    def _source_embeddings(self, source: str) -> np.ndarray:
        blobs = [r[0] for r in self.db.execute("select embedding from samples where source = ? order by id", [source])]
        return from_blobs(blobs, self.dim)

    def _rebuild_prototypes(self, source: str) -> None:
        emb = self._source_embeddings(source)
        self.db.execute("delete from prototypes where source = ?", [source])
        if not len(emb):
            return
        centres, members = prototypes_of(emb)
        self.db["prototypes"].insert_all(
            [
                {"source": source, "idx": i, "embedding": to_blob(c), "members": int(m)}
                for i, (c, m) in enumerate(zip(centres, members))
            ]
        )

    # -- calibration -------------------------------------------------------------------------
    def _impostor_pool(self) -> tuple[np.ndarray, list[str]]:
        """A stable pseudo-random subset of all samples (ordered by sha256)."""
        rows = self.db.execute(
            "select source, embedding from samples order by sha256 limit ?", [IMPOSTOR_POOL]
        ).fetchall()
        return from_blobs([r[1] for r in rows], self.dim), [r[0] for r in rows]

    def prototypes(self) -> tuple[np.ndarray, list[str]]:
        rows = self.db.execute("select source, embedding from prototypes order by source, idx").fetchall()
        return from_blobs([r[1] for r in rows], self.dim), [r[0] for r in rows]

    def _recalibrate(self, touched: Sequence[str]) -> None:
        """Re-measure impostor models of every source and genuine models of ``touched`` ones."""
        pool, pool_src = self._impostor_pool()
        protos, proto_src = self.prototypes()  # ordered by source
        now = _now()
        names, starts = np.unique(np.array(proto_src, dtype=object), return_index=True)
        names = names.tolist()
        # best prototype score of each pool sample for each source, in column chunks
        best = np.empty((len(pool), len(names)), dtype=np.float32)
        bounds = list(starts) + [len(proto_src)]
        step = 4096
        for c0 in range(0, len(names), step):
            c1 = min(c0 + step, len(names))
            block = pool @ protos[bounds[c0] : bounds[c1]].T if len(pool) else np.zeros((0, bounds[c1] - bounds[c0]), np.float32)
            if len(pool):
                best[:, c0:c1] = np.maximum.reduceat(block, np.array(bounds[c0:c1]) - bounds[c0], axis=1)
        best = openset.fisher_z(best)  # score models live in Fisher-z space
        own = np.array(pool_src, dtype=object)[:, None] == np.array(names, dtype=object)[None, :]
        other = (~own).astype(np.float64)
        n = other.sum(axis=0)
        sums = (best * other).sum(axis=0)
        sq = ((best.astype(np.float64) ** 2) * other).sum(axis=0)
        old = {r[0]: r[1] for r in self.db.execute("select source, genuine from calibration")}
        rows = []
        for j, name in enumerate(names):
            imp = None
            if n[j] > 0:
                mu = sums[j] / n[j]
                var = max(sq[j] / n[j] - mu * mu, 0.0) * (n[j] / (n[j] - 1) if n[j] > 1 else 1.0)
                imp = openset.ScoreModel(float(mu), max(float(np.sqrt(var)), openset.MIN_SIGMA), float(n[j]))
            if name in touched:
                gen = openset.ScoreModel.from_scores(leave_one_out_scores(self._source_embeddings(name)))
                gen_json = json.dumps(gen.to_dict() if gen else None)
            else:
                gen_json = old.get(name, "null")
            rows.append(
                {"source": name, "impostor": json.dumps(imp.to_dict() if imp else None), "genuine": gen_json, "updated_at": now}
            )
        self.db.execute("delete from calibration")
        if rows:
            self.db["calibration"].insert_all(rows, pk="source", batch_size=1000)
        # pair mode: sample-vs-sample scores within the pool
        pair_imp = pair_gen = None
        if len(pool) > 1:
            src = np.array(pool_src, dtype=object)
            sim = pool @ pool.T
            same = src[:, None] == src[None, :]
            off = ~np.eye(len(pool), dtype=bool)
            pair_imp = openset.ScoreModel.from_scores(sim[~same])
            pair_gen = openset.ScoreModel.from_scores(sim[same & off])
        self._set("pair_impostor", pair_imp.to_dict() if pair_imp else None)
        self._set("pair_genuine", pair_gen.to_dict() if pair_gen else None)

    def _prior(self, key: str) -> openset.ScoreModel | None:
        cal = self.encoder.calibration or {}
        return openset.ScoreModel.from_dict(cal.get(key))

    def _models(self) -> dict[str, tuple[openset.ScoreModel, openset.ScoreModel | None]]:
        """Per source: (pooled impostor model, genuine model or None); cached per generation."""
        gen = self.generation
        if self._models_cache is not None and self._models_cache[0] == gen:
            return self._models_cache[1]
        prior = self._prior("impostor")
        out = {}
        for name, imp, genuine in self.db.execute("select source, impostor, genuine from calibration"):
            observed = openset.ScoreModel.from_dict(json.loads(imp) if imp else None)
            out[name] = (openset.pool(prior, observed), openset.ScoreModel.from_dict(json.loads(genuine) if genuine else None))
        self._models_cache = (gen, out)
        return out

    def thresholds(self, far: float | None = None, sources=None) -> dict[str, float]:
        """Thresholds at ``far`` of ``sources`` (default: all; a 10,000-source gallery asks for few).
        A source not yet calibrated is held to the encoder's prior alone."""
        far = self.far if far is None else far
        models = self._models()
        fallback = None
        floor = self._near_floor(far)
        out = {}
        for name in models.keys() if sources is None else set(sources):
            if name in models:
                out[name] = max(models[name][0].threshold(far), floor)
            else:
                fallback = fallback or openset.pool(self._prior("impostor"), None)
                out[name] = max(fallback.threshold(far), floor)
        return out

    def _near_floor(self, far: float) -> float:
        """The lowest threshold at ``far`` the encoder's near-impostor prior allows (see
        :mod:`attrib.openset`); -1 when the encoder has none."""
        near = self._prior("near_impostor")
        return near.threshold(far) if near is not None else -1.0

    def calibration_report(self, far: float | None = None) -> dict[str, Any]:
        far = self.far if far is None else far
        prior = self._prior("impostor")
        near = self._prior("near_impostor")
        thresholds = self.thresholds(far)
        return {
            "far": far,
            "prior": prior.to_dict() if prior else None,
            "near_impostor_prior": near.to_dict() if near else None,
            "prior_weight": openset.PRIOR_WEIGHT,
            "sources": {
                name: {
                    "impostor": imp.to_dict(),
                    "genuine": gen.to_dict() if gen else None,
                    "threshold": thresholds[name],
                    "expected_tar": gen.tail(thresholds[name]) if gen else None,
                }
                for name, (imp, gen) in self._models().items()
            },
        }

    # -- search ------------------------------------------------------------------------------
    def prototype_index(self) -> VectorIndex | None:
        """The FAISS index of prototypes, loaded from cache or rebuilt if the gallery moved on."""
        gen = self.generation
        if self._proto_index is not None and self._proto_gen == gen:
            return self._proto_index
        cache = self.path / "index" / "prototypes.faiss"
        expect = {"generation": gen, "encoder_id": self.encoder.id}
        index = VectorIndex.load(cache, expect)
        if index is None:
            protos, labels = self.prototypes()
            if not len(protos):
                return None
            index = VectorIndex.build(protos, labels)
            try:
                index.save(cache, expect)
            except OSError:
                pass  # a read-only gallery still answers; it just rebuilds next time
        self._proto_index, self._proto_gen = index, gen
        return index

    def source_scores(self, embeddings: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        index = self.prototype_index()
        if index is None:
            return [[] for _ in range(len(embeddings))]
        k = min(len(index), max(top_k, 1) * MAX_PROTOTYPES + 1)
        scores, ids = index.search(embeddings, k)
        out = []
        for srow, irow in zip(scores, ids):
            best: dict[str, float] = {}
            for s, i in zip(srow, irow):
                if i < 0:
                    continue
                name = index.labels[i]
                if name not in best:  # results come best first: first hit per source is its max
                    best[name] = float(s)
            out.append(list(best.items())[:top_k] if top_k else list(best.items()))
        return out

    def identify(self, embeddings: np.ndarray, top_k: int = 5, far: float | None = None) -> list[openset.Decision]:
        """Open-set identification of each embedding: a source, or unknown (source None)."""
        far = self.far if far is None else far
        embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        cands = self.source_scores(embeddings, max(top_k, 2))
        thresholds = self.thresholds(far, sources=[c[0][0] for c in cands if c])
        decisions = []
        for c in cands:
            d = openset.decide(c, thresholds, far)
            d.candidates = d.candidates[:top_k]
            decisions.append(d)
        return decisions

    def verify(self, embeddings: np.ndarray, source: str, far: float | None = None) -> list[dict[str, Any]]:
        """1:1 verification against one source at false-accept rate ``far``."""
        self.require_source(source)
        far = self.far if far is None else far
        protos = from_blobs(
            [r[0] for r in self.db.execute("select embedding from prototypes where source = ?", [source])], self.dim
        )
        thr = self.thresholds(far, sources=[source])[source]
        scores = (np.atleast_2d(embeddings) @ protos.T).max(axis=1)
        return [
            {"generator": source, "score": round(float(s), 6), "threshold": round(thr, 6), "accepted": bool(s >= thr), "far": far}
            for s in scores
        ]

    def pair_threshold(self, far: float | None = None) -> float:
        far = self.far if far is None else far
        observed = openset.ScoreModel.from_dict(self.setting("pair_impostor"))
        return openset.pool(self._prior("pair_impostor"), observed).threshold(far)

    def verify_pair(self, a: np.ndarray, b: np.ndarray, far: float | None = None) -> dict[str, Any]:
        """Were two images made by the same source? Thresholded at ``far`` of the pair-impostor model."""
        far = self.far if far is None else far
        thr = self.pair_threshold(far)
        score = float(np.dot(l2_normalize(a), l2_normalize(b)))
        return {"score": round(score, 6), "threshold": round(thr, 6), "accepted": score >= thr, "far": far}

    # -- rejected queries --------------------------------------------------------------------
    def keep_rejected(self, embeddings: np.ndarray, records: Sequence[SampleRecord], decisions) -> int:
        rows = [
            {
                "sha256": r.sha256,
                "embedding": to_blob(e),
                "origin": r.origin,
                "score": d.score,
                "nearest": d.candidates[0]["source"] if d.candidates else None,
                "added_at": _now(),
            }
            for e, r, d in zip(embeddings, records, decisions)
            if d.source is None
        ]
        if rows:
            with self._write():
                self.db["rejected"].insert_all(rows, ignore=True)
        return len(rows)

    def propose_sources(self, min_size: int = 3, far: float | None = None, limit: int = 20000) -> list[dict[str, Any]]:
        """Clusters of kept unknowns that may be new sources.

        Two rejected images are linked when their pair score clears the pair-verification
        threshold at ``far`` (the same test as ``verify a.png b.png``); clusters are the connected
        components (FAISS range search, union-find) with at least ``min_size`` members, largest
        first. Each proposal lists its members' origins, its cohesion (mean similarity to the
        centre) and the enrolled source nearest to it."""
        import faiss

        rows = self.db.execute(
            "select id, origin, embedding from rejected order by id limit ?", [limit]
        ).fetchall()
        if len(rows) < min_size:
            return []
        emb = from_blobs([r[2] for r in rows], self.dim)
        thr = self.pair_threshold(far)
        index = faiss.IndexFlatIP(self.dim)
        index.add(emb)
        lims, _, ids = index.range_search(emb, thr)
        parent = list(range(len(rows)))

        def root(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i in range(len(rows)):
            for j in ids[lims[i] : lims[i + 1]]:
                a, b = root(i), root(int(j))
                if a != b:
                    parent[a] = b
        groups: dict[int, list[int]] = {}
        for i in range(len(rows)):
            groups.setdefault(root(i), []).append(i)
        proposals = []
        for members in sorted(groups.values(), key=len, reverse=True):
            if len(members) < min_size:
                continue
            centre = l2_normalize(emb[members].mean(axis=0, keepdims=True))
            nearest = self.source_scores(centre, 1)[0]
            proposals.append(
                {
                    "size": len(members),
                    "cohesion": round(float((emb[members] @ centre[0]).mean()), 4),
                    "nearest_source": nearest[0][0] if nearest else None,
                    "nearest_score": round(nearest[0][1], 4) if nearest else None,
                    "members": [rows[i][1] for i in members],
                }
            )
        return proposals

    def stats(self) -> dict[str, Any]:
        q = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "path": str(self.path),
            "encoder_id": self.encoder.id,
            "dim": self.dim,
            "schema_version": self.schema_version,
            "generation": self.generation,
            "sources": q("select count(*) from sources"),
            "samples": q("select count(*) from samples"),
            "prototypes": q("select count(*) from prototypes"),
            "rejected": q("select count(*) from rejected"),
            "far": self.far,
        }


def prototypes_of(emb: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centres of a source's samples: the mean direction, or spherical k-means centres when the
    source has enough samples to be multi-modal (one centre per ~``MULTI_PROTO_MIN / 2`` samples)."""
    n = len(emb)
    k = min(MAX_PROTOTYPES, n // (MULTI_PROTO_MIN // 2)) if n >= MULTI_PROTO_MIN else 1
    if k <= 1:
        return l2_normalize(emb.mean(axis=0, keepdims=True)), np.array([n])
    import faiss

    km = faiss.Kmeans(emb.shape[1], k, niter=25, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1)
    km.train(np.ascontiguousarray(emb, dtype=np.float32))
    _, assign = km.index.search(np.ascontiguousarray(emb, dtype=np.float32), 1)
    assign = assign[:, 0]
    centres, members = [], []
    for c in range(k):
        sel = emb[assign == c]
        if len(sel):
            centres.append(sel.mean(axis=0))
            members.append(len(sel))
    return l2_normalize(np.stack(centres)), np.array(members)


def leave_one_out_scores(emb: np.ndarray) -> np.ndarray:
    """Each sample scored against the mean direction of the source's other samples."""
    if len(emb) < 2:
        return np.zeros(0, dtype=np.float32)
    total = emb.sum(axis=0, keepdims=True)
    others = l2_normalize(total - emb)
    return (emb * others).sum(axis=1)
