"""Sources: what a gallery attributes images to (a generator, or ``real``), and how they are named.

One place for the vocabulary: the families of the design and the rule for a source's name, used
by the gallery, the zoo, the CLI and the HTTP service alike.
"""

from __future__ import annotations

import re

from .errors import GalleryError

#: The source families of the design (a source's ``family`` is one of these).
FAMILIES = ("gan", "diffusion", "autoregressive", "real", "other")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def check_name(name: str) -> str:
    """``name`` if it is a valid source name, else a :class:`GalleryError` saying why."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise GalleryError(
            f"invalid source name {name!r}: use letters, digits, '.', '_', '+', '-' (max 128, starting with a letter or digit)"
        )
    return name
