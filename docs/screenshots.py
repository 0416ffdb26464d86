"""Screenshots of the web page of ``attrib serve`` (README.md shows them): rerun after changing it.

    python docs/screenshots.py            # builds the demo gallery in a temporary folder
    python docs/screenshots.py --gallery G   # or uses the demo gallery G (from `attrib demo --gallery G`)

Builds the demo gallery (``attrib demo``), starts ``attrib serve`` on it on 127.0.0.1 with a
throw-away API key, and drives Debian's Chromium through Playwright (``apt-get install chromium``;
``pip install playwright``; no browser download): the identify view with a known and a
never-enrolled zoo image, the sources view, and the enroll view after enrolling the
never-enrolled generator. Writes docs/web-identify.png, docs/web-sources.png and
docs/web-enroll.png (256-colour PNGs, to keep them small).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent
ATTRIB = [sys.executable, "-c", "from attrib.cli import main; main()"]
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo(gallery: Path) -> dict:
    out = subprocess.run(
        [*ATTRIB, "demo", "--gallery", str(gallery), "--trials", "1", "--json"], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def serve(gallery: Path, key: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, ATTRIB_API_KEY=key)
    cmd = [*ATTRIB, "serve", "--gallery", str(gallery), "--port", str(port), "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("attrib serve exited") from None
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("attrib serve did not answer within 120 s")


def save(page, name: str, **kw) -> None:
    path = DOCS / name
    page.screenshot(path=str(path), **kw)
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path} ({path.stat().st_size // 1024} KiB)")


def shots(base: str, key: str, known: Path, never: list[Path], chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 980, "height": 900})
        page.goto(base + "/")
        page.set_input_files("#identify-files", [str(known), str(never[0])])
        page.get_by_role("button", name="Identify").click()
        expect(page.locator("#results article")).to_have_count(2)
        page.locator("#results details.ev").first.locator("summary").click()  # one detector's evidence, opened
        page.wait_for_selector("figure.map svg polygon.query")
        save(page, "web-identify.png", full_page=True)

        page.goto(base + "/sources")
        page.wait_for_selector("figure.map svg circle.proto")
        page.wait_for_load_state("networkidle")
        save(page, "web-sources.png", full_page=True)

        page.goto(base + "/enroll")
        page.get_by_label("API key").fill(key)
        page.get_by_label("Source name").fill("mystery-gen")
        page.get_by_label("Family").select_option("other")
        page.get_by_label("Metadata").fill("seen_on=social media")
        page.set_input_files("#enroll-files", [str(f) for f in never[1:6]])
        page.get_by_role("button", name="Enroll").click()
        expect(page.locator("#write-status")).to_contain_text("Enrolled")
        page.locator('#source-list tr[data-source="mystery-gen"]').wait_for()
        save(page, "web-enroll.png", full_page=True)
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gallery", type=Path, help="demo gallery to use (default: build one in a temporary folder)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gallery = args.gallery or Path(tmp) / "demo"
        info = demo(gallery)  # rebuilds the demo gallery: the screenshots always show the same one
        rows = info["decisions"]
        known = next(Path(r["path"]) for r in rows if r["known"] and r["correct"] and r["truth"] != "real")
        unknown = next(r["truth"] for r in rows if not r["known"])
        never = sorted((Path(info["data"]) / unknown).glob("*.png"))
        key, port = secrets.token_hex(16), free_port()
        proc = serve(gallery, key, port)
        try:
            shots(f"http://127.0.0.1:{port}", key, known, never, args.chromium)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
