"""Views: the conditions a source is enrolled under besides its files as given, and which one a
query is scored in.

A query re-saved as JPEG has lost the finest pixel relations its generator left, and scored
against prototypes of clean samples it looks like nobody enrolled: on the real-data folds
(``bench/real_folds.py``, 9 folds, 5-shot) whole files re-saved at q75 fell from 0.92 to 0.65
top-1 under ``fp-joint4``. Scored against the same samples *re-saved the same way*, they reach
0.76: the comparison is then between like and like. So each enrolled sample is also embedded
after a JPEG re-save (the ``jpeg`` view, :data:`VIEW_QUALITY`), each source gets prototypes in
each view, and a query is scored in the view of its own file: a JPEG (at or under
:data:`ROUTE_MAX_QUALITY`, which is every quality; its quality estimated from its quantisation
tables, :func:`jpeg_quality`) in the ``jpeg`` view, anything else in the plain one. Each view has
its own measured score models (thresholds); the embedding and the score normalisation are the
encoder's plain ones in both unless it has a head for the view (below). A sample that is itself a
JPEG at or under :data:`AS_IS_MAX_QUALITY` stands in the ``jpeg`` view as it is (:func:`stands_in`);
a finer one is re-saved.

Why every JPEG: whole files re-saved at q95, scored in the plain view, are named as often as in the
jpeg view (top-1 0.74 / 0.73, 9 folds) but the plain view's thresholds, measured on clean shots, let
0.12 of unknown generators' files and 0.04 of camera photos through at a nominal FAR of 0.01; in the
jpeg view 0.04 and 0.01. At q85 the jpeg view also names more (+0.06 top-1 on whole files, one
shuffle). ``bench/real_folds.py --route-max-quality``.

The price, on the same folds: whole files as they are 0.92 -> 0.87 top-1, all of it in labels whose
every file is a q75 JPEG preview. Without views a q75 query shares its compression traces only with
those labels' prototypes; with views every source has them (``docs/benchmarks.md``).

An encoder may have a fit of its own for a view (``view_heads``, :class:`attrib.encoders.base.ViewHead`):
the view's samples and the queries scored in it are then embedded with it (``encoder.embed(images,
view)``), and scored with its normalisation and prior (:func:`norm_in`, :func:`prior_in`).

A query whose file was re-compressed and then saved losslessly (a JPEG screenshot saved as PNG)
carries no quantisation table and is scored in the plain view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from .degrade import Jpeg, apply_steps

#: the view enrolled besides the plain one: each sample re-saved as JPEG at :data:`VIEW_QUALITY`
JPEG_VIEW = "jpeg"
VIEWS = (JPEG_VIEW,)
VIEW_QUALITY = 75
#: JPEG queries at or under this estimated quality are scored in the ``jpeg`` view: every JPEG
ROUTE_MAX_QUALITY = 100
#: a sample that is a JPEG at or under this quality stands in the ``jpeg`` view as it is (not re-saved)
AS_IS_MAX_QUALITY = 90

# the IJG (libjpeg) luminance quantisation table at quality 50, in natural order
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62]
    + [18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98]
    + [112, 100, 103, 99],
    dtype=np.int64,
)


def ijg_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at ``quality`` (1-100)."""
    q = min(100, max(1, int(quality)))
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255)


_TABLES = np.stack([np.sort(ijg_table(q)) for q in range(1, 101)])


def jpeg_quality(image: Image.Image) -> int | None:
    """The IJG quality (1-100) whose luminance table is nearest ``image``'s (a JPEG opened by
    Pillow); None for other formats or a JPEG without tables. Encoders other than libjpeg
    (cameras, Photoshop) get the nearest IJG quality: an estimate, which is all routing needs."""
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables:
        return None
    luma = np.asarray(tables.get(0, next(iter(tables.values()))), dtype=np.int64)
    if luma.size != 64:
        return None
    return int(np.argmin(np.abs(_TABLES - np.sort(luma)).sum(1))) + 1


def view_of(quality: int | None, max_quality: int = ROUTE_MAX_QUALITY) -> str | None:
    """The view a query of this JPEG quality (None: not a JPEG) is scored in; None is the plain view.
    ``max_quality``: the routing cut (the bench measures others)."""
    return JPEG_VIEW if quality is not None and quality <= max_quality else None


def stands_in(quality: int | None) -> str | None:
    """The view a sample of this JPEG quality already stands in as it is (so it is not re-saved for
    it), None when none: a JPEG at or under :data:`AS_IS_MAX_QUALITY` stands in the ``jpeg`` view."""
    return view_of(quality, AS_IS_MAX_QUALITY)


def resave(pixels: np.ndarray, quality: int = VIEW_QUALITY) -> np.ndarray:
    """``pixels`` (H x W x 3 uint8) after a JPEG save at ``quality`` and a decode: the ``jpeg`` view
    (:mod:`attrib.degrade`'s JPEG round trip, the zoo's and ``eval --post``'s)."""
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB")
    return np.asarray(apply_steps(image, [Jpeg(quality)])[0])


def view_images(pixels: Sequence[np.ndarray], view: str) -> list[np.ndarray]:
    """The images of ``view`` of each of ``pixels``."""
    if view != JPEG_VIEW:
        raise ValueError(f"unknown view {view!r}: one of {', '.join(VIEWS)}")
    return [resave(p) for p in pixels]


def head_of(encoder: Any, view: str | None) -> Any:
    """The encoder's head for ``view`` (its ``view_heads`` entry), None for the plain view or a view
    it has none for (any encoder object serves)."""
    return (getattr(encoder, "view_heads", None) or {}).get(view) if view is not None else None


def norm_in(encoder: Any, view: str | None) -> Any:
    """The score normalisation scores in ``view`` (None: the plain one) take: the encoder's own for
    that view where it has a head for it, else its plain one (None: raw cosines)."""
    head = head_of(encoder, view)
    return head.score_norm if head is not None else getattr(encoder, "score_norm", None)


def prior_in(encoder: Any, view: str | None) -> dict | None:
    """The calibration prior of ``view`` (None: the plain one): the encoder's own for that view where
    it has a head for it, else its plain one."""
    head = head_of(encoder, view)
    return head.calibration if head is not None else getattr(encoder, "calibration", None)


T = TypeVar("T")


def by_view(views: Sequence[str | None] | None, n: int, answer: Callable[[str | None, np.ndarray], list[T]]) -> list[T]:
    """Answers for ``n`` queries, each in its view: ``answer(view, rows)`` answers the rows of one
    view (None: the plain view), in order; ``views`` None puts every query in the plain view."""
    if views is None or all(v is None for v in views):
        return answer(None, np.arange(n))
    if len(views) != n:
        raise ValueError(f"{len(views)} views for {n} queries")
    out: list[Any] = [None] * n
    for view in dict.fromkeys(views):
        rows = np.flatnonzero([v == view for v in views])
        for r, a in zip(rows, answer(view, rows)):
            out[r] = a
    return out
