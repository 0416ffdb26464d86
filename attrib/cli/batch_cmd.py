"""attrib batch"""

from __future__ import annotations

import sys
import time

import click

from .common import echo_json, far_option, gallery_option, json_option, open_gallery, progressbar
from .detect_cmd import detector_options, make_runner

#: seconds between progress lines when stderr is not a terminal (logs of a long job)
PROGRESS_EVERY = 30.0


def _progress(enabled: bool):
    """A progress callback: a bar on a terminal, else a line every PROGRESS_EVERY seconds."""
    state = {"bar": None, "last": time.monotonic()}

    def update(tally):
        if not enabled:
            return
        if sys.stderr.isatty():
            if state["bar"] is None:
                state["bar"] = progressbar(tally.todo, "batch")
            state["bar"].update(tally.images - state["bar"].n)
            state["bar"].set_postfix(errors=tally.errors, per_s=f"{tally.rate:.1f}")
        elif time.monotonic() - state["last"] >= PROGRESS_EVERY:
            state["last"] = time.monotonic()
            click.echo(f"batch: {tally.images}/{tally.todo} images, {tally.errors} errors, {tally.rate:.1f} images/s", err=True)

    def close():
        if state["bar"] is not None:
            state["bar"].close()

    return update, close


def _print_summary(s):
    click.echo(
        f"{s['images']} images ({s['errors']} errors) in {s['seconds']:.1f} s, {s['images_per_s']:.1f} images/s, "
        f"{s['workers']} workers ({s['address']}); {s['skipped']} already done"
    )
    if s["sources"]:
        click.echo("decided: " + ", ".join(f"{name} {n}" for name, n in s["sources"].items()))
    t = s["total"]
    click.echo(f"{s['out']}: {t['images']} images, {t['errors']} errors (gallery generation {s['gallery']['generation']})")


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "--out", "-o", required=True, help="Output: a Parquet folder (default), or a .jsonl file. Rerunning with the same --out resumes."
)
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "jsonl"]), help="Output format (default: from --out's suffix, else parquet)."
)
@click.option("--address", help="Ray cluster to run on: auto, HEAD:6379 or ray://HEAD:10001 (default: a local Ray started for this run).")
@click.option(
    "--workers", type=click.IntRange(1), help="Ray workers (actors), each with its own encoder (default: CPUs / --cpus-per-worker)."
)
@click.option(
    "--cpus-per-worker", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True), help="CPUs Ray reserves per worker."
)
@click.option("--gpus-per-worker", default=0.0, show_default=True, type=click.FloatRange(0), help="GPUs Ray reserves per worker.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Images per worker call (and encoder batch).")
@click.option("--path-column", default="path", show_default=True, help="Column of paths in a Parquet or CSV INPUT.")
@click.option("--top-k", "-k", default=5, show_default=True, type=click.IntRange(1, 100), help="Candidates listed per image.")
@far_option("False-accept rate the thresholds are set for (default: the gallery's, 0.01).")
@click.option("--no-detectors", is_flag=True, help="Skip the detectors (attribution only).")
@click.option("--detectors", "detector_list", metavar="A,B", help="Run only these detectors (comma-separated; as repeated --detector).")
@detector_options
@click.option("--flush-rows", default=2000, show_default=True, type=click.IntRange(1), hidden=True)
@gallery_option
@json_option
@click.pass_context
def batch(ctx, inputs, out, fmt, address, workers, cpus_per_worker, gpus_per_worker, batch_size, path_column, top_k, far, no_detectors, detector_list, detector_names, detector_timeout, flush_rows, json_):  # fmt: skip
    """Identify (and detect) many images on Ray Data; resumable.

    INPUT: a folder (recursive), a glob ('imgs/**/*.png'), a text file of paths (.txt), or a
    Parquet/CSV file with a path column; local paths or URIs pyarrow opens (s3://, gs://,
    hdfs://, file://). The gallery is read once, here, and shipped to the workers as a snapshot;
    workers never open it. Each output row has exactly the fields of `identify --json`, plus
    gallery_generation and encoder_id; an unreadable image is a row with its error.

    Rerunning with the same --out skips the images already there (no duplicates): a killed job
    is resumed by running it again. Prints a summary (--json: as JSON). Exit 0 when done
    (errors are per image), 1 when nothing could be read or the run failed, 2 on usage errors.
    """
    from ..batch import BatchOptions, InputError, collect_inputs, open_output, run_batch
    from ..batch.driver import OutputMismatch
    from ..gallery.snapshot import GallerySnapshot

    names = tuple(detector_names) + tuple(n.strip() for n in (detector_list or "").split(",") if n.strip())
    try:
        labels, uris = collect_inputs(inputs, path_column)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    if not labels:
        raise click.UsageError(f"no image files found in {', '.join(inputs)}")
    gallery = open_gallery(ctx)
    if not gallery.source_names():
        raise click.ClickException(f"gallery {gallery.path} has no sources: enroll some first")
    if not no_detectors:
        make_runner(ctx, names, detector_timeout)  # an unknown detector is a usage error here, not on a worker
    snapshot = GallerySnapshot.from_gallery(gallery)
    gallery.close()
    options = BatchOptions(top_k, far, not no_detectors, names, detector_timeout, encode_batch=batch_size)
    update, close = _progress(True)
    try:
        output = open_output(out, fmt)
        summary = run_batch(
            labels,
            uris,
            snapshot,
            options,
            output,
            address=address,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            batch_size=batch_size,
            flush_rows=flush_rows,
            on_progress=update,
        )
    except OutputMismatch as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        close()
    if json_:
        echo_json(summary)
    else:
        _print_summary(summary)
    if summary["images"] and summary["errors"] == summary["images"]:
        raise click.ClickException("no image could be read")
