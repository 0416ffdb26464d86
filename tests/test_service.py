"""attrib serve: every endpoint and error in-process, the micro-batcher, snapshots, shutdown, and
schemathesis against the OpenAPI document. No network: in-process clients, or 127.0.0.1."""

import asyncio
import io
import json
import logging
import os
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from attrib import hookimpl
from attrib.cli import build_cli
from attrib.encoders import get_encoder
from attrib.gallery import Gallery, SampleRecord
from attrib.imageio import load_image
from attrib.plugins import make_plugin_manager
from attrib.service import ServiceConfig, create_app
from attrib.service.batching import EncoderThreads, MicroBatcher
from attrib.service.intake import label
from attrib.service.store import snapshot

from .conftest import PATTERN_ENCODER, png_bytes, synthetic, write_png

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _enroll(g: Gallery, name: str, source: int, n: int = 5, family="gan"):
    imgs = [load_image(png_bytes(synthetic(source, i)), name=f"{name}-{i}.png") for i in range(n)]
    emb = g.encoder.embed([im.pixels for im in imgs])
    records = [SampleRecord(im.sha256, im.width, im.height, im.format, im.origin) for im in imgs]
    return g.enroll(name, emb, records, family=family)


@pytest.fixture
def gallery(tmp_path):
    path = tmp_path / "gal"
    g = Gallery(path, encoder=get_encoder(PATTERN_ENCODER))
    for s in range(3):
        _enroll(g, f"src{s}", s)
    g.close()
    return path


def make_app(gallery, keys=(KEY,), monkeypatch=None, **settings):
    settings.setdefault("encode_processes", 0)  # threads: quick to start; one test covers processes
    cfg = ServiceConfig(gallery=gallery, **settings)
    cfg._keys = tuple(keys)
    return create_app(cfg)


@pytest.fixture
def client(gallery):
    with TestClient(make_app(gallery)) as c:
        yield c


def files_for(*pairs):
    """(name, bytes[, content type]) -> multipart file tuples for the field 'image'."""
    out = []
    for p in pairs:
        name, data, ctype = (p + ("image/png",))[:3]
        out.append(("image", (name, data, ctype)))
    return out


def query(source, index=7, name=None):
    return (name or f"q{source}-{index}.png", png_bytes(synthetic(source, index)))


def assert_error(r, status, fragment=""):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "status", "code", "request_id"}
    assert body["status"] == status and "\n" not in body["error"] and fragment in body["error"], body
    assert body["request_id"] == r.headers["x-request-id"]
    return body


# -- reads ---------------------------------------------------------------------------------------
def test_health_and_request_ids(client):
    r = client.get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["gallery"]["sources"] == 3 and body["writes_enabled"] is True
    assert "path" not in body["gallery"]  # the server's file system is not shown
    assert len(r.headers["x-request-id"]) == 32
    assert client.get("/v1/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    bad = client.get("/v1/health", headers={"X-Request-ID": "forged id; " * 10})
    assert len(bad.headers["x-request-id"]) == 32 and "forged" not in bad.headers["x-request-id"]


def test_identify_matches_cli_json(client, tmp_path):
    pairs = [query(s) for s in range(3)] + [query(5, 1)]
    r = client.post("/v1/identify", files=files_for(*pairs), data={"top_k": "2"})
    assert r.status_code == 200, r.text
    rows = r.json()
    paths = [write_png(tmp_path / "q" / name, np.asarray(Image.open(io.BytesIO(data)))) for name, data in pairs]
    gal = client.app.state.attrib.config.gallery
    cli = CliRunner().invoke(build_cli(), ["identify", "-g", str(gal), "--json", "--top-k", "2", *map(str, paths)])
    assert cli.exit_code == 0, cli.output
    cli_rows = [json.loads(line) for line in cli.output.splitlines()]
    assert [row["path"] for row in rows] == [name for name, _ in pairs]
    for row, cli_row in zip(rows, cli_rows):
        assert set(row) == set(cli_row)
        assert {k: v for k, v in row.items() if k != "path"} == {k: v for k, v in cli_row.items() if k != "path"}
    assert [row["source"] for row in rows[:3]] == ["src0", "src1", "src2"]
    assert all(len(row["candidates"]) == 2 for row in rows)


def test_cli_and_http_identify_answer_with_one_function(client, tmp_path, monkeypatch):
    """Not two implementations that happen to agree: both answer through attrib.report.identify_rows."""
    from attrib import report

    answers = []

    def spy(items, decisions, evidence=None, judge=None):
        rows = real(items, decisions, evidence, judge)
        answers.append(rows)
        return rows

    real = report.identify_rows
    monkeypatch.setattr(report, "identify_rows", spy)
    name, data = query(1, 3)
    path = write_png(tmp_path / name, synthetic(1, 3))
    r = client.post("/v1/identify", files=files_for((name, data), ("bad.png", b"junk")), data={"top_k": "3"})
    gal = str(client.app.state.attrib.config.gallery)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    cli = CliRunner().invoke(build_cli(), ["identify", "-g", gal, "--json", "--top-k", "3", str(path), str(bad)])
    assert r.status_code == 200 and cli.exit_code == 0, (r.text, cli.output)
    assert len(answers) == 2  # one call each
    http_rows, cli_rows = answers
    assert r.json() == http_rows and [json.loads(line) for line in cli.output.splitlines()] == cli_rows

    def strip(rows):  # paths differ (a file name, a path), and error lines name them
        return [{k: v for k, v in row.items() if k not in ("path", "error")} for row in rows]

    assert strip(http_rows) == strip(cli_rows) and http_rows[0]["source"] == "src1" and http_rows[1]["error"]


def test_identify_per_image_errors_and_bad_input(client):
    good = query(1)
    r = client.post("/v1/identify", files=files_for(("broken.png", good[1][:80]), good, ("empty.png", b"")))
    rows = r.json()
    assert r.status_code == 200 and rows[1]["source"] == "src1"
    assert rows[0]["error"].startswith("broken.png:") and rows[0]["candidates"] == [] and rows[0]["score"] is None
    assert rows[2]["error"] == "empty.png: empty file"
    tiny = png_bytes(np.full((4, 4, 3), 100, np.uint8))  # thumbnails are padded by the encoder, not refused
    rows = client.post("/v1/identify", files=files_for(good, ("tiny.png", tiny))).json()
    assert rows[0]["source"] == "src1" and rows[1]["error"] is None and rows[1]["candidates"]
    assert_error(client.post("/v1/identify", files=files_for(("a.png", b"nope"), ("b.png", b"x"))), 422, "no image could be read")
    assert_error(client.post("/v1/identify", files=files_for(good), data={"top_k": "0"}), 422, "top_k")
    assert_error(client.post("/v1/identify", files=files_for(good), data={"far": "2"}), 422, "far")
    assert_error(client.post("/v1/identify", files=files_for(good), data={"topk": "3"}), 422, "unknown field(s) topk")
    assert_error(client.post("/v1/identify", data={"top_k": "3"}, files={"other": ("a.png", good[1])}), 422, "unknown field(s) other")
    assert_error(client.post("/v1/identify", files=[("top_k", (None, b"3"))]), 422, "image is required")
    assert_error(client.post("/v1/identify", files=[("image", (None, b"not a file"))]), 422, "image: send image files")
    assert_error(
        client.post("/v1/identify", files=files_for(good) + [("top_k", ("k.txt", b"3", "text/plain"))]), 422, "top_k: a text field"
    )
    assert_error(client.post("/v1/identify", json={"image": "x"}), 415, "multipart/form-data")
    assert_error(client.post("/v1/identify", content=good[1], headers={"Content-Type": "image/png"}), 415)
    assert_error(client.post("/v1/identify", files=files_for(("notes.txt", b"hello", "text/plain"))), 415, "notes.txt")
    broken = b"--b\r\nTrue--b--\r\n"  # not multipart inside, though it says so
    assert_error(client.post("/v1/identify", content=broken, headers={"Content-Type": "multipart/form-data; boundary=b"}), 400, "malformed")
    r = client.post("/v1/identify", files=files_for(good + ("application/octet-stream",)), data={"top_k": "1", "far": "0.05"})
    assert r.status_code == 200 and len(r.json()[0]["candidates"]) == 1


def test_upload_names_are_labels_never_paths(client):
    data = png_bytes(synthetic(2, 9))
    r = client.post("/v1/identify", files=files_for(("/etc/passwd", data), ("../../gallery.db", b"not an image")))
    rows = r.json()
    assert r.status_code == 200
    assert rows[0]["path"] == "/etc/passwd" and rows[0]["source"] == "src2"  # the uploaded bytes were used
    assert rows[1]["error"] == "../../gallery.db: not an image file Pillow can read"
    assert label(None, 2) == "image2" and label("a\nb\x00.png\x7f", 0) == "a?b?.png?" and label("x" * 300, 0) == "x" * 255


def test_verify_source_and_pair_match_cli(client, tmp_path):
    same, other = query(2, 6), query(0, 6)
    r = client.post("/v1/verify", files=files_for(same, other), data={"generator": "src2"})
    assert r.status_code == 200, r.text
    rows = r.json()
    paths = [write_png(tmp_path / name, synthetic(s, 6)) for name, s in ((same[0], 2), (other[0], 0))]
    gal = str(client.app.state.attrib.config.gallery)
    cli = CliRunner().invoke(build_cli(), ["verify", "-g", gal, "--generator", "src2", "--json", *map(str, paths)])
    cli_rows = [json.loads(line) for line in cli.output.splitlines()]
    for row, cli_row in zip(rows, cli_rows):
        assert {k: v for k, v in row.items() if k != "path"} == {k: v for k, v in cli_row.items() if k != "path"}
        assert row["source"] == row["generator"] == "src2"  # generator: the documented alias
    assert rows[0]["accepted"] is True and rows[1]["accepted"] is False
    r = client.post("/v1/verify", files=files_for(same, query(2, 7)))
    pair = r.json()
    assert r.status_code == 200 and set(pair) == {"a", "b", "score", "threshold", "accepted", "far"} and pair["a"] == same[0]
    assert_error(client.post("/v1/verify", files=files_for(same)), 422, "exactly two")
    assert_error(client.post("/v1/verify", files=files_for(same, ("x.png", b"junk"))), 422, "x.png")
    assert_error(client.post("/v1/verify", files=files_for(same), data={"generator": "ghost"}), 404, "no source named 'ghost'")
    assert_error(client.post("/v1/verify", files=files_for(same), data={"generator": "bad name"}), 422, "generator")


def test_sources_list_show(client, gallery):
    r = client.get("/v1/sources")
    g = Gallery(gallery, create=False)
    assert r.status_code == 200 and r.json() == json.loads(json.dumps(g.sources()))
    assert client.get("/v1/sources", params={"far": "0.05"}).json()[0]["far"] == 0.05
    detail = client.get("/v1/sources/src1").json()
    assert detail == json.loads(json.dumps(g.source("src1"))) and len(detail["sample_list"]) == 5
    g.close()
    assert_error(client.get("/v1/sources/nobody"), 404, "no source named 'nobody'")
    assert_error(client.get("/v1/sources/bad%20name"), 422)
    assert_error(client.get("/v1/sources", params={"far": "x"}), 422, "far")
    assert_error(client.get("/v1/nothing-here"), 404, "no such endpoint")
    assert_error(client.put("/v1/identify"), 405)


# -- writes ---------------------------------------------------------------------------------------
def test_writes_need_a_valid_key(client, gallery):
    files = files_for(query(4, 1), query(4, 2))
    r = client.post("/v1/sources/new/samples", files=files)
    assert_error(r, 401, "API key")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_error(
        client.post("/v1/sources/new/samples", files=files, headers={"Authorization": "Bearer wrong-key-wrong-key"}), 401, "invalid"
    )
    assert_error(client.delete("/v1/sources/src0", headers={"X-API-Key": "nope"}), 401)
    assert_error(client.post("/v1/identify", files=files, data={"keep_unknown": "true"}), 401, "keep_unknown")
    assert client.get("/v1/sources").json()[0]["name"] == "src0"  # nothing changed
    with TestClient(make_app(gallery, keys=())) as ro:
        assert_error(ro.post("/v1/sources/new/samples", files=files, headers=AUTH), 403, "writes are disabled")
        assert ro.get("/v1/health").json()["writes_enabled"] is False


def test_enroll_remove_and_atomic_visibility(client):
    files = files_for(query(4, 1), query(4, 2), query(4, 3), ("bad.jpg", b"\xff\xd8\xffgarbage"))
    r = client.post("/v1/sources/src4/samples", files=files, data={"family": "diffusion", "meta": ["url=https://x", "v=2"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["source"], out["enrolled"], out["duplicate"], out["failed"]) == ("src4", 3, 0, 1)
    assert out["failures"][0]["path"] == "bad.jpg" and out["failures"][0]["error"]
    r = client.post("/v1/sources/src4/samples", files=files[:2], headers={"X-API-Key": KEY})
    assert r.json()["duplicate"] == 2 and r.json()["enrolled"] == 0
    detail = client.get("/v1/sources/src4").json()
    assert detail["family"] == "diffusion" and detail["metadata"] == {"url": "https://x", "v": "2"} and detail["samples"] == 3
    assert client.post("/v1/identify", files=files_for(query(4, 8))).json()[0]["candidates"][0]["source"] == "src4"
    assert_error(client.post("/v1/sources/src5/samples", files=files, data={"family": "alien"}, headers=AUTH), 422, "family")
    assert_error(client.post("/v1/sources/src5/samples", files=files, data={"meta": "novalue"}, headers=AUTH), 422, "KEY=VALUE")
    assert_error(client.post("/v1/sources/src5/samples", files=files_for(("x.png", b"x")), headers=AUTH), 422, "nothing enrolled")
    assert_error(client.post("/v1/sources/-bad/samples", files=files, headers=AUTH), 422)
    r = client.delete("/v1/sources/src4", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"source": "src4", "removed_samples": 3}
    assert_error(client.delete("/v1/sources/src4", headers=AUTH), 404)
    assert "src4" not in [s["name"] for s in client.get("/v1/sources").json()]


def test_keep_unknown_with_key(client):
    data = {"keep_unknown": "true", "far": "0.001"}
    noise = [np.random.default_rng(k).integers(0, 256, (64, 64, 3), dtype=np.uint8) for k in range(2)]
    r = client.post("/v1/identify", files=files_for(*[(f"n{k}.png", png_bytes(a)) for k, a in enumerate(noise)]), data=data, headers=AUTH)
    assert r.status_code == 200 and [row["source"] for row in r.json()] == [None, None]
    assert client.get("/v1/health").json()["gallery"]["rejected"] == 2


def test_empty_gallery_is_a_conflict(tmp_path):
    with TestClient(make_app(tmp_path / "new")) as c:  # serve creates an empty gallery
        assert c.get("/v1/sources").json() == []
        assert_error(c.post("/v1/identify", files=files_for(query(0))), 409, "no sources")
        assert c.post("/v1/sources/a/samples", files=files_for(query(0, 1), query(0, 2)), headers=AUTH).json()["enrolled"] == 2
        assert c.post("/v1/identify", files=files_for(query(0))).json()[0]["candidates"][0]["source"] == "a"


# -- bounds -----------------------------------------------------------------------------------------
def _png(w, h):
    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def test_bounds_413(gallery):
    app = make_app(gallery, max_body_bytes=300_000, max_images=3, max_pixels=500 * 500, max_request_pixels=600 * 600)
    with TestClient(app) as c:
        big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
        assert_error(c.post("/v1/identify", files=files_for(("big.png", png_bytes(big)), ("b2.png", png_bytes(big)))), 413, "byte bound")
        assert_error(c.post("/v1/identify", files=files_for(*[query(0, i) for i in range(4)])), 413, "4 images")
        assert_error(c.post("/v1/identify", files=files_for(("wide.png", _png(600, 500)))), 413, "wide.png")
        assert_error(
            c.post("/v1/identify", files=files_for(("a.png", _png(400, 400)), ("b.png", _png(400, 400)), ("c.png", _png(400, 400)))),
            413,
            "per request",
        )

        def chunks():  # no Content-Length: counted while it streams in
            yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
            for _ in range(40):
                yield b"\0" * 10_000

        r = c.post("/v1/identify", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert_error(r, 413, "byte bound")
        assert c.get("/v1/health").status_code == 200


def test_decompression_bomb_is_413(client):
    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, format="PNG")  # ~50 kB on the wire, 400 M pixels
    assert len(buf.getvalue()) < 200_000
    assert_error(client.post("/v1/identify", files=files_for(("bomb.png", buf.getvalue()))), 413, "bomb.png")


# -- plugins, metrics, logs, OpenAPI -------------------------------------------------------------------
class _RaisingHooks:
    @hookimpl
    def register_encoders(self, register):
        raise KeyError("encoders")

    @hookimpl
    def register_detectors(self, register):
        raise ValueError("detectors exploded")


def test_plugins_lists_hook_errors_on_a_fresh_app(gallery):
    """/v1/plugins calls the registration hooks before listing, as ``attrib plugins`` does, so a
    plugin whose hooks raise shows its errors in the first listing, whether it was there when the
    app started (start-up collected the detectors and encoders) or came after."""
    for include_builtin in ("true", "false"):
        for late in (False, True):
            pm = make_plugin_manager()
            if not late:
                pm.register(_RaisingHooks(), name="raising")
            with TestClient(create_app(ServiceConfig(gallery=gallery, encode_processes=0), pm)) as c:
                if late:
                    pm.register(_RaisingHooks(), name="raising")
                rows = {p["name"]: p for p in c.get("/v1/plugins", params={"all": include_builtin}).json()}
            assert rows["raising"]["hooks"] == ["register_detectors", "register_encoders"]
            assert "register_detectors: ValueError: detectors exploded" in rows["raising"]["error"], late
            assert "register_encoders: KeyError: 'encoders'" in rows["raising"]["error"], late
            assert ("attrib.default_plugins.encoders" in rows) == (include_builtin == "true")


def test_detectors_and_plugins(client):
    r = client.get("/v1/detectors")
    assert r.status_code == 200
    listed = r.json()
    assert all(set(d) >= {"name", "description", "plugin"} for d in listed)
    assert client.get("/v1/plugins").json() == []  # outside plugins are switched off in tests (ATTRIB_LOAD_PLUGINS="")
    builtins = {p["name"]: p for p in client.get("/v1/plugins", params={"all": "true"}).json()}
    assert set(builtins) == {"attrib.default_plugins.encoders", "attrib.default_plugins.detectors", "attrib.default_plugins.verdict"}
    assert builtins["attrib.default_plugins.verdict"]["registers"] == {
        "verdict_rules": ["c2pa", "watermark", "metadata", "fingerprint", "detectors"]
    }
    encoders, detectors = builtins["attrib.default_plugins.encoders"], builtins["attrib.default_plugins.detectors"]
    assert encoders["builtin"] and encoders["hooks"] == ["register_encoders"] and encoders["error"] is None
    assert {"residual", "fp-wccn2"} <= set(encoders["registers"]["encoders"])
    assert detectors["builtin"] and detectors["hooks"] == ["register_detectors"] and detectors["error"] is None
    assert set(detectors["registers"]["detectors"]) == {d["name"] for d in listed} >= {"spectral", "npr"}
    cli = CliRunner().invoke(build_cli(), ["plugins", "--all", "--json"])
    assert cli.exit_code == 0 and json.loads(cli.output) == list(builtins.values())  # the CLI's answer, as said
    assert_error(client.post("/v1/identify", files=files_for(query(0)), data={"detectors": "no-such-detector"}), 422, "no-such-detector")
    for spec in ("all", None):  # the server's default is all detectors, as the CLI's
        r = client.post("/v1/identify", files=files_for(query(0), ("bad.png", b"x")), data={"detectors": spec} if spec else {})
        row, bad = r.json()
        assert r.status_code == 200 and [e["detector"] for e in row["detectors"]] == [d["name"] for d in listed]
        assert bad["detectors"] == []
        for ev in row["detectors"]:
            assert set(ev) >= {"detector", "verdict", "score", "source_hint", "details", "error"}
    assert client.post("/v1/identify", files=files_for(query(0)), data={"detectors": "none"}).json()[0]["detectors"] == []
    if listed:
        one = listed[0]["name"]
        r = client.post("/v1/identify", files=files_for(query(0)), data={"detectors": one})
        assert [e["detector"] for e in r.json()[0]["detectors"]] == [one]


def test_metrics_prometheus_text(client):
    client.post("/v1/identify", files=files_for(query(0)))
    client.get("/v1/sources/nobody")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'route="/v1/identify",status="200"} 1' in text
    assert 'route="/v1/sources/{name}",status="404"} 1' in text
    assert "attrib_http_request_duration_seconds_bucket" in text and 'le="+Inf"' in text
    assert "attrib_encoder_batch_size_count" in text and "attrib_encoder_queue_images" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


def test_access_log_is_json_and_keyless(client, caplog):
    caplog.set_level(logging.INFO, logger="attrib.access")
    r = client.post("/v1/sources/x/samples", files=files_for(query(0)), headers={"Authorization": "Bearer wrong-key-wrong-key"})
    client.post("/v1/sources/y/samples", files=files_for(query(0, 3)), headers=AUTH)
    rec = [r_ for r_ in caplog.records if r_.name == "attrib.access"]
    assert rec[0].fields["request_id"] == r.headers["x-request-id"] and rec[0].fields["status"] == 401
    assert rec[0].fields["route"] == "/v1/sources/{name}/samples" and rec[0].fields["duration_ms"] >= 0
    from attrib.service.logs import JsonFormatter

    line = JsonFormatter().format(rec[0])
    assert json.loads(line)["method"] == "POST"
    everything = "\n".join(JsonFormatter().format(x) for x in caplog.records)
    assert KEY not in everything and "wrong-key-wrong-key" not in everything


def test_openapi_documents_the_stable_api(client):
    doc = client.get("/openapi.json").json()
    want = {
        ("get", "/v1/health"),
        ("get", "/v1/sources"),
        ("get", "/v1/sources/{name}"),
        ("post", "/v1/identify"),
        ("post", "/v1/verify"),
        ("post", "/v1/sources/{name}/samples"),
        ("delete", "/v1/sources/{name}"),
        ("get", "/v1/detectors"),
        ("get", "/v1/plugins"),
        ("get", "/metrics"),
    }
    have = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert want <= have
    for method, path in [("post", "/v1/identify"), ("post", "/v1/sources/{name}/samples")]:
        op = doc["paths"][path][method]
        assert "multipart/form-data" in op["requestBody"]["content"]
        assert {"413", "415", "422"} <= set(op["responses"])
    assert {"401", "403"} <= set(doc["paths"]["/v1/sources/{name}"]["delete"]["responses"])


# -- machinery: batching, snapshots, encoder processes, shutdown ------------------------------------------
class SlowEncoder:
    dim = 4

    def __init__(self, delay=0.05):
        self.delay, self.batches = delay, []

    def embed(self, images):
        self.batches.append(len(images))
        time.sleep(self.delay)
        if any(img.shape[0] == 13 for img in images):
            raise ValueError("cannot take 13-pixel images")
        return np.ones((len(images), self.dim), np.float32)


def test_microbatcher_shares_batches_and_prioritises():
    enc = SlowEncoder()

    async def main():
        b = MicroBatcher(EncoderThreads(enc, 1), batch_size=32, bulk_batch_size=4)
        await b.start()
        img = np.zeros((8, 8, 3), np.uint8)
        first = asyncio.ensure_future(b.embed([img]))
        await asyncio.sleep(0.01)  # the encoder is now busy with the first image
        bulk = asyncio.ensure_future(b.embed([img] * 10, bulk=True))
        rest = [asyncio.ensure_future(b.embed([img])) for _ in range(20)]
        out = await asyncio.gather(first, bulk, *rest)
        bad = await b.embed([img, np.zeros((13, 8, 3), np.uint8), img])
        await b.stop()
        return out, bad

    out, bad = asyncio.run(main())
    assert all(len(o) == 1 for o in out[2:]) and len(out[1]) == 10
    assert enc.batches[:2] == [1, 20]  # the 20 interactive images in one batch, before any bulk one
    assert max(enc.batches[2:5]) <= 4  # bulk images in small batches
    assert isinstance(bad[1], ValueError) and not isinstance(bad[0], Exception) and not isinstance(bad[2], Exception)


def test_snapshot_reads_see_one_generation(gallery):
    reader, writer = Gallery(gallery, create=False), Gallery(gallery, create=False)
    try:
        with snapshot(reader):
            before = reader.generation
            _enroll(writer, "late", 9)
            assert reader.generation == before and "late" not in reader.source_names()
        assert reader.generation > before and "late" in reader.source_names()
    finally:
        reader.close()
        writer.close()


def test_identify_stays_consistent_while_enrolling(gallery):
    app = make_app(gallery)
    errors = []

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

                async def identify_loop():
                    for i in range(12):
                        r = await c.post("/v1/identify", files=files_for(query(i % 3, 20 + i)))
                        if r.status_code != 200:
                            errors.append(r.text)

                async def enroll_loop():
                    for k in range(4):
                        r = await c.post(
                            f"/v1/sources/new{k}/samples", files=files_for(*[query(10 + k, j) for j in range(3)]), headers=AUTH
                        )
                        if r.status_code != 200:
                            errors.append(r.text)

                await asyncio.gather(identify_loop(), identify_loop(), enroll_loop())
                return (await c.get("/v1/health")).json()

    health = asyncio.run(main())
    assert errors == []
    assert health["gallery"]["sources"] == 7 and health["gallery"]["samples"] == 15 + 12


def test_encoder_processes_and_a_crash(gallery):
    import os
    import signal

    with TestClient(make_app(gallery, encode_processes=1)) as c:
        runner = c.app.state.attrib.encoder_runner
        assert runner.kind == "processes"
        r = c.post("/v1/identify", files=files_for(query(1), query(2)))
        assert r.status_code == 200 and [row["source"] for row in r.json()] == ["src1", "src2"]
        for pid in list(runner.executor._processes):  # the encoder process dies (OOM killer, say)
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        r = c.post("/v1/identify", files=files_for(query(1)))
        assert r.status_code in (200, 503), r.text  # 503 for the batch that was lost, never a 500
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
        r = c.post("/v1/identify", files=files_for(query(1)))
        assert r.status_code == 200 and r.json()[0]["source"] == "src1"  # a fresh process took over


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_graceful_shutdown_finishes_in_flight_requests(live_server):
    app, port, server, thread = live_server
    state = app.state.attrib
    real = state.encoder.embed

    def slow(images):
        time.sleep(1.0)
        return real(images)

    state.encoder.embed = slow  # requests now take a second: they are in flight when we stop
    results = []

    def call():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as h:
            results.append(h.post("/v1/identify", files=files_for(query(1))).status_code)

    callers = [threading.Thread(target=call) for _ in range(3)]
    for t in callers:
        t.start()
    deadline = time.time() + 20
    while state.metrics.in_flight < 3 and time.time() < deadline:  # all three are being handled
        time.sleep(0.02)
    assert state.metrics.in_flight == 3
    server.should_exit = True  # what SIGTERM / Ctrl-C do
    for t in callers:
        t.join(30)
    thread.join(30)
    assert results == [200, 200, 200] and not thread.is_alive()


# -- the command ------------------------------------------------------------------------------------
def test_serve_command_checks_settings(tmp_path, monkeypatch):
    run = CliRunner().invoke
    cli = build_cli()
    r = run(cli, ["serve", "--help"])
    assert r.exit_code == 0 and "--api-key-file" in r.output and "--workers" in r.output
    monkeypatch.setenv("ATTRIB_API_KEY", "short")
    r = run(cli, ["-g", str(tmp_path / "g"), "serve"])
    assert r.exit_code == 1 and "at least 16 characters" in r.output and "short" not in r.output.replace("shorter", "")
    monkeypatch.delenv("ATTRIB_API_KEY")
    empty = tmp_path / "keys"
    empty.write_text("# no keys here\n")
    r = run(cli, ["-g", str(tmp_path / "g"), "serve", "--api-key-file", str(empty)])
    assert r.exit_code == 1 and "holds no key" in r.output
    assert run(cli, ["serve", "--api-key-file", str(tmp_path / "missing")]).exit_code == 2
    r = run(cli, ["-g", str(tmp_path / "g"), "serve", "--detectors", "bogus"])
    assert r.exit_code == 1 and "--detectors: unknown detector(s) bogus" in r.output
    r = run(cli, ["-g", str(tmp_path / "g"), "serve", "--encoder", "nope"])
    assert r.exit_code == 1 and "unknown encoder 'nope'" in r.output


def test_config_keys_never_in_repr_or_env(tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    keys.write_text(f"# comment\n{KEY}\n")
    monkeypatch.setenv("ATTRIB_API_KEY", "another-key-0123456789")
    cfg = ServiceConfig(gallery=tmp_path, api_key_file=keys).load_keys()
    assert cfg.api_keys == (KEY, "another-key-0123456789")
    assert KEY not in repr(cfg) and KEY not in cfg.to_env() and KEY not in json.dumps(cfg.describe())


def test_worker_count_travels_in_the_config(tmp_path, monkeypatch):
    """--workers N reaches each worker through ServiceConfig (its environment hand-over), and the
    encoder processes are shared out by it."""
    cfg = ServiceConfig(gallery=tmp_path, workers=4)
    monkeypatch.setenv("ATTRIB_SERVICE_CONFIG", cfg.to_env())
    again = ServiceConfig.from_env()
    assert again.workers == 4 and again.encoder_processes() == max(1, min(4, os.cpu_count() or 1) // 4)
    assert ServiceConfig(gallery=tmp_path, workers=4, encode_processes=2).encoder_processes() == 2
    with pytest.raises(Exception, match="workers must be at least 1"):
        ServiceConfig(gallery=tmp_path, workers=0)


# -- schemathesis ---------------------------------------------------------------------------------------
@pytest.fixture
def live_server(gallery):
    """The app under uvicorn on 127.0.0.1 (a thread); yields (app, port, server, thread)."""
    import uvicorn

    app = make_app(gallery)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, timeout_graceful_shutdown=20)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield app, port, server, thread
    server.should_exit = True
    thread.join(30)


def test_oversized_body_is_refused_unread_and_the_connection_closed(live_server):
    port = live_server[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /v1/identify HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 999999999\r\n\r\n"
        )
        head = s.recv(65536).decode("latin-1").lower()
        assert head.startswith("http/1.1 413") and "connection: close" in head
        assert s.recv(100) == b""  # closed: the 1 GB is never read


def test_schemathesis_against_openapi(live_server):
    """Generated requests (valid and invalid) for every documented operation: no 5xx, only
    documented status codes, content types and response shapes."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    port = live_server[1]
    examples = int(os.environ.get("ATTRIB_SCHEMATHESIS_EXAMPLES", "5"))  # per operation and mode; more for a deeper look
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=examples, deadline=None, phases=[Phase.generate], database=None, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                # "schema-valid data is accepted" cannot hold for uploads: no schema says "bytes that
                # decode as an image", so random bytes are rightly refused (422); every other check runs
                case.call_and_validate(headers=AUTH, timeout=30, excluded_checks=[positive_data_acceptance])

            try:
                run()
            except Unsatisfiable:  # no invalid request exists for an operation without parameters
                pass
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {type(exc).__name__}: {str(exc)[:800]}")
    assert not failures, "\n\n".join(failures)


def test_enroll_stores_views_and_identify_routes_jpeg_uploads(client, gallery, monkeypatch):
    """The API enrolls each sample in the jpeg view too (as `attrib enroll`), and scores a JPEG
    upload in it and a PNG upload in the plain view (attrib.views), through the shared search."""
    import io

    from PIL import Image

    r = client.post("/v1/sources/src4/samples", files=files_for(query(4, 1), query(4, 2), query(4, 3)), headers=AUTH)
    assert r.status_code == 200 and r.json()["enrolled"] == 3
    g = Gallery(gallery, create=False)
    assert g.store.count("sample_views") == 3 and g.store.views() == ["jpeg"]
    g.close()
    asked = []
    real = Gallery.identify

    def spy(self, embeddings, top_k=5, far=None, views=None):
        asked.append(list(views) if views is not None else None)
        return real(self, embeddings, top_k, far, views)

    monkeypatch.setattr(Gallery, "identify", spy)
    buf = io.BytesIO()
    Image.fromarray(synthetic(4, 8)).save(buf, "JPEG", quality=70)
    r = client.post("/v1/identify", files=files_for(("a.jpg", buf.getvalue(), "image/jpeg"), query(4, 9)))
    assert r.status_code == 200, r.text
    assert asked == [["jpeg", None]]
    assert r.json()[0]["candidates"][0]["source"] == "src4"
    assert [row["view"] for row in r.json()] == ["jpeg", None]
