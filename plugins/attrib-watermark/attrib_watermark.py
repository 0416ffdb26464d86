"""attrib-watermark: reads the invisible DWT-DCT watermarks that open Stable Diffusion pipelines
embed, with the invisible-watermark package (``imwatermark``).

Known payloads (:data:`KNOWN`):

* ``stable-diffusion-xl``: the 48-bit message of Stability AI's generative-models and diffusers'
  SDXL pipelines (``0b1011001111101100...``).
* ``stable-diffusion-v1``: the bytes ``StableDiffusionV1`` (CompVis txt2img scripts).
* ``stable-diffusion-v2``: the bytes ``SDV2`` (Stability AI stablediffusion scripts).

More can be added with ``ATTRIB_WATERMARK_PAYLOADS``: a JSON file holding a list of
``{"name", "source_hint", "text" | "hex" | "bits"}``.

Decoding reads each 4 x 4 block of the Haar approximation of the U channel once (the package's
``EmbedMaxDct.infer_dct_matrix``) and then votes the block bits for every payload length. Pipelines
disagree on channel order (the SD scripts hand OpenCV BGR, diffusers hands it RGB), so both orders
are tried. A payload matches when at least :data:`MATCH` of its bits agree; the chance that an
unmarked image matches a 32-bit payload that well is below 1e-5.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from attrib import hookimpl
from attrib.detectors import Detector

__version__ = "0.1.0"

SDXL_MESSAGE = 0b101100111110110010010000011110111011000110011110
#: fraction of agreeing bits for a match
MATCH = 0.9
#: blocks read at most (cost bound on huge images); the top rows are read, keeping block numbering
MAX_BLOCKS = 40_000


def _bits_of_bytes(data: bytes) -> list[int]:
    return [int(b) for b in np.unpackbits(np.frombuffer(data, np.uint8))]


KNOWN = [
    {"name": "stable-diffusion-xl", "source_hint": "stable-diffusion-xl", "bits": [int(b) for b in bin(SDXL_MESSAGE)[2:]]},
    {"name": "stable-diffusion-v1", "source_hint": "stable-diffusion-v1", "bits": _bits_of_bytes(b"StableDiffusionV1")},
    {"name": "stable-diffusion-v2", "source_hint": "stable-diffusion-v2", "bits": _bits_of_bytes(b"SDV2")},
]


def known_payloads() -> list[dict]:
    """:data:`KNOWN` plus the payloads in ``$ATTRIB_WATERMARK_PAYLOADS`` (a JSON list)."""
    payloads = list(KNOWN)
    path = os.environ.get("ATTRIB_WATERMARK_PAYLOADS")
    if not path:
        return payloads
    try:
        entries = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as exc:
        raise ValueError(f"ATTRIB_WATERMARK_PAYLOADS={path}: cannot read a JSON list ({exc})") from None
    for e in entries if isinstance(entries, list) else []:
        if "bits" in e:
            bits = [int(b) for b in e["bits"]]
        elif "hex" in e:
            bits = _bits_of_bytes(bytes.fromhex(e["hex"]))
        elif "text" in e:
            bits = _bits_of_bytes(str(e["text"]).encode("utf-8"))
        else:
            raise ValueError(f"ATTRIB_WATERMARK_PAYLOADS: entry {e!r} has no text, hex or bits")
        payloads.append({"name": str(e.get("name", "custom")), "source_hint": e.get("source_hint"), "bits": bits})
    return payloads


#: the package's default embedding strength per YUV channel (its decoder reads channels 0 and 1)
SCALES = (0, 36, 36)


def block_scores(bgr: np.ndarray) -> np.ndarray:
    """Per-block bit estimates (0/1) of the dwtDct scheme, in the package's block order: the
    package's own per-block reader, run once for all payload lengths."""
    import cv2
    import pywt
    from imwatermark.maxDct import EmbedMaxDct

    reader = EmbedMaxDct(watermarks=[], wmLen=1, scales=list(SCALES))
    rows, cols = bgr.shape[:2]
    yuv = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV)
    raw: list[int] = []
    for channel in range(2):
        if SCALES[channel] <= 0:
            continue
        ca1, _ = pywt.dwt2(yuv[: rows // 4 * 4, : cols // 4 * 4, channel], "haar")
        b = 4  # the package's block size
        for i in range(ca1.shape[0] // b):
            for j in range(ca1.shape[1] // b):
                raw.append(reader.infer_dct_matrix(ca1[i * b : i * b + b, j * b : j * b + b], SCALES[channel]))
    return np.asarray(raw, dtype=np.float32)


def vote(scores: np.ndarray, length: int) -> np.ndarray:
    """Bits of a ``length``-bit payload: the mean of every length-th block estimate > 0.5."""
    n = len(scores) // length * length
    if n == 0:
        return np.zeros(length, np.uint8)
    means = scores[:n].reshape(-1, length).mean(axis=0)
    return (means * 255 > 127).astype(np.uint8)


class WatermarkDetector(Detector):
    name = "watermark"
    description = "invisible DWT-DCT watermarks of Stable Diffusion pipelines (invisible-watermark)"
    #: the first call imports OpenCV, PyWavelets and torch (imwatermark imports it): allow for that
    timeout = 60.0

    def detect(self, image):
        pixels = image.pixels
        h, w = pixels.shape[:2]
        if h * w < 256 * 256:
            return self.evidence(
                reason=f"image is {w}x{h}: the DWT-DCT watermark needs at least 256x256 pixels", summary="too small to carry the watermark"
            )
        blocks_per_row = (w // 2) // 4
        keep_rows = max(8, min(h, math.ceil(MAX_BLOCKS / max(1, blocks_per_row)) * 8))
        region = pixels[:keep_rows]
        payloads = known_payloads()
        best = None
        tried = []
        for order, arr in (("bgr", region[..., ::-1]), ("rgb", region)):
            scores = block_scores(arr)
            for p in payloads:
                bits = np.asarray(p["bits"], np.uint8)
                accuracy = float((vote(scores, len(bits)) == bits).mean())
                tried.append({"payload": p["name"], "channel_order": order, "bit_accuracy": round(accuracy, 3)})
                if best is None or accuracy > best[0]:
                    best = (accuracy, p, order)
        accuracy, payload, order = best
        details = {"method": "dwtDct", "bits_read_from_rows": int(keep_rows), "candidates": tried}
        if accuracy >= MATCH:
            details.update(payload=payload["name"], channel_order=order, bit_accuracy=round(accuracy, 3))
            details["summary"] = f"{payload['name']} watermark ({accuracy:.0%} of {len(payload['bits'])} bits)"
            return self.evidence("synthetic", round(accuracy, 4), payload.get("source_hint"), **details)
        details["summary"] = f"no known watermark (best {payload['name']} at {accuracy:.0%} of bits)"
        return self.evidence(**details)


@hookimpl
def register_detectors(register):
    register(WatermarkDetector())
