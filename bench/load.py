"""Load test of ``attrib serve`` on this machine, next to the CLI's batch speed on the same images.

    python bench/load.py [--data DIR] [--concurrency 1,8,32] [--requests 300] [--duration 30]
                         [--rounds 3] [--workers 1] [--detectors none] [--enroll 500] [--json out.json]

Steps, all against 127.0.0.1 only, every loop bounded in count and in time:

1. **Data**: ``--data`` is a zoo folder (one sub-folder of PNGs per source, e.g. ``attrib zoo build``'s
   output); without it a 12-generator zoo is built in a temporary folder (cached in ``$ATTRIB_CACHE``).
2. **Gallery**: ``--shots`` images of each of up to ``--sources`` sources are enrolled into a fresh
   gallery; queries are held-out images of known sources and of sources never enrolled.
3. **CLI baseline**: the queries go through ``attrib identify``'s code path in-process (threaded
   decode, batched encode, one FAISS search, no detectors: what ``bench/speed.py`` measures):
   images/s.
4. **Service**: ``attrib serve`` runs in a subprocess; a small asyncio HTTP/1.1 client (keep-alive,
   pre-built multipart bodies, so the load generator costs little CPU) sends one-image identify
   requests at each concurrency: requests/s, p50 / p99 latency, failures. Requests carry
   ``detectors=none`` unless ``--detectors`` says otherwise, to compare like with like.
   Steps 3 and 4 alternate for ``--rounds`` rounds (machines shared with other work drift);
   medians are reported next to each round's figures.
5. **Identify during enrollment**: identify at ``--enroll-concurrency`` while one request enrolls
   ``--enroll`` new images (one transaction): latency before vs. during.
6. **Shutdown and integrity**: SIGTERM while 16 requests of 8 images are being handled (they must
   all complete), then
   the gallery is checked: SQLite ``integrity_check``, foreign keys, expected sample and source
   counts, prototypes and calibration for every source, a library identify.

A request counts as failed on any status but 200 or a connection error. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"  # never anything else
BOUNDARY = "attribloadboundary7f3a"


# -- data ----------------------------------------------------------------------------------------
def zoo_folders(data: Path | None, tmp: Path) -> list[Path]:
    if data is None:
        from attrib.zoo import build_zoo, default_zoo

        data = tmp / "zoo"
        print("building a 12-generator zoo (cached in $ATTRIB_CACHE)...", file=sys.stderr)
        build_zoo(data, default_zoo(12), images_per_source=40, size=128, progress=False)
    folders = sorted(p for p in Path(data).iterdir() if p.is_dir() and any(p.glob("*.png")))
    if len(folders) < 3:
        sys.exit(f"{data}: need at least 3 source folders of PNGs")
    return folders


def files_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def tile_up(paths: list[Path], size: int, out: Path) -> list[Path]:
    """Each image repeated into a ``size`` x ``size`` PNG (same content, a larger file to decode and embed)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i, p in enumerate(paths):
        arr = np.asarray(Image.open(p).convert("RGB"))
        reps = (-(-size // arr.shape[0]), -(-size // arr.shape[1]), 1)
        dst = out / f"{i:04d}-{p.parent.name}.png"
        Image.fromarray(np.tile(arr, reps)[:size, :size]).save(dst)
        made.append(dst)
    return made


# -- CLI baseline --------------------------------------------------------------------------------
def cli_images_per_s(gallery_path: Path, paths: list[Path]) -> tuple[float, float]:
    """``attrib identify``'s code path, in-process: decode (thread pool), encode (batches), search.
    Returns (images/s, CPU ms per image)."""
    from attrib.gallery import Gallery
    from attrib.pipeline import embed_items, load_many

    g = Gallery(gallery_path, create=False)
    try:
        g.identify(g.encoder.embed([np.zeros((64, 64, 3), np.uint8)]))  # index loaded, as a warm reader
        t0, c0 = time.perf_counter(), time.process_time()
        items, emb = embed_items(g.encoder, load_many(paths), batch_size=32)
        g.identify(emb, top_k=5)
        return len(paths) / (time.perf_counter() - t0), (time.process_time() - c0) / len(paths) * 1000
    finally:
        g.close()


# -- a lean HTTP/1.1 client ------------------------------------------------------------------------
def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> bytes:
    parts = []
    for k, v in (fields or {}).items():
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for name, data in files:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\nContent-Type: image/png\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
    if body:
        head.append(f"Content-Type: multipart/form-data; boundary={BOUNDARY}")
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def send(self, raw: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        try:
            self.writer.write(raw)
            await self.writer.drain()
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", "0"))), timeout)
            if headers.get("connection", "").lower() == "close":
                self.close()
            return status, body
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_load(port: int, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float) -> dict:
    """Closed loop: ``concurrency`` clients, each sending its next request when the last one answered."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(max_requests))
    deadline = time.perf_counter() + max_seconds

    async def client(k: int):
        conn = Connection(port)
        try:
            for i in counter:
                if time.perf_counter() > deadline:
                    break
                raw = bodies[(i * 7 + k) % len(bodies)]
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.send(raw)
                    key = str(status)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                statuses[key] = statuses.get(key, 0) + 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    wall = time.perf_counter() - t0
    return summarise(latencies, statuses, wall, concurrency)


def summarise(latencies, statuses, wall, concurrency) -> dict:
    lat = sorted(latencies)
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None  # noqa: E731
    ok = statuses.get("200", 0)
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "failed": len(lat) - ok,
        "statuses": statuses,
        "seconds": round(wall, 2),
        "requests_per_s": round(ok / wall, 2) if wall else None,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
    }


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by process ``pid`` and its children (Linux /proc; None elsewhere)."""
    try:
        pids, todo = [], [pid]
        while todo:
            p = todo.pop()
            pids.append(p)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(x) for x in fh.read().split()]
        total = 0
        for p in pids:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


# -- the server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(
    gallery: Path, port: int, workers: int, key_file: Path, log: Path, encode_processes: int | None = None
) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-c",
        "from attrib.cli import main; main()",
        "--gallery",
        str(gallery),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--api-key-file",
        str(key_file),
        "--no-access-log",
    ] + (["--encode-processes", str(encode_processes)] if encode_processes is not None else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited ({proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
        try:
            status, _ = asyncio.run(Connection(port).send(request_bytes("GET", "/v1/health"), timeout=5))
            if status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit("the server did not answer /v1/health within 120 s")


async def graceful_stop(proc: subprocess.Popen, port: int, queries: list[Path], workers: int, n: int = 16, per_request: int = 8) -> dict:
    """SIGTERM with ``n`` requests (``per_request`` images each) being handled: every one of them
    must still be answered 200. A request still unread in a socket buffer when the signal lands is
    not in flight yet (the server closes such connections, as any server does), so the signal waits
    until the server reports all ``n`` in progress (one worker; with several, a fixed second)."""
    conns = [Connection(port) for _ in range(n)]
    for c in conns:
        c.reader, c.writer = await asyncio.open_connection(HOST, port)
    bodies = [
        request_bytes(
            "POST",
            "/v1/identify",
            multipart([(p.name, p.read_bytes()) for p in queries[i * per_request : (i + 1) * per_request]], {"detectors": "none"}),
        )
        for i in range(n)
    ]
    tasks = [asyncio.ensure_future(c.send(b)) for c, b in zip(conns, bodies)]
    seen = await _wait_in_flight(port, n) if workers == 1 else await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    codes = [r[0] if isinstance(r, tuple) else type(r).__name__ for r in results]
    try:
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "killed after 60 s"
    for c in conns:
        c.close()
    return {
        "in_flight": n,
        "seen_in_flight": seen,
        "answered_200": codes.count(200),
        "others": [c for c in codes if c != 200],
        "exit_code": rc,
    }


async def _wait_in_flight(port: int, n: int, timeout: float = 20.0) -> int | None:
    """Poll /metrics until the server handles ``n`` requests besides the poll itself."""
    deadline = time.perf_counter() + timeout
    conn = Connection(port)
    seen = None
    try:
        while time.perf_counter() < deadline:
            status, body = await conn.send(request_bytes("GET", "/metrics"))
            for line in body.decode().splitlines():
                if line.startswith("attrib_http_requests_in_flight"):
                    seen = int(float(line.rsplit(" ", 1)[1])) - 1
            if seen is not None and seen >= n:
                break
            await asyncio.sleep(0.02)
    finally:
        conn.close()
    return seen


# -- integrity -----------------------------------------------------------------------------------
def check_gallery(path: Path, expect_sources: int, expect_samples: int, probe: Path) -> dict:
    db = sqlite3.connect(path / "gallery.db")
    try:
        q = lambda sql: db.execute(sql).fetchall()  # noqa: E731
        out = {
            "integrity_check": q("pragma integrity_check")[0][0],
            "foreign_key_violations": len(q("pragma foreign_key_check")),
            "sources": q("select count(*) from sources")[0][0],
            "samples": q("select count(*) from samples")[0][0],
            "sources_without_prototypes": q("select count(*) from sources where name not in (select source from prototypes)")[0][0],
            "sources_without_calibration": q("select count(*) from sources where name not in (select source from calibration)")[0][0],
            "duplicate_sha256": q("select count(*) from (select sha256 from samples group by sha256 having count(*) > 1)")[0][0],
        }
    finally:
        db.close()
    from attrib.gallery import Gallery
    from attrib.imageio import load_image

    g = Gallery(path, create=False)
    try:
        d = g.identify(g.encoder.embed([load_image(probe).pixels]))[0]
        out["library_identify"] = d.source or "unknown"
    finally:
        g.close()
    out["expected_sources"], out["expected_samples"] = expect_sources, expect_samples
    out["intact"] = (
        out["integrity_check"] == "ok"
        and out["foreign_key_violations"] == 0
        and out["sources"] == expect_sources
        and out["samples"] == expect_samples
        and out["sources_without_prototypes"] == 0
        and out["sources_without_calibration"] == 0
        and out["duplicate_sha256"] == 0
    )
    return out


# -- main ----------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="zoo folder: one sub-folder of PNGs per source")
    ap.add_argument("--sources", type=int, default=200, help="sources to enroll (at most; the rest are unknown)")
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--queries", type=int, default=256, help="distinct query images")
    ap.add_argument("--size", type=int, help="tile query images up to SIZE x SIZE pixels (as bench/speed.py does); default: as they are")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=300, help="requests per concurrency level (at most)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per concurrency level (at most)")
    ap.add_argument("--rounds", type=int, default=3, help="CLI baseline + service levels, alternated (1..5)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--encode-processes", type=int, help="per worker (default: the server's, one per core)")
    ap.add_argument("--detectors", default="none", help="identify's detectors field: none, all or names")
    ap.add_argument("--enroll", type=int, default=500, help="images enrolled in one request during identify load (0: skip)")
    ap.add_argument("--enroll-concurrency", type=int, default=1, help="identify clients while enrolling")
    ap.add_argument("--keep", type=Path, help="keep the gallery and server log in this folder")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not (1 <= args.requests <= 100_000 and 0 < args.duration <= 600 and 1 <= args.rounds <= 5):
        sys.exit("--requests must be 1..100000, --duration 0..600 s, --rounds 1..5: this load test is bounded")
    tmp = Path(tempfile.mkdtemp(prefix="attrib-load-"))
    out: dict = {"host": HOST, "cpus": os.cpu_count(), "workers": args.workers}
    try:
        out.update(run(args, tmp))
    finally:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for name in ("gallery", "server.log"):
                if (tmp / name).exists():
                    dst = args.keep / name
                    shutil.rmtree(dst, ignore_errors=True) if dst.is_dir() else dst.unlink(missing_ok=True)
                    shutil.move(str(tmp / name), dst)
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


def run(args, tmp: Path) -> dict:
    from attrib.gallery import Gallery
    from attrib.pipeline import embed_items, load_many

    out: dict = {}
    folders = zoo_folders(args.data, tmp)
    n_known = min(args.sources, max(2, len(folders) - max(1, len(folders) // 10)))
    known, unknown = folders[:n_known], folders[n_known:]
    gallery = tmp / "gallery"
    print(f"enrolling {n_known} sources x {args.shots} shots...", file=sys.stderr)
    g = Gallery(gallery)
    batches = []
    for folder in known:
        items, emb = embed_items(g.encoder, load_many(files_of(folder)[: args.shots]))
        batches.append((folder.name, emb, [it.record for it in items if it.error is None], None, None))
    g.enroll_many(batches)
    n_samples = g.stats()["samples"]
    g.close()
    # held-out queries, spread over known and unknown sources
    pool = [f for folder in folders for f in files_of(folder)[args.shots + 5 :]]
    rng = np.random.default_rng(0)
    queries = [pool[i] for i in rng.choice(len(pool), size=min(args.queries, len(pool)), replace=False)]
    if args.size:
        queries = tile_up(queries, args.size, tmp / "queries")
    fields = {"detectors": args.detectors}
    bodies = [request_bytes("POST", "/v1/identify", multipart([(p.name, p.read_bytes())], fields)) for p in queries]
    out["data"] = {
        "folders": len(folders),
        "known": n_known,
        "unknown": len(unknown),
        "gallery_samples": n_samples,
        "queries": len(queries),
        "image_side": _side(queries[0]),
    }

    key = os.urandom(24).hex()
    key_file = tmp / "keys"
    key_file.write_text(key + "\n")
    port = free_port()
    log = tmp / "server.log"
    proc = start_server(gallery, port, args.workers, key_file, log, args.encode_processes)
    try:
        rounds, cli = [], []
        levels_of = [int(x) for x in args.concurrency.split(",") if x.strip()]
        for r in range(args.rounds):
            load_before = os.getloadavg()[0]
            rate, cpu_ms = cli_images_per_s(gallery, queries)
            cli.append(round(rate, 2))
            print(f"round {r + 1}: CLI {cli[-1]} images/s ({cpu_ms:.1f} CPU ms/image), load average {load_before:.1f}", file=sys.stderr)
            levels = []
            for c in levels_of:
                warm = asyncio.run(run_load(port, bodies, c, max(2 * c, 8), 30))  # warm-up: every worker, every thread
                cpu0 = tree_cpu_seconds(proc.pid)
                res = asyncio.run(run_load(port, bodies, c, args.requests, args.duration))
                cpu1 = tree_cpu_seconds(proc.pid)
                res["server_cpu_ms_per_request"] = (
                    round((cpu1 - cpu0) / res["requests"] * 1000, 2) if cpu0 is not None and cpu1 is not None and res["requests"] else None
                )
                res["warmup_failed"] = warm["failed"]
                res["share_of_cli"] = round(res["requests_per_s"] / cli[-1], 3) if res["requests_per_s"] else None
                print(
                    f"  concurrency {c}: {res['requests_per_s']} req/s ({res['share_of_cli']} of CLI), "
                    f"p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, failed {res['failed']}, "
                    f"{res['server_cpu_ms_per_request']} server CPU ms/request",
                    file=sys.stderr,
                )
                levels.append(res)
            rounds.append(
                {
                    "cli_images_per_s": cli[-1],
                    "cli_cpu_ms_per_image": round(cpu_ms, 2),
                    "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                    "identify": levels,
                }
            )
        out["rounds"] = rounds
        out["cli_images_per_s"] = statistics.median(cli)
        out["cli_cpu_ms_per_image"] = statistics.median(r["cli_cpu_ms_per_image"] for r in rounds)
        out["identify"] = [
            {
                "concurrency": c,
                "requests_per_s": statistics.median(r["identify"][i]["requests_per_s"] for r in rounds),
                "p50_ms": statistics.median(r["identify"][i]["p50_ms"] for r in rounds),
                "p99_ms": statistics.median(r["identify"][i]["p99_ms"] for r in rounds),
                "share_of_cli": statistics.median(r["identify"][i]["share_of_cli"] for r in rounds),
                "server_cpu_ms_per_request": _median_or_none(r["identify"][i]["server_cpu_ms_per_request"] for r in rounds),
                "requests": sum(r["identify"][i]["requests"] for r in rounds),
                "failed": sum(r["identify"][i]["failed"] + r["identify"][i]["warmup_failed"] for r in rounds),
            }
            for i, c in enumerate(levels_of)
        ]
        expect_sources, expect_samples = n_known, n_samples
        if args.enroll:
            res = asyncio.run(enroll_during_identify(port, bodies, args, key, folders, out["data"]))
            out["enroll_during_identify"] = res
            expect_sources += 1
            expect_samples += res["enroll"]["result"].get("enrolled", 0) if isinstance(res["enroll"]["result"], dict) else 0
        out["graceful_shutdown"] = asyncio.run(graceful_stop(proc, port, queries, args.workers))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    out["failed_requests"] = (
        sum(level["failed"] for level in out["identify"])
        + sum(out.get("enroll_during_identify", {}).get(k, {}).get("failed", 0) for k in ("before", "during"))
        + len(out["graceful_shutdown"]["others"])
        + int(out.get("enroll_during_identify", {}).get("enroll", {}).get("status", 200) != 200)
    )
    out["gallery_check"] = check_gallery(gallery, expect_sources, expect_samples, queries[0])
    return out


def _median_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _side(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return max(im.size)


async def enroll_during_identify(port, bodies, args, key, folders, data) -> dict:
    """Identify latency alone, then while one request enrolls ``args.enroll`` images nobody enrolled."""
    # images never enrolled (index past the shots and past every query's range would be ideal; the
    # sha256 check reports any overlap as duplicates, which still exercises the same transaction)
    new = [f for folder in folders for f in files_of(folder)[args.shots : args.shots + 5]][: args.enroll]
    i = 0
    while len(new) < args.enroll:  # not enough distinct files: vary bytes by re-encoding
        new.append(folders[i % len(folders)] / "__synthetic__" / f"{i}.png")
        i += 1
    files = []
    for k, p in enumerate(new):
        if p.parent.name == "__synthetic__":
            import io

            from PIL import Image

            arr = np.random.default_rng(k).integers(0, 255, (128, 128, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            files.append((p.name, buf.getvalue()))
        else:
            files.append((f"{p.parent.name}-{p.name}", p.read_bytes()))
    body = multipart(files, {"family": "other"})
    raw = request_bytes("POST", "/v1/sources/load-enrolled/samples", body, {"Authorization": f"Bearer {key}"})
    c = args.enroll_concurrency
    before = await run_load(port, bodies, c, 200, 15)
    # during: identify load runs until the enrollment answers
    lat: list[float] = []
    statuses: dict[str, int] = {}
    done = asyncio.Event()

    async def identify_client(k: int):
        conn = Connection(port)
        n = 0
        try:
            while not done.is_set() and n < 5000:
                t0 = time.perf_counter()
                try:
                    status, _ = await conn.send(bodies[(n * 7 + k) % len(bodies)])
                    key_ = str(status)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                    key_ = type(exc).__name__
                lat.append(time.perf_counter() - t0)
                statuses[key_] = statuses.get(key_, 0) + 1
                n += 1
        finally:
            conn.close()

    async def enroll_client():
        conn = Connection(port)
        t0 = time.perf_counter()
        try:
            status, resp = await conn.send(raw, timeout=300)
        finally:
            conn.close()
            done.set()
        result = json.loads(resp) if resp else {}
        return {
            "status": status,
            "seconds": round(time.perf_counter() - t0, 2),
            "images": len(files),
            "body_mib": round(len(body) / 2**20, 1),
            "result": {k: result.get(k) for k in ("enrolled", "duplicate", "failed", "error")},
        }

    t0 = time.perf_counter()
    clients = [asyncio.ensure_future(identify_client(k)) for k in range(c)]
    enroll = await enroll_client()
    await asyncio.gather(*clients)
    during = summarise(lat, statuses, time.perf_counter() - t0, c)
    return {"concurrency": c, "before": before, "during": during, "enroll": enroll}


if __name__ == "__main__":
    main()
