"""What runs on each Ray worker: read, decode, embed, detect, identify a batch of images.

:class:`Identifier` is a callable class for ``Dataset.map_batches``: Ray builds one per worker
(an actor), so the encoder, the detectors and the snapshot's FAISS index are made once per
worker, not per batch. It answers through the same code as ``attrib identify``
(:func:`attrib.pipeline.embed_items`, :func:`attrib.report.identify_rows`), so its rows are
identify's. An image that cannot be read is an error row; a batch that raises anything else is
retried image by image, so one image that breaks the encoder is an error row too, never a failed
job. It never opens the gallery's database: it has the snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ImageError
from ..gallery.snapshot import GallerySnapshot
from ..imageio import DEFAULT_MAX_BYTES, load_image
from ..pipeline import Item, detector_tap, embed_items, query_embeddings
from . import rows as batch_rows
from .inputs import is_uri

#: environment variables the driver's settings travel in (plugins to load, detector time bound)
FORWARDED_ENV = ("ATTRIB_LOAD_PLUGINS", "ATTRIB_DETECTOR_TIMEOUT")


@dataclass(frozen=True)
class BatchOptions:
    """How each image is answered (``identify``'s options)."""

    top_k: int = 5
    far: float | None = None
    detectors: bool = True
    detector_names: tuple[str, ...] = ()
    detector_timeout: float | None = None
    encode_batch: int = 32
    env: dict[str, str] = field(default_factory=lambda: {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})


def read_item(label: str, uri: str) -> Item:
    """Decode one image (a local path, or a URI through pyarrow's filesystems); errors as identify words them."""
    try:
        if is_uri(uri):
            return Item(label, load_image(_read_uri(label, uri), name=label))
        return Item(label, load_image(uri, name=label))
    except ImageError as exc:
        return Item(label, error=str(exc))


def _read_uri(label: str, uri: str) -> bytes:
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.NotFound:
            raise ImageError(f"{label}: no such file")
        if info.type == fs.FileType.Directory:
            raise ImageError(f"{label}: is a folder, not an image")
        if info.size is not None and info.size > DEFAULT_MAX_BYTES:
            raise ImageError(f"{label}: file is {info.size / 2**20:.0f} MiB, over the {DEFAULT_MAX_BYTES // 2**20} MiB bound")
        with filesystem.open_input_stream(path) as fh:
            return fh.read()
    except (OSError, ValueError) as exc:
        raise ImageError(f"{label}: cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


class Identifier:
    """One worker: ``table(path, uri) -> table of identify rows`` (see the module's doc)."""

    def __init__(self, snapshot: GallerySnapshot | Any, options: BatchOptions):
        os.environ.update(options.env)
        snapshot = _resolve(snapshot)
        from ..encoders import get_encoder
        from ..errors import EncoderMismatch
        from ..plugins import make_plugin_manager
        from ..verdict import make_judge

        pm = make_plugin_manager()
        self.snapshot = snapshot
        self.options = options
        self.encoder = get_encoder(snapshot.encoder_spec, pm=pm)
        if self.encoder.id != snapshot.encoder_id:
            raise EncoderMismatch(
                f"this worker's encoder {snapshot.encoder_spec!r} is {self.encoder.id}, the gallery's is {snapshot.encoder_id}: "
                "install the same attrib (and encoder folder) on every node"
            )
        self.runner = None
        if options.detectors:
            from ..detectors import make_runner

            self.runner = make_runner(pm, list(options.detector_names) or None, options.detector_timeout)
        self.judge = make_judge(pm).with_camera_sources(snapshot.camera_sources)
        self.gallery = snapshot.gallery()

    def __call__(self, table):
        labels = table.column("path").to_pylist()
        uris = table.column("uri").to_pylist()
        return batch_rows.rows_to_table(self.identify(labels, uris))

    def identify(self, labels: Sequence[str], uris: Sequence[str]) -> list[dict[str, Any]]:
        """identify rows (with the run's fields) for these images, in their order."""
        items = [read_item(label, uri) for label, uri in zip(labels, uris)]
        try:
            rows = self._answer(items)
        except Exception:  # one image broke the batch: answer image by image, the culprit as an error row
            rows = []
            for label, uri in zip(labels, uris):
                try:
                    rows += self._answer([read_item(label, uri)])
                except Exception as exc:
                    rows += self._answer([Item(label, error=f"{label}: {type(exc).__name__}: {_one_line(exc)}")])
        return batch_rows.finish(rows, self.snapshot.generation, self.snapshot.encoder_id)

    def _answer(self, items: list[Item]) -> list[dict[str, Any]]:
        from ..report import identify_rows

        found: dict[int, list] = {}
        tap = None if self.runner is None else detector_tap(self.runner, found)
        tapped = items if tap is None else [tap(it) or it for it in items]
        items, emb = embed_items(self.encoder, tapped, batch_size=self.options.encode_batch)
        good = [it for it in items if it.error is None]
        queries, views = query_embeddings(good, emb), [it.view for it in good]
        decisions = self.gallery.identify(queries, top_k=self.options.top_k, far=self.options.far, views=views) if len(emb) else []
        return identify_rows(items, decisions, found, self.judge)


def _resolve(snapshot):
    """The snapshot itself, fetched from Ray's object store when the driver put it there."""
    if isinstance(snapshot, GallerySnapshot):
        return snapshot
    import ray

    if isinstance(snapshot, (list, tuple)):
        (snapshot,) = snapshot
    return snapshot if isinstance(snapshot, GallerySnapshot) else ray.get(snapshot)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
