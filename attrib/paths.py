"""Where attrib keeps things: ``ATTRIB_HOME`` (else the platform's app dir) holds the default
gallery and caches; ``ATTRIB_GALLERY`` names the gallery when ``--gallery`` is not given."""

from __future__ import annotations

import os
from pathlib import Path


def user_dir() -> Path:
    home = os.environ.get("ATTRIB_HOME")
    if home:
        return Path(home)
    import click

    return Path(click.get_app_dir("attrib"))


def default_gallery() -> Path:
    env = os.environ.get("ATTRIB_GALLERY")
    return Path(env) if env else user_dir() / "galleries" / "default"


def cache_dir() -> Path:
    env = os.environ.get("ATTRIB_CACHE")
    if env:
        return Path(env)
    if os.environ.get("ATTRIB_HOME"):
        return Path(os.environ["ATTRIB_HOME"]) / "cache"
    return Path.home() / ".cache" / "attrib"
