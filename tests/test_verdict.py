"""The verdict (issue 15, part 2): one answer from the fingerprint decision and the detectors'
evidence, by ordered rules (attrib.verdict).

The rules are driven with evidence dicts built as the detectors return them (c2pa, watermark,
metadata, spectral, npr): no C2PA library, no watermark decoder, no network. End to end,
``attrib identify --json`` runs the real attrib-metadata detector (imported from plugins/, where
its package lives) on PNGs carrying AUTOMATIC1111 ``parameters``, and a stripped copy of them."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from attrib import hookimpl
from attrib.cli import build_cli
from attrib.plugins import make_plugin_manager
from attrib.verdict import (
    DETECTOR_SURE_SCORE,
    Facts,
    Finding,
    Judge,
    Rule,
    builtin_rules,
    collect_rules,
    default_judge,
    make_judge,
    same_source,
    summarise,
)

from .conftest import PATTERN_ENCODER, synthetic

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ evidence as detectors return it


def ev(detector, verdict="undetermined", score=None, hint=None, error=None, **details):
    return {"detector": detector, "verdict": verdict, "score": score, "source_hint": hint, "details": details, "error": error}


def c2pa(state="Trusted", claim="trainedAlgorithmicMedia", agent="DALL-E 3", failures=()):
    """attrib-c2pa's evidence: a manifest whose action claims ``claim``, validated as ``state``."""
    ai = claim.lower() in ("trainedalgorithmicmedia", "compositewithtrainedalgorithmicmedia")
    verdict = "synthetic" if ai else ("real" if state != "Invalid" else "undetermined")
    manifest = {
        "label": "urn:c2pa:1",
        "claim_generator": "OpenAI" if ai else "Leica",
        "actions": [
            {
                "action": "c2pa.created",
                "digitalSourceType": f"http://cv.iptc.org/newscodes/digitalsourcetype/{claim}",
                "softwareAgent": agent,
            }
        ],
        "digital_source_types": [f"http://cv.iptc.org/newscodes/digitalsourcetype/{claim}"],
    }
    if state == "Valid" and not failures:  # what c2pa-python says of a sound signature by a signer on no trust list
        failures = ["signingCredential.untrusted"]
    validation = {
        "state": state,
        "failures": [{"code": c, "explanation": c} for c in failures],
        "ingredient_failures": [],
        "informational": [],
    }
    score = {"synthetic": 0.99, "real": 0.02, "undetermined": None}[verdict]
    return ev("c2pa", verdict, score, agent if ai else None, active_manifest="urn:c2pa:1", manifests=[manifest], validation=validation)


def watermark(payload="stable-diffusion-xl", accuracy=0.98):
    if accuracy < 0.9:  # the detector's own bound: below it, no watermark is reported
        return ev("watermark", candidates=[{"payload": payload, "bit_accuracy": accuracy}])
    return ev("watermark", "synthetic", accuracy, payload, payload=payload, bit_accuracy=accuracy, method="dwtDct")


def metadata(model="sd_xl_base_1.0", tool="automatic1111"):
    finding = {"field": "png:parameters", "tool": tool, "hint": model, "strength": 0.95, "model": model}
    return ev("metadata", "synthetic", 0.95, model, format="PNG", findings=[finding])


def fingerprint(source=None, score=0.8, threshold=0.6, best=None):
    best = best or source or "sdxl"
    return {
        "source": source,
        "score": score,
        "threshold": threshold,
        "margin": 0.1,
        "candidates": [{"source": best, "score": score}, {"source": "other", "score": score - 0.1}],
    }


UNKNOWN = fingerprint(None, score=0.4, threshold=0.6)


def judge(decision, *evidence, cameras=()):
    return Judge(builtin_rules(), camera_sources=cameras)(decision, list(evidence))


def decisive(verdict):
    return [b["rule"] for b in verdict["basis"] if b["decisive"]]


# ------------------------------------------------------------------ each rule, in order


def test_builtin_rules_run_in_the_documented_order():
    rules = builtin_rules()
    assert [(r.name, r.priority) for r in rules] == [
        ("c2pa", 100),
        ("watermark", 200),
        ("metadata", 300),
        ("fingerprint", 400),
        ("detectors", 500),
    ]
    registry, failures = collect_rules(make_plugin_manager(load_entry_points=False))
    assert list(registry) == [r.name for r in rules] and failures == []
    assert {info["plugin"] for info in registry.values()} == {"attrib.default_plugins.verdict"}


def test_trusted_c2pa_claim_names_the_tool():
    v = judge(UNKNOWN, c2pa("Trusted"), metadata("sd_xl_base_1.0"), ev("spectral", "synthetic", 0.7))
    assert (v["label"], v["source"]) == ("ai-generated", "DALL-E 3")
    first = v["basis"][0]
    assert first["rule"] == "c2pa" and first["decisive"] and first["detector"] == "c2pa"
    assert first["value"]["validation"] == "Trusted" and not first["forgeable"]
    # metadata names another model: reported, not hidden (C2PA comes first)
    assert [(c["rule"], c["about"], c["against"]["rule"]) for c in v["conflicts"]] == [("metadata", "source", "c2pa")]
    assert v["conflicts"][0]["resolution"] == "c2pa decides: the first sure finding in rule order"
    assert [b["rule"] for b in v["basis"]] == ["c2pa", "fingerprint", "detectors"]


def test_trusted_c2pa_capture_claim_means_camera():
    v = judge(UNKNOWN, c2pa("Trusted", claim="digitalCapture", agent=None))
    assert (v["label"], v["source"], decisive(v)) == ("camera", None, ["c2pa"])


def test_c2pa_that_does_not_validate_is_reported_not_relied_on():
    v = judge(fingerprint("sdxl"), c2pa("Invalid", failures=["assertion.dataHash.mismatch"]))
    assert (v["label"], v["source"], decisive(v)) == ("ai-generated", "sdxl", ["fingerprint"])
    (conflict,) = v["conflicts"]  # it names DALL-E 3, the fingerprint sdxl
    assert conflict["rule"] == "c2pa" and not conflict["sure"] and "not relied on" in conflict["reason"]
    assert conflict["resolution"] == "fingerprint decides: the first sure finding in rule order; c2pa is not sure"
    assert conflict["value"]["failures"] == ["assertion.dataHash.mismatch"]
    assert judge(UNKNOWN, c2pa("Invalid"))["label"] == "undetermined"


def test_c2pa_contradicting_a_confident_fingerprint_is_a_conflict():
    """The issue's example: C2PA claims DALL-E 3, the fingerprint says sdxl above its threshold."""
    v = judge(fingerprint("sdxl", score=0.9, threshold=0.6), c2pa("Trusted"))
    assert (v["label"], v["source"]) == ("ai-generated", "DALL-E 3")
    (conflict,) = v["conflicts"]
    assert conflict["rule"] == "fingerprint" and conflict["source"] == "sdxl" and conflict["about"] == "source"
    assert conflict["against"] == {"rule": "c2pa", "detector": "c2pa", "label": "ai-generated", "source": "DALL-E 3"}
    assert conflict["value"] == {"score": 0.9, "threshold": 0.6, "margin": 0.1}
    # a C2PA capture claim against a generator the fingerprint accepts: a label conflict
    v = judge(fingerprint("sdxl"), c2pa("Trusted", claim="digitalCapture", agent=None))
    assert v["label"] == "camera" and v["conflicts"][0]["about"] == "label"


def test_untrusted_signer_is_forgeable_and_gives_way_to_a_confident_fingerprint():
    v = judge(UNKNOWN, c2pa("Valid"))
    assert (v["label"], v["source"]) == ("ai-generated", "DALL-E 3") and v["basis"][0]["forgeable"]
    v = judge(fingerprint("sdxl"), c2pa("Valid"))
    assert (v["label"], v["source"]) == ("ai-generated", None)
    assert "withheld" in v["conflicts"][0]["resolution"]
    # a self-signed capture claim never makes camera against a generator the fingerprint accepts
    v = judge(fingerprint("sdxl"), c2pa("Valid", claim="digitalCapture", agent=None))
    assert (v["label"], v["source"]) == ("undetermined", None) and v["conflicts"][0]["about"] == "label"


def test_watermark_with_enough_bits_names_its_scheme():
    v = judge(UNKNOWN, watermark("stable-diffusion-xl", 0.97), metadata("juggernautXL_v9"))
    assert (v["label"], v["source"], decisive(v)) == ("ai-generated", "stable-diffusion-xl", ["watermark"])
    assert v["basis"][0]["value"] == {"payload": "stable-diffusion-xl", "bit_accuracy": 0.97, "needed": 0.9}
    assert [c["rule"] for c in v["conflicts"]] == ["metadata"]
    # the scheme and the gallery's name for it agree: no conflict
    v = judge(fingerprint("sdxl"), watermark("stable-diffusion-xl"))
    assert v["conflicts"] == [] and decisive(v) == ["watermark"]
    # too few bits: the detector reports no watermark, the fingerprint decides
    v = judge(fingerprint("sd15"), watermark(accuracy=0.7))
    assert decisive(v) == ["fingerprint"]


def test_watermark_below_the_bound_is_not_sure():
    low = ev("watermark", "synthetic", 0.8, "stable-diffusion-xl", payload="stable-diffusion-xl", bit_accuracy=0.8)
    v = judge(UNKNOWN, low)
    assert v["label"] == "undetermined" and v["basis"][0]["rule"] == "watermark" and not v["basis"][0]["sure"]


def test_metadata_names_the_model_when_nothing_surer_speaks():
    v = judge(UNKNOWN, metadata("sd_xl_base_1.0"))
    assert (v["label"], v["source"], decisive(v)) == ("ai-generated", "sd_xl_base_1.0", ["metadata"])
    b = v["basis"][0]
    assert b["forgeable"] and b["value"]["tool"] == "automatic1111" and b["value"]["fields"] == ["png:parameters"]
    assert "forged" in b["reason"]
    assert v["basis"][1]["rule"] == "fingerprint" and v["basis"][1]["label"] == "undetermined"  # considered: unknown


@pytest.mark.parametrize(
    "decision, label",
    [
        (fingerprint("midjourney6", score=0.9, threshold=0.6), "ai-generated"),
        (fingerprint("real", score=0.9, threshold=0.6), "undetermined"),
    ],
)
def test_metadata_alone_never_overrules_a_confident_fingerprint(decision, label):
    v = judge(decision, metadata("sd_xl_base_1.0"))
    assert (v["label"], v["source"]) == (label, None)
    (conflict,) = v["conflicts"]
    assert conflict["rule"] == "fingerprint" and conflict["against"]["rule"] == "metadata"
    assert "metadata is forgeable and does not overrule fingerprint" in conflict["resolution"]
    assert conflict["about"] == ("source" if label == "ai-generated" else "label")


def test_metadata_agreeing_with_the_fingerprint_keeps_both():
    v = judge(fingerprint("sdxl"), metadata("sd_xl_base_1.0"))
    assert (v["label"], v["source"], v["conflicts"]) == ("ai-generated", "sd_xl_base_1.0", [])
    assert [b["rule"] for b in v["basis"]] == ["metadata", "fingerprint"]
    # a graph that names no model: the fingerprint gives the source
    v = judge(fingerprint("sdxl"), metadata(None, tool="comfyui"))
    assert (v["label"], v["source"], decisive(v)) == ("ai-generated", "sdxl", ["metadata", "fingerprint"])


def test_metadata_capture_label_never_makes_camera():
    capture = ev("metadata", "real", 0.1, None, findings=[{"field": "xmp:DigitalSourceType", "capture": True}])
    v = judge(UNKNOWN, capture)
    assert v["label"] == "undetermined" and v["basis"][0]["label"] == "camera" and not v["basis"][0]["sure"]


def test_fingerprint_decides_next():
    v = judge(fingerprint("sdxl", score=0.81, threshold=0.6))
    assert (v["label"], v["source"], decisive(v)) == ("ai-generated", "sdxl", ["fingerprint"])
    assert v["basis"][0]["value"] == {"score": 0.81, "threshold": 0.6, "margin": 0.1}


def test_camera_needs_a_real_source_the_fingerprint_accepts():
    assert judge(fingerprint("real"))["label"] == "camera"
    v = judge(fingerprint("canon-eos"), cameras={"canon-eos"})
    assert (v["label"], v["source"]) == ("camera", "canon-eos")
    assert judge(fingerprint("canon-eos"))["label"] == "ai-generated"  # not a camera class in this gallery
    assert judge(fingerprint(None, score=0.3, best="real"))["label"] == "undetermined"  # rejected


def test_detector_scores_come_last():
    sure = [ev("spectral", "synthetic", 0.97), ev("npr", "synthetic", DETECTOR_SURE_SCORE)]
    v = judge(UNKNOWN, *sure)
    assert (v["label"], v["source"], decisive(v)) == ("ai-generated", None, ["detectors"])
    assert [b["detector"] for b in v["basis"] if b["rule"] == "detectors"] == ["spectral", "npr"]
    # one weak or dissenting score: nothing sure
    assert judge(UNKNOWN, ev("spectral", "synthetic", 0.97), ev("npr", "synthetic", 0.6))["label"] == "undetermined"
    v = judge(UNKNOWN, ev("spectral", "synthetic", 0.97), ev("npr", "real", 0.1))
    assert v["label"] == "undetermined" and v["conflicts"][0]["detector"] == "npr"
    assert "neither is sure" in v["conflicts"][0]["resolution"]
    # low scores never mean camera
    assert judge(UNKNOWN, ev("spectral", "real", 0.02), ev("npr", "real", 0.03))["label"] == "undetermined"
    # the fingerprint comes before them: their dissent is a conflict, not a decision
    v = judge(fingerprint("real"), *sure)
    assert v["label"] == "camera" and {c["detector"] for c in v["conflicts"]} == {"spectral", "npr"}


def test_undetermined_when_nothing_is_sure():
    v = judge(UNKNOWN)
    assert v == {
        "label": "undetermined",
        "source": None,
        "basis": [
            {
                "rule": "fingerprint",
                "detector": None,
                "label": "undetermined",
                "source": None,
                "sure": False,
                "forgeable": False,
                "value": {"score": 0.4, "threshold": 0.6, "margin": 0.1, "best": "sdxl"},
                "reason": "unknown: the best candidate (sdxl) scores 0.400, below its threshold 0.600",
                "decisive": False,
            }
        ],
        "conflicts": [],
        "errors": [],
    }
    assert judge(None) == {"label": "undetermined", "source": None, "basis": [], "conflicts": [], "errors": []}


def test_detector_errors_are_not_evidence():
    broken = [ev("c2pa", error="ImportError: no c2pa"), ev("metadata", error="timed out after 10 s")]
    v = judge(fingerprint("sdxl"), *broken)
    assert decisive(v) == ["fingerprint"] and len(v["basis"]) == 1


def test_same_source_compares_loosely():
    assert same_source("sdxl", "sd_xl_base_1.0") and same_source("DALL-E 3", "dalle3") and same_source("stable-diffusion-xl", "sdxl")
    assert not same_source("sdxl", "midjourney6") and same_source(None, "sdxl")


def test_summary_is_one_line():
    v = judge(fingerprint("sdxl", score=0.9), c2pa("Trusted"))
    line = summarise(v)
    assert (
        "\n" not in line
        and line.startswith("ai-generated: DALL-E 3 (from c2pa)")
        and "1 conflict: fingerprint says ai-generated sdxl" in line
    )


# ------------------------------------------------------------------ plugin rules


class Always(Rule):
    def __init__(self, name, priority, label="ai-generated", source="plugin-gen", sure=True):
        self.name, self.priority, self._finding = (
            name,
            priority,
            Finding(label, source, sure=sure, detector="house-detector", value={"x": 1}),
        )

    def evaluate(self, facts):
        assert isinstance(facts, Facts)
        return self._finding


class Raises(Rule):
    name = "explodes"
    priority = 150

    def evaluate(self, facts):
        raise RuntimeError("rule exploded\nsecond line")


class RulePlugin:
    def __init__(self, *rules):
        self.rules = rules

    @hookimpl
    def register_verdict_rules(self, register):
        for rule in self.rules:
            register(rule)


def plugin_judge(*plugins):
    pm = make_plugin_manager(load_entry_points=False)
    for i, p in enumerate(plugins):
        pm.register(p, name=f"rules-{i}")
    return make_judge(pm)


def test_plugin_rule_takes_part_by_priority():
    early = plugin_judge(RulePlugin(Always("house-early", 50)))
    v = early(fingerprint("sdxl"), [c2pa("Trusted")])
    assert (v["label"], v["source"], decisive(v)) == ("ai-generated", "plugin-gen", ["house-early"])
    assert [c["rule"] for c in v["conflicts"]] == ["c2pa", "fingerprint"]
    late = plugin_judge(RulePlugin(Always("house-late", 450)))
    v = late(fingerprint("sdxl"), [c2pa("Trusted")])
    assert decisive(v) == ["c2pa"] and [c["rule"] for c in v["conflicts"]] == ["fingerprint", "house-late"]
    # between the fingerprint and the detector scores, when nothing above is sure
    v = late(UNKNOWN, [ev("spectral", "synthetic", 0.99)])
    assert decisive(v) == ["house-late"] and [b["rule"] for b in v["basis"]] == ["fingerprint", "house-late", "detectors"]


def test_plugin_rule_that_raises_is_reported():
    v = plugin_judge(RulePlugin(Raises()))(fingerprint("sdxl"), [])
    assert decisive(v) == ["fingerprint"]
    assert v["errors"] == [{"rule": "explodes", "plugin": "rules-0", "error": "RuntimeError: rule exploded"}]


def test_malformed_findings_and_refused_registrations_are_reported():
    class BadLabel(Rule):
        name, priority = "bad-label", 10

        def evaluate(self, facts):
            return {"label": "fake", "source": "x"}

    class Opaque(Rule):
        name, priority = "opaque", 20

        def evaluate(self, facts):
            return Finding("ai-generated", "x", value=object())

    class NoPriority:
        name = "no-priority"
        priority = "high"

        def evaluate(self, facts):
            return None

    class Broken:
        @hookimpl
        def register_verdict_rules(self, register):
            raise ValueError("cannot build rules")

    j = plugin_judge(RulePlugin(BadLabel(), Opaque(), NoPriority(), Always("c2pa", 1)), Broken())
    v = j(fingerprint("sdxl"), [])
    assert decisive(v) == ["fingerprint"]
    errors = [(e["plugin"], e["rule"] or "", e["error"]) for e in v["errors"]]
    assert sorted(errors) == [
        ("rules-0", "", "register_verdict_rules: verdict rule 'no-priority' has priority 'high': expected a finite number"),
        ("rules-0", "", "register_verdict_rules: verdict rule name 'c2pa' is already registered by attrib.default_plugins.verdict"),
        ("rules-0", "bad-label", "ValueError: returned label 'fake'; expected one of ai-generated, camera, undetermined"),
        (
            "rules-0",
            "opaque",
            "ValueError: returned a value that is not JSON-serialisable (Object of type object is not JSON serializable)",
        ),
        ("rules-1", "", "register_verdict_rules: ValueError: cannot build rules"),
    ]


def test_dict_findings_are_accepted():
    class DictRule(Rule):
        name, priority = "dicts", 10

        def evaluate(self, facts):
            return [{"label": "camera", "source": None, "sure": True, "reason": "house camera registry"}]

    v = plugin_judge(RulePlugin(DictRule()))(UNKNOWN, [])
    assert v["label"] == "camera" and v["basis"][0]["reason"] == "house camera registry"


# ------------------------------------------------------------------ end to end

A1111 = """a lighthouse at dusk, oil painting
Negative prompt: blurry
Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.9.4"""


def _metadata_plugin():
    """attrib-metadata's module, from its package folder (installed or not)."""
    spec = importlib.util.spec_from_file_location("attrib_metadata_under_test", ROOT / "plugins" / "attrib-metadata" / "attrib_metadata.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _png(path, arr, **chunks):
    info = PngInfo()
    for k, v in chunks.items():
        info.add_text(k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, pnginfo=info)
    return path


@pytest.fixture
def cli_and_gallery(tmp_path, source_dirs):
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(_metadata_plugin(), name="metadata")
    cli = build_cli(pm)
    g = tmp_path / "gal"
    for name in ("src0", "src1", "src2"):
        files = sorted(source_dirs[name].iterdir())[:6]
        new = ["--encoder", PATTERN_ENCODER] if name == "src0" else []
        r = CliRunner().invoke(cli, ["-g", str(g), "enroll", "--generator", name, "--family", "gan", *new, *map(str, files)])
        assert r.exit_code == 0, r.output
    return cli, g


def _identify(cli, g, *paths, extra=()):
    r = CliRunner().invoke(cli, ["-g", str(g), "identify", "--json", *extra, *map(str, paths)])
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.output.splitlines()]


def test_identify_json_verdict_from_png_parameters(cli_and_gallery, tmp_path):
    cli, g = cli_and_gallery
    never = _png(tmp_path / "q" / "never.png", synthetic(5, 3), parameters=A1111)  # a source not enrolled
    known = _png(tmp_path / "q" / "known.png", synthetic(1, 7), parameters=A1111)  # src1's, with forged metadata
    stripped = _png(tmp_path / "q" / "stripped.png", synthetic(1, 7))  # the same pixels, metadata stripped
    rows = _identify(cli, g, never, known, stripped, extra=("--far", "0.01", "-d", "metadata"))
    by = {Path(r["path"]).name: r for r in rows}
    assert by["never.png"]["source"] is None and by["known.png"]["source"] == "src1"  # what the fingerprint says

    v = by["never.png"]["verdict"]
    assert set(v) == {"label", "source", "basis", "conflicts", "errors"}
    assert (v["label"], v["source"]) == ("ai-generated", "sd_xl_base_1.0")
    meta = v["basis"][0]
    assert (meta["rule"], meta["detector"], meta["decisive"], meta["forgeable"]) == ("metadata", "metadata", True, True)
    assert meta["value"] == {"fields": ["png:parameters"], "tool": "automatic1111", "model": "sd_xl_base_1.0"}

    v = by["known.png"]["verdict"]  # metadata names sdxl, the fingerprint accepts src1: reported, source withheld
    assert (v["label"], v["source"]) == ("ai-generated", None)
    assert [(c["rule"], c["source"], c["against"]["source"]) for c in v["conflicts"]] == [("fingerprint", "src1", "sd_xl_base_1.0")]

    v = by["stripped.png"]["verdict"]  # stripped: the verdict falls back to the fingerprint
    assert (v["label"], v["source"], decisive(v), v["conflicts"]) == ("ai-generated", "src1", ["fingerprint"], [])


def test_identify_text_shows_the_verdict_in_one_line(cli_and_gallery, tmp_path):
    cli, g = cli_and_gallery
    q = _png(tmp_path / "q" / "never.png", synthetic(5, 3), parameters=A1111)
    r = CliRunner().invoke(cli, ["-g", str(g), "identify", "--far", "0.01", "-d", "metadata", str(q)])
    assert r.exit_code == 0, r.output
    lines = [line.strip() for line in r.output.splitlines() if "verdict:" in line]
    assert lines == ["verdict: ai-generated: sd_xl_base_1.0 (from metadata)"]


def test_identify_survives_a_raising_plugin_rule(cli_and_gallery, tmp_path):
    _, g = cli_and_gallery
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(RulePlugin(Raises()), name="house-rules")
    q = _png(tmp_path / "q" / "a.png", synthetic(1, 7))
    (row,) = _identify(build_cli(pm), g, q, extra=("--no-detectors",))
    assert row["verdict"]["errors"] == [{"rule": "explodes", "plugin": "house-rules", "error": "RuntimeError: rule exploded"}]
    assert row["verdict"]["label"] == "ai-generated" and row["source"] == row["verdict"]["source"] == "src1"


def test_unreadable_image_has_an_undetermined_verdict(cli_and_gallery, tmp_path):
    cli, g = cli_and_gallery
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    good = _png(tmp_path / "q" / "a.png", synthetic(0, 7))
    rows = _identify(cli, g, bad, good)
    assert rows[0]["error"] and rows[0]["verdict"] == default_judge()(None)


def test_http_identify_and_page_show_the_verdict(tmp_path, source_dirs):
    from fastapi.testclient import TestClient

    from attrib.service import ServiceConfig, create_app

    g = tmp_path / "gal"
    cli = build_cli()
    for name in ("src0", "src1"):
        files = sorted(source_dirs[name].iterdir())[:6]
        assert CliRunner().invoke(cli, ["-g", str(g), "enroll", "--generator", name, *map(str, files)]).exit_code == 0
    q = _png(tmp_path / "q" / "a.png", synthetic(1, 7))
    with TestClient(create_app(ServiceConfig(gallery=g, encode_processes=0))) as client:
        files = [("image", ("a.png", q.read_bytes(), "image/png"))]
        (row,) = client.post("/v1/identify", files=files, data={"detectors": "none"}).json()
        assert row["source"] == "src1" and row["verdict"]["label"] == "ai-generated" and row["verdict"]["source"] == "src1"
        html = client.post("/ui/identify?fragment=1", files=files).text
    assert 'class="overall overall-ai-generated"' in html and "Verdict: <strong" in html and "from fingerprint" in html
