"""Gallery recipes: parsing and its errors, the plan (what gets enrolled), zoo-backed recipes and
their cache, building a gallery through the CLI, and the shipped demo recipe."""

import json

import pytest
from click.testing import CliRunner

from attrib.cli import build_cli
from attrib.errors import AttribError
from attrib.recipes import Recipe

from .conftest import synthetic, write_png


def _folders(root, n_sources=3, n_images=6):
    for s in range(n_sources):
        for i in range(n_images):
            write_png(root / "data" / f"src{s}" / f"{i:03d}.png", synthetic(s, i, 64))
    return root


FOLDER_RECIPE = """
name = "folders"
description = "three folders"
encoder = "residual"

[enroll]
shots = 4

[[sources]]
name = "alpha"
family = "gan"
path = "data/src0"
metadata = {vendor = "x"}

[[sources]]
name = "beta"
family = "diffusion"
path = "data/src1"
shots = 2

[[sources]]
name = "gamma"
path = "data/src2"
"""


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = [", "not valid TOML"),
        ('name = "x"', r"needs a \[zoo\] table or \[\[sources\]\]"),
        ('[zoo]\nkinds = "vae"', r"\[zoo\] kinds must be a list"),
        ('[[sources]]\nname = "a"', "needs name and path"),
    ],
)
def test_bad_recipes_are_refused_with_their_label(text, message):
    with pytest.raises(AttribError, match=message) as info:
        Recipe.parse(text, base=".", label="mine.toml")
    assert str(info.value).startswith("mine.toml:")


def test_unreadable_recipe_file(tmp_path):
    with pytest.raises(AttribError, match="cannot read recipe"):
        Recipe.load(tmp_path / "missing.toml")


def test_plan_from_folders_cuts_to_shots_in_sorted_order(tmp_path):
    _folders(tmp_path)
    (tmp_path / "r.toml").write_text(FOLDER_RECIPE)
    recipe = Recipe.load(tmp_path / "r.toml")
    assert (recipe.name, recipe.encoder, recipe.shots) == ("folders", "residual", 4)
    plan = {entry["name"]: entry for entry in recipe.plan()}
    assert list(plan) == ["alpha", "beta", "gamma"]
    # paths are relative to the recipe file, files are the first `shots` in sorted order
    assert [f.name for f in plan["alpha"]["files"]] == ["000.png", "001.png", "002.png", "003.png"]
    assert [f.name for f in plan["beta"]["files"]] == ["000.png", "001.png"]  # its own shots
    assert (plan["alpha"]["family"], plan["alpha"]["metadata"]) == ("gan", {"vendor": "x"})
    assert plan["gamma"]["family"] is None and plan["gamma"]["metadata"] == {}
    # a source folder that does not exist is named in the error
    (tmp_path / "r.toml").write_text(FOLDER_RECIPE.replace("data/src2", "data/nowhere"))
    with pytest.raises(AttribError, match="recipe source gamma: .*nowhere does not exist"):
        Recipe.load(tmp_path / "r.toml").plan()


def test_recipe_build_and_show_through_the_cli(tmp_path):
    _folders(tmp_path)
    (tmp_path / "r.toml").write_text(FOLDER_RECIPE)
    runner, cli, g = CliRunner(), build_cli(), str(tmp_path / "g")
    r = runner.invoke(cli, ["recipe", "show", str(tmp_path / "r.toml"), "--json"])
    assert r.exit_code == 0, r.output
    assert [s["name"] for s in json.loads(r.output)["sources"]] == ["alpha", "beta", "gamma"]

    r = runner.invoke(cli, ["recipe", "build", str(tmp_path / "r.toml"), "-g", g, "--json"])
    assert r.exit_code == 0, r.output
    built = json.loads(r.output)
    assert built["recipe"] == "folders"
    assert {s["source"]: s["enrolled"] for s in built["sources"]} == {"alpha": 4, "beta": 2, "gamma": 4}

    r = runner.invoke(cli, ["-g", g, "sources", "list", "--json"])
    assert r.exit_code == 0, r.output
    listed = r.output.strip()
    rows = json.loads(listed) if listed.startswith("[") else [json.loads(line) for line in listed.splitlines()]
    assert {row["name"]: row["family"] for row in rows} == {"alpha": "gan", "beta": "diffusion", "gamma": "other"}

    # the gallery attributes a held-back image of a source to it
    r = runner.invoke(cli, ["-g", g, "identify", "--json", str(tmp_path / "data" / "src0" / "005.png")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["candidates"][0]["source"] == "alpha"


ZOO_RECIPE = """
name = "tinyzoo"
[zoo]
generators = 2
kinds = ["tconv-k4", "nearest"]
images = 3
size = 32
[enroll]
shots = 2
unknown = ["nearest-s0"]
"""


def test_zoo_recipe_builds_once_and_plans_its_sources(tmp_path, monkeypatch):
    recipe = Recipe.parse(ZOO_RECIPE, base=tmp_path, label="tiny.toml")
    data = recipe.zoo_dir()
    manifest = json.loads((data / "zoo.json").read_text())
    assert [s["name"] for s in manifest["sources"]] == ["real", "tconv-k4-s0", "nearest-s0"]
    assert manifest["settings"]["images_per_source"] == 3 and manifest["settings"]["size"] == 32

    plan = {entry["name"]: entry for entry in recipe.plan()}
    assert list(plan) == ["real", "tconv-k4-s0"]  # the unknown is left out
    tconv = plan["tconv-k4-s0"]
    assert tconv["family"] == "gan" and tconv["metadata"] == {"arch": "tconv", "zoo_seed": 0}
    assert [f.name for f in tconv["files"]] == ["00000.png", "00001.png"]

    # the same recipe reuses the cached build; another setting makes another one
    from attrib import zoo

    monkeypatch.setattr(zoo, "build_zoo", lambda *a, **k: pytest.fail("a cached zoo was rebuilt"))
    assert Recipe.parse(ZOO_RECIPE, base=tmp_path, label="again.toml").zoo_dir() == data
    other = Recipe.parse(ZOO_RECIPE.replace("images = 3", "images = 4"), base=tmp_path, label="other.toml")
    with pytest.raises(pytest.fail.Exception, match="rebuilt"):
        other.zoo_dir()


def test_shipped_demo_recipe_is_consistent():
    """The demo's held-out unknowns are sources its zoo makes, and every enrolled kind has a
    held-out sibling of the same architecture only where the recipe says so."""
    from attrib.zoo import default_zoo

    demo = Recipe.builtin("demo")
    assert demo.name == "demo" and demo.shots == 5 and not demo.sources
    names = [spec.name for spec in default_zoo(demo.zoo["generators"], demo.zoo["kinds"])]
    assert set(demo.unknown) <= set(names)
    enrolled = [n for n in names if n not in demo.unknown]
    assert len(enrolled) == 10 and all(n.endswith("-s0") for n in enrolled)
    assert all(n.endswith("-s1") and n.replace("-s1", "-s0") in enrolled for n in demo.unknown)
