"""attrib: open-set attribution and fingerprint verification for AI-generated images.

Library first, CLI on top::

    import attrib
    gallery = attrib.open_gallery("my-gallery")            # SQLite + FAISS folder
    img = attrib.load_image("img.png")
    emb = gallery.encoder.embed([img.pixels])
    decision = gallery.identify(emb)[0]                     # .source is None when unknown
"""

from __future__ import annotations

import os as _os

# OpenMP threads that spin while they wait (GNU OpenMP's default, torch's CPU kernels) collapse
# when other processes share the cores: fp-joint1 ran 1.3-1.8 images/s with spinning threads and
# 11-23 with sleeping ones on this project's shared 2-core machine (docs/benchmarks.md). Set before
# torch is first imported (attrib imports it lazily); a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .encoders import Encoder, get_encoder, list_encoders
from .errors import AttribError, EncoderError, EncoderMismatch, GalleryError, ImageError, UnknownSource
from .gallery import Gallery, SampleRecord
from .hookspecs import hookimpl
from .imageio import load_image

__version__ = "0.1.0"

__all__ = [
    "AttribError",
    "Encoder",
    "EncoderError",
    "EncoderMismatch",
    "Gallery",
    "GalleryError",
    "ImageError",
    "SampleRecord",
    "UnknownSource",
    "get_encoder",
    "hookimpl",
    "list_encoders",
    "load_image",
    "open_gallery",
]


def open_gallery(path=None, encoder=None, create: bool = True) -> Gallery:
    """Open (or create) the gallery at ``path`` (default: ``$ATTRIB_GALLERY`` or the user dir)."""
    from .paths import default_gallery

    return Gallery(path or default_gallery(), encoder=encoder, create=create)
