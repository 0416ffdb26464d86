"""The ``attrib`` command line. :func:`build_cli` assembles it from a fresh plugin manager, so
plugin commands are never registered at import time."""

from __future__ import annotations

import sys

import click

from ..errors import AttribError
from ..plugins import make_plugin_manager, register_commands
from .common import AttribGroup, gallery_option


def build_cli(pm=None) -> click.Group:
    pm = pm or make_plugin_manager()

    @click.group(cls=AttribGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="attrib")
    @gallery_option
    @click.pass_context
    def cli(ctx):
        """attrib: which generator made this image?

        Open-set attribution and fingerprint verification for AI-generated images. Enroll a
        generator from a few samples, then identify images (a known source or "unknown") or
        verify them against one source at a stated false-accept rate.

        The gallery is chosen with --gallery (before or after the command name), else the
        ATTRIB_GALLERY environment variable, else a default under ATTRIB_HOME.
        """
        ctx.ensure_object(dict)
        ctx.obj["pm"] = pm

    from . import (
        batch_cmd,
        demo_cmd,
        detect_cmd,
        encoders_cmd,
        enroll_cmd,
        eval_cmd,
        identify_cmd,
        plugins_cmd,
        recipe_cmd,
        serve_cmd,
        sources_cmd,
        train_cmd,
        zoo_cmd,
    )

    for command in (
        enroll_cmd.enroll,
        identify_cmd.identify,
        identify_cmd.verify,
        batch_cmd.batch,
        sources_cmd.sources,
        eval_cmd.eval_command,
        demo_cmd.demo,
        zoo_cmd.zoo,
        encoders_cmd.encoders,
        recipe_cmd.recipe,
        train_cmd.train,
        serve_cmd.serve,
        detect_cmd.detect,
        detect_cmd.detectors,
        plugins_cmd.plugins,
    ):
        cli.add_command(command)
    for failure in register_commands(pm, cli):  # a broken plugin never takes the CLI down
        click.echo(f"warning: plugin {failure['name']}: register_commands failed: {failure['error']}", err=True)
    return cli


def main(argv=None) -> None:
    cli = build_cli()
    try:
        cli.main(args=argv, prog_name="attrib", standalone_mode=True)
    except AttribError as exc:  # pragma: no cover - AttribGroup converts these already
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
