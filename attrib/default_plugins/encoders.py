"""Built-in encoders: the training-free residual fingerprint, and the learned encoders shipped in
``attrib/data/encoders/`` (each a folder with config.json + model.safetensors)."""

from importlib import resources

from ..hookspecs import hookimpl


def _shipped():
    root = resources.files("attrib").joinpath("data/encoders")
    if not root.is_dir():
        return []
    return sorted((p.name, p) for p in root.iterdir() if p.joinpath("config.json").is_file())


@hookimpl
def register_encoders(register):
    from ..encoders.residual import ResidualSpectrumEncoder

    register(
        "residual",
        ResidualSpectrumEncoder,
        "training-free: periodic residual patterns, autocorrelation, channel correlation, coarse spectrum",
    )
    for name, folder in _shipped():

        def factory(_folder=folder, **kwargs):
            from ..encoders.learned import load_encoder

            return load_encoder(_folder, **kwargs)  # get_encoder sets its spec to the name

        register(name, factory, f"learned (shipped): {_describe(folder)}")
        if name == "fp-wccn2":

            def tiled(_folder=folder, **kwargs):
                from ..encoders.learned import load_encoder
                from ..encoders.tiled import TiledEncoder

                return TiledEncoder(load_encoder(_folder, **kwargs), tiles=5, name="fp-wccn2-tiles")

            register(
                "fp-wccn2-tiles",
                tiled,
                "fp-wccn2 over the whole image: the mean of its embeddings of 5 tiles of 256 px (the same as fp-wccn2 on images up to 256 px)",
            )


def _describe(folder) -> str:
    import json

    conf = json.loads(folder.joinpath("config.json").read_text())
    m = conf.get("metrics", {})
    return f"{conf['backbone']} -> {conf['dim']}-d; held-out {m.get('shots', 5)}-shot acc {m.get('accuracy', float('nan')):.2f}, AUROC {m.get('auroc', float('nan')):.2f}"
