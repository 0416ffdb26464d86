"""Lineage (issue 15, part 1): sources in trees, identify answering the deepest sure node.

Tree operations and the walk are tested on crafted embeddings (a toy encoder, exact geometry);
the fallback to the parent on zoo images (one generator enrolled as two leaves: the closest two
leaves can be); eval's per-level figures, the CLI, the migration and the HTTP API beside them."""

import json
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner

from attrib import openset
from attrib.cli import build_cli
from attrib.encoders import Encoder
from attrib.errors import AttribError, GalleryError, UnknownSource
from attrib.evaluate import Dataset, load_tree, run_protocol
from attrib.gallery import Gallery, MemoryGallery, SampleRecord, lineage, prototypes
from attrib.gallery.lineage import Tree

from .conftest import synthetic, write_png

DIM = 16


class Toy(Encoder):
    """An encoder stand-in for arrays made here: a plain impostor prior, no near-impostor floor."""

    name = "toy"
    dim = DIM

    @property
    def calibration(self):
        return {"impostor": {"mu": 0.0, "sigma": 0.2, "n": 200.0}}

    def config(self):
        return {"dim": self.dim}

    def _embed_batch(self, images):  # pragma: no cover - never called
        raise NotImplementedError


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def cluster(centre, n, spread, seed):
    rng = np.random.default_rng(seed)
    return unit(centre + spread * rng.normal(size=(n, DIM)))


def axes():
    return np.eye(DIM, dtype=np.float32)


def recs(name, n, offset=0):
    return [SampleRecord(f"{name}-{i + offset}", origin=f"{name}/{i + offset}.png") for i in range(n)]


DELIBERATE = axes()[0] + 0.05 * axes()[1]
DREAMSHAPER = axes()[0] + 0.05 * axes()[2]


@pytest.fixture
def tree_gallery(tmp_path):
    """diffusion > sd15 > {deliberate2, dreamshaper} (two close leaves), plus sdxl (diffusion) and
    stylegan (gan), both roots."""
    e = axes()
    g = Gallery(tmp_path / "g", encoder=Toy())
    g.add_node("sd15", family="diffusion")
    g.enroll("deliberate2", cluster(DELIBERATE, 8, 0.12, 1), recs("d", 8), parent="sd15")
    g.enroll("dreamshaper", cluster(DREAMSHAPER, 8, 0.12, 2), recs("s", 8), parent="sd15")
    g.enroll("sdxl", cluster(e[3], 8, 0.12, 3), recs("x", 8), family="diffusion")
    g.enroll("stylegan", cluster(e[4], 8, 0.12, 4), recs("g", 8), family="gan")
    yield g
    g.close()


# -- the tree -----------------------------------------------------------------------------------
def test_tree_paths_subtrees_and_cycles():
    t = Tree({"sd15": None, "d2": "sd15", "d2x": "d2", "gan1": None}, {"sd15": "diffusion", "d2": "other", "gan1": "gan"})
    assert t.active and t.lineage("d2x") == ["diffusion", "sd15", "d2", "d2x"]  # the family is the root's
    assert t.up("d2x") == ["d2x", "d2", "sd15", "family:diffusion"] and t.lineage("family:gan") == ["gan"]
    assert t.members("family:diffusion") == {"sd15", "d2", "d2x"} and t.subtree("d2") == ["d2", "d2x"]
    assert t.ordered() == ["sd15", "d2", "d2x", "gan1"] and t.inner_keys() == ["d2", "sd15", "family:diffusion", "family:gan"]
    with pytest.raises(GalleryError, match="a cycle"):
        t.check_parent("sd15", "d2x")
    with pytest.raises(GalleryError, match="unknown parent 'nope'"):
        t.check_parent("x", "nope")
    assert not Tree({"a": None, "b": None}, {"a": "gan", "b": "gan"}).active


def test_add_enroll_move_remove_keep_the_tree_and_calibration(tree_gallery):
    g = tree_gallery
    rows = {r["name"]: r for r in g.sources()}
    assert rows["sd15"]["samples"] == 0 and rows["sd15"]["children"] == ["deliberate2", "dreamshaper"]
    assert rows["deliberate2"]["parent"] == "sd15" and rows["deliberate2"]["family"] == "diffusion"  # inherited
    assert rows["deliberate2"]["lineage"] == ["diffusion", "sd15", "deliberate2"]
    assert rows["sdxl"]["lineage"] == ["diffusion", "sdxl"] and rows["sdxl"]["parent"] is None
    # the inner node is calibrated over its subtree; the families too
    cal = g.calibration()
    assert {"sd15", "family:diffusion", "family:gan"} <= set(cal.models)
    # refused, each in one line, leaving the gallery as it was
    before = g.sources()
    for call, msg in [
        (lambda: g.move_source("sd15", "deliberate2"), "a cycle"),
        (lambda: g.move_source("sd15", "sd15"), "a cycle"),
        (lambda: g.add_node("x", parent="nope"), "unknown parent 'nope'"),
        (lambda: g.enroll("y", cluster(axes()[5], 2, 0.1, 5), recs("y", 2), parent="nope"), "unknown parent 'nope'"),
        (lambda: g.enroll("z", cluster(axes()[5], 2, 0.1, 5), recs("z", 2), parent="sd15", family="gan"), "cannot be of family 'gan'"),
        (lambda: g.enroll("sdxl", cluster(axes()[3], 2, 0.1, 6), recs("x2", 2), parent="sd15"), "move it with"),
        (lambda: g.add_node("sdxl", family="diffusion"), "exists already"),
        (lambda: g.enroll("deliberate2", cluster(axes()[5], 2, 0.1, 7), recs("d2", 2), family="gan"), "its family follows its tree"),
        (lambda: g.remove_source("sd15"), r"has 2 child source\(s\) \(deliberate2, dreamshaper\): pass --reparent"),
    ]:
        with pytest.raises(GalleryError, match=msg) as exc:
            call()
        assert "\n" not in str(exc.value)
    assert g.sources() == before
    # move: the subtree follows, and takes the new tree's family
    g.add_node("sdx", family="gan")
    g.move_source("sd15", "sdx")
    assert g.tree().lineage("dreamshaper") == ["gan", "sdx", "sd15", "dreamshaper"]
    assert {r["name"]: r["family"] for r in g.sources()}["deliberate2"] == "gan"
    g.move_source("sd15", None)  # a root again: keeps its family
    assert g.tree().lineage("dreamshaper") == ["gan", "sd15", "dreamshaper"]
    # remove: reparent hangs the children under the removed node's parent (here: roots)
    g.remove_source("sd15", children="reparent")
    assert g.tree().parents["deliberate2"] is None and "sd15" not in g.calibration().models
    g.add_node("line", family="diffusion")
    g.move_source("deliberate2", "line")
    assert g.remove_source("line", children="cascade") == 8
    assert "deliberate2" not in g.source_names() and g.stats()["samples"] == 24


def test_identify_answers_the_deepest_sure_node(tree_gallery):
    g = tree_gallery
    e = axes()
    # images of the two fine-tunes: their samples look alike, so a leaf is sure only of images
    # very like its own samples; their line, whose impostors are the other sources, is sure
    q = np.concatenate([cluster(DELIBERATE, 5, 0.12, 9), cluster(DREAMSHAPER, 5, 0.12, 10)])
    decisions = g.identify(q, top_k=3)
    thr = g.thresholds()
    assert thr["sd15"] < min(thr["deliberate2"], thr["dreamshaper"])
    line = [d for d in decisions if d.source == "sd15"]
    assert len(line) >= 4 and all(d.candidates[0]["source"] in ("deliberate2", "dreamshaper") for d in line)
    for d in line:
        assert d.lineage == ["diffusion", "sd15"] and d.score >= d.threshold == pytest.approx(thr["sd15"])
        assert d.candidates[0]["score"] < thr[d.candidates[0]["source"]]  # the leaf alone was not sure
        assert d.to_dict()["lineage"] == ["diffusion", "sd15"]
    # a sure leaf: the leaf, and its whole path
    leaf = g.identify(cluster(DELIBERATE, 1, 0.01, 9), top_k=3)[0]
    assert leaf.source == "deliberate2" and leaf.lineage == ["diffusion", "sd15", "deliberate2"]
    # a root leaf's lineage is [family, leaf]; something far from everything is unknown
    assert g.identify(cluster(e[4], 1, 0.05, 9))[0].lineage == ["gan", "stylegan"]
    far = g.identify(unit(e[9])[None])[0]
    assert far.source is None and far.lineage == []


def test_walk_up_falls_back_to_the_family_and_to_unknown():
    t = Tree({"line": None, "a": "line", "b": "line"}, {"line": "gan", "a": "gan", "b": "gan"})
    q = unit(np.arange(DIM, dtype=np.float32))
    vectors = {"line": q[None], "family:gan": q[None]}

    def walk(thresholds):
        d = openset.Decision(None, 0.3, thresholds["a"], 0.01, [{"source": "a", "score": 0.3}, {"source": "b", "score": 0.29}], 0.01)
        return lineage.walk_up(d, q, t, vectors, thresholds, [("a", 0.3), ("b", 0.29)])

    fam = walk({"a": 0.5, "line": 1.5, "family:gan": 0.9})
    assert fam.source == "gan" and fam.lineage == ["gan"] and fam.score == pytest.approx(1.0) and fam.threshold == 0.9
    none = walk({"a": 0.5, "line": 1.5, "family:gan": 1.5})
    assert none.source is None and none.lineage == []


def test_flat_gallery_answers_as_before(tmp_path):
    """No parent anywhere: the flat search and decision, unchanged; only lineage is added."""
    e = axes()
    g = Gallery(tmp_path / "g", encoder=Toy())
    for i in range(4):
        g.enroll(f"s{i}", cluster(e[i], 6, 0.3, i), recs(f"s{i}", 6), family="gan")
    q = np.concatenate([cluster(e[i], 3, 0.5, 10 + i) for i in range(5)])
    got = g.identify(q, top_k=3)
    want = prototypes.identify(g.prototype_index(), g.calibration(), q, 3, g.far)
    assert [(d.source, d.score, d.threshold, d.margin, d.candidates) for d in got] == [
        (d.source, d.score, d.threshold, d.margin, d.candidates) for d in want
    ]
    assert any(d.source is None for d in got) and any(d.source for d in got)
    assert all(d.lineage == ([] if d.source is None else ["gan", d.source]) for d in got)
    assert set(g.calibration().models) == {"s0", "s1", "s2", "s3"} and g.setting("family_calibration") is None


def test_verify_at_an_inner_node(tree_gallery):
    g = tree_gallery
    e = axes()
    fine_tunes = np.concatenate([cluster(DELIBERATE, 3, 0.12, 20), cluster(DREAMSHAPER, 3, 0.12, 21)])
    assert all(r["accepted"] for r in g.verify(fine_tunes, "sd15"))
    assert all(r["threshold"] == pytest.approx(g.thresholds(sources=["sd15"])["sd15"], abs=1e-6) for r in g.verify(fine_tunes, "sd15"))
    assert not any(r["accepted"] for r in g.verify(cluster(e[4], 3, 0.12, 22), "sd15"))
    assert not any(r["accepted"] for r in g.verify(cluster(e[3], 3, 0.12, 23), "sd15"))
    # a family is a level too (no source has its name): its whole family
    fam = g.verify(np.concatenate([fine_tunes, cluster(e[3], 3, 0.12, 24)]), "diffusion")
    assert all(r["accepted"] for r in fam) and fam[0]["threshold"] == pytest.approx(
        g.thresholds(sources=["family:diffusion"])["family:diffusion"], abs=1e-6
    )
    assert not any(r["accepted"] for r in g.verify(cluster(e[4], 3, 0.12, 25), "diffusion"))
    with pytest.raises(UnknownSource, match="no source named 'nope'"):
        g.verify(fine_tunes, "nope")
    g.add_node("empty", family="gan")
    with pytest.raises(GalleryError, match="has no samples"):
        g.verify(fine_tunes, "empty")


def test_migration_from_an_m003_gallery(tmp_path):
    from attrib.gallery import schema

    g = Gallery(tmp_path / "g", encoder=Toy())
    g.enroll("a", cluster(axes()[0], 4, 0.1, 0), recs("a", 4), family="gan")
    g.enroll("b", cluster(axes()[1], 4, 0.1, 1), recs("b", 4), family="gan")
    q = cluster(axes()[0], 2, 0.1, 3)
    before = [d.to_dict() for d in g.identify(q)]
    g.close()
    db = sqlite3.connect(tmp_path / "g" / "gallery.db")
    with db:
        db.execute("drop index idx_sources_parent")
        db.execute("alter table sources drop column parent")
        db.execute("delete from _sqlite_migrations where name = 'm004_lineage'")
    db.close()
    g = Gallery(tmp_path / "g", encoder=Toy(), create=False)
    assert schema.applied(g.store.db)[-1] == "m004_lineage" and not g.tree().active
    assert [d.to_dict() for d in g.identify(q)] == before
    g.add_node("line", family="gan")
    g.move_source("a", "line")
    assert g.tree().lineage("a") == ["gan", "line", "a"]


# -- zoo images: one generator enrolled as two leaves --------------------------------------------------
@pytest.fixture(scope="module")
def zoo_embedded():
    from attrib import zoo
    from attrib.encoders import get_encoder

    enc = get_encoder(None)
    specs = zoo.default_zoo(3)
    return enc, {s.name: enc.embed(list(zoo.generate(s, 16, size=128))) for s in specs}


def test_zoo_close_leaves_fall_back_to_their_parent(tmp_path, zoo_embedded):
    """The closest two leaves can be: one zoo generator's images enrolled as two fine-tunes of one
    line. Each leaf's impostors hold its sibling's samples, which look like its own, so a leaf
    alone is rarely sure; their line, whose impostors are the other generators, is."""
    enc, emb = zoo_embedded
    a, b, c = emb
    line = emb[a]
    g = Gallery(tmp_path / "g", encoder=enc)
    g.add_node("line", family="gan")
    g.enroll("ft1", line[:5], recs("ft1", 5), parent="line")
    g.enroll("ft2", line[5:10], recs("ft2", 5), parent="line")
    g.enroll(b, emb[b][:5], recs(b, 5), family="other")
    g.enroll(c, emb[c][:5], recs(c, 5), family="diffusion")
    decisions = g.identify(line[10:], top_k=3)
    assert all(d.candidates[0]["source"] in ("ft1", "ft2") for d in decisions)
    thr = g.thresholds()
    assert thr["line"] < min(thr["ft1"], thr["ft2"])
    assert sum(d.source == "line" for d in decisions) >= 3, [(d.source, d.score, d.threshold) for d in decisions]
    for d in decisions:
        assert d.source in ("line", "ft1", "ft2", "gan", None)
        assert d.lineage == (g.tree().lineage(d.source) if d.source else [])
        if d.source == "line":
            assert d.lineage == ["gan", "line"] and d.candidates[0]["score"] < thr[d.candidates[0]["source"]] <= d.score + 1
    assert not any(d.source in ("line", "ft1", "ft2", "gan") for d in g.identify(emb[b][5:]))
    assert sum(r["accepted"] for r in g.verify(line[10:], "line")) >= 3
    # the same images enrolled flat: no tree, no fallback, the leaves' own decisions
    flat = Gallery(tmp_path / "flat", encoder=enc)
    flat.enroll("ft1", line[:5], recs("ft1", 5), family="gan")
    flat.enroll("ft2", line[5:10], recs("ft2", 5), family="gan")
    flat.enroll(b, emb[b][:5], recs(b, 5), family="other")
    flat.enroll(c, emb[c][:5], recs(c, 5), family="diffusion")
    assert sum(d.source is not None for d in flat.identify(line[10:])) < sum(d.source is not None for d in decisions)


# -- eval: figures per level ---------------------------------------------------------------------
def _tree_dataset():
    """Three lines of two leaves each; the leaves of a line nearly the same (only their line is
    sure), lines apart; 12 images per leaf."""
    e = axes()
    emb, names = [], []
    for li in range(3):
        for leaf in range(2):
            emb.append(cluster(e[li] + 0.05 * e[6 + leaf], 12, 0.15, 10 * li + leaf))
            names += [f"l{li}-s{leaf}"] * 12
    shas = [f"{i:08x}" for i in range(len(names))]
    parents = {f"l{li}-s{leaf}": f"l{li}" for li in range(3) for leaf in range(2)} | {f"l{li}": None for li in range(3)}
    return Dataset(names, shas, shas, np.concatenate(emb)), Tree(parents, {f"l{li}": "gan" for li in range(3)})


def test_eval_reports_accuracy_per_level():
    ds, tree = _tree_dataset()
    known = ["l0-s0", "l0-s1", "l1-s0", "l1-s1"]
    unknown = ["l2-s0", "l2-s1"]
    flat = run_protocol(ds, Toy(), known, unknown, shots=(3,), trials=2)
    res = run_protocol(ds, Toy(), known, unknown, shots=(3,), trials=2, tree=tree)
    summary = res["shots"]["3"]
    lv = summary.pop("levels")
    assert summary == flat["shots"]["3"]  # the flat figures are the flat gallery's
    kn, un = lv["known"], lv["unknown"]
    assert set(kn["top1"]) == set(kn["decided"]) == {"family", "line", "leaf"}
    assert kn["top1"]["family"] == kn["top1"]["line"] == 1.0 and kn["top1"]["leaf"] < 0.9  # the leaves are near twins
    assert kn["decided"]["line"] >= 0.9 and kn["wrong_at_leaf"] > 0.1 and kn["wrong_at_leaf_right_line"] >= 0.9
    assert un["wrong_node"] <= 0.1 and un["right_line"] == 0.0  # line l2 is never enrolled
    from attrib.evaluate import format_levels

    assert "wrong->line" in format_levels(res)


def test_eval_trees_from_a_zoo_and_a_tsv(tmp_path):
    (tmp_path / "zoo.json").write_text(
        json.dumps({"sources": [{"name": "vae-s0", "family": "diffusion"}, {"name": "real", "family": "real"}]})
    )
    t = load_tree(tmp_path, "zoo")
    assert t.lineage("vae-s0") == ["diffusion", "vae", "vae-s0"] and t.lineage("real") == ["real", "real"]
    (tmp_path / "t.tsv").write_text("# name\tparent\tfamily\nsd15\t\tdiffusion\ndeliberate2\tsd15\n")
    assert load_tree(tmp_path, tmp_path / "t.tsv", ["other1"]).lineage("deliberate2") == ["diffusion", "sd15", "deliberate2"]
    (tmp_path / "c.tsv").write_text("a\tb\nb\ta\n")
    with pytest.raises(AttribError, match="its own ancestor"):
        load_tree(tmp_path, tmp_path / "c.tsv")


def test_memory_gallery_with_a_tree_answers_as_the_gallery(tmp_path):
    ds, tree = _tree_dataset()
    g = Gallery(tmp_path / "g", encoder=Toy())
    for li in range(2):
        g.add_node(f"l{li}", family="gan")
    batches = []
    for s in ["l0-s0", "l0-s1", "l1-s0", "l1-s1"]:
        idx = [i for i, n in enumerate(ds.names) if n == s][:4]
        g.enroll(s, ds.embeddings[idx], [SampleRecord(ds.shas[i]) for i in idx], parent=s.split("-")[0])
        batches.append((s, ds.embeddings[idx], [ds.shas[i] for i in idx]))
    from attrib.evaluate import trial_tree

    m = MemoryGallery.enroll(batches, Toy().calibration, tree=trial_tree(tree, [b[0] for b in batches]))
    q = ds.embeddings[4::5]
    assert [(d.source, round(d.score, 5), round(d.threshold, 5), d.lineage) for d in g.identify(q)] == [
        (d.source, round(d.score, 5), round(d.threshold, 5), d.lineage) for d in m.identify(q)
    ]


# -- the CLI ---------------------------------------------------------------------------------------
def test_cli_sources_add_enroll_parent_list_move_remove(tmp_path):
    cli, run = build_cli(), CliRunner()
    gal = ["--gallery", str(tmp_path / "g")]
    dirs = {}
    for s in range(3):
        dirs[s] = [str(write_png(tmp_path / f"d{s}" / f"{i}.png", synthetic(s, i))) for i in range(4)]

    def ok(*args):
        r = run.invoke(cli, [*gal, *args])
        assert r.exit_code == 0, r.output
        return r.output

    ok("enroll", "--generator", "root0", "--family", "gan", "--encoder", "residual", *dirs[0])
    assert "Added 'sd15': diffusion > sd15." in ok("sources", "add", "sd15", "--family", "diffusion")
    ok("enroll", "--generator", "deliberate2", "--parent", "sd15", *dirs[1])
    ok("enroll", "--generator", "dreamshaper", "--parent", "sd15", *dirs[2])
    text = ok("sources", "list")
    assert "diffusion (family)" in text and "\n  sd15 " in text and "\n    deliberate2 " in text and "\n  root0 " in text
    assert "      lineage: diffusion > sd15 > deliberate2\n" in ok("sources", "show", "deliberate2")
    rows = {r["name"]: r for r in json.loads(ok("sources", "list", "--json"))}
    assert rows["deliberate2"]["lineage"] == ["diffusion", "sd15", "deliberate2"] and rows["sd15"]["samples"] == 0
    for args, msg in [
        (["enroll", "--generator", "x", "--parent", "nope", *dirs[0]], "Error: unknown parent 'nope'"),
        (["sources", "move", "sd15", "--parent", "dreamshaper"], "a cycle"),
        (["sources", "remove", "sd15", "--yes"], "pass --reparent"),
    ]:
        r = run.invoke(cli, [*gal, *args])
        assert r.exit_code == 1 and msg in r.output and r.output.count("\n") == 1, r.output
    assert "Moved 'dreamshaper': diffusion > dreamshaper." in ok("sources", "move", "dreamshaper", "--root")
    ident = json.loads(ok("identify", "--json", "--no-detectors", dirs[1][0]).splitlines()[0])
    assert ident["lineage"] == ([] if ident["source"] is None else json.loads(ok("sources", "show", ident["source"], "--json"))["lineage"])
    assert "Removed 'sd15', 'deliberate2' (4 samples)." in ok("sources", "remove", "sd15", "--recursive", "--yes")
    assert [r["name"] for r in json.loads(ok("sources", "list", "--json"))] == ["dreamshaper", "root0"]


def test_cli_eval_with_a_tree_prints_and_writes_the_levels(tmp_path):
    for s in range(4):
        for i in range(6):
            write_png(tmp_path / "data" / f"src{s}" / f"{i}.png", synthetic(s, i))
    (tmp_path / "tree.tsv").write_text("lineA\t\tgan\nsrc0\tlineA\nsrc1\tlineA\nsrc2\tlineA\n")
    args = ["eval", str(tmp_path / "data"), "--encoder", "residual", "--shots", "2", "--trials", "1", "--unknown", "src2"]
    r = CliRunner().invoke(
        build_cli(), [*args, "--tree", str(tmp_path / "tree.tsv"), "--out", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")]
    )
    assert r.exit_code == 0, r.output
    assert "per level" in r.output and "wrong->line" in r.output
    levels = json.loads((tmp_path / "r.json").read_text())["shots"]["2"]["levels"]
    assert 0 <= levels["known"]["decided"]["family"] <= 1 and 0 <= levels["unknown"]["right_line"] <= 1
    html = (tmp_path / "r.html").read_text()
    assert 'id="levels"' in html and "Lineage: accuracy per level" in html and 'id="levels-table"' in html
    bad = CliRunner().invoke(build_cli(), [*args, "--tree", "zoo"])
    assert bad.exit_code == 2 and "no readable zoo.json" in bad.output


# -- HTTP and the web page -------------------------------------------------------------------------
def test_http_tree_routes_fields_and_page(tmp_path):
    from fastapi.testclient import TestClient

    from .test_web import AUTH, images, make_app

    Gallery(tmp_path / "gal").close()
    with TestClient(make_app(tmp_path / "gal")) as c:
        assert c.put("/v1/sources/sd15", json={"family": "diffusion"}).status_code == 401  # a write
        r = c.put("/v1/sources/sd15", json={"family": "diffusion"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["lineage"] == ["diffusion", "sd15"] and r.json()["samples"] == 0
        assert c.put("/v1/sources/sd15", json={"family": "diffusion"}, headers=AUTH).status_code == 409
        for name, s in (("deliberate2", 1), ("dreamshaper", 2)):
            r = c.post(f"/v1/sources/{name}/samples", files=images(s, 6), data={"parent": "sd15"}, headers=AUTH)
            assert r.status_code == 200, r.text
        r = c.post("/v1/sources/x/samples", files=images(3, 2), data={"parent": "nope"}, headers=AUTH)
        assert r.status_code == 422 and "unknown parent 'nope'" in r.json()["error"]
        c.post("/v1/sources/other/samples", files=images(0, 6), data={"family": "gan"}, headers=AUTH)
        rows = {r["name"]: r for r in c.get("/v1/sources").json()}
        assert rows["deliberate2"]["lineage"] == ["diffusion", "sd15", "deliberate2"] and rows["sd15"]["children"] == [
            "deliberate2",
            "dreamshaper",
        ]
        assert c.get("/v1/sources/deliberate2").json()["parent"] == "sd15"
        # identify: every row has its lineage, the path to the decided node
        rows = c.post("/v1/identify", files=images(1, 3, start=10) + images(5, 1), data={"detectors": "none"}).json()
        for row in rows:
            assert isinstance(row["lineage"], list) and (row["source"] is not None or row["lineage"] == [])
            if row["source"] is not None:
                assert row["lineage"][-1] == row["source"] and row["lineage"][0] in ("diffusion", "gan")
        assert any(row["source"] in ("deliberate2", "sd15", "diffusion") for row in rows[:3])
        # verify at the inner node
        v = c.post("/v1/verify", files=images(2, 2, start=10), data={"generator": "sd15"}).json()
        assert all(r["source"] == "sd15" and r["score"] is not None for r in v)
        # move and remove
        r = c.put("/v1/sources/sd15/parent", json={"parent": "deliberate2"}, headers=AUTH)
        assert r.status_code == 422 and "a cycle" in r.json()["error"]
        r = c.put("/v1/sources/dreamshaper/parent", json={"parent": None}, headers=AUTH)
        assert r.json() == {"source": "dreamshaper", "parent": None, "lineage": ["diffusion", "dreamshaper"]}
        c.put("/v1/sources/dreamshaper/parent", json={"parent": "sd15"}, headers=AUTH)
        # the web page: the tree on the sources view, the path on an identify result
        html = c.get("/sources").text
        assert 'class="card lineage-tree"' in html and '<li class="depth-1" data-node="deliberate2">' in html
        assert "diffusion › sd15 › deliberate2" in html and "its descendants' stand for it" in html
        frag = c.post("/ui/identify?fragment=1", files=images(1, 1, start=12)).text
        assert 'class="lineage"' in frag and '<span class="node">diffusion</span>' in frag
        r = c.delete("/v1/sources/sd15", headers=AUTH)
        assert r.status_code == 409 and "children=reparent" in r.json()["error"] and "\n" not in r.json()["error"]
        r = c.delete("/v1/sources/sd15?children=reparent", headers=AUTH)
        assert r.json() == {"source": "sd15", "removed_samples": 0, "children": "reparent"}
        assert {r["name"]: r["parent"] for r in c.get("/v1/sources").json()} == {"deliberate2": None, "dreamshaper": None, "other": None}
        assert "lineage" in c.get("/openapi.json").json()["components"]["schemas"]["IdentifyRow"]["properties"]
