"""The report: the answers attrib gives, built once for the CLI's ``--json`` and the HTTP service.

The last step of the pipeline (``... -> scores -> open-set decision -> report``). The CLI and the
service find their images, embed them and query the gallery in their own ways (files and a
progress bar; uploads, a shared micro-batcher and reader threads), but what they answer is the
same object per image, built here, so the two can never drift apart: ``attrib identify --json``
prints exactly the rows ``POST /v1/identify`` returns, field for field.

Every function here is plain data in, plain data out: no gallery, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: bounds of every false-accept rate a user may ask for (CLI ``--far``, HTTP ``far``): below 1e-6
#: the Gaussian tails the thresholds come from say nothing measured; above 0.5 a "threshold" would
#: accept most impostors
FAR_MIN, FAR_MAX = 1e-6, 0.5


def identify_rows(
    items: Sequence, decisions: Sequence, evidence: Mapping[int, list] | None = None, judge: Callable | None = None
) -> list[dict[str, Any]]:
    """One ``identify`` answer per item, in input order (the ``identify --json`` objects).

    ``items`` are :class:`attrib.pipeline.Item` (readable or not); ``decisions`` the open-set
    decisions of the readable ones, in their order; ``evidence`` maps ``id(item)`` to its
    detectors' evidence. ``view`` is the view the image was scored in (:mod:`attrib.views`; None:
    the plain view, or unreadable). ``detectors`` is always there: ``[]`` when none ran or the image is
    unreadable. ``verdict`` reconciles the decision with the evidence (:mod:`attrib.verdict`):
    ``judge(decision_dict, evidence)`` (a :class:`attrib.verdict.Judge`; default: the built-in
    rules alone).
    """
    from .verdict import default_judge

    evidence = evidence or {}
    judge = judge or default_judge()
    decided = iter(decisions)
    rows = []
    for it in items:
        if it.error is not None:
            row = {
                "path": it.path,
                "source": None,
                "score": None,
                "threshold": None,
                "margin": None,
                "candidates": [],
                "lineage": [],
                "error": it.error,
                "view": None,
            }
        else:
            row = {"path": it.path, **next(decided).to_dict(), "error": None, "view": it.view}
        row["detectors"] = evidence.get(id(it), [])
        row["verdict"] = jsonable(judge(None if it.error is not None else row, row["detectors"]))
        rows.append(row)
    return rows


def verify_rows(items: Sequence, results: Sequence[Mapping[str, Any]], source: str, far: float | None) -> list[dict[str, Any]]:
    """One ``verify`` answer per item against ``source`` (the ``verify --generator --json`` objects).

    ``results`` are :meth:`Gallery.verify`'s answers for the readable items, in their order.
    ``source`` is the data model's word; ``generator`` (the CLI's ``--generator``) is kept as an
    alias with the same value because it is part of the documented ``--json`` contract.
    ``far`` is echoed on unreadable items as asked (null when the gallery's default was used).
    """
    verified = iter(results)
    rows = []
    for it in items:
        if it.error is not None:
            score = threshold = accepted = None
            row_far, error = far, it.error
        else:
            r = next(verified)
            score, threshold, accepted, row_far, error = r["score"], r["threshold"], r["accepted"], r["far"], None
        rows.append(
            {
                "path": it.path,
                "source": source,
                "generator": source,
                "score": score,
                "threshold": threshold,
                "accepted": accepted,
                "far": row_far,
                "error": error,
            }
        )
    return rows


def verify_pair_answer(a: str, b: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """Pair mode: were images ``a`` and ``b`` made by the same source (``verify --json A B``)?"""
    return {"a": a, "b": b, **result}


def parse_metadata(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings -> dict (the key stripped, the value as given; the last one wins).

    Raises ValueError naming the first string without ``=``.
    """
    meta = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        key, _, value = pair.partition("=")
        meta[key.strip()] = value
    return meta


def jsonable(value: Any) -> Any:
    """``value`` made fit for strict JSON, recursively: NaN/inf -> None (JSON has no NaN), numpy
    scalars -> Python numbers, paths -> strings, tuples -> lists."""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
