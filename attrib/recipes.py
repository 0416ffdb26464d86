"""Gallery recipes: a TOML file declares a gallery (encoder, sources, where samples come from);
:func:`build_recipe` builds it reproducibly. See ``galleries/README.md`` for the keys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from .errors import AttribError


@dataclass
class Recipe:
    name: str
    encoder: str | None
    description: str = ""
    zoo: dict[str, Any] | None = None
    shots: int | None = None
    unknown: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    base: Path = Path(".")

    @classmethod
    def parse(cls, text: str, base: Path, label: str) -> Recipe:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AttribError(f"{label}: not valid TOML ({exc})") from None
        enroll = data.get("enroll", {})
        recipe = cls(
            name=data.get("name", Path(label).stem),
            encoder=data.get("encoder"),
            description=data.get("description", ""),
            zoo=data.get("zoo"),
            shots=enroll.get("shots"),
            unknown=list(enroll.get("unknown", [])),
            sources=list(data.get("sources", [])),
            base=base,
        )
        if recipe.zoo is None and not recipe.sources:
            raise AttribError(f"{label}: a recipe needs a [zoo] table or [[sources]] entries")
        kinds = (recipe.zoo or {}).get("kinds")
        if kinds is not None and not (isinstance(kinds, list) and all(isinstance(k, str) for k in kinds)):
            raise AttribError(f"{label}: [zoo] kinds must be a list of generator kinds (see `attrib zoo list`)")
        for s in recipe.sources:
            if "name" not in s or "path" not in s:
                raise AttribError(f"{label}: every [[sources]] entry needs name and path")
        return recipe

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise AttribError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
        return cls.parse(text, path.resolve().parent, str(path))

    @classmethod
    def builtin(cls, name: str) -> Recipe:
        text = resources.files("attrib").joinpath(f"data/{name}.toml").read_text()
        return cls.parse(text, Path("."), f"{name}.toml")

    def zoo_dir(self) -> Path | None:
        """Build (or reuse from the cache) the zoo data this recipe names; returns its folder."""
        if self.zoo is None:
            return None
        import hashlib
        import json

        from .paths import cache_dir
        from .zoo import ZOO_VERSION, build_zoo, default_zoo

        z = {"generators": 12, "images": 30, "size": 128, "seed": 0, "post": [], **self.zoo}
        # kinds: the kinds default_zoo cycles over (default: all, which grows as kinds are added)
        specs = default_zoo(int(z["generators"]), z.get("kinds"))
        # the generator names are part of the key: without `kinds`, new kinds change the list
        key_data = {**z, "zoo_version": ZOO_VERSION, "sources": [spec.name for spec in specs]}
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
        out = cache_dir() / "zoo" / "builds" / key
        if not (out / "zoo.json").exists():
            build_zoo(
                out, specs, images_per_source=int(z["images"]), size=int(z["size"]), post=z["post"], seed=int(z["seed"]), progress=True
            )
        return out

    def plan(self) -> list[dict[str, Any]]:
        """Sources to enroll: ``[{name, family, files, metadata}]`` (files already cut to shots)."""
        from .imageio import iter_image_paths

        plan = []
        data = self.zoo_dir()
        if data is not None:
            import json

            manifest = json.loads((data / "zoo.json").read_text())
            for entry in manifest["sources"]:
                if entry["name"] in self.unknown:
                    continue
                files = sorted(iter_image_paths([data / entry["name"]]))
                plan.append(
                    {
                        "name": entry["name"],
                        "family": entry["family"],
                        "files": files[: self.shots or None],
                        "metadata": {"arch": entry["arch"], "zoo_seed": entry["seed"]},
                    }
                )
        for s in self.sources:
            folder = (self.base / s["path"]).resolve()
            if not folder.exists():
                raise AttribError(f"recipe source {s['name']}: {folder} does not exist")
            files = sorted(iter_image_paths([folder]))
            shots = s.get("shots", self.shots)
            plan.append({"name": s["name"], "family": s.get("family"), "files": files[: shots or None], "metadata": s.get("metadata", {})})
        return plan


def build_recipe(recipe: Recipe, gallery_path: Path, pm=None, progress: Callable[[str, int], None] | None = None):
    """Enroll every source of ``recipe`` into the gallery at ``gallery_path``; returns (gallery, results)."""
    from .encoders import get_encoder
    from .gallery import THUMBS_PER_SOURCE, Gallery
    from .pipeline import embed_items, load_many, view_embeddings
    from .views import VIEWS

    plan = recipe.plan()
    gallery = Gallery(gallery_path, encoder=get_encoder(recipe.encoder, pm=pm), pm=pm)
    gallery.set_recipe(recipe.name)
    results = []
    for entry in plan:
        items, emb = embed_items(gallery.encoder, load_many(entry["files"]), thumbnails=THUMBS_PER_SOURCE, views=VIEWS)
        good = [it for it in items if it.error is None]
        if not good:
            raise AttribError(f"recipe source {entry['name']}: no readable image")
        records, views = [it.record for it in good], view_embeddings(good)
        res = gallery.enroll(entry["name"], emb, records, family=entry["family"], metadata=entry["metadata"], views=views)
        res.failed = [{"path": it.path, "error": it.error} for it in items if it.error]
        results.append(res)
        if progress:
            progress(entry["name"], res.enrolled)
    return gallery, results
