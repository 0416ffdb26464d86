"""Shared CLI pieces: the --gallery option, error translation, JSON output, progress bars."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import AttribError
from ..paths import default_gallery
from ..report import FAR_MAX, FAR_MIN, jsonable, parse_metadata


class AttribGroup(click.Group):
    """Turns domain errors into one-line messages (exit 1) and Ctrl-C into exit 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AttribError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted: nothing half-written was kept.", err=True)
            ctx.exit(130)
        except MemoryError:
            raise click.ClickException("out of memory (try fewer or smaller images)") from None


def _store_gallery(ctx: click.Context, param, value):
    if value is not None:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["gallery"] = value
    return value


def gallery_option(f):
    """--gallery, accepted on the group and on every command (the later one wins)."""
    return click.option(
        "--gallery",
        "-g",
        type=click.Path(file_okay=False, path_type=Path),
        callback=_store_gallery,
        expose_value=False,
        is_eager=True,
        help="Gallery folder (default: $ATTRIB_GALLERY, else a folder under $ATTRIB_HOME).",
    )(f)


def parse_meta(ctx, param, values):
    """Click callback: ``--meta KEY=VALUE`` options -> dict."""
    try:
        return parse_metadata(values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def json_option(f):
    """--json, declared as ``json_``."""
    return click.option("--json", "json_", is_flag=True, help="Machine-readable JSON output.")(f)


def gallery_path(ctx: click.Context) -> Path:
    obj = ctx.find_root().obj or {}
    return Path(obj.get("gallery") or default_gallery())


def plugin_manager(ctx: click.Context):
    return (ctx.find_root().obj or {}).get("pm")


def open_gallery(ctx: click.Context, create: bool = False, encoder=None):
    from ..gallery import Gallery

    return Gallery(gallery_path(ctx), encoder=encoder, create=create, pm=plugin_manager(ctx))


def far_option(text: str):
    """--far with the bounds every false-accept rate has (:data:`attrib.report.FAR_MIN` .. ``FAR_MAX``)."""
    return click.option("--far", type=click.FloatRange(FAR_MIN, FAR_MAX), help=text)


def echo_json(obj: Any, indent: int | None = 2) -> None:
    """Strict JSON (NaN as null, as the HTTP service answers) through :func:`attrib.report.jsonable`."""
    click.echo(json.dumps(jsonable(obj), indent=indent))


def echo_jsonl(obj: Any) -> None:
    """One object on one line (JSON Lines, when many items come out)."""
    click.echo(json.dumps(jsonable(obj)))


def progressbar(total: int, label: str, enabled: bool = True):
    """A tqdm bar on stderr (never on stdout beside JSON); disabled when stderr is not a TTY."""
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="img", file=sys.stderr, disable=not enabled or not sys.stderr.isatty(), leave=False)


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or x != x:
        return "-"
    return f"{x:.{digits}f}"
