"""The web page of ``attrib serve`` (issue 12, part 2).

Two layers: the HTML routes, the Content-Security-Policy, escaping, thumbnails and the map,
in-process with TestClient (always run); and end-to-end runs in a real headless Chromium driven by
Playwright against a server on 127.0.0.1 (skipped, with the reason, only where Debian's
``chromium`` or the ``playwright`` package is missing: ``.ci/run`` installs both)."""

import io
import os
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from attrib.cli import build_cli
from attrib.encoders import get_encoder
from attrib.gallery import THUMBS_PER_SOURCE, Gallery
from attrib.imageio import THUMB_SIDE
from attrib.service import ServiceConfig, create_app
from attrib.service.routes.web import readable

from .conftest import PATTERN_ENCODER, png_bytes, synthetic, write_png

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHROMIUM = os.environ.get("ATTRIB_TEST_CHROMIUM", "/usr/bin/chromium")


def make_app(gallery, keys=(KEY,)):
    cfg = ServiceConfig(gallery=gallery, encode_processes=0)
    cfg._keys = tuple(keys)
    return create_app(cfg)


def images(source: int, n: int, start: int = 0, prefix: str = "s"):
    return [("image", (f"{prefix}{source}-{i}.png", png_bytes(synthetic(source, i)), "image/png")) for i in range(start, start + n)]


def enroll_over_http(client, name, source, n=8, **data):
    r = client.post(f"/v1/sources/{name}/samples", files=images(source, n), data={"family": "gan", **data}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def client(tmp_path):
    Gallery(tmp_path / "gal", encoder=get_encoder(PATTERN_ENCODER)).close()
    with TestClient(make_app(tmp_path / "gal")) as c:
        for s in range(3):
            enroll_over_http(c, f"src{s}", s)
        yield c


# -- pages and their policy ------------------------------------------------------------------------
PAGES = ["/", "/sources", "/enroll"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_html_under_a_strict_csp(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = {d.split()[0]: d.split()[1:] for d in r.headers["content-security-policy"].split(";") if d.strip()}
    assert csp["script-src"] == ["'self'"] and csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in r.headers["content-security-policy"] and "'unsafe-eval'" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    html = r.text
    # no inline script, handler or style: the policy would block them, and nothing needs them
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert not re.search(r"\son[a-z]+\s*=", html) and " style=" not in html
    # every asset comes from this server
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("/", "#")), url
    for asset in re.findall(r'(?:src|href)="(/static/[^"]*)"', html):
        assert client.get(asset).status_code == 200, asset
    assert '<html lang="en">' in html and 'name="viewport"' in html


def test_api_answers_keep_their_own_headers(client):
    """The page's policy is the page's: the API and its Swagger page are as they were."""
    assert "content-security-policy" not in client.get("/v1/health").headers
    assert client.get("/openapi.json").status_code == 200
    assert not any(p.startswith(("/ui", "/sources", "/enroll")) or p == "/" for p in client.get("/openapi.json").json()["paths"])


def test_name_pattern_of_the_page_is_the_gallery_s():
    from attrib.service.routes.web import NAME_PATTERN
    from attrib.sources import NAME_RE

    for name in ["sdxl", "a.b_c+d-e", "-x", "x y", "x" * 128, "x" * 129, "a/b", "é"]:
        assert bool(re.fullmatch(NAME_PATTERN, name)) == bool(NAME_RE.match(name)), name


def test_every_label_names_a_control(client):
    for path in PAGES:
        html = client.get(path).text
        ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\sid="([^"]+)"', html))
        labelled = set(re.findall(r'<label for="([^"]+)"', html))
        assert ids <= labelled, (path, ids - labelled)


def test_sources_page_lists_sources_with_thumbnails(client):
    html = client.get("/sources").text
    for s in range(3):
        assert f'data-source="src{s}"' in html
    ids = re.findall(r'src="/ui/thumbnails/(\d+)"', html)
    assert len(ids) == 3 * THUMBS_PER_SOURCE  # 8 enrolled each, the first 6 kept
    r = client.get(f"/ui/thumbnails/{ids[0]}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and max(img.size) <= THUMB_SIDE and len(r.content) < 16_000
    assert client.get("/ui/thumbnails/999999").status_code == 404
    assert "expected TAR" in html and "threshold" in html


def test_thumbnails_stay_bounded_per_source(client):
    r = client.post("/v1/sources/src0/samples", files=images(0, 4, start=20), headers=AUTH)
    assert r.json()["enrolled"] == 4
    with Gallery(client.app.state.attrib.config.gallery, create=False) as g:
        assert len(g.store.thumbnail_ids()["src0"]) == THUMBS_PER_SOURCE
        assert g.stats()["samples"] == 3 * 8 + 4


def test_cli_enroll_keeps_thumbnails_too(tmp_path):
    files = [str(write_png(tmp_path / "d" / f"{i}.png", synthetic(4, i))) for i in range(3)]
    r = CliRunner().invoke(build_cli(), ["-g", str(tmp_path / "g"), "enroll", "--generator", "x", *files])
    assert r.exit_code == 0, r.output
    with Gallery(tmp_path / "g", create=False) as g:
        ids = g.store.thumbnail_ids()["x"]
        assert len(ids) == 3 and Image.open(io.BytesIO(g.store.thumbnail(ids[0]))).size == (64, 64)


def test_older_gallery_upgrades_without_thumbnails(tmp_path):
    """A gallery from before the thumbnail step opens, gains the column, and its page says so."""
    import sqlite_utils

    from attrib.gallery import schema

    Gallery(tmp_path / "g").close()
    with TestClient(make_app(tmp_path / "g")) as c:
        enroll_over_http(c, "a", 1, n=3)
    db = sqlite_utils.Database(tmp_path / "g" / "gallery.db")
    db.execute("update samples set thumbnail = null")
    db.execute("alter table samples drop column thumbnail")
    db.execute("delete from _sqlite_migrations where name = 'm003_thumbnails'")
    db.conn.commit()
    db.close()
    with Gallery(tmp_path / "g", create=False) as g:
        assert "m003_thumbnails" in schema.applied(g.store.db) and g.stats()["samples"] == 3
    with TestClient(make_app(tmp_path / "g")) as c:
        assert "no thumbnails" in c.get("/sources").text


# -- escaping --------------------------------------------------------------------------------------
def test_user_strings_are_escaped(client):
    evil = "<script>alert(1)</script>"
    enroll_over_http(client, "src0", 0, n=1, meta=[f"note={evil}", f"{evil}=x"])
    html = client.get("/sources").text
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    files = [("image", ("<img src=x onerror=alert(1)>.png", png_bytes(synthetic(1, 9)), "image/png"))]
    frag = client.post("/ui/identify?fragment=1", files=files).text
    assert "<img src=x" not in frag
    assert 'data-label="&lt;img src=x onerror=alert(1)&gt;.png"' in frag and ">&lt;img src=x onerror=alert(1)&gt;.png</h2>" in frag


def test_a_jpeg_upload_is_shown_against_the_jpeg_view(client):
    """The page says a JPEG upload was compared with JPEG copies, and draws each candidate's
    threshold of that view (the one its decision was held to)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(synthetic(1, 9)).save(buf, "JPEG", quality=70)
    files = [("image", ("q.jpg", buf.getvalue(), "image/jpeg"))] + images(1, 1, start=10, prefix="p")
    jpeg_card, png_card = client.post("/ui/identify?fragment=1", files=files).text.split("<article")[1:]
    assert "re-saved as JPEG" in jpeg_card and "re-saved as JPEG" not in png_card
    rows = client.post("/v1/identify", files=files).json()
    assert [r["view"] for r in rows] == ["jpeg", None]
    assert f"against threshold {rows[0]['threshold']:.3f}" in jpeg_card


def test_detector_details_are_readable_rows():
    rows = readable({"score": 0.123456, "peaks": list(range(20)), "c2pa": {"claim": {"generator": "X"}, "valid": True}, "none": None})
    d = dict(rows)
    assert d["score"] == "0.123" and d["c2pa.claim.generator"] == "X" and d["c2pa.valid"] == "true" and d["none"] == "–"
    assert d["peaks"].endswith("… 12 more]")


# -- identify ----------------------------------------------------------------------------------
def test_identify_fragment_shows_decision_bars_and_evidence(client):
    files = images(1, 1, start=9, prefix="q") + images(7, 1, start=0, prefix="never")
    r = client.post("/ui/identify?fragment=1", files=files, data={"top_k": "3"})
    assert r.status_code == 200 and "content-security-policy" in r.headers
    known, other = r.text.split("<article")[1:]
    assert "Made by <strong" in known and ">src1</strong>" in known
    assert known.count('<tr class="') == 3 and 'class="thr"' in known and "decided at FAR 0.01" in known
    assert "margin to the runner-up" in known
    assert ">spectral</span>" in known and ">npr</span>" in known and "<dt>statistic</dt>" in known
    assert re.search(r'data-x="-?[0-9.]+(e-?\d+)?" data-y="-?[0-9.]+', known)  # placed on the map
    assert "Made by" in other or "Unknown" in other


def test_identify_errors_are_one_line(client):
    r = client.post("/ui/identify?fragment=1", files=[("image", ("notes.bin", b"not an image", "application/octet-stream"))])
    assert r.status_code == 422 and "\n" not in r.json()["error"] and "notes.bin" in r.json()["error"]
    page = client.post("/ui/identify", files=[("image", ("notes.bin", b"not an image", "application/octet-stream"))])
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert re.search(r'<p id="identify-error" class="error" role="alert">[^<\n]*notes\.bin[^<\n]*</p>', page.text)
    r = client.post("/ui/identify?fragment=1", files=images(1, 1), data={"keep_unknown": "true"})
    assert r.status_code == 422  # the page never stores what is uploaded


def test_identify_without_script_renders_the_whole_page(client):
    r = client.post("/ui/identify", files=images(2, 1, start=9))
    assert r.status_code == 200 and "<!doctype html>" in r.text and ">src2</strong>" in r.text


def test_map_has_every_source_and_the_query_lands_near_its_source(client):
    data = client.get("/ui/map.json").json()
    assert [s["name"] for s in data["sources"]] == ["src0", "src1", "src2"]
    assert all(s["prototypes"] and len(s["samples"]) == 8 and s["family"] == "gan" for s in data["sources"])
    assert 0 < sum(data["explained"]) <= 1
    frag = client.post("/ui/identify?fragment=1", files=images(2, 1, start=12)).text
    x, y = map(float, re.search(r'data-x="([^"]+)" data-y="([^"]+)"', frag).groups())
    centres = {s["name"]: np.mean(s["samples"], axis=0) for s in data["sources"]}
    assert min(centres, key=lambda n: np.hypot(*(centres[n] - [x, y]))) == "src2"
    # the map follows the gallery
    client.delete("/v1/sources/src0", headers=AUTH)
    assert [s["name"] for s in client.get("/ui/map.json").json()["sources"]] == ["src1", "src2"]


def test_empty_gallery_pages(tmp_path):
    Gallery(tmp_path / "e").close()
    with TestClient(make_app(tmp_path / "e", keys=())) as c:
        assert "The gallery is empty" in c.get("/sources").text
        assert "refuses every write" in c.get("/enroll").text
        assert c.get("/ui/map.json").json()["sources"] == []
        r = c.post("/ui/identify?fragment=1", files=images(1, 1))
        assert r.status_code == 409 and "\n" not in r.json()["error"]


# -- in a real browser -----------------------------------------------------------------------------
def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ATTRIB_TEST_CHROMIUM)"
    return None


expect = None  # playwright's, set by the browser fixture (the package may be missing)

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``attrib serve``'s app under uvicorn on 127.0.0.1 (a free port), on a gallery of three
    synthetic sources enrolled over HTTP."""
    import httpx
    import uvicorn

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTRIB_HOME", str(tmp_path_factory.mktemp("webhome")))
        mp.setenv("ATTRIB_LOAD_PLUGINS", "")
        path = tmp_path_factory.mktemp("web") / "gal"
        # The page is under test here, not the default encoder's calibration (conftest.PATTERN_ENCODER)
        Gallery(path, encoder=get_encoder(PATTERN_ENCODER)).close()
        port = _free_port()
        srv = uvicorn.Server(uvicorn.Config(make_app(path), host="127.0.0.1", port=port, log_level="warning", access_log=False))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while not srv.started:
            assert thread.is_alive() and time.time() < deadline, "the server did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=base) as http:
            for s in range(3):
                files = images(s, 6)
                assert http.post(f"/v1/sources/src{s}/samples", files=files, data={"family": "gan"}, headers=AUTH).status_code == 200
        yield base
        srv.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def browser():
    missing = _browser_missing()
    if missing:
        pytest.skip(f"browser tests skipped: {missing}")
    from playwright.sync_api import sync_playwright

    global expect
    from playwright.sync_api import expect

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1000, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    pg.problems = []  # console errors (a CSP violation is one) and failed requests
    pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    yield pg
    ctx.close()


def upload(name: str, data: bytes, mime: str = "image/png") -> dict:
    return {"name": name, "mimeType": mime, "buffer": data}


def test_browser_identify_shows_source_and_evidence(page, server):
    page.goto(server + "/")
    page.set_input_files("#identify-files", [upload("suspect.png", png_bytes(synthetic(1, 11)))])
    page.get_by_role("button", name="Identify").click()
    result = page.locator("#results article.result")
    result.wait_for()
    assert result.locator(".file").inner_text() == "suspect.png"
    assert result.locator(".decision").inner_text().strip() == "Made by src1"
    assert "decided at FAR 0.01" in result.locator(".figures").inner_text()
    assert result.locator("table.cands tbody tr").count() == 3
    assert result.locator("tr.clears th").first.inner_text() == "src1"
    spectral = result.locator("details.ev", has_text="spectral")
    spectral.locator("summary").click()  # evidence opens on demand, by mouse or keyboard
    assert spectral.locator("dt", has_text="statistic").is_visible()
    assert result.locator("details.ev", has_text="npr").count() == 1
    page.wait_for_selector("figure.map svg polygon.query")  # the queried image is on the map
    assert page.locator("figure.map svg circle.proto").count() >= 3
    assert page.problems == [], page.problems  # no CSP violation, no script error


def test_browser_non_image_gives_one_line_error(page, server):
    page.goto(server + "/")
    page.set_input_files("#identify-files", [upload("notes.txt", b"just some text\nover two lines", "text/plain")])
    page.get_by_role("button", name="Identify").click()
    error = page.locator("#identify-error")
    error.wait_for(state="visible")
    text = error.inner_text()
    assert text.startswith("Could not identify: ") and "notes.txt" in text and "\n" not in text
    assert page.locator("#results article").count() == 0


def test_browser_enroll_needs_the_key_then_lists_the_source(page, server):
    page.goto(server + "/enroll")
    page.get_by_label("Source name").fill("newgen")
    page.get_by_label("Family").select_option("diffusion")
    page.set_input_files("#enroll-files", [upload(f"n{i}.png", png_bytes(synthetic(4, i))) for i in range(4)])
    page.get_by_role("button", name="Enroll").click()
    status = page.locator("#write-status")
    expect(status).not_to_be_empty()
    assert status.inner_text().startswith("Refused (401): ") and "API key" in status.inner_text()
    assert page.locator('#source-list tr[data-source="newgen"]').count() == 0
    # with the key, typed into the page
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Enroll").click()
    expect(status).to_have_text("Enrolled 4 images into newgen.")
    page.locator('#source-list tr[data-source="newgen"]').wait_for()
    assert "diffusion" in page.locator('#source-list tr[data-source="newgen"]').inner_text()
    # the key went nowhere but the header: no cookie, not in the address
    assert page.context.cookies() == [] and KEY not in page.url
    # the sources view lists it, with thumbnails that load
    page.goto(server + "/sources")
    card = page.locator('li.source[data-source="newgen"]')
    assert "4" in card.locator(".facts").inner_text()
    thumbs = card.locator("img")
    assert thumbs.count() == 4
    for i in range(4):
        expect(thumbs.nth(i)).to_have_js_property("naturalWidth", 64)  # loaded: 64 px images, kept as they are
    page.wait_for_selector("figure.map svg circle.proto")
    refused = [p for p in page.problems if "status of 401" in p]
    assert len(refused) == 1 and [p for p in page.problems if p not in refused] == [], page.problems


def test_browser_remove_with_the_key(page, server):
    with httpx_client(server) as http:
        assert http.post("/v1/sources/doomed/samples", files=images(5, 2), headers=AUTH).status_code == 200
    page.goto(server + "/enroll")
    page.get_by_label("API key").fill(KEY)
    page.on("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Remove doomed").click()
    expect(page.locator("#write-status")).to_have_text("Removed doomed (2 samples).")
    expect(page.locator('#source-list tr[data-source="doomed"]')).to_have_count(0)  # the list is refreshed after the message


def test_browser_sources_tree_and_identify_path(page, server):
    """Lineage (issue 15): the sources view shows the tree, an identify result the decided path."""
    with httpx_client(server) as http:
        assert http.put("/v1/sources/line", json={"family": "gan"}, headers=AUTH).status_code == 200
        r = http.post("/v1/sources/kid/samples", files=images(10, 6), data={"parent": "line"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["enrolled"] == 6, r.text
    try:
        page.goto(server + "/sources")
        tree = page.locator("section.lineage-tree")
        expect(tree.locator('li[data-node="kid"]')).to_have_class("depth-1")
        assert tree.locator('li[data-node="line"] .family').inner_text() == "gan"
        assert page.locator('li.source[data-source="kid"] .lineage').inner_text() == "gan › line › kid"
        page.goto(server + "/")
        page.set_input_files("#identify-files", [upload("kid.png", png_bytes(synthetic(10, 0)))])  # one of its samples: sure
        page.get_by_role("button", name="Identify").click()
        result = page.locator("#results article.result")
        result.wait_for()
        assert result.locator(".decision").inner_text().strip().startswith("Made by kid")
        assert result.locator(".lineage").inner_text() == "lineage: gan › line › kid"
        assert page.problems == [], page.problems
    finally:
        with httpx_client(server) as http:
            assert http.delete("/v1/sources/line?children=cascade", headers=AUTH).status_code == 200


def test_browser_phone_width_and_keyboard(browser, server):
    ctx = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        pg = ctx.new_page()
        for path in PAGES:
            pg.goto(server + path)
            pg.wait_for_load_state("networkidle")
            width = pg.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"{path} scrolls sideways on a phone ({width} px)"
        pg.goto(server + "/")
        pg.keyboard.press("Tab")
        assert pg.evaluate("document.activeElement.textContent") == "Skip to content"
        pg.keyboard.press("Tab")
        assert pg.evaluate("document.activeElement.getAttribute('href')") == "/"
    finally:
        ctx.close()


def httpx_client(base):
    import httpx

    return httpx.Client(base_url=base)


def test_package_ships_the_page_assets():
    from importlib import resources

    root = resources.files("attrib.service")
    for name in ("templates/base.html", "templates/identify.html", "templates/_results.html", "static/attrib.js", "static/attrib.css"):
        assert (root / name).is_file(), name
    js = (root / "static/attrib.js").read_text()
    assert "http://" not in js.replace("http://www.w3.org/2000/svg", "") and "https://" not in js
    assert not re.search(r"document\.cookie|localStorage|sessionStorage", js)  # the key is never stored
