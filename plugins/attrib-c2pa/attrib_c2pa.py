"""attrib-c2pa: C2PA manifests (Content Credentials) as evidence, read with c2pa-python.

* The **claim generator**, the **actions** (``c2pa.created``, ``c2pa.edited``, ...) with their
  ``softwareAgent``, and the IPTC **digitalSourceType** of every manifest in the store (the active
  one and its ingredients') are reported in ``details``.
* A claim of AI generation (``trainedAlgorithmicMedia``, ``compositeWithTrainedAlgorithmicMedia``,
  ``algorithmicMedia``, ``compositeSynthetic``) makes the verdict ``synthetic``; the source hint is
  the software agent of that action, else the claim generator's name. A capture claim
  (``digitalCapture`` ...) makes it ``real``.
* **Validation is never hidden**: ``details.validation`` holds the state (``Trusted``, ``Valid`` =
  signature sound but the signer is not on a trust list, ``Invalid``) and every failure code with
  its explanation; the score drops with the state (a claim in an altered or badly signed file is
  still reported, with less weight).
* **Remote manifests are not fetched** unless ``ATTRIB_C2PA_FETCH_REMOTE=1`` (or ``attrib c2pa
  --fetch-remote``): the URL is reported instead. A sidecar ``IMAGE.c2pa`` next to the file is read.
* Trust: ``ATTRIB_C2PA_TRUST_ANCHORS=/path/anchors.pem`` adds trust anchors (PEM); OCSP is never
  fetched.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import click

from attrib import hookimpl
from attrib.detectors import Detector, DetectorImage

__version__ = "0.1.0"

AI_TYPES = {
    "trainedalgorithmicmedia": 0.99,
    "compositewithtrainedalgorithmicmedia": 0.9,
    "algorithmicmedia": 0.95,
    "compositesynthetic": 0.9,
}
CAPTURE_TYPES = {"digitalcapture", "computationalcapture", "negativefilm", "positivefilm", "print", "screencapture"}
#: score multiplier / real score by validation state
TRUST = {"Trusted": (1.0, 0.02), "Valid": (0.9, 0.2), "Invalid": (0.7, None)}
_REMOTE = re.compile(r"remote manifests? from url\s+(\S+)|(https?://\S+)", re.IGNORECASE)
_PROVENANCE = re.compile(rb"provenance\s*(?:=\s*[\"']|>\s*)(https?://[^\"'<\s]+)", re.IGNORECASE)


def fetch_remote_allowed() -> bool:
    return os.environ.get("ATTRIB_C2PA_FETCH_REMOTE", "").lower() in ("1", "true", "yes")


def _context(fetch_remote: bool):
    import c2pa

    settings: dict = {"verify": {"remote_manifest_fetch": bool(fetch_remote), "ocsp_fetch": False}}
    anchors = os.environ.get("ATTRIB_C2PA_TRUST_ANCHORS")
    if anchors:
        try:
            pem = Path(anchors).read_text()
        except OSError as exc:
            raise ValueError(f"ATTRIB_C2PA_TRUST_ANCHORS={anchors}: {exc.strerror or exc}") from None
        settings["trust"] = {"user_anchors": pem}
        settings["verify"]["verify_trust"] = True
    return c2pa.Context(settings=c2pa.Settings.from_dict(settings))


def read_store(image: DetectorImage, fetch_remote: bool | None = None) -> dict:
    """The manifest store of ``image`` as a dict, plus ``validation_state`` and ``remote_url``.

    Returns ``{"manifest": None, "reason": ...}`` when there is none, ``{"remote_url": url,
    "fetched": False}`` when it lives at a URL that was not fetched."""
    import c2pa

    fetch = fetch_remote_allowed() if fetch_remote is None else fetch_remote
    data = image.data
    if data is None:
        return {"manifest": None, "reason": "no file bytes: an in-memory image carries no manifest"}
    sidecar = None
    if image.path and image.path != "-":
        candidate = Path(image.path).with_suffix(".c2pa")
        if candidate.is_file():
            sidecar = candidate.read_bytes()
    mime = image.mime_type or image.format
    try:
        with c2pa.Reader(mime, io.BytesIO(data), sidecar, context=_context(fetch)) as reader:
            store = json.loads(reader.json())
            store["validation_state"] = reader.get_validation_state()
            store["remote_url"] = reader.get_remote_url()
            store["sidecar"] = sidecar is not None
            return store
    except c2pa.C2paError.ManifestNotFound:
        return {"manifest": None, "reason": "no C2PA manifest"}
    except c2pa.C2paError.NotSupported as exc:
        return {"manifest": None, "reason": f"format not supported by c2pa ({exc})"}
    except c2pa.C2paError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "remote" in message.lower():
            match = _REMOTE.search(message)
            url = (match.group(1) or match.group(2)) if match else None
            if url is None:
                found = _PROVENANCE.search(data)
                url = found.group(1).decode() if found else None
            return {"manifest": None, "remote_url": url, "fetched": fetch, "fetch_error": message if fetch else None}
        return {"manifest": None, "unreadable": message}


def _source_types(obj, out: list) -> list:
    """Every digitalSourceType value anywhere in ``obj`` (actions, IPTC assertions)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key.lower().endswith("digitalsourcetype") and isinstance(value, str):
                out.append(value)
            else:
                _source_types(value, out)
    elif isinstance(obj, list):
        for value in obj:
            _source_types(value, out)
    return out


def _code(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _agent(action: dict) -> str | None:
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        return agent.get("name")
    return agent if isinstance(agent, str) else None


def _generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict) and info[0].get("name"):
        return str(info[0]["name"])
    legacy = manifest.get("claim_generator")
    return legacy.split("/")[0].split(" ")[0] if isinstance(legacy, str) and legacy else None


def summarise_manifest(label: str, manifest: dict) -> dict:
    actions = []
    for assertion in manifest.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for a in (assertion.get("data") or {}).get("actions") or []:
                actions.append({"action": a.get("action"), "digitalSourceType": a.get("digitalSourceType"), "softwareAgent": _agent(a)})
    gen_info = manifest.get("claim_generator_info") or []
    return {
        "label": label,
        "claim_generator": _generator(manifest),
        "claim_generator_info": [{k: v for k, v in g.items() if k in ("name", "version")} for g in gen_info if isinstance(g, dict)],
        "title": manifest.get("title"),
        "signature": {k: v for k, v in (manifest.get("signature_info") or {}).items() if k in ("issuer", "common_name", "time", "alg")},
        "actions": actions,
        "digital_source_types": list(dict.fromkeys(_source_types(manifest.get("assertions") or [], []))),
        "ingredients": [i.get("title") for i in manifest.get("ingredients") or [] if isinstance(i, dict)],
    }


def _validation(store: dict) -> dict:
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    failures = active.get("failure") or [s for s in store.get("validation_status") or []]
    deltas = []
    for delta in results.get("ingredientDeltas") or []:
        for f in (delta.get("validationDeltas") or {}).get("failure") or []:
            deltas.append({"code": f.get("code"), "explanation": f.get("explanation"), "ingredient": delta.get("ingredientAssertionURI")})
    return {
        "state": store.get("validation_state"),
        "failures": [{"code": f.get("code"), "explanation": f.get("explanation")} for f in failures],
        "ingredient_failures": deltas,
        "informational": [f.get("code") for f in active.get("informational") or []],
    }


class C2PADetector(Detector):
    name = "c2pa"
    description = "C2PA manifests (Content Credentials): claim generator, actions, AI-generation claims, validation"

    def detect(self, image):
        store = read_store(image)
        if store.get("manifest", True) is None:
            details = {k: v for k, v in store.items() if k != "manifest"}
            if "remote_url" in store:
                if store["fetched"]:
                    details["summary"] = f"remote manifest at {store['remote_url']} could not be fetched"
                else:
                    details["summary"] = f"remote manifest at {store['remote_url']}, not fetched (ATTRIB_C2PA_FETCH_REMOTE=1 fetches it)"
            elif "unreadable" in store:
                details["summary"] = f"C2PA data present but unreadable: {store['unreadable']}"
            else:
                details["summary"] = store.get("reason", "no C2PA manifest")
            return self.evidence(**details)
        manifests = store.get("manifests") or {}
        active_label = store.get("active_manifest")
        summaries = [summarise_manifest(label, m) for label, m in manifests.items()]
        summaries.sort(key=lambda s: s["label"] != active_label)  # the active manifest first
        validation = _validation(store)
        details = {
            "active_manifest": active_label,
            "manifests": summaries,
            "validation": validation,
            "remote_url": store.get("remote_url"),
            "sidecar": store.get("sidecar", False),
        }
        weight, real_score = TRUST.get(validation["state"], (0.7, None))
        state = validation["state"] or "unknown"
        ai = [(s, a) for s in summaries for a in s["actions"] if _code(a.get("digitalSourceType") or "").lower() in AI_TYPES]
        ai_other = [(s, t) for s in summaries for t in s["digital_source_types"] if _code(t).lower() in AI_TYPES]
        if ai or ai_other:
            types = [_code(a["digitalSourceType"]) for _, a in ai] + [_code(t) for _, t in ai_other]
            score = max(AI_TYPES[t.lower()] for t in types) * weight
            first_manifest = (ai or ai_other)[0][0]
            agent = next((a["softwareAgent"] for _, a in ai if a.get("softwareAgent")), None)
            hint = agent or first_manifest["claim_generator"]
            where = "" if first_manifest["label"] == active_label else " (in an ingredient)"
            details["summary"] = f"C2PA {state}: {types[0]}{where} by {hint}" + _problems(validation)
            return self.evidence("synthetic", round(score, 4), hint, **details)
        active = summaries[0] if summaries else {"digital_source_types": [], "claim_generator": None}
        capture = [t for t in active["digital_source_types"] if _code(t).lower() in CAPTURE_TYPES]
        if capture and real_score is not None:
            details["summary"] = f"C2PA {state}: {_code(capture[0])} ({active['claim_generator']})" + _problems(validation)
            return self.evidence("real", real_score, None, **details)
        details["summary"] = f"C2PA {state}: no AI-generation claim ({active['claim_generator']})" + _problems(validation)
        return self.evidence("undetermined", None, None, **details)


def _problems(validation: dict) -> str:
    codes = [f["code"] for f in validation["failures"] + validation["ingredient_failures"] if f.get("code")]
    return f"; validation failures: {', '.join(codes)}" if codes else ""


@hookimpl
def register_detectors(register):
    register(C2PADetector())


@hookimpl
def register_commands(cli):
    @cli.command(name="c2pa")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    @click.option("--fetch-remote", is_flag=True, help="Fetch a remote manifest from the URL the file points to.")
    def c2pa_command(path, fetch_remote):
        """Print the C2PA manifest store of an image as JSON (with its validation)."""
        from attrib.errors import ImageError

        try:
            image = DetectorImage(path=path)
            image.pixels  # noqa: B018 - refuses what is not an image, with one line
            store = read_store(image, fetch_remote=fetch_remote or None)
        except ImageError as exc:
            raise click.ClickException(str(exc)) from None
        except ImportError as exc:
            raise click.ClickException(f"c2pa-python is not importable: {exc}") from None
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(json.dumps(store, indent=2, default=str))
        if store.get("manifest", True) is None and "remote_url" not in store:
            raise click.ClickException(store.get("reason") or store.get("unreadable") or "no C2PA manifest")
