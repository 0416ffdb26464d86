"""One verdict from all the evidence: the fingerprint decision and the detectors' evidence
reconciled by an ordered, documented rule set.

``identify`` answers with the fingerprint decision (``source``, ``score``, ``threshold``...) and
each detector's evidence beside it; ``verdict`` is the reconciliation::

    {"label": "ai-generated" | "camera" | "undetermined",
     "source": NAME or null,
     "basis": [...],       # what the verdict relied on, one entry per finding that agrees with it
     "conflicts": [...],   # every finding that disagrees, with what it disagrees with and why it lost
     "errors": [...]}      # rules that raised or returned something malformed (never fatal)

**Rules** run in order of ``priority`` (lower first; ties keep registration order). Each looks at
the facts (the decision, the evidence) and returns zero or more :class:`Finding`: a label, maybe a
source, what it relied on (``detector``, ``value``, ``reason``) and two flags: ``sure`` (it may
decide the verdict) and ``forgeable`` (anyone can write it into a file). The built-in rules
(registered through the ``register_verdict_rules`` hook by :mod:`attrib.default_plugins.verdict`,
like any plugin's):

====  ===============  =========================================================================
 100  ``c2pa``         a C2PA claim of AI generation names the tool; a capture claim says camera.
                       Sure when the manifest validates: ``Trusted`` (signer on a trust list, no
                       failure) is not forgeable; ``Valid`` (sound signature, the only failure
                       ``signingCredential.untrusted``: anyone can make such a certificate) is
                       forgeable. ``Invalid`` or any other failure: reported, never relied on.
 200  ``watermark``    a decoded watermark with at least :data:`WATERMARK_MIN_ACCURACY` of its
                       bits matching names its scheme (sure).
 300  ``metadata``     generation parameters (AUTOMATIC1111, ComfyUI, InvokeAI) or a generator's
                       software / IPTC label in the file's metadata: ai-generated, the model or
                       tool they name. Sure but forgeable. A metadata *capture* label is never
                       relied on (camera needs more).
 400  ``fingerprint``  the open-set decision: an accepted source (its score clears its calibrated
                       threshold) decides; a source of the ``real`` family (or named ``real``)
                       means camera. ``unknown`` is reported, with no opinion.
 500  ``detectors``    every other detector with a verdict and a score. Sure only for
                       ai-generated, only when all of them say synthetic with a score of at least
                       :data:`DETECTOR_SURE_SCORE`; a low score ("no traces") never means camera.
====  ===============  =========================================================================

**Resolution.** The first sure finding decides the label and the source (when it names none,
the first later sure finding that agrees and names one gives it). Every finding that disagrees
with the decisive one, on the label or on the source, is a conflict; none is dropped. One
exception keeps forgeable evidence in its place: when the decisive finding is forgeable and a
later sure, non-forgeable finding contradicts it (metadata names one model, the fingerprint
accepts another above its threshold), the verdict withholds what they disagree on (source null;
label ``undetermined`` when the labels differ) and the conflict says so. Metadata alone therefore
never overrules a confident fingerprint.

**Camera** needs a C2PA capture claim that validates or a ``real`` source the fingerprint
accepts. A detector's low score, a missing watermark or missing metadata never means camera.

**Undetermined** when no finding is sure; ``basis`` then lists what was considered.

Source names from different places (a C2PA software agent, a checkpoint file, a gallery source)
are compared loosely (:func:`same_source`); names that do not match are reported as a conflict,
never silently merged.

Plain data in, plain data out: no gallery, no I/O. :class:`Judge` is built per plugin manager
(:func:`make_judge`); :func:`attrib.report.identify_rows` calls it per image.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import plugins

LABELS = ("ai-generated", "camera", "undetermined")
#: fraction of a watermark payload's bits that must match (attrib-watermark's own match bound)
WATERMARK_MIN_ACCURACY = 0.9
#: every scoring detector must say synthetic at least this strongly for the detector rule to decide
DETECTOR_SURE_SCORE = 0.9
#: detectors the provenance rules read; the detector-score rule leaves them alone
PROVENANCE_DETECTORS = ("c2pa", "watermark", "metadata")
#: the family of gallery sources that are camera classes
CAMERA_FAMILY = "real"
#: a few names different tools use for one generator (normalised: lower case, letters and digits)
ALIASES = {
    "stablediffusionxl": "sdxl",
    "sdxlbase10": "sdxl",
    "stablediffusionv1": "sd1",
    "stablediffusion15": "sd1",
    "sd15": "sd1",
    "sdv15": "sd1",
    "stablediffusionv2": "sd2",
    "sd21": "sd2",
    "openaidalle3": "dalle3",
    "dalle": "dalle",
    "adobefirefly": "firefly",
}


@dataclass
class Finding:
    """What one rule concludes from what it read.

    ``label``: one of :data:`LABELS` (``undetermined``: considered, no opinion). ``source``: the
    generator (or camera class) it names, if any. ``sure``: it may decide the verdict.
    ``forgeable``: anyone can write it into a file (metadata, a self-signed manifest); it gives
    way to a sure, non-forgeable finding that contradicts it. ``detector``: the detector whose
    evidence it read (``None`` for the fingerprint). ``value``: what it relied on (JSON).
    ``reason``: one line for people.
    """

    label: str
    source: str | None = None
    sure: bool = False
    forgeable: bool = False
    detector: str | None = None
    value: Any = None
    reason: str = ""
    rule: str = ""  # set by the judge


@dataclass
class Facts:
    """What rules look at: the fingerprint decision and every detector's evidence about one image.

    ``decision``: ``{"source", "score", "threshold", "margin", "candidates"}`` (``source`` null:
    unknown). ``evidence``: the detectors' evidence dicts (``detector``, ``verdict``, ``score``,
    ``source_hint``, ``details``, ``error``). ``camera_sources``: gallery sources that are
    camera classes."""

    decision: Mapping[str, Any]
    evidence: Sequence[Mapping[str, Any]] = ()
    camera_sources: frozenset = frozenset()

    def evidence_of(self, detector: str) -> Mapping[str, Any] | None:
        """The named detector's evidence when it ran without error, else None."""
        for ev in self.evidence:
            if ev.get("detector") == detector and not ev.get("error"):
                return ev
        return None

    def is_camera(self, source: str | None) -> bool:
        return source is not None and (source in self.camera_sources or source.lower() == CAMERA_FAMILY)


class Rule:
    """Base class of verdict rules, built-in or from plugins: set :attr:`name` (unique),
    :attr:`priority` (lower runs first: the built-ins use 100-500) and implement
    :meth:`evaluate`."""

    name: str = ""
    priority: float = 1000
    description: str = ""

    def evaluate(self, facts: Facts) -> Finding | Iterable[Finding] | None:
        """Findings about ``facts`` (one, several, or None when the rule has nothing to say)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} priority {self.priority}>"


# ----------------------------------------------------------------------------- names


def _norm(name: str) -> str:
    key = re.sub(r"[^a-z0-9]+", "", name.lower())
    return ALIASES.get(key, key)


def same_source(a: str | None, b: str | None) -> bool:
    """Do two source names plausibly name the same generator? Missing names never disagree.
    Compared lower case on letters and digits, through :data:`ALIASES`, equal or one containing
    the other (``sdxl`` / ``sd_xl_base_1.0``, ``DALL-E 3`` / ``dalle3``)."""
    if not a or not b:
        return True
    x, y = _norm(a), _norm(b)
    if x == y:
        return True
    short, long_ = sorted((x, y), key=len)
    return len(short) >= 3 and short in long_


# ----------------------------------------------------------------------------- built-in rules


#: validation codes that only say the signer is on no trust list (the state is then ``Valid``)
C2PA_TRUST_ONLY = frozenset({"signingCredential.untrusted"})


def _c2pa_failures(details: Mapping[str, Any]) -> list[str]:
    validation = details.get("validation") or {}
    failures = list(validation.get("failures") or []) + list(validation.get("ingredient_failures") or [])
    return [str(f.get("code")) for f in failures if isinstance(f, dict)]


class C2PARule(Rule):
    name = "c2pa"
    priority = 100
    description = "a C2PA claim that validates: AI generation names the tool, a capture claim says camera"

    def evaluate(self, facts):
        ev = facts.evidence_of("c2pa")
        if ev is None or ev.get("verdict") not in ("synthetic", "real"):
            return None
        details = ev.get("details") or {}
        state = (details.get("validation") or {}).get("state")
        failures = _c2pa_failures(details)
        manifests = details.get("manifests") or [{}]
        value = {"validation": state, "failures": failures, "claim_generator": manifests[0].get("claim_generator")}
        trusted = state == "Trusted" and not failures
        sure = trusted or (state == "Valid" and set(failures) <= C2PA_TRUST_ONLY)
        if not sure:
            trust = f"manifest {state or 'not validated'}" + (f" ({', '.join(failures)})" if failures else "")
        else:
            trust = "signer on a trust list" if trusted else "signature valid, signer not on a trust list"
        label = "ai-generated" if ev["verdict"] == "synthetic" else "camera"
        what = f"claims AI generation by {ev.get('source_hint')}" if label == "ai-generated" else "claims a camera capture"
        reason = f"C2PA {what}; {trust}" + ("" if sure else ": reported, not relied on")
        source = ev.get("source_hint") if label == "ai-generated" else None
        return Finding(label, source, sure=sure, forgeable=not trusted, detector="c2pa", value=value, reason=reason)


class WatermarkRule(Rule):
    name = "watermark"
    priority = 200
    description = f"a decoded watermark with at least {WATERMARK_MIN_ACCURACY:.0%} of its bits matching names its scheme"

    def evaluate(self, facts):
        ev = facts.evidence_of("watermark")
        if ev is None or ev.get("verdict") != "synthetic":
            return None
        details = ev.get("details") or {}
        accuracy = details.get("bit_accuracy", ev.get("score"))
        if not isinstance(accuracy, (int, float)):
            return None
        scheme = ev.get("source_hint") or details.get("payload")
        enough = accuracy >= WATERMARK_MIN_ACCURACY
        value = {"payload": details.get("payload"), "bit_accuracy": accuracy, "needed": WATERMARK_MIN_ACCURACY}
        reason = f"{details.get('payload') or scheme} watermark, {accuracy:.0%} of its bits match" + ("" if enough else " (not enough)")
        return Finding("ai-generated", scheme, sure=enough, detector="watermark", value=value, reason=reason)


class MetadataRule(Rule):
    name = "metadata"
    priority = 300
    description = "generation parameters or a generator's label in the file's metadata (forgeable)"

    def evaluate(self, facts):
        ev = facts.evidence_of("metadata")
        if ev is None or ev.get("verdict") not in ("synthetic", "real"):
            return None
        found = [f for f in (ev.get("details") or {}).get("findings") or [] if isinstance(f, dict)]
        if ev["verdict"] == "real":
            fields = [f.get("field") for f in found if f.get("capture")]
            reason = "metadata labels the image a capture: metadata is easily forged, never enough for camera"
            return Finding("camera", None, sure=False, forgeable=True, detector="metadata", value={"fields": fields}, reason=reason)
        ai = [f for f in found if f.get("strength")]
        params = [f for f in ai if f.get("tool")]
        value = {
            "fields": [f.get("field") for f in ai],
            "tool": next((f["tool"] for f in params), None),
            "model": next((f.get("model") or (f.get("models") or [None])[0] for f in params), None),
        }
        what = "generation parameters" if params else "a generator's label"
        named = f" name {ev.get('source_hint')}" if ev.get("source_hint") else " name no model"
        reason = f"{what} in the metadata ({', '.join(map(str, value['fields']))}){named}; metadata is easily forged or stripped"
        return Finding("ai-generated", ev.get("source_hint"), sure=True, forgeable=True, detector="metadata", value=value, reason=reason)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class FingerprintRule(Rule):
    name = "fingerprint"
    priority = 400
    description = "the open-set decision: an accepted source (above its calibrated threshold)"

    def evaluate(self, facts):
        d = facts.decision or {}
        if not _finite(d.get("score")):
            return None
        value = {"score": d.get("score"), "threshold": d.get("threshold"), "margin": d.get("margin")}
        source = d.get("source")
        if source is None:
            best = (d.get("candidates") or [{}])[0].get("source")
            reason = f"unknown: the best candidate ({best}) scores {d['score']:.3f}, below its threshold {d.get('threshold', 0):.3f}"
            return Finding("undetermined", None, detector=None, value={**value, "best": best}, reason=reason)
        camera = facts.is_camera(source)
        kind = "a camera class" if camera else "a generator"
        reason = f"accepted {source} ({kind}): score {d['score']:.3f} clears its threshold {d.get('threshold', 0):.3f}"
        return Finding("camera" if camera else "ai-generated", source, sure=True, detector=None, value=value, reason=reason)


class DetectorScoreRule(Rule):
    name = "detectors"
    priority = 500
    description = f"every other detector's verdict and score; decides ai-generated only if all say synthetic at >= {DETECTOR_SURE_SCORE}"

    def evaluate(self, facts):
        scored = [
            ev
            for ev in facts.evidence
            if ev.get("detector") not in PROVENANCE_DETECTORS
            and not ev.get("error")
            and ev.get("verdict") in ("synthetic", "real")
            and _finite(ev.get("score"))
        ]
        sure = bool(scored) and all(ev["verdict"] == "synthetic" and ev["score"] >= DETECTOR_SURE_SCORE for ev in scored)
        out = []
        for ev in scored:
            synthetic = ev["verdict"] == "synthetic"
            reason = f"{ev['detector']} says {ev['verdict']} (score {ev['score']:.2f})"
            if not synthetic:
                reason += ": no generator traces found, which never proves a camera"
            label = "ai-generated" if synthetic else "camera"
            value = {"verdict": ev["verdict"], "score": ev["score"]}
            out.append(Finding(label, ev.get("source_hint"), sure=sure, detector=ev["detector"], value=value, reason=reason))
        return out


BUILTIN_RULES = (C2PARule, WatermarkRule, MetadataRule, FingerprintRule, DetectorScoreRule)


def builtin_rules() -> list[Rule]:
    return [cls() for cls in BUILTIN_RULES]


# ----------------------------------------------------------------------------- registration


def check_rule(obj) -> str | None:
    """Why ``obj`` cannot be registered as a verdict rule, or None when it can."""
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name.strip():
        return f"{obj!r} has no name: a verdict rule needs a non-empty string `name`"
    priority = getattr(obj, "priority", None)
    if isinstance(priority, bool) or not _finite(priority):
        return f"verdict rule {name!r} has priority {priority!r}: expected a finite number"
    if not callable(getattr(obj, "evaluate", None)):
        return f"verdict rule {name!r} has no evaluate(facts) method"
    return None


def _check_registration(rule) -> tuple[str, dict[str, Any]]:
    problem = check_rule(rule)
    if problem is not None:
        raise plugins.Refused(problem)
    return rule.name, {"rule": rule, "priority": rule.priority, "description": getattr(rule, "description", "")}


def collect_rules(pm: pluggy.PluginManager) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """``({name: {"rule", "priority", "description", "plugin"}}, failures)`` from every
    ``register_verdict_rules`` hook of ``pm`` (the first registration of a name wins)."""
    return plugins.collect(pm, "register_verdict_rules", "verdict rule", _check_registration)


def make_judge(pm: pluggy.PluginManager | None = None) -> Judge:
    """A :class:`Judge` over the rules registered on ``pm`` (else the library's shared manager)."""
    registry, failures = collect_rules(pm or plugins.get_plugin_manager())
    return Judge([(info["rule"], info["plugin"]) for info in registry.values()], failures)


def camera_sources(gallery) -> list[str]:
    """Names of ``gallery``'s sources of the camera family (``real``)."""
    return [r["name"] for r in gallery.store.source_rows() if r.get("family") == CAMERA_FAMILY]


# ----------------------------------------------------------------------------- the judge


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)[:500]


def _plain(obj):
    """numpy scalars and arrays, paths and sets as JSON; anything else is refused (TypeError)."""
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _as_findings(out) -> list[Finding]:
    if out is None:
        return []
    items = [out] if isinstance(out, (Finding, Mapping)) else list(out)
    findings = []
    for item in items:
        f = Finding(**item) if isinstance(item, Mapping) else item
        if not isinstance(f, Finding):
            raise TypeError(f"returned {type(f).__name__}, not a Finding")
        if f.label not in LABELS:
            raise ValueError(f"returned label {f.label!r}; expected one of {', '.join(LABELS)}")
        f.source = None if f.source is None else str(f.source)
        f.detector = None if f.detector is None else str(f.detector)
        f.sure, f.forgeable, f.reason = bool(f.sure), bool(f.forgeable), str(f.reason or "")
        try:
            f.value = json.loads(json.dumps(f.value, allow_nan=False, default=_plain))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"returned a value that is not JSON-serialisable ({exc})") from None
        findings.append(f)
    return findings


def _disagreement(f: Finding, ref: Finding | None) -> str | None:
    """``"label"`` or ``"source"`` when ``f`` disagrees with ``ref``, else None."""
    if ref is None or f is ref or "undetermined" in (f.label, ref.label):
        return None
    if f.label != ref.label:
        return "label"
    return None if same_source(f.source, ref.source) else "source"


def _entry(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "detector": f.detector,
        "label": f.label,
        "source": f.source,
        "sure": f.sure,
        "forgeable": f.forgeable,
        "value": f.value,
        "reason": f.reason,
    }


@dataclass
class _Resolution:
    label: str = "undetermined"
    source: str | None = None
    ref: Finding | None = None  # what the others are compared with
    decisive: list = field(default_factory=list)  # findings the label / source come from
    overruling: Finding | None = None  # a non-forgeable finding that made a forgeable one give way


def _resolve(findings: list[Finding]) -> _Resolution:
    sure = [f for f in findings if f.sure and f.label != "undetermined"]
    if not sure:
        return _Resolution(ref=next((f for f in findings if f.label != "undetermined"), None))
    ref = sure[0]
    res = _Resolution(ref.label, ref.source, ref, [ref])
    if ref.forgeable:
        res.overruling = next((f for f in sure if not f.forgeable and _disagreement(f, ref)), None)
    if res.overruling is not None:
        res.source = None
        if _disagreement(res.overruling, ref) == "label":
            res.label, res.decisive = "undetermined", []
        return res
    if res.source is None:
        giver = next((f for f in sure[1:] if f.source and not _disagreement(f, ref)), None)
        if giver is not None:
            res.source = giver.source
            res.decisive.append(giver)
    return res


def _resolution_text(f: Finding, res: _Resolution) -> str:
    ref = res.ref
    if f is res.overruling:
        withheld = "the source is withheld" if res.label != "undetermined" else "the verdict is undetermined"
        return f"{ref.rule} is forgeable and does not overrule {f.rule}: {withheld}"
    if res.overruling is not None and res.label == "undetermined":
        return f"the verdict is undetermined: {ref.rule} (forgeable) and {res.overruling.rule} disagree"
    if ref.sure:
        return f"{ref.rule} decides: the first sure finding in rule order" + ("" if f.sure else f"; {f.rule} is not sure")
    return "neither is sure: the verdict stays undetermined"


def _verdict(findings: list[Finding], errors: list[dict[str, Any]]) -> dict[str, Any]:
    res = _resolve(findings)
    basis, conflicts = [], []
    for f in findings:
        about = _disagreement(f, res.ref)
        if about is None:
            basis.append({**_entry(f), "decisive": any(f is d for d in res.decisive)})
        else:
            against = {k: getattr(res.ref, k) for k in ("rule", "detector", "label", "source")}
            conflicts.append({**_entry(f), "about": about, "against": against, "resolution": _resolution_text(f, res)})
    return {"label": res.label, "source": res.source, "basis": basis, "conflicts": conflicts, "errors": errors}


def empty_verdict() -> dict[str, Any]:
    """The verdict of an image that could not be read."""
    return {"label": "undetermined", "source": None, "basis": [], "conflicts": [], "errors": []}


class Judge:
    """Runs the rules in priority order on one image's facts and reconciles their findings.

    ``rules``: rule objects, or ``(rule, plugin_name)`` pairs (the plugin is named in errors).
    ``failures``: ``register_verdict_rules`` hooks that raised or registrations refused; they are
    listed in every verdict's ``errors``. ``camera_sources``: gallery sources that are camera
    classes (:func:`camera_sources`)."""

    def __init__(self, rules: Iterable = (), failures: Iterable[Mapping[str, Any]] = (), camera_sources: Iterable[str] = ()):
        pairs = [r if isinstance(r, tuple) else (r, None) for r in rules]
        self.rules = [pair for _, pair in sorted(enumerate(pairs), key=lambda ip: (ip[1][0].priority, ip[0]))]
        self.failures = [
            {"rule": None, "plugin": f.get("name"), "error": f"{f.get('hook') or 'plugin'}: {f.get('error')}"} for f in failures
        ]
        self.camera_sources = frozenset(camera_sources)

    def with_camera_sources(self, names: Iterable[str]) -> Judge:
        judge = Judge.__new__(Judge)
        judge.rules, judge.failures, judge.camera_sources = self.rules, self.failures, frozenset(names)
        return judge

    def __call__(self, decision: Mapping[str, Any] | None, evidence: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """The verdict about one image (``decision`` None: the image could not be read)."""
        if decision is None:
            return empty_verdict()
        facts = Facts(decision, list(evidence), self.camera_sources)
        findings: list[Finding] = []
        errors = list(self.failures)
        for rule, plugin in self.rules:
            try:
                found = _as_findings(rule.evaluate(facts))
            except Exception as exc:  # a rule that raises is reported, never fatal
                errors.append({"rule": rule.name, "plugin": plugin, "error": _one_line(exc)})
                continue
            for f in found:
                f.rule = rule.name
            findings += found
        return _verdict(findings, errors)


def default_judge() -> Judge:
    """The built-in rules alone (for callers that bring no plugin manager)."""
    return Judge(builtin_rules())


def summarise(verdict: Mapping[str, Any]) -> str:
    """One line: ``ai-generated: sdxl (c2pa, fingerprint agrees) · 1 conflict: ...``."""
    label = verdict["label"]
    conflicts = verdict.get("conflicts") or []
    withheld = any("withheld" in c.get("resolution", "") for c in conflicts)
    text = label + (f": {verdict['source']}" if verdict.get("source") else ": source withheld" if withheld else "")
    decisive = [b["rule"] for b in verdict.get("basis", []) if b.get("decisive")]
    agree = [b["rule"] for b in verdict.get("basis", []) if not b.get("decisive") and b["label"] == label and label != "undetermined"]
    if decisive:
        text += f" (from {', '.join(dict.fromkeys(decisive))}"
        text += f"; {', '.join(dict.fromkeys(agree))} agree)" if agree else ")"
    if conflicts:
        first = conflicts[0]
        said = first["label"] + (f" {first['source']}" if first.get("source") else "")
        who = first.get("detector") or first["rule"]
        text += f" · {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: {who} says {said}"
    if verdict.get("errors"):
        text += f" · {len(verdict['errors'])} rule error(s)"
    return text
