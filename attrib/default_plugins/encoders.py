"""Built-in encoders."""
from ..hookspecs import hookimpl


@hookimpl
def register_encoders(register):
    from ..encoders.residual import ResidualSpectrumEncoder

    register(
        "residual",
        ResidualSpectrumEncoder,
        "training-free: log power spectrum and channel coherence of the noise residual, tiled",
    )
