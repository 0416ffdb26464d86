"""``attrib batch``: identify (and detect) many images on Ray Data, resumably.

* :mod:`.inputs` — folders, globs, lists, Parquet/CSV path columns, local or any pyarrow URI;
* :mod:`.worker` — :class:`Identifier`, what each Ray worker runs (identify's own code);
* :mod:`.rows` — the output rows: ``identify --json``'s fields, as Parquet columns or JSON Lines;
* :mod:`.output` — whole-part Parquet folders and JSON Lines files, and what is already done;
* :mod:`.driver` — :func:`run_batch`: skip what is done, run the rest on Ray, summarise.

The gallery is read once, as a :class:`attrib.gallery.snapshot.GallerySnapshot`; Ray is imported
only when a batch runs.
"""

from __future__ import annotations

from .driver import OutputMismatch, Tally, run_batch
from .inputs import InputError, collect_inputs
from .output import open_output
from .rows import IDENTIFY_FIELDS, RUN_FIELDS, table_to_rows
from .worker import BatchOptions, Identifier


def read_results(out: str) -> list[dict]:
    """Every row of a batch output (Parquet folder or JSON Lines file) as ``identify --json`` objects."""
    import json
    import os

    if os.path.isfile(out):
        with open(out) as fh:
            return [json.loads(line) for line in fh if line.strip()]
    import pyarrow.dataset as pads

    return list(table_to_rows(pads.dataset(out, format="parquet").to_table()))


__all__ = [
    "IDENTIFY_FIELDS",
    "RUN_FIELDS",
    "BatchOptions",
    "Identifier",
    "InputError",
    "OutputMismatch",
    "Tally",
    "collect_inputs",
    "open_output",
    "read_results",
    "run_batch",
]
