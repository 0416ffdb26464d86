"""attrib-template: the smallest useful attrib plugin. Copy this folder to start your own.

It registers one detector and one command through attrib's hooks (see docs/plugins.md):

* detector ``template-size``: whether the image's sides are multiples of 64, as the latents of
  most diffusion models force. Weak evidence, so the verdict stays ``undetermined``; the score says
  which way it leans.
* command ``attrib template-hello``: prints the detectors attrib knows about.
"""

from __future__ import annotations

import click

from attrib import hookimpl
from attrib.detectors import Detector

__version__ = "0.1.0"


class SizeDetector(Detector):
    name = "template-size"
    description = "example plugin: are both sides multiples of 64 (typical of diffusion latents)?"

    def detect(self, image):
        # image.pixels: H x W x 3 uint8 (read-only); image.data: the file's bytes (or None);
        # image.open(): a Pillow image over those bytes, for metadata.
        h, w = image.height, image.width
        typical = h % 64 == 0 and w % 64 == 0
        return self.evidence(
            "undetermined",  # weak evidence: never claim more than you know
            0.6 if typical else 0.4,
            None,  # source_hint: a generator name, when the evidence names one
            width=w,
            height=h,
            multiple_of_64=typical,
            summary=f"{w}x{h}" + (", multiples of 64" if typical else ""),
        )


@hookimpl
def register_detectors(register):
    register(SizeDetector())


@hookimpl
def register_commands(cli):
    @cli.command(name="template-hello")
    @click.pass_context
    def template_hello(ctx):
        """Say hello, and list the detectors attrib knows about."""
        from attrib.detectors import available_detectors

        pm = (ctx.find_root().obj or {}).get("pm")
        registry, _ = available_detectors(pm)
        click.echo(f"hello from attrib-template; detectors: {', '.join(registry)}")
