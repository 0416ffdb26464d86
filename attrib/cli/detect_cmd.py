"""attrib detect / attrib detectors list"""

from __future__ import annotations

import sys

import click

from .common import echo_json, echo_jsonl, json_option, plugin_manager


def detector_options(f):
    """--detector (repeatable) and --detector-timeout, shared by detect and identify."""
    f = click.option(
        "--detector-timeout",
        type=click.FloatRange(0, min_open=True),
        help="Seconds each detector may take on one image (default: $ATTRIB_DETECTOR_TIMEOUT, else 10, "
        "or a longer bound a detector declares).",
    )(f)
    f = click.option(
        "--detector",
        "-d",
        "detector_names",
        multiple=True,
        metavar="NAME",
        help="Run only this detector (repeatable). `attrib detectors list` shows the names.",
    )(f)
    return f


def make_runner(ctx, names, timeout):
    """A DetectorRunner for the CLI: an unknown detector name is a usage error (exit 2)."""
    from ..detectors import make_runner as _make_runner
    from ..errors import AttribError

    try:
        return _make_runner(plugin_manager(ctx), names or None, timeout)
    except AttribError as exc:
        if names:
            raise click.UsageError(str(exc)) from None
        raise


def _inputs(paths):
    """(label, DetectorImage or None, error) per input, in order; `-` reads stdin."""
    from ..detectors import DetectorImage
    from ..errors import ImageError
    from ..pipeline import expand_paths, load_many

    files = []
    for p in paths:
        if p == "-":
            files.append("-")
        else:
            found = expand_paths([p])
            if not found:
                raise click.ClickException(f"no image files found in {p}")
            files.extend(found)
    on_disk = [f for f in files if f != "-"]
    # decoded a chunk at a time, so a big folder never sits in memory all at once
    disk = (item for start in range(0, len(on_disk), 32) for item in load_many(on_disk[start : start + 32]))
    for f in files:
        if f == "-":
            data = sys.stdin.buffer.read()
            try:
                yield "-", DetectorImage.from_source(data, name="-"), None
            except ImageError as exc:
                yield "-", None, str(exc)
            continue
        item = next(disk)
        if item.error is not None:
            yield item.path, None, item.error
        else:
            img = item.image
            yield item.path, DetectorImage(pixels=img.pixels, path=item.path, format=img.format), None


@click.command()
@detector_options
@json_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, allow_dash=True))
@click.pass_context
def detect(ctx, detector_names, detector_timeout, json_, paths):
    """Run the detectors alone (no gallery needed) on images, folders or - (stdin).

    Each detector looks at the image on its own terms (residual spectrum, pixel relationships,
    and whatever plugins add: metadata, C2PA manifests, watermarks) and gives a verdict
    (synthetic / real / undetermined), a score in [0, 1] (1: generated), an optional source hint
    and details. A detector that fails or runs past its time bound is reported with its error.

    With --json, one JSON object per image (JSON Lines): path, error, and detectors, a list of
    {detector, verdict, score, source_hint, details, error}.
    """
    from ..errors import ImageError

    runner = make_runner(ctx, detector_names, detector_timeout)
    readable = 0
    for label, image, error in _inputs(paths):
        evidence = []
        if image is not None:
            try:
                evidence = [ev.to_dict() for ev in runner.run(image)]
                readable += 1
            except ImageError as exc:
                error = str(exc)
        row = {"path": label, "error": error, "detectors": evidence}
        if json_:
            echo_jsonl(row)
        else:
            _print_row(row)
    if not readable:
        raise click.ClickException("no image could be read")


def _print_row(row):
    click.echo(row["path"])
    if row["error"]:
        click.echo(f"  error: {row['error']}")
        return
    if not row["detectors"]:
        click.echo("  (no detectors registered)")
    width = max([len(ev["detector"]) for ev in row["detectors"]] + [8])
    for ev in row["detectors"]:
        score = "-" if ev["score"] is None else f"{ev['score']:.3f}"
        note = f"error: {ev['error']}" if ev["error"] else _note(ev)
        click.echo(f"  {ev['detector']:<{width}}  {ev['verdict']:<12} {score:>5}  {note}".rstrip())


def _note(ev) -> str:
    parts = []
    if ev["source_hint"]:
        parts.append(f"source: {ev['source_hint']}")
    details = ev["details"] or {}
    if details.get("summary"):
        parts.append(str(details["summary"]))
    elif details.get("reason"):
        parts.append(str(details["reason"]))
    return "; ".join(parts)


@click.group()
def detectors():
    """Detectors that add evidence beside the attribution."""


@detectors.command("list")
@json_option
@click.pass_context
def list_(ctx, json_):
    """List registered detectors (built-in and from plugins)."""
    from ..detectors import available_detectors

    registry, failures = available_detectors(plugin_manager(ctx))
    rows = [{"name": name, "description": info["description"], "plugin": info["plugin"]} for name, info in registry.items()]
    if json_:
        echo_json(rows)
    else:
        for r in rows:
            click.echo(f"{r['name']:<12} {r['description']}  [{r['plugin']}]")
    for f in failures:
        click.echo(f"warning: plugin {f['name']}: {f.get('hook') or 'load'} failed: {f['error']}", err=True)
