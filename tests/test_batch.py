"""attrib batch: inputs, the gallery snapshot, the worker, resumable outputs, and the command on
Ray (local, started once for the module) against ``attrib identify --json`` on zoo images."""

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from attrib.batch import IDENTIFY_FIELDS, RUN_FIELDS, BatchOptions, Identifier, InputError, collect_inputs, open_output, read_results
from attrib.batch.driver import OutputMismatch, run_batch
from attrib.batch.rows import finish, rows_to_table
from attrib.cli import build_cli
from attrib.gallery import Gallery
from attrib.gallery.snapshot import GallerySnapshot
from attrib.pipeline import embed_items, load_many

from .conftest import png_bytes, synthetic, write_png


def _gallery(path, source_dirs, encoder="residual"):
    g = Gallery(path, encoder=encoder)
    for name in ("src0", "src1", "src2"):
        items, emb = embed_items(g.encoder, load_many(sorted(source_dirs[name].iterdir())[:5]))
        g.enroll(name, emb, [it.record for it in items], family="real" if name == "src2" else "gan")
    return g


def test_snapshot_answers_as_the_gallery_and_pickles(tmp_path, source_dirs):
    g = _gallery(tmp_path / "g", source_dirs)
    snap = GallerySnapshot.from_gallery(g)
    assert snap.generation == g.generation and snap.encoder_id == g.encoder.id and snap.camera_sources == ("src2",)
    assert snap.thresholds == g.thresholds() and not snap.vectors.flags.writeable
    queries = [sorted(source_dirs[f"src{s}"].iterdir())[6] for s in range(4)]
    _, emb = embed_items(g.encoder, load_many(queries))
    again = pickle.loads(pickle.dumps(snap))  # what Ray does to ship it
    assert "gallery" not in again._cache
    for far in (None, 0.2):
        want = [d.to_dict() for d in g.identify(emb, top_k=3, far=far)]
        assert [d.to_dict() for d in snap.gallery().identify(emb, top_k=3, far=far)] == want
        assert [d.to_dict() for d in again.gallery().identify(emb, top_k=3, far=far)] == want


def test_inputs_folder_glob_list_tables_and_uris(tmp_path, source_dirs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = [str(p.relative_to(tmp_path)) for p in sorted((tmp_path / "data").rglob("*.png"))]
    labels, uris = collect_inputs(["data"])
    assert labels == folder and uris == [str(tmp_path / p) for p in folder]
    assert collect_inputs(["data/src1/*.png"])[0] == [p for p in folder if p.startswith("data/src1/")]
    assert collect_inputs(["data/**/00[0-1].png"])[0] == [p for p in folder if p.endswith(("000.png", "001.png"))]
    (tmp_path / "list.txt").write_text("# images\ndata/src0/001.png\n\ndata/src0/000.png\ndata/src0/001.png\n")
    assert collect_inputs(["list.txt"])[0] == ["data/src0/001.png", "data/src0/000.png"]  # each once, in order
    pq.write_table(pa.table({"file": folder[:3], "x": [1, 2, 3]}), tmp_path / "t.parquet")
    assert collect_inputs(["t.parquet"], path_column="file")[0] == folder[:3]
    (tmp_path / "t.csv").write_text("path,label\n" + "".join(f"{p},a\n" for p in folder[:2]))
    assert collect_inputs(["t.csv"])[0] == folder[:2]
    with pytest.raises(InputError, match="no column 'path'"):
        collect_inputs(["t.parquet"])
    with pytest.raises(InputError, match="no such file"):
        collect_inputs(["nothere"])
    with pytest.raises(InputError, match="no file matches"):
        collect_inputs(["data/*.jpg"])
    # through pyarrow's filesystems (what s3://, gs://, hdfs:// take): a folder, a glob, a list
    uri = (tmp_path / "data").as_uri()
    labels, uris = collect_inputs([uri])
    assert labels == uris == [(tmp_path / p).as_uri() for p in folder]
    assert collect_inputs([uri + "/src3/*.png"])[0] == [(tmp_path / p).as_uri() for p in folder if "/src3/" in p]
    assert collect_inputs([(tmp_path / "list.txt").as_uri()])[0] == ["data/src0/001.png", "data/src0/000.png"]


def test_worker_rows_are_identify_rows_and_bad_images_are_error_rows(tmp_path, source_dirs):
    g = _gallery(tmp_path / "g", source_dirs)
    snap = GallerySnapshot.from_gallery(g)
    good = sorted(source_dirs["src1"].iterdir())[6]
    (tmp_path / "bad.png").write_bytes(png_bytes(synthetic(0, 0))[:100])
    worker = Identifier(snap, BatchOptions(top_k=2, detector_names=("spectral",)))
    labels = ["good.png", "bad.png", "missing.png", "uri.png", "missing-uri.png"]
    uris = [str(good), str(tmp_path / "bad.png"), str(tmp_path / "missing.png"), good.as_uri(), (tmp_path / "nope.png").as_uri()]
    table = worker(pa.table({"path": labels, "uri": uris}))
    rows = read_rows(table)
    assert [r["path"] for r in rows] == labels and list(rows[0]) == list(IDENTIFY_FIELDS + RUN_FIELDS)
    assert rows[0]["source"] == "src1" and len(rows[0]["candidates"]) == 2 and rows[0]["error"] is None
    assert [d["detector"] for d in rows[0]["detectors"]] == ["spectral"]
    assert rows[3]["candidates"] == rows[0]["candidates"]  # read through pyarrow's filesystem: the same answer
    assert rows[1]["error"].startswith("bad.png: ") and rows[2]["error"] == "missing.png: no such file"
    assert rows[4]["error"] == "missing-uri.png: no such file"
    for r in rows[1:3] + rows[4:]:
        assert r["source"] is None and r["candidates"] == [] and r["detectors"] == [] and r["verdict"]["label"] == "undetermined"
    assert {r["gallery_generation"] for r in rows} == {g.generation}


def test_an_image_that_breaks_the_encoder_is_an_error_row(tmp_path, source_dirs, monkeypatch):
    snap = GallerySnapshot.from_gallery(_gallery(tmp_path / "g", source_dirs))
    worker = Identifier(snap, BatchOptions(detectors=False))
    files = sorted(source_dirs["src0"].iterdir())[5:7]
    odd = write_png(tmp_path / "odd.png", synthetic(0, 9, size=48))
    real_embed = worker.encoder.embed

    def embed(images):  # an encoder that cannot take 48-pixel images
        if any(im.shape[0] == 48 for im in images):
            raise RuntimeError("the encoder broke\non this image")
        return real_embed(images)

    monkeypatch.setattr(worker.encoder, "embed", embed)
    paths = [str(files[0]), str(odd), str(files[1])]
    rows = worker.identify(paths, paths)
    assert [r["error"] for r in rows] == [None, f"{odd}: RuntimeError: the encoder broke", None]
    assert rows[0]["source"] == rows[2]["source"] == "src0"


def read_rows(table):
    from attrib.batch import table_to_rows

    return list(table_to_rows(table))


def _rows(paths, generation=1):
    return finish([{"path": p, "source": "a", "score": 0.5, "threshold": 0.4, "margin": 0.1, "candidates": [{"source": "a", "score": 0.5}],
                    "lineage": ["other", "a"], "error": None, "view": None, "detectors": [], "verdict": {"label": "undetermined"}}
                   for p in paths], generation, "enc")  # fmt: skip


def test_outputs_keep_whole_parts_and_cut_half_lines(tmp_path):
    out = open_output(str(tmp_path / "r.parquet"))
    out.write(rows_to_table(_rows(["a", "b"])))
    (tmp_path / "r.parquet" / ".part-x-000009.parquet.tmp").write_bytes(b"PAR1 half a part")  # a killed run's
    again = open_output(str(tmp_path / "r.parquet"))
    assert [r["path"] for r in again.existing()] == ["a", "b"]
    assert not list((tmp_path / "r.parquet").glob(".*"))
    again.write(rows_to_table(_rows(["c"])))
    assert [r["path"] for r in read_results(str(tmp_path / "r.parquet"))] == ["a", "b", "c"]

    jl = tmp_path / "r.jsonl"
    out = open_output(str(jl))
    out.write(rows_to_table(_rows(["a", "b"])))
    out.close()
    jl.write_bytes(jl.read_bytes() + b'{"path": "c", "sou')  # killed mid-line
    again = open_output(str(jl))
    assert [r["path"] for r in again.existing()] == ["a", "b"]
    again.write(rows_to_table(_rows(["c"])))
    again.close()
    rows = read_results(str(jl))
    assert [r["path"] for r in rows] == ["a", "b", "c"] and rows[2]["candidates"] == [{"source": "a", "score": 0.5}]
    with pytest.raises(OutputMismatch, match="generation"):
        snap = GallerySnapshot("g", 2, "enc", "residual", 0.01, (), np.zeros((0, 4), np.float32), (), {}, {}, {})
        run_batch(["d"], ["d"], snap, BatchOptions(), open_output(str(jl)))

    # parts written by an older attrib (without the view and lineage columns): refused, not mixed
    old_parts = tmp_path / "old.parquet"
    open_output(str(old_parts)).write(rows_to_table(_rows(["a"])).drop_columns(["view", "lineage"]))
    with pytest.raises(OutputMismatch, match="lineage, view.*new --out"):
        open_output(str(old_parts)).existing()


# --------------------------------------------------------------------------- on Ray, on zoo images

#: zoo images queried: 4 sources (real + 3 generators) x QUERIES (+ 2 corrupt files); 200 as the
#: issue asks, at 128 px
QUERIES = 50
#: the zoo gallery's encoder: the previous default, numpy only, ~5x faster than fp-joint1 on 2
#: cores (this test runs identify and batch on the same 200 images; fp-joint1 made it 2-3 minutes
#: on a shared machine). Workers get it from the snapshot, as any non-default encoder.
ENCODER = "fp-wccn2"


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (starting one takes seconds); batch uses an initialised Ray as it is."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def zoo_job(tmp_path):
    from attrib import zoo

    cli = build_cli()
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    gallery = tmp_path / "gal"
    queries = tmp_path / "queries"
    for spec in [zoo.REAL] + zoo.default_zoo(3):
        images = zoo.generate(spec, 5 + QUERIES, size=128)
        enroll = [write_png(tmp_path / "enroll" / spec.name / f"{i:02d}.png", im) for i, im in enumerate(images[:5])]
        family = "real" if spec.name == "real" else "gan"
        assert run("-g", gallery, "enroll", "--encoder", ENCODER, "--generator", spec.name, "--family", family, *enroll).exit_code == 0
        for i, im in enumerate(images[5:]):
            write_png(queries / spec.name / f"{i:02d}.png", im)
    (queries / "corrupt.png").write_bytes(png_bytes(synthetic(0, 0))[:200])
    (queries / "text.jpg").write_text("not an image")
    return run, gallery, queries


def test_batch_gives_identify_answers_resumes_without_duplicates(ray_local, zoo_job, tmp_path, monkeypatch):
    run, gallery, queries = zoo_job
    monkeypatch.chdir(tmp_path)
    r = run("-g", gallery, "identify", "--json", "queries")
    assert r.exit_code == 0, r.output
    want = {row["path"]: row for row in map(json.loads, r.output.splitlines())}
    assert len(want) == 4 * QUERIES + 2

    # a killed job: part of the output is there (the first images, as an earlier run wrote them)
    first = sorted(want)[:40]
    (tmp_path / "some.txt").write_text("\n".join(first))
    r = run("-g", gallery, "batch", "some.txt", "--out", "out.parquet", "--json", "--flush-rows", "16", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["images"] == 40
    r = run("-g", gallery, "batch", "queries", "--out", "out.parquet", "--json", "--workers", "2")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["skipped"] == 40 and summary["images"] == len(want) - 40 and summary["workers"] == 2
    assert summary["total"] == {"images": len(want), "errors": 2, "sources": summary["total"]["sources"]}
    got = read_results("out.parquet")
    assert sorted(row["path"] for row in got) == sorted(want)  # every image once: no duplicates
    decided = {}
    for row in got:
        ref = want[row["path"]]
        assert list(row) == list(IDENTIFY_FIELDS + RUN_FIELDS)
        assert row["gallery_generation"] == summary["gallery"]["generation"]
        assert row["source"] == ref["source"] and row["error"] == ref["error"] and row["verdict"]["label"] == ref["verdict"]["label"]
        assert [c["source"] for c in row["candidates"]] == [c["source"] for c in ref["candidates"]]
        for key in ("score", "threshold", "margin"):
            assert (row[key] is None) == (ref[key] is None) and (row[key] is None or abs(row[key] - ref[key]) <= 1e-5)
        assert np.allclose([c["score"] for c in row["candidates"]], [c["score"] for c in ref["candidates"]], atol=1e-5)
        assert [d["detector"] for d in row["detectors"]] == [d["detector"] for d in ref["detectors"]]
        decided[row["source"] or "unknown"] = decided.get(row["source"] or "unknown", 0) + (row["error"] is None)
    assert summary["total"]["sources"] == {k: v for k, v in decided.items() if v}
    assert sum(row["source"] == row["path"].split("/")[1] for row in got) >= QUERIES  # the zoo is attributed
    errors = {row["path"]: row["error"] for row in got if row["error"]}
    assert set(errors) == {"queries/corrupt.png", "queries/text.jpg"}

    r = run("-g", gallery, "batch", "queries", "--out", "out.parquet", "--json")  # all done: nothing to do
    assert r.exit_code == 0 and json.loads(r.stdout)["images"] == 0 and len(read_results("out.parquet")) == len(want)

    # JSON Lines, detectors chosen, attribution only
    r = run("-g", gallery, "batch", "queries/real/0*.png", "queries/corrupt.png", "--out", "o.jsonl", "--detectors", "npr", "--json")
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(lines) == 11 and {d["detector"] for row in lines for d in row["detectors"]} == {"npr"}
    for row in lines:
        ref = want[row["path"]]
        assert row["source"] == ref["source"] and list(row) == list(IDENTIFY_FIELDS + RUN_FIELDS)


def test_batch_exit_codes(ray_local, zoo_job, tmp_path, monkeypatch):
    run, gallery, queries = zoo_job
    monkeypatch.chdir(tmp_path)
    assert run("-g", gallery, "batch", "nothere", "--out", "o.parquet").exit_code == 2
    assert run("-g", gallery, "batch", "queries", "--out", "o.parquet", "-d", "nosuch").exit_code == 2
    assert run("-g", tmp_path / "empty", "batch", "queries", "--out", "o.parquet").exit_code == 1
    r = run("-g", gallery, "batch", "queries/corrupt.png", "queries/text.jpg", "--out", "bad.parquet", "--no-detectors")
    assert r.exit_code == 1 and "no image could be read" in r.output
    assert len(read_results("bad.parquet")) == 2  # the error rows are kept all the same
    (queries / "late.png").write_bytes(png_bytes(synthetic(1, 1)))
    assert run("-g", gallery, "enroll", "--generator", "late", queries / "late.png").exit_code == 0
    r = run("-g", gallery, "batch", "queries", "--out", "bad.parquet")  # the gallery moved on since
    assert r.exit_code == 1 and "generation" in r.output
