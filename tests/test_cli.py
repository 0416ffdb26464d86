import json

import pytest
from click.testing import CliRunner

from attrib.cli import build_cli

from .conftest import PATTERN_ENCODER, png_bytes, synthetic


@pytest.fixture
def run(tmp_path):
    cli = build_cli()
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def enrolled(run, tmp_path, source_dirs):
    g = tmp_path / "gal"
    for name in ("src0", "src1", "src2"):
        files = sorted(source_dirs[name].iterdir())[:5]
        new = ["--encoder", PATTERN_ENCODER] if name == "src0" else []
        r = run("--gallery", g, "enroll", "--generator", name, "--family", "gan", *new, *files)
        assert r.exit_code == 0, r.output
    return g


def test_enroll_identify_json_contract(run, enrolled, source_dirs):
    queries = [sorted(source_dirs[f"src{s}"].iterdir())[6] for s in range(3)]
    r = run("identify", "--gallery", enrolled, "--json", *queries)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [row["path"] for row in rows] == [str(q) for q in queries]
    for row, s in zip(rows, range(3)):
        assert set(row) >= {"path", "source", "score", "threshold", "margin", "candidates", "error"}
        assert row["candidates"][0]["source"] == f"src{s}"
        assert row["error"] is None
        assert row["candidates"] == sorted(row["candidates"], key=lambda c: -c["score"])


def test_identify_table_and_top_k(run, enrolled, source_dirs):
    q = sorted(source_dirs["src1"].iterdir())[7]
    r = run("-g", enrolled, "identify", "--top-k", "2", q)
    assert r.exit_code == 0 and "src1" in r.output and "runner-up" in r.output
    r = run("-g", enrolled, "identify", "--json", "--top-k", "1", q)
    assert len(json.loads(r.output)["candidates"]) == 1


def test_bad_images_reported_per_image(run, enrolled, tmp_path, source_dirs):
    bad = tmp_path / "bad.png"
    bad.write_bytes(png_bytes(synthetic(0, 0))[:100])
    txt = tmp_path / "notes.png"
    txt.write_text("not an image")
    good = sorted(source_dirs["src0"].iterdir())[6]
    r = run("-g", enrolled, "identify", "--json", bad, good, txt)
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert rows[0]["error"] and rows[2]["error"] and rows[1]["error"] is None
    assert "\n" not in rows[0]["error"] and "Traceback" not in r.output
    r = run("-g", enrolled, "identify", bad, txt)
    assert r.exit_code == 1 and "no image could be read" in r.output


def test_exit_codes(run, enrolled, tmp_path):
    assert run("-g", enrolled, "identify", tmp_path / "missing.png").exit_code == 2
    assert run("-g", enrolled, "verify", "--generator", "ghost", tmp_path / "x").exit_code == 2
    r = run("-g", tmp_path / "empty", "identify", __file__)
    assert r.exit_code == 1 and "no gallery" in r.output
    r = run("-g", enrolled, "enroll", "--generator", "bad name!", __file__)
    assert r.exit_code == 1 and "invalid source name" in r.output


def test_enroll_json_counts_duplicates_and_failures(run, tmp_path, source_dirs):
    g = tmp_path / "g"
    files = sorted(source_dirs["src0"].iterdir())[:3]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    r = run("-g", g, "enroll", "--generator", "a", "--json", *files, bad)
    out = json.loads(r.output)
    assert r.exit_code == 0 and out["enrolled"] == 3 and out["failed"] == 1 and out["duplicate"] == 0
    assert out["failures"][0]["path"] == str(bad) and out["failures"][0]["error"]
    r = run("-g", g, "enroll", "--generator", "a", "--json", *files)
    assert json.loads(r.output)["duplicate"] == 3
    r = run("-g", g, "enroll", "--generator", "b", bad)
    assert r.exit_code == 1 and "nothing enrolled" in r.output
    assert [s["name"] for s in json.loads(run("-g", g, "sources", "list", "--json").output)] == ["a"]


def test_enroll_folder_recursive(run, tmp_path, source_dirs):
    r = run("-g", tmp_path / "g", "enroll", "--generator", "x", "--json", source_dirs["src0"].parent)
    assert json.loads(r.output)["enrolled"] == 32


def test_verify_source_and_pair(run, enrolled, source_dirs):
    same = sorted(source_dirs["src2"].iterdir())[6]
    other = sorted(source_dirs["src0"].iterdir())[6]
    r = run("-g", enrolled, "verify", "--generator", "src2", "--json", same, other)
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert set(rows[0]) >= {"path", "generator", "score", "threshold", "accepted", "far"}
    assert rows[0]["score"] > rows[1]["score"]
    assert rows[1]["accepted"] is False
    r = run("-g", enrolled, "verify", "--json", same, sorted(source_dirs["src2"].iterdir())[7])
    pair = json.loads(r.output)
    assert r.exit_code == 0 and {"score", "threshold", "accepted", "far"} <= set(pair)
    r = run("-g", enrolled, "verify", same)
    assert r.exit_code == 2 and "exactly two" in r.output


def test_sources_commands(run, enrolled, monkeypatch):
    rows = json.loads(run("-g", enrolled, "sources", "list", "--json").output)
    assert [(r["name"], r["family"], r["samples"]) for r in rows] == [("src0", "gan", 5), ("src1", "gan", 5), ("src2", "gan", 5)]
    assert "src1" in run("-g", enrolled, "sources", "list").output
    show = json.loads(run("-g", enrolled, "sources", "show", "src1", "--json").output)
    assert len(show["sample_list"]) == 5
    r = run("-g", enrolled, "sources", "remove", "src1", input="n\n")
    assert r.exit_code == 1  # aborted
    assert run("-g", enrolled, "sources", "remove", "src1", "--yes").exit_code == 0
    assert [r["name"] for r in json.loads(run("-g", enrolled, "sources", "list", "--json").output)] == ["src0", "src2"]
    assert run("-g", enrolled, "sources", "show", "src1").exit_code == 1
    monkeypatch.setenv("ATTRIB_GALLERY", str(enrolled))
    assert run("sources", "path").output.strip() == str(enrolled)


def test_gallery_env_and_default(run, tmp_path, monkeypatch, source_dirs, user_dir):
    f = sorted(source_dirs["src0"].iterdir())[0]
    assert run("enroll", "--generator", "a", f).exit_code == 0
    assert (user_dir / "galleries" / "default" / "gallery.db").exists()
    monkeypatch.setenv("ATTRIB_GALLERY", str(tmp_path / "envg"))
    assert run("enroll", "--generator", "a", f).exit_code == 0
    assert (tmp_path / "envg" / "gallery.db").exists()


def test_encoders_list(run):
    rows = json.loads(run("encoders", "list", "--json").output)
    assert any(r["name"] == "fp-joint4" and r["default"] for r in rows)


#: what each command's help must say (beyond its options): the words a user looks for
HELP_PHRASES = {
    "enroll": ("--generator", "duplicate", "atomic"),
    "identify": ("unknown", "threshold", "--far", "candidates", "--keep-unknown"),
    "verify": ("false-accept rate", "--generator", "pair mode"),
    "sources": ("list", "show", "remove", "propose", "path"),
    "eval": ("K-shot", "AUROC", "EER", "--per-source"),
    "demo": ("zoo", "enroll", "no downloads"),
    "serve": ("API key", "openapi.json", "--workers"),
    "zoo": ("build",),
    "recipe": ("build",),
}


def _commands(group, prefix=()):
    import click

    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


def test_help_explains(run):
    import click

    cli = build_cli()
    for path, cmd in _commands(cli):
        r = run(*path, "--help")
        assert r.exit_code == 0, path
        assert cmd.help and len(cmd.help.split()) >= 3, f"{' '.join(path)} has no description"
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"attrib {' '.join(path)} {param.opts[0]} has no help text"
                assert param.opts[0] in r.output
    for cmd, phrases in HELP_PHRASES.items():
        text = " ".join(run(cmd, "--help").output.split())  # help is wrapped to the terminal
        for phrase in phrases:
            assert phrase in text, f"attrib {cmd} --help does not mention {phrase!r}"


def test_eval_on_folders(run, tmp_path, source_dirs):
    r = run("eval", source_dirs["src0"].parent, "--shots", "1,3", "--unknown", "src3", "--trials", "2", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["unknown"] == ["src3"] and set(res["shots"]) == {"1", "3"}
    s = res["shots"]["3"]
    for key in ("accuracy", "auroc", "oscr", "eer", "openset_accuracy", "observed_far"):
        assert s[key] is not None
    assert s["accuracy"] > 0.9
    r = run("eval", source_dirs["src0"].parent, "--shots", "x")
    assert r.exit_code == 2


def test_unknowns_kept_and_proposed_as_new_sources(run, enrolled, source_dirs):
    newcomers = sorted(source_dirs["src3"].iterdir())
    r = run("-g", enrolled, "identify", "--json", "--keep-unknown", "--no-detectors", "--far", "0.001", *newcomers)
    rows = [json.loads(line) for line in r.output.splitlines()]
    rejected = [row for row in rows if row["source"] is None]
    assert len(rejected) >= 3
    r = run("-g", enrolled, "sources", "propose", "--min-size", "3", "--json", "--far", "0.05")
    proposals = json.loads(r.output)
    assert r.exit_code == 0 and proposals
    assert set(proposals[0]["members"]) <= {str(p) for p in newcomers}
    assert proposals[0]["size"] >= 3 and proposals[0]["nearest_source"] in {"src0", "src1", "src2"}
    assert "proposal 1" in run("-g", enrolled, "sources", "propose", "--far", "0.05").output


def test_shared_answers_metadata_far_and_strict_json(run, enrolled, source_dirs, tmp_path):
    """The pieces attrib.report gives the CLI and the service alike."""
    from attrib import report

    assert report.parse_metadata(["a=1", " b =x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    with pytest.raises(ValueError, match="'novalue' is not KEY=VALUE"):
        report.parse_metadata(["novalue"])
    assert report.jsonable({"x": float("nan"), "y": (1, float("inf")), "p": tmp_path}) == {"x": None, "y": [1, None], "p": str(tmp_path)}
    q = sorted(source_dirs["src0"].iterdir())[6]
    r = run("-g", enrolled, "enroll", "--generator", "src0", "--meta", "novalue", q)
    assert r.exit_code == 2 and "is not KEY=VALUE" in r.output
    for far, code in ((report.FAR_MAX, 0), (report.FAR_MAX * 1.01, 2), (report.FAR_MIN, 0), (report.FAR_MIN / 2, 2)):
        assert run("-g", enrolled, "identify", "--no-detectors", "--far", far, q).exit_code == code, far
