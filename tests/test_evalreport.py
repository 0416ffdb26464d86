"""The evaluation report (attrib.evalreport, ``attrib eval --report``): its numbers are the run's.

A hand-made eval whose every figure is worked out below by hand (basis-vector embeddings: scores
are exactly 0 or 1), then random data checked against run_protocol's own figures and figures
recomputed with attrib.metrics from the per-trial details; the page is self-contained and escapes
what users name; the CLI writes it end to end.
"""

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner

from attrib import metrics
from attrib.cli import build_cli
from attrib.encoders import Encoder
from attrib.evalreport import Robustness, build_report, num, order_sources, per_source
from attrib.evaluate import Dataset, run_protocol
from attrib.gallery import MemoryGallery

from .conftest import synthetic, write_png
from .test_evaluate import WithPrior, dataset


class Tables(HTMLParser):
    """Every <table id=...> of a page as rows of cell texts (header row first); section ids; img srcs."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.sections, self.images = {}, [], []
        self._table = self._row = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def table(self, table_id):
        """{first cell: {header: cell}} of a table."""
        header, *rows = self.tables[table_id]
        return {row[0]: dict(zip(header, row)) for row in rows}


class Fixed(Encoder):
    """Embeddings are given; the calibration prior is a plain impostor model (no near-impostor floor)."""

    name = "test-fixed"
    dim = 8

    @property
    def calibration(self):
        return {"impostor": {"mu": 0.0, "sigma": 0.25, "n": 200.0}}

    def config(self):
        return {"dim": self.dim}

    def _embed_batch(self, images):  # pragma: no cover - never called
        raise NotImplementedError


def _basis(i):
    v = np.zeros(Fixed.dim, np.float32)
    v[i] = 1.0
    return v


def hand_made():
    """Known a, b, c (6 images each at e0, e1, e2); never-enrolled u1 (4 at e5) and u2 (4 at e0: a
    close relative of a); rejects ``real`` (2 at e6, 1 at e1)."""
    layout = [("a", 0, 6), ("b", 1, 6), ("c", 2, 6), ("u1", 5, 4), ("u2", 0, 4), ("real", 6, 2), ("real", 1, 1)]
    names, emb = [], []
    for name, axis, n in layout:
        names += [name] * n
        emb += [_basis(axis)] * n
    shas = [f"{i:064x}" for i in range(len(names))]
    return Dataset(names, [f"{n}/{i}.png" for i, n in enumerate(names)], shas, np.array(emb))


HAND = dict(shots=(2,), trials=2, max_queries=10, seed=0, rejects=["real"])


def test_hand_made_eval_prints_the_figures_worked_out_by_hand():
    ds, enc = hand_made(), Fixed()
    details = []
    res = run_protocol(ds, enc, ["a", "b", "c"], ["u1", "u2"], details=details, **HAND)
    # robustness: queries of b re-encoded so that they look like a (enrollment stays clean)
    post_q = ds.embeddings.copy()
    post_q[np.array(ds.names) == "b"] = _basis(0)
    post_details = []
    res_post = run_protocol(ds, enc, ["a", "b", "c"], ["u1", "u2"], query_embeddings=post_q, details=post_details, **HAND)
    families = {"a": "gan", "b": "diffusion", "c": "gan"}
    meta = {"rejects": ["real"], "trials": 2, "encoder": enc.id}
    report = build_report(res, details, meta, families, Robustness(["jpeg75"], res_post, post_details))
    page = Tables(report.html)

    # per trial: 4 queries per known source (12), 8 never-enrolled: u1 scores 0 everywhere, u2 scores
    # 1 against a (a tie with a's own queries), so half the never-enrolled are accepted as a
    kshot = page.table("kshot-table")["2"]
    assert kshot["top-1"] == "1.0000"
    assert kshot["AUROC"] == "0.7500"  # u1 below every known (1), u2 tied (1/2)
    assert kshot["OSCR"] == "0.7500"  # (0,0)->(0.5,1): 0.25, then 0.5 at ccr 1
    assert kshot["EER"] == "0.0417"  # genuine all 1; 4 of 48 impostor scores are 1: (4/48 + 0) / 2
    assert kshot["open-set acc."] == "0.8000"  # (12 right + 4 rejected) / 20
    assert kshot["TAR"] == "1.0000"
    assert kshot["observed FAR"] == "0.5000"
    assert kshot["known queries / trial"] == "12.0" and kshot["never-enrolled queries / trial"] == "8.0"
    assert kshot["rejects attributed"] == "0.3333"  # the one real photo at e1 is taken for b

    op = page.table("operating-point")
    assert op["nominal FAR"]["value"] == "0.0100"
    assert op["observed FAR (never-enrolled queries accepted)"]["value"] == "0.5000"
    assert op["TAR (known queries accepted as their own source)"]["value"] == "1.0000"
    assert op["known queries accepted (any source)"]["value"] == "1.0000"

    # sources by family (gan: a, c; then diffusion: b), unknown as the last column; 2 trials pooled
    header, *rows = page.tables["confusion"]
    assert header == ["true \\ decided", "a", "c", "b", "unknown"]
    assert rows == [
        ["a", "8", "0", "0", "0"],
        ["c", "0", "8", "0", "0"],
        ["b", "0", "0", "8", "0"],
        ["never enrolled", "8", "0", "0", "8"],
        ["real (rejects)", "0", "0", "2", "4"],
    ]

    # thresholds, worked out apart: any 2 shots of a source are the same vector
    g = MemoryGallery.enroll(
        [(s, np.stack([_basis(i)] * 2), [f"{s}{j}" for j in range(2)]) for s, i in zip("abc", range(3))], enc.calibration
    )
    thresholds = g.thresholds(0.01)
    table = page.table("per-source")
    assert list(table) == ["a", "c", "b"]
    for s in "abc":
        row = table[s]
        assert row["family"] == families[s] and row["samples"] == "2.0" and row["queries"] == "8"
        assert row["threshold"] == num(thresholds[s])
        assert 0 < thresholds[s] < 1
        assert row["expected TAR"] == num(g.calibration.genuine(s).tail(thresholds[s])) == "1.0000"
        assert row["observed TAR"] == "1.0000" and row["top-1"] == "1.0000"
        assert row["most often confused with (count)"] == "-"
    # a's impostors: 8 other known + 8 never-enrolled queries per trial; u2's 4 score 1 and clear its
    # threshold (observed FAR 4/16), and tie its genuine scores (EER (4/16 + 0) / 2)
    assert table["a"]["observed FAR"] == "0.2500" and table["a"]["EER"] == "0.1250"
    assert table["b"]["observed FAR"] == table["c"]["observed FAR"] == "0.0000"
    assert table["b"]["EER"] == table["c"]["EER"] == "0.0000"

    groups = page.table("score-groups")
    assert groups["all: genuine"]["scores"] == "24" and groups["all: genuine"]["mean"] == "1.0000"
    assert groups["all: impostor"]["scores"] == "48" and groups["all: impostor"]["mean"] == "0.0000"
    assert groups["all: never enrolled"]["scores"] == "48"
    assert groups["all: never enrolled"]["mean"] == num(8 / 48)
    assert groups["best: never enrolled"]["mean"] == "0.5000"
    assert groups["best: real (rejects)"]["scores"] == "6"

    # robustness: b's 4 queries now land on a: top-1 and TAR 8/12; nothing else moves
    robust = {(r[0], r[1]): r[2:] for r in page.tables["robustness-table"][1:]}
    assert robust[("2", "top-1")] == ["1.0000", "0.6667", "-0.3333"]
    assert robust[("2", "TAR")] == ["1.0000", "0.6667", "-0.3333"]
    assert robust[("2", "observed FAR")] == ["0.5000", "0.5000", "0.0000"]
    post_table = {row.name: row for row in per_source(post_details, ["a", "b", "c"], {})}
    assert post_table["b"].confused_with == "a" and post_table["b"].confused_count == 8
    assert page.sections == ["kshot", "roc", "confusion", "per-source", "scores", "robustness", "meta"]
    assert set(report.plots) == {"kshot", "roc_det", "confusion", "scores", "robustness"}


def test_details_leave_the_figures_alone_and_recompute_them():
    ds, enc = dataset(), WithPrior()
    known, unknown = ["s0", "s1", "s2", "s3"], ["s4", "s5"]
    args = dict(shots=(1, 5), trials=3, max_queries=6, seed=4)
    details = []
    res = run_protocol(ds, enc, known, unknown, details=details, **args)
    assert res == run_protocol(ds, enc, known, unknown, **args)  # opting in changes nothing
    assert [(d.shots, d.trial) for d in details] == [(k, t) for k in (1, 5) for t in range(3)]
    for k in ("1", "5"):
        dk = [d for d in details if d.shots == int(k)]
        acc, auc, osc, eer_ = [], [], [], []
        for d in dk:
            own = np.array([[t == s for s in d.sources] for t in d.known.truth])
            imp = np.concatenate([d.known.scores[~own], d.unknown.scores.ravel()])
            correct = np.array(d.known.top1(d.sources)) == np.array(d.known.truth)
            acc.append(correct.mean())
            auc.append(metrics.auroc(d.known.best(), d.unknown.best()))
            osc.append(metrics.oscr(d.known.best(), correct, d.unknown.best()))
            eer_.append(metrics.eer(d.known.scores[own], imp))
        s = res["shots"][k]
        assert s["accuracy"] == round(float(np.mean(acc)), 4)
        assert s["auroc"] == round(float(np.mean(auc)), 4)
        assert s["oscr"] == round(float(np.mean(osc)), 4)
        assert s["eer"] == round(float(np.mean(eer_)), 4)
        accepted = [x is not None for d in dk for x in d.unknown.decided]
        assert s["observed_far"] == round(float(np.mean(accepted)), 4)
    page = Tables(build_report(res, details, {"trials": 3}).html)
    table = page.table("kshot-table")
    for k, s in res["shots"].items():
        assert [table[k][label] for label in ("top-1", "AUROC", "OSCR", "EER", "TAR", "observed FAR")] == [
            num(s[key]) for key in ("accuracy", "auroc", "oscr", "eer", "tar", "observed_far")
        ]
    per = page.table("per-source")  # the 5-shot details by default
    for name, v in res["shots"]["5"]["per_source"].items():
        assert per[name]["top-1"] == num(v["accuracy"]) and per[name]["EER"] == num(v["eer"])
    assert "robustness" not in page.sections


def test_page_is_self_contained_and_escapes_what_users_name():
    ds, enc = hand_made(), Fixed()
    details = []
    res = run_protocol(ds, enc, ["a", "b", "c"], ["u1", "u2"], details=details, **HAND)
    evil = "<script>alert(1)</script>"
    res["unknown"] = [f"u1{evil}", "<img src=x onerror=alert(2)>"]
    meta = {"data": f"/tmp/{evil}", "command": f"attrib eval '{evil}' --report x.html", "encoder": f"enc{evil}", "rejects": ["real"]}
    text = build_report(res, details, meta, {"a": '"><b>gan'}).html
    assert "<script" not in text.lower() and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    assert "&quot;&gt;&lt;b&gt;gan" in text
    page = Tables(text)
    assert page.table("meta")["data folder"]["value"] == f"/tmp/{evil}"  # escaped, not lost
    lowered = re.sub(r"base64,[a-z0-9+/=]+", "base64,", text.lower()).replace("</", "")
    for external in ("http:", "https:", "//", "<link", "href=", "url(", "@import", "<iframe", "<object"):
        assert external not in lowered, external
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)


def test_order_by_family_then_name():
    fams = {"z": "gan", "y": "real", "x": "diffusion", "w": "weird"}
    assert order_sources(["w", "v", "x", "y", "z"], fams) == ["z", "x", "y", "v", "w"]
    assert order_sources(["b", "a"], {}) == ["a", "b"]


@pytest.fixture
def run():
    cli = build_cli()
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_writes_the_report_and_the_plots(run, tmp_path, source_dirs):
    data = source_dirs["src0"].parent
    out, plots = tmp_path / "report.html", tmp_path / "plots"
    base = ("eval", data, "--shots", "1,3", "--unknown", "src3", "--trials", "1")
    r = run(*base, "--report", out, "--plots", plots, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == json.loads(run(*base, "--json").stdout) | {"timing": json.loads(r.stdout)["timing"]}
    page = Tables(out.read_text())
    assert "robustness" not in page.sections and page.table("meta")["data folder"]["value"] == str(data.resolve())
    assert page.table("kshot-table")["3"]["top-1"] == num(json.loads(r.stdout)["shots"]["3"]["accuracy"])
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["confusion.png", "kshot.png", "roc_det.png", "scores.png"]
    assert all((plots / p).read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)


def test_cli_post_adds_the_robustness_section(run, tmp_path, source_dirs):
    data = source_dirs["src0"].parent
    out = tmp_path / "r.html"
    r = run("eval", data, "--shots", "3", "--unknown", "src3", "--trials", "1", "--post", "jpeg75", "--report", out)
    assert r.exit_code == 0, r.output
    assert "post-processed (jpeg75)" in r.output
    page = Tables(out.read_text())
    assert "robustness" in page.sections
    assert page.table("meta")["post-processing"]["value"] == "jpeg75"
    plots = tmp_path / "plots"  # --plots alone; steps repeated or comma-separated
    r = run("eval", data, "--shots", "3", "--unknown", "src3", "--trials", "1", "--post", "jpeg75", "--post", "resize0.5", "--plots", plots)
    assert r.exit_code == 0, r.output
    assert (plots / "robustness.png").exists() and "post-processed (jpeg75+resize0.5)" in r.output
    r = run("eval", data, "--post", "jpeg200", "--report", out)
    assert r.exit_code == 2 and "JPEG quality" in r.output
    r = run("eval", data, "--reject", "nope", "--report", out)
    assert r.exit_code == 2 and "nope" in r.output


def test_cli_reference_sources_are_enrolled_whole_and_reported(run, tmp_path, source_dirs):
    """`attrib eval --reference` (a camera class beside K-shot generators): enrolled whole, never
    queried; the text table, the JSON and the HTML report all carry what was named after it."""
    data = source_dirs["src0"].parent
    for i in range(8):  # a second known source beside src0 (src1 is the reference)
        write_png(data / "src4" / f"{i:03d}.png", synthetic(4, i))
    out = tmp_path / "r.html"
    base = ("eval", data, "--shots", "3", "--unknown", "src3", "--trials", "1", "--reject", "src2", "--reference", "src1")
    r = run(*base, "--json", "--report", out)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert "src1" not in res["known"] + res["unknown"] and "src1" not in res["shots"]["3"]["per_source"]
    s = res["shots"]["3"]
    assert {"named_reference", "known_named_reference", "unknown_named_reference", "attributed"} <= set(s)
    assert s["known_named_reference"] < 0.5
    page = Tables(out.read_text())
    assert page.table("kshot-table")["3"]["rejects attributed"] == num(s["attributed"])
    text = run(*base).output
    assert "rejects-attributed" in text and "known->ref" in text and "rejects->ref" in text
    r = run("eval", data, "--reject", "src2", "--reference", "src2")
    assert r.exit_code == 2 and "both --reject and --reference" in r.output
    r = run("eval", data, "--reference", "nope")
    assert r.exit_code == 2 and "nope" in r.output
