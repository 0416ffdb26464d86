"""Where ``attrib batch`` writes, so that a killed run can be rerun without duplicates.

* **Parquet** (default): ``--out results.parquet`` is a folder of part files (as Spark and Ray
  write them; ``pandas.read_parquet`` and ``pyarrow.dataset`` read the folder as one table). Each
  part is written under a hidden temporary name and renamed when complete, so a part is either
  whole or absent: a run killed at any point leaves only whole parts (and perhaps a temporary
  file, removed by the next run).
* **JSON Lines** (``--format jsonl``): one file, one ``identify --json`` object per line,
  appended and flushed batch by batch; a run killed mid-line leaves a partial last line, which
  the next run cuts off before appending.

:meth:`existing` reads back which paths are done (and against which gallery generation), so a
rerun skips them. Both go through pyarrow's filesystems (local paths, or URIs; JSON Lines needs
one that can append, as local disks and HDFS can).
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone

from ..errors import AttribError
from . import rows as batch_rows
from .inputs import is_uri

#: the columns read back from an existing output
DONE_COLUMNS = ("path", "source", "error", "gallery_generation", "encoder_id")


class OutputMismatch(AttribError):
    """The output holds answers that cannot be continued (another gallery generation or encoder,
    or parts with other columns): resuming would mix them."""


def _filesystem(out: str):
    from pyarrow import fs

    if is_uri(out):
        return fs.FileSystem.from_uri(out)
    return fs.LocalFileSystem(), os.path.abspath(out)


def format_of(out: str, fmt: str | None) -> str:
    """``parquet`` or ``jsonl``: as asked, else from the suffix (``.jsonl``/``.ndjson``), else parquet."""
    if fmt:
        return fmt
    return "jsonl" if out.lower().endswith((".jsonl", ".ndjson", ".json")) else "parquet"


def open_output(out: str, fmt: str | None = None):
    return (JsonlOutput if format_of(out, fmt) == "jsonl" else ParquetOutput)(out)


class ParquetOutput:
    """A folder of whole Parquet parts (see the module's doc)."""

    format = "parquet"

    def __init__(self, out: str):
        from pyarrow import fs

        self.label = out
        self.fs, self.root = _filesystem(out)
        info = self.fs.get_file_info(self.root)
        if info.type == fs.FileType.File:
            raise AttribError(f"{out} is a file; a Parquet output is a folder of parts (use a new --out, or --format jsonl)")
        self.fs.create_dir(self.root, recursive=True)
        # parts sort in the order they were written, runs too (a run's parts share its id)
        self.run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(3)
        self.parts = 0
        for path in self._files():  # temporary files of a killed run: their parts were never done
            if os.path.basename(path).startswith(".part-") and path.endswith(".tmp"):
                self.fs.delete_file(path)

    def _files(self) -> list[str]:
        from pyarrow import fs

        infos = self.fs.get_file_info(fs.FileSelector(self.root, recursive=False))
        return sorted(i.path for i in infos if i.type == fs.FileType.File)

    def existing(self) -> list[dict]:
        import pyarrow.parquet as pq

        done = []
        columns = set(batch_rows.schema().names)
        for path in self._files():
            name = os.path.basename(path)
            if name.startswith("part-") and name.endswith(".parquet"):
                missing = columns - set(pq.read_schema(path, filesystem=self.fs).names)
                if missing:  # written by an older attrib: one folder would no longer read as one table
                    raise OutputMismatch(
                        f"{self.label} holds parts without the columns {', '.join(sorted(missing))} (written by an older attrib): "
                        "resuming would mix two tables in one folder (use a new --out)"
                    )
                done += pq.read_table(path, columns=list(DONE_COLUMNS), filesystem=self.fs).to_pylist()
        return done

    def write(self, table) -> None:
        import pyarrow.parquet as pq

        self.parts += 1
        name = f"part-{self.run_id}-{self.parts:06d}.parquet"
        tmp = f"{self.root}/.{name}.tmp"
        pq.write_table(table, tmp, filesystem=self.fs)
        self.fs.move(tmp, f"{self.root}/{name}")

    def close(self) -> None:
        pass


class JsonlOutput:
    """One JSON Lines file, appended batch by batch (see the module's doc)."""

    format = "jsonl"

    def __init__(self, out: str):
        from pyarrow import fs

        self.label = out
        self.fs, self.path = _filesystem(out)
        info = self.fs.get_file_info(self.path)
        if info.type == fs.FileType.Directory:
            raise AttribError(f"{out} is a folder; JSON Lines output is one file")
        self._lines: list[str] = []
        if info.type == fs.FileType.File:
            with self.fs.open_input_stream(self.path) as fh:
                data = fh.read()
            whole = data[: data.rfind(b"\n") + 1]
            if len(whole) != len(data):  # a killed run's half-written last line
                with self.fs.open_output_stream(self.path) as fh:
                    fh.write(whole)
            self._lines = whole.decode().splitlines()
        else:
            parent = os.path.dirname(self.path)
            if parent:
                self.fs.create_dir(parent, recursive=True)
        self._stream = None

    def existing(self) -> list[dict]:
        done = []
        for line in self._lines:
            if line.strip():
                row = json.loads(line)
                done.append({k: row.get(k) for k in DONE_COLUMNS})
        self._lines = []
        return done

    def write(self, table) -> None:
        if self._stream is None:
            self._stream = self.fs.open_append_stream(self.path)
        text = "".join(json.dumps(row) + "\n" for row in batch_rows.table_to_rows(table))
        self._stream.write(text.encode())
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
