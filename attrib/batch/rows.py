"""The rows ``attrib batch`` writes: ``identify --json``'s objects, as Parquet columns or JSON Lines.

Every row has exactly the fields of ``attrib identify --json`` (built by the same
:func:`attrib.report.identify_rows`), plus the run's ``gallery_generation`` and ``encoder_id``
(the snapshot every answer came from). In Parquet, the flat fields are typed columns
(``candidates`` a list of ``{source, score}`` structs); ``detectors`` and ``verdict``, whose
``details`` and ``value`` hold whatever a detector or rule reports, are JSON text (one
``json.loads`` gives ``identify --json``'s objects back; :func:`table_to_rows` does it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from ..report import jsonable

#: the fields of identify --json, in its order
IDENTIFY_FIELDS = ("path", "source", "score", "threshold", "margin", "candidates", "lineage", "error", "view", "detectors", "verdict")
#: what batch adds to each row: the snapshot the answer came from
RUN_FIELDS = ("gallery_generation", "encoder_id")
JSON_COLUMNS = ("detectors", "verdict")


def schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("source", pa.string()),
            ("score", pa.float64()),
            ("threshold", pa.float64()),
            ("margin", pa.float64()),
            ("candidates", pa.list_(pa.struct([("source", pa.string()), ("score", pa.float64())]))),
            ("lineage", pa.list_(pa.string())),
            ("error", pa.string()),
            ("view", pa.string()),
            ("detectors", pa.string()),
            ("verdict", pa.string()),
            ("gallery_generation", pa.int64()),
            ("encoder_id", pa.string()),
        ]
    )


def finish(rows: Sequence[dict[str, Any]], generation: int, encoder_id: str) -> list[dict[str, Any]]:
    """identify rows made strict JSON (as ``identify --json`` prints them) with the run's fields."""
    return [{**jsonable(r), "gallery_generation": generation, "encoder_id": encoder_id} for r in rows]


def rows_to_table(rows: Sequence[dict[str, Any]]):
    import pyarrow as pa

    columns = {name: [r[name] for r in rows] for name in IDENTIFY_FIELDS + RUN_FIELDS}
    for name in JSON_COLUMNS:
        columns[name] = [json.dumps(v) for v in columns[name]]
    return pa.table(columns, schema=schema())


def table_to_rows(table) -> Iterator[dict[str, Any]]:
    """Rows of a batch table as ``identify --json`` objects (plus the run's fields)."""
    for row in table.to_pylist():
        for name in JSON_COLUMNS:
            if row.get(name) is not None:
                row[name] = json.loads(row[name])
        yield row
