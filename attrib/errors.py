"""Domain errors. Every message is one line a user can act on; the CLI prints it without a traceback."""


class AttribError(Exception):
    """Base class for every error attrib raises on purpose."""


class ImageError(AttribError):
    """An input could not be read as an image (corrupt, truncated, too large, not an image)."""


class GalleryError(AttribError):
    """The gallery cannot do what was asked (missing source, schema from the future, ...)."""


class EncoderMismatch(GalleryError):
    """A gallery is bound to one encoder; embeddings of another encoder never mix."""


class UnknownSource(GalleryError):
    """A source name that is not enrolled in the gallery."""


class EncoderError(AttribError):
    """An encoder could not be created or loaded (bad name, missing or corrupt weights)."""
