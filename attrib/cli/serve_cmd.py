"""attrib serve"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .common import gallery_option, gallery_path


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="ATTRIB_HOST", help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), envvar="ATTRIB_PORT", help="Port to listen on.")
@click.option(
    "--api-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File with one API key per line for writes (enroll, remove). Keys also come from $ATTRIB_API_KEY "
    "(comma-separated). Without any key, writes are refused.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (each loads the encoder; use up to one per core).",
)
@click.option("--encoder", help="Encoder for a NEW gallery (ignored when the gallery exists).")
@click.option("--max-body-mb", default=64, show_default=True, type=click.IntRange(1, 4096), help="Request body bound (MiB); 413 past it.")
@click.option("--max-images", default=512, show_default=True, type=click.IntRange(1, 100_000), help="Images per request; 413 past it.")
@click.option(
    "--max-pixels", default=40_000_000, show_default=True, type=click.IntRange(1), help="Width x height of one image; 413 past it."
)
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Largest encoder batch shared by concurrent identify/verify requests.",
)
@click.option(
    "--encode-processes",
    type=click.IntRange(0, 64),
    help="Encoder processes per worker (the model then never competes with HTTP for the GIL). "
    "Default: one per core (at most 4), shared by the workers; 0 runs the encoder in threads of the worker.",
)
@click.option(
    "--encode-threads",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Encoder threads per worker with --encode-processes 0.",
)
@click.option(
    "--detectors",
    "default_detectors",
    default="all",
    show_default=True,
    help="Detectors identify runs when a request does not say: all, none, or names separated by commas.",
)
@click.option(
    "--detector-timeout",
    type=click.FloatRange(0, min_open=True),
    help="Seconds each detector may take on one image (default: $ATTRIB_DETECTOR_TIMEOUT, else 10).",
)
@click.option(
    "--graceful-timeout",
    default=30,
    show_default=True,
    type=click.IntRange(1),
    help="Seconds in-flight requests get to finish on shutdown.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Lowest level of the JSON log lines written to stderr.",
)
@click.option("--no-access-log", is_flag=True, help="Leave out the per-request access log lines.")
@gallery_option
@click.pass_context
def serve(
    ctx,
    host,
    port,
    api_key_file,
    workers,
    encoder,
    max_body_mb,
    max_images,
    max_pixels,
    batch_size,
    encode_processes,
    encode_threads,
    default_detectors,
    detector_timeout,
    graceful_timeout,
    log_level,
    no_access_log,
):
    """Serve the gallery over HTTP (OpenAPI at /openapi.json, guide in docs/service.md).

    Reads (identify, verify, sources, health) are open; writes (enroll, remove, identify's
    keep_unknown) need an API key sent as "Authorization: Bearer KEY". Answers have the shapes
    of the CLI's --json output. Logs are JSON lines on stderr; Ctrl-C or SIGTERM stops after
    in-flight requests finish.

    \b
    Example:
      ATTRIB_API_KEY=$(openssl rand -hex 24) attrib serve --gallery g --port 8000
      curl -F image=@img.png http://127.0.0.1:8000/v1/identify
    """
    import uvicorn

    from ..service.config import CONFIG_ENV, ConfigError, ServiceConfig
    from ..service.logs import log_config

    try:
        config = ServiceConfig(
            gallery=gallery_path(ctx),
            encoder=encoder,
            api_key_file=api_key_file,
            max_body_bytes=max_body_mb * 2**20,
            max_images=max_images,
            max_pixels=max_pixels,
            batch_size=batch_size,
            encode_processes=encode_processes,
            encode_threads=encode_threads,
            default_detectors=default_detectors,
            detector_timeout=detector_timeout,
            workers=workers,
        ).load_keys()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    from ..service.state import preflight

    pm = (ctx.find_root().obj or {}).get("pm")
    stats = preflight(config, pm)  # a gallery or setting that cannot work: one line, exit 1 (AttribGroup)
    if not stats["sources"]:
        click.echo(f"Note: the gallery {config.gallery} has no sources yet (enroll through POST /v1/sources/NAME/samples).", err=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not config.api_keys:
        click.echo(f"Note: listening on {host} with writes disabled (no API key).", err=True)
    common = dict(
        host=host,
        port=port,
        log_config=log_config(log_level, access=not no_access_log),
        access_log=False,
        timeout_graceful_shutdown=graceful_timeout,
        server_header=False,
        proxy_headers=False,
    )
    if workers == 1:
        from ..service import create_app

        app = create_app(config, pm=pm)
        uvicorn.run(app, **common)
        return
    # several processes: each worker builds its app from the environment (keys are re-read there)
    os.environ[CONFIG_ENV] = config.to_env()
    uvicorn.run("attrib.service:app_from_env", factory=True, workers=workers, **common)
