"""attrib-metadata: generation parameters and provenance labels that tools leave in image files.

What is read (with Pillow, from the file's bytes; nothing is fetched):

* PNG text chunks: AUTOMATIC1111 / Forge ``parameters`` (prompt, then ``Steps: .., Model: ..``),
  ComfyUI ``prompt`` (the API graph) and ``workflow`` (the UI graph), InvokeAI
  ``invokeai_metadata``, NovelAI (``Software: NovelAI``), and ``Software``.
* EXIF: ``Software``, ``Make`` / ``Model`` (a camera), ``UserComment`` (where AUTOMATIC1111 writes
  its parameters in JPEG and WebP files).
* XMP: IPTC ``DigitalSourceType`` (``trainedAlgorithmicMedia`` and friends, or
  ``digitalCapture``) and ``xmp:CreatorTool``; IPTC IIM ``OriginatingProgram`` (2:65).

The source hint is the checkpoint / UNet file the tool loaded (``sd_xl_base_1.0.safetensors`` ->
``sd_xl_base_1.0``), else the generator named by the software field. Metadata is easy to strip
and to forge: ``synthetic`` here means "a generator's own record says so", and its absence means
nothing (``undetermined``, score null).
"""

from __future__ import annotations

import json
import re
from pathlib import PurePath, PureWindowsPath

from attrib import hookimpl
from attrib.detectors import Detector

__version__ = "0.1.0"

IPTC_AI = {
    "trainedalgorithmicmedia": 0.95,
    "compositewithtrainedalgorithmicmedia": 0.85,
    "algorithmicmedia": 0.9,
    "compositesynthetic": 0.85,
}
IPTC_CAPTURE = {"digitalcapture", "negativefilm", "positivefilm", "print", "computationalcapture"}

#: software / creator-tool names of generators (lower case substring -> source hint)
AI_SOFTWARE = {
    "midjourney": "midjourney",
    "dall-e": "dall-e",
    "dall·e": "dall-e",
    "stable diffusion": "stable-diffusion",
    "stablediffusion": "stable-diffusion",
    "novelai": "novelai",
    "firefly": "adobe-firefly",
    "imagen": "imagen",
    "comfyui": "comfyui",
    "automatic1111": "automatic1111",
    "invokeai": "invokeai",
    "fooocus": "fooocus",
    "leonardo.ai": "leonardo",
    "ideogram": "ideogram",
    "flux": "flux",
    "gpt-4o": "gpt-4o",
    "chatgpt": "chatgpt",
    "bing image creator": "bing-image-creator",
}
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")
#: ComfyUI input names that hold the main model (checkpoints, diffusion models, GGUF UNets)
COMFY_MODEL_INPUTS = ("ckpt_name", "unet_name")
A1111_PARAM = re.compile(r'\s*([\w][\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
EXIF_SOFTWARE, EXIF_MAKE, EXIF_MODEL, EXIF_USER_COMMENT, EXIF_IFD = 0x0131, 0x010F, 0x0110, 0x9286, 0x8769
XMP_DST = re.compile(r"DigitalSourceType(?:\s*=\s*[\"']|>\s*)([^\"'<\s]+)", re.IGNORECASE)
XMP_CREATOR_TOOL = re.compile(r"CreatorTool(?:\s*=\s*[\"']|>\s*)([^\"'<]+)", re.IGNORECASE)


def model_stem(name: str) -> str:
    """``models/checkpoints/sd_xl_base_1.0.safetensors`` -> ``sd_xl_base_1.0``."""
    base = PureWindowsPath(name).name if "\\" in name else PurePath(name).name
    for suffix in MODEL_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def parse_a1111(text: str) -> dict:
    """AUTOMATIC1111's ``parameters``: prompt, negative prompt and the last line's settings."""
    lines = text.strip().split("\n")
    settings_line = lines[-1] if len(lines) > 0 and "Steps:" in lines[-1] else ""
    body = lines[:-1] if settings_line else lines
    prompt, negative, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    settings = {}
    for key, value in A1111_PARAM.findall(settings_line):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        settings[key.strip()] = value
    return {"prompt": "\n".join(prompt).strip(), "negative_prompt": "\n".join(negative).strip(), "settings": settings}


def comfy_models(prompt_or_workflow) -> tuple[list[str], list[str]]:
    """(model files, LoRA files) a ComfyUI API graph (``prompt``) or UI graph (``workflow``) loads."""
    models, loras = [], []
    if isinstance(prompt_or_workflow, dict) and isinstance(prompt_or_workflow.get("nodes"), list):
        for node in prompt_or_workflow["nodes"]:  # UI graph: widget values, no input names
            if not isinstance(node, dict):
                continue
            kind = str(node.get("type", ""))
            values = node.get("widgets_values") or []
            files = [v for v in values if isinstance(v, str) and v.lower().endswith(MODEL_SUFFIXES)]
            if "lora" in kind.lower():
                loras += files
            elif "loader" in kind.lower() and "upscale" not in kind.lower() and "vae" not in kind.lower() and "clip" not in kind.lower():
                models += files[:1]
    elif isinstance(prompt_or_workflow, dict):
        for node in prompt_or_workflow.values():  # API graph: {id: {class_type, inputs}}
            if not isinstance(node, dict):
                continue
            inputs = node.get("inputs") or {}
            for key in COMFY_MODEL_INPUTS:
                if isinstance(inputs.get(key), str):
                    models.append(inputs[key])
            if isinstance(inputs.get("lora_name"), str):
                loras.append(inputs["lora_name"])
    return list(dict.fromkeys(models)), list(dict.fromkeys(loras))


def decode_user_comment(raw) -> str | None:
    """EXIF UserComment: an 8-byte character-code prefix, then the text."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, (bytes, bytearray)) or len(raw) < 8:
        return None
    code, body = bytes(raw[:8]), bytes(raw[8:])
    if code.startswith(b"UNICODE"):
        for enc in ("utf-16-be", "utf-16-le"):
            try:
                text = body.decode(enc)
            except UnicodeDecodeError:
                continue
            if text.isprintable() or "\n" in text:
                return text.rstrip("\x00")
        return body.decode("utf-16-be", "replace").rstrip("\x00")
    return body.decode("utf-8", "replace").rstrip("\x00")


def software_hint(value: str) -> str | None:
    low = value.lower()
    for key, hint in AI_SOFTWARE.items():
        if key in low:
            return hint
    return None


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class MetadataDetector(Detector):
    name = "metadata"
    description = "generation parameters and provenance labels in PNG text, EXIF, XMP and IPTC"

    def detect(self, image):
        if image.data is None:
            return self.evidence(reason="no file bytes: an in-memory image carries no metadata", summary="no file to read")
        with image.open() as img:
            fmt = img.format
            text = {}
            try:
                text = dict(getattr(img, "text", None) or {})  # PNG: every text chunk, also after IDAT
            except (OSError, ValueError, SyntaxError):
                pass
            info = dict(img.info)
            exif = img.getexif()
            exif_ifd = exif.get_ifd(EXIF_IFD) if exif else {}
            iptc = None
            if fmt == "JPEG":
                from PIL import IptcImagePlugin

                try:
                    iptc = IptcImagePlugin.getiptcinfo(img)
                except (OSError, ValueError, SyntaxError):
                    iptc = None
        chunks = {k: v for k, v in {**info, **text}.items() if isinstance(v, (str, bytes))}
        findings: list[dict] = []
        self._png_text(chunks, findings)
        self._exif(exif, exif_ifd, findings)
        self._xmp(chunks, findings)
        if iptc:
            program = iptc.get((2, 65))
            if program:
                program = program.decode("utf-8", "replace") if isinstance(program, bytes) else str(program)
                findings.append(
                    {
                        "field": "iptc:OriginatingProgram",
                        "value": program,
                        "hint": software_hint(program),
                        "strength": 0.9 if software_hint(program) else None,
                    }
                )
        return self._verdict(findings, fmt)

    # ------------------------------------------------------------------ readers

    def _png_text(self, chunks, findings):
        params = chunks.get("parameters")
        if isinstance(params, str) and params.strip():
            parsed = parse_a1111(params)
            s = parsed["settings"]
            hint = model_stem(s["Model"]) if s.get("Model") else None
            findings.append(
                {
                    "field": "png:parameters",
                    "tool": "automatic1111",
                    "hint": hint,
                    "strength": 0.95,
                    "model": s.get("Model"),
                    "model_hash": s.get("Model hash"),
                    "prompt": _short(parsed["prompt"]),
                    "settings": s,
                }
            )
        for key in ("prompt", "workflow"):
            raw = chunks.get(key)
            if not isinstance(raw, str):
                continue
            try:
                graph = json.loads(raw)
            except ValueError:
                findings.append({"field": f"png:{key}", "tool": "comfyui", "problem": "not valid JSON", "hint": None, "strength": 0.8})
                continue
            models, loras = comfy_models(graph)
            findings.append(
                {
                    "field": f"png:{key}",
                    "tool": "comfyui",
                    "hint": model_stem(models[0]) if models else None,
                    "strength": 0.95,
                    "models": models,
                    "loras": loras,
                }
            )
        raw = chunks.get("invokeai_metadata")
        if isinstance(raw, str):
            try:
                meta = json.loads(raw)
            except ValueError:
                meta = {}
            model = meta.get("model") if isinstance(meta, dict) else None
            name = model.get("name") if isinstance(model, dict) else model if isinstance(model, str) else None
            findings.append({"field": "png:invokeai_metadata", "tool": "invokeai", "hint": name, "strength": 0.95, "model": name})
        software = chunks.get("Software")
        if isinstance(software, str) and software.strip():
            hint = software_hint(software)
            findings.append({"field": "png:Software", "value": software, "hint": hint, "strength": 0.9 if hint else None})

    def _exif(self, exif, exif_ifd, findings):
        if not exif:
            return
        software = exif.get(EXIF_SOFTWARE)
        if isinstance(software, str) and software.strip():
            hint = software_hint(software)
            findings.append({"field": "exif:Software", "value": software.strip(), "hint": hint, "strength": 0.9 if hint else None})
        comment = decode_user_comment(exif_ifd.get(EXIF_USER_COMMENT)) if exif_ifd else None
        if comment and "Steps:" in comment:
            parsed = parse_a1111(comment)
            s = parsed["settings"]
            findings.append(
                {
                    "field": "exif:UserComment",
                    "tool": "automatic1111",
                    "hint": model_stem(s["Model"]) if s.get("Model") else None,
                    "strength": 0.95,
                    "model": s.get("Model"),
                    "prompt": _short(parsed["prompt"]),
                    "settings": s,
                }
            )
        make, model = exif.get(EXIF_MAKE), exif.get(EXIF_MODEL)
        if isinstance(make, str) and make.strip() or isinstance(model, str) and model.strip():
            camera = " ".join(str(v).strip() for v in (make, model) if isinstance(v, str) and v.strip())
            findings.append({"field": "exif:Make/Model", "value": camera, "hint": None, "strength": None, "camera": True})

    def _xmp(self, chunks, findings):
        packets = [v for k, v in chunks.items() if k in ("xmp", "XML:com.adobe.xmp")]
        for packet in packets:
            xml = packet.decode("utf-8", "replace") if isinstance(packet, bytes) else packet
            for value in dict.fromkeys(XMP_DST.findall(xml)):
                code = value.rstrip("/").rsplit("/", 1)[-1]
                low = code.lower()
                if low in IPTC_AI:
                    findings.append({"field": "xmp:DigitalSourceType", "value": value, "hint": None, "strength": IPTC_AI[low]})
                elif low in IPTC_CAPTURE:
                    findings.append({"field": "xmp:DigitalSourceType", "value": value, "hint": None, "strength": None, "capture": True})
                else:
                    findings.append({"field": "xmp:DigitalSourceType", "value": value, "hint": None, "strength": None})
            for tool in dict.fromkeys(XMP_CREATOR_TOOL.findall(xml)):
                hint = software_hint(tool)
                findings.append({"field": "xmp:CreatorTool", "value": tool.strip(), "hint": hint, "strength": 0.9 if hint else None})

    # ------------------------------------------------------------------ verdict

    def _verdict(self, findings, fmt):
        details = {"format": fmt, "findings": findings}
        ai = [f for f in findings if f.get("strength")]
        if ai:
            score = max(f["strength"] for f in ai)
            # the checkpoint a tool loaded beats a software name
            hint = next((f["hint"] for f in ai if f.get("hint") and f.get("tool")), None) or next(
                (f["hint"] for f in ai if f.get("hint")), None
            )
            details["summary"] = "generator metadata: " + ", ".join(dict.fromkeys(f["field"] for f in ai))
            return self.evidence("synthetic", score, hint, **details)
        if any(f.get("capture") for f in findings):
            details["summary"] = "IPTC DigitalSourceType says captured by a camera"
            return self.evidence("real", 0.1, None, **details)
        if any(f.get("camera") for f in findings):
            camera = next(f["value"] for f in findings if f.get("camera"))
            details["summary"] = f"camera EXIF ({camera}), no generator metadata"
            return self.evidence("undetermined", 0.3, None, **details)
        details["summary"] = "no generator metadata" if not findings else "metadata, none from a generator"
        return self.evidence(**details)


@hookimpl
def register_detectors(register):
    register(MetadataDetector())
