"""attrib-metadata on files the tests write: A1111 / ComfyUI / InvokeAI PNG chunks, EXIF, XMP, IPTC."""

import io
import json
import struct
from importlib.metadata import PackageNotFoundError, version

import attrib_metadata
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from attrib.cli import build_cli
from attrib.detectors import DetectorImage
from attrib.plugins import make_plugin_manager

PIXELS = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)

A1111 = """a lighthouse at dusk, oil painting
Negative prompt: blurry, lowres
Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Lora hashes: "detail: abc, style: def", Version: v1.9.4"""

COMFY_PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/juggernautXL_v9.safetensors"}},
    "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "pixel-art.safetensors", "model": ["4", 0]}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}},
}
COMFY_WORKFLOW = {
    "nodes": [
        {"id": 1, "type": "UNETLoader", "widgets_values": ["flux1-dev.safetensors", "default"]},
        {"id": 2, "type": "VAELoader", "widgets_values": ["ae.safetensors"]},
        {"id": 3, "type": "UpscaleModelLoader", "widgets_values": ["4x-UltraSharp.pth"]},
    ]
}

XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
 Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/{code}" xmp:CreatorTool="{tool}"/>
</rdf:RDF></x:xmpmeta>"""


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "")


def png(path, **chunks):
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.fromarray(PIXELS).save(path, pnginfo=info)
    return path


def jpeg(path, exif=None, xmp=None):
    kw = {}
    if exif is not None:
        kw["exif"] = exif
    if xmp is not None:
        kw["xmp"] = xmp.encode()
    Image.fromarray(PIXELS).save(path, quality=90, **kw)
    return path


def detect(path):
    return attrib_metadata.MetadataDetector().detect(DetectorImage(path=path))


def test_a1111_parameters(tmp_path):
    ev = detect(png(tmp_path / "a.png", parameters=A1111))
    assert ev.verdict == "synthetic" and ev.score == 0.95 and ev.source_hint == "sd_xl_base_1.0"
    [f] = ev.details["findings"]
    assert f["tool"] == "automatic1111" and f["model_hash"] == "31e35c80fc"
    assert f["settings"]["Lora hashes"] == "detail: abc, style: def" and f["settings"]["Seed"] == "1234"
    assert f["prompt"] == "a lighthouse at dusk, oil painting"


def test_comfyui_prompt_and_workflow(tmp_path):
    ev = detect(png(tmp_path / "c.png", prompt=json.dumps(COMFY_PROMPT), workflow=json.dumps(COMFY_WORKFLOW)))
    assert ev.verdict == "synthetic" and ev.source_hint == "juggernautXL_v9"
    prompt, workflow = ev.details["findings"]
    assert prompt["models"] == ["SDXL/juggernautXL_v9.safetensors"] and prompt["loras"] == ["pixel-art.safetensors"]
    assert workflow["models"] == ["flux1-dev.safetensors"]  # VAE and upscaler loaders are not the generator
    ev = detect(png(tmp_path / "w.png", workflow=json.dumps(COMFY_WORKFLOW)))
    assert ev.source_hint == "flux1-dev"
    ev = detect(png(tmp_path / "bad.png", prompt="{not json"))
    assert ev.verdict == "synthetic" and ev.details["findings"][0]["problem"] == "not valid JSON"


def test_invokeai_and_novelai(tmp_path):
    ev = detect(png(tmp_path / "i.png", invokeai_metadata=json.dumps({"model": {"name": "dreamshaper-8", "base": "sd-1"}})))
    assert ev.source_hint == "dreamshaper-8" and ev.verdict == "synthetic"
    ev = detect(png(tmp_path / "n.png", Software="NovelAI", Source="Stable Diffusion XL C1E1DE52"))
    assert ev.source_hint == "novelai" and ev.verdict == "synthetic"


def test_exif_software_and_a1111_user_comment(tmp_path):
    exif = Image.Exif()
    exif[0x0131] = "Midjourney v6"
    ev = detect(jpeg(tmp_path / "m.jpg", exif=exif))
    assert ev.verdict == "synthetic" and ev.source_hint == "midjourney"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111.encode("utf-16-be")
    ev = detect(jpeg(tmp_path / "u.jpg", exif=exif))
    assert ev.source_hint == "sd_xl_base_1.0" and ev.details["findings"][0]["field"] == "exif:UserComment"


def test_xmp_digital_source_type(tmp_path):
    ev = detect(jpeg(tmp_path / "x.jpg", xmp=XMP.format(code="trainedAlgorithmicMedia", tool="Adobe Photoshop 25.0")))
    assert ev.verdict == "synthetic" and ev.score == 0.95 and ev.source_hint is None
    ev = detect(jpeg(tmp_path / "f.jpg", xmp=XMP.format(code="compositeWithTrainedAlgorithmicMedia", tool="Adobe Firefly")))
    assert ev.verdict == "synthetic" and ev.source_hint == "adobe-firefly"
    ev = detect(png(tmp_path / "p.png", **{"XML:com.adobe.xmp": XMP.format(code="digitalCapture", tool="Lightroom")}))
    assert ev.verdict == "real" and ev.score == 0.1


def test_camera_exif_and_nothing(tmp_path):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D Mark IV"
    ev = detect(jpeg(tmp_path / "cam.jpg", exif=exif))
    assert ev.verdict == "undetermined" and ev.score == 0.3 and "Canon EOS 5D Mark IV" in ev.details["summary"]
    ev = detect(png(tmp_path / "plain.png"))
    assert ev.verdict == "undetermined" and ev.score is None and ev.details["findings"] == []
    ev = attrib_metadata.MetadataDetector().detect(DetectorImage(PIXELS))
    assert ev.verdict == "undetermined" and "no file bytes" in ev.details["reason"]


def _with_iptc_program(jpeg_bytes: bytes, program: bytes) -> bytes:
    """Insert an APP13 (Photoshop 3.0 / 8BIM 0x0404) segment carrying IPTC IIM 2:65."""
    iim = b"\x1c\x02\x41" + struct.pack(">H", len(program)) + program
    if len(iim) % 2:
        iim += b"\x00"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    payload = b"Photoshop 3.0\x00" + resource
    segment = b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg_bytes[:2] + segment + jpeg_bytes[2:]


def test_iptc_originating_program(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(PIXELS).save(buf, format="JPEG")
    path = tmp_path / "iptc.jpg"
    path.write_bytes(_with_iptc_program(buf.getvalue(), b"DALL-E 3"))
    ev = detect(path)
    assert ev.verdict == "synthetic" and ev.source_hint == "dall-e"
    assert ev.details["findings"][0]["field"] == "iptc:OriginatingProgram"


def test_helpers():
    assert attrib_metadata.model_stem("C:\\models\\sd15.ckpt") == "sd15"
    assert attrib_metadata.model_stem("v1-5-pruned-emaonly.safetensors") == "v1-5-pruned-emaonly"
    assert attrib_metadata.decode_user_comment(b"ASCII\x00\x00\x00Steps: 1") == "Steps: 1"
    assert attrib_metadata.decode_user_comment(b"x") is None
    assert attrib_metadata.parse_a1111("just a prompt")["settings"] == {}


def test_detect_cli_demo(tmp_path):
    pm = make_plugin_manager()
    pm.register(attrib_metadata, name="metadata")
    a = png(tmp_path / "a1111.png", parameters=A1111)
    c = png(tmp_path / "comfy.png", prompt=json.dumps(COMFY_PROMPT))
    plain = png(tmp_path / "plain.png")
    r = CliRunner().invoke(build_cli(pm), ["detect", "-d", "metadata", str(a), str(c), str(plain)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "source: sd_xl_base_1.0" in r.output and "source: juggernautXL_v9" in r.output and "no generator metadata" in r.output
    print(r.output)


def test_installed_entry_point_is_listed(monkeypatch):
    try:
        installed = version("attrib-metadata")
    except PackageNotFoundError:
        pytest.skip("attrib-metadata is not pip-installed here")
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "attrib-metadata")
    r = CliRunner().invoke(build_cli(), ["plugins", "--json"], catch_exceptions=False)
    [row] = [p for p in json.loads(r.output) if p["distribution"] == "attrib-metadata"]
    assert row["version"] == installed and row["registers"] == {"detectors": ["metadata"]} and row["error"] is None
