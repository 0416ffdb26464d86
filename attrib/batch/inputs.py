"""What ``attrib batch`` reads: a folder (recursive), a glob, a text file of paths, or a Parquet or
CSV file with a path column; local paths or any URI pyarrow opens (``s3://``, ``gs://``,
``hdfs://``, ``file://``).

Each image becomes a ``(label, uri)`` pair: the label is the path as the user wrote it (or as a
folder expands it, exactly as ``attrib identify`` labels it: the ``path`` field of every row);
the uri is what workers open (local paths made absolute, so a worker's working folder does not
matter). Labels are unique: an image listed twice is identified once.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import AttribError
from ..imageio import IMAGE_SUFFIXES, iter_image_paths

#: suffixes read as a list of images rather than as an image
LIST_SUFFIXES = {".txt", ".lst", ".list"}
TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}
GLOB_CHARS = "*?["


class InputError(AttribError):
    """An input that is not there or not of a kind batch reads (a usage error: exit 2)."""


def is_uri(path: str) -> bool:
    """A URI read through pyarrow's filesystems (``file://`` too: the same code as ``s3://``)."""
    return "://" in path


def collect_inputs(inputs: Iterable[str], path_column: str = "path") -> tuple[list[str], list[str]]:
    """``(labels, uris)`` of every image named by ``inputs``, in order, each label once."""
    seen: dict[str, str] = {}
    for spec in inputs:
        for label in _expand(str(spec), path_column):
            if label not in seen:
                seen[label] = label if is_uri(label) else os.path.abspath(label)
    return list(seen), list(seen.values())


def _expand(spec: str, path_column: str) -> Iterator[str]:
    if is_uri(spec):
        yield from _expand_uri(spec, path_column)
        return
    local = spec
    path = Path(local)
    if not path.exists():
        if any(c in local for c in GLOB_CHARS):
            matches = sorted(glob.glob(local, recursive=True))
            if not matches:
                raise InputError(f"{spec}: no file matches this pattern")
            for m in matches:
                yield from (str(p) for p in iter_image_paths([m]))
            return
        raise InputError(f"{spec}: no such file or folder")
    if path.is_dir():
        yield from (str(p) for p in iter_image_paths([path]))
        return
    suffix = path.suffix.lower()
    if suffix in LIST_SUFFIXES:
        yield from _lines(path.read_text())
    elif suffix in TABLE_SUFFIXES:
        yield from _column(local, suffix, path_column, None)
    else:
        yield local


def _lines(text: str) -> Iterator[str]:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def _column(path: str, suffix: str, column: str, filesystem) -> list[str]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if suffix == ".csv":
            with _open(path, filesystem) as fh:
                table = pacsv.read_csv(fh, convert_options=pacsv.ConvertOptions(include_columns=[column]))
        else:
            table = pq.read_table(path, columns=[column], filesystem=filesystem)
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path}: no column {column!r} (--path-column): {str(exc).splitlines()[0]}") from None
    return [str(v) for v in table.column(column).to_pylist() if v]


def _open(path: str, filesystem):
    if filesystem is None:
        return open(path, "rb")
    return filesystem.open_input_stream(path)


def _expand_uri(uri: str, path_column: str) -> Iterator[str]:
    """A URI on a pyarrow filesystem: a folder (recursive), a glob, a list or table, or an image."""
    from pyarrow import fs

    rest = uri.split("://", 1)[1]
    if any(c in rest for c in GLOB_CHARS):
        cut = len(uri) - len(rest) + min(rest.find(c) for c in GLOB_CHARS if c in rest)
        base = uri[:cut].rsplit("/", 1)[0]
        filesystem, base_path = fs.FileSystem.from_uri(base)
        pattern = base_path.rstrip("/") + uri[len(base) :]
        found = [p for p in _files_under(filesystem, base_path) if fnmatch.fnmatch(p, pattern)]
        if not found:
            raise InputError(f"{uri}: no file matches this pattern")
        yield from (base + p[len(base_path.rstrip("/")) :] for p in found)
        return
    filesystem, path = fs.FileSystem.from_uri(uri)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.NotFound:
        raise InputError(f"{uri}: no such file or folder")
    if info.type == fs.FileType.Directory:
        root = path.rstrip("/")
        for p in _files_under(filesystem, root):
            relative = Path(p[len(root) :].lstrip("/"))
            if relative.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in relative.parts):
                yield uri.rstrip("/") + "/" + relative.as_posix()
        return
    suffix = Path(path).suffix.lower()
    if suffix in LIST_SUFFIXES:
        with filesystem.open_input_stream(path) as fh:
            yield from _lines(fh.read().decode())
    elif suffix in TABLE_SUFFIXES:
        yield from _column(path, suffix, path_column, filesystem)
    else:
        yield uri


def _files_under(filesystem, path: str) -> list[str]:
    from pyarrow import fs

    infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == fs.FileType.File)
