"""Response shapes for the OpenAPI document. They are the CLI's ``--json`` shapes; handlers build
plain dicts with the same code paths as the CLI and return them as they are."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..report import FAR_MAX, FAR_MIN
from ..sources import FAMILIES, NAME_RE

Family = Literal[FAMILIES]  # type: ignore[valid-type]
FAR = dict(ge=FAR_MIN, le=FAR_MAX)


# -- request forms: the non-file fields of each upload endpoint (files come in `image` fields) ----------
class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifyForm(_Form):
    top_k: int = Field(5, ge=1, le=100, description="Candidates listed per image.")
    far: float | None = Field(None, **FAR, description="False-accept rate the thresholds are set for (default: the gallery's, 0.01).")
    keep_unknown: bool = Field(False, description="Keep rejected queries in the gallery (a write: needs an API key).")
    detectors: str | None = Field(
        None,
        description="Detectors to run beside the attribution: `all`, `none`, or names separated by commas "
        "(GET /v1/detectors). Default: the server's `--detectors`, normally `all` (as the CLI).",
    )


class VerifyForm(_Form):
    generator: str | None = Field(
        None,
        pattern=NAME_RE.pattern,
        max_length=128,
        description="Enrolled source to verify against. Without it, send exactly two images (pair mode).",
    )
    far: float | None = Field(None, **FAR, description="False-accept rate the threshold is set for (default: the gallery's, 0.01).")


class EnrollForm(_Form):
    family: Family | None = Field(None, description="Source family (kept if the source exists; under `parent`: the parent's).")
    meta: list[str] = Field(default_factory=list, description="Free metadata, `KEY=VALUE`, repeatable.")
    parent: str | None = Field(
        None, pattern=NAME_RE.pattern, max_length=128, description="Parent source of a new source (`attrib enroll --parent`)."
    )


class NodeBody(_Form):
    """``PUT /v1/sources/{name}``: an inner node, as ``attrib sources add``."""

    family: Family | None = Field(None, description="Family of a root node (under `parent`: the parent's).")
    parent: str | None = Field(None, pattern=NAME_RE.pattern, max_length=128, description="Parent source; null: a root of its family.")
    meta: dict[str, str] = Field(default_factory=dict, description="Free metadata.")


class MoveBody(_Form):
    """``PUT /v1/sources/{name}/parent``: re-parent a source, as ``attrib sources move``."""

    parent: str | None = Field(description="New parent source; null: make it a root (it keeps its family).")


class Moved(BaseModel):
    source: str
    parent: str | None
    lineage: list[str]


#: fields of a form model that repeat (lists)
def list_fields(model: type[BaseModel]) -> set[str]:
    return {name for name, f in model.model_fields.items() if getattr(f.annotation, "__origin__", None) is list}


def multipart_request(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of an upload endpoint: ``image`` files plus ``model``'s fields."""
    schema = model.model_json_schema()
    schema.pop("additionalProperties", None)
    for prop in schema.get("properties", {}).values():  # optional form fields are left out, never null
        alts = [a for a in prop.pop("anyOf", []) if a.get("type") != "null"]
        if len(alts) == 1:
            prop.update(alts[0])
        if prop.get("default", 0) is None:
            del prop["default"]
    schema["properties"] = {
        "image": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "minItems": 1,
            "description": "Image file(s), each a multipart file field named `image` (repeatable).",
        },
        **schema.get("properties", {}),
    }
    schema["required"] = ["image", *schema.get("required", [])]
    schema["title"] = model.__name__
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


class Error(BaseModel):
    error: str = Field(description="One line a client can act on.")
    status: int
    code: str = Field(description="Short machine name of the status, e.g. payload_too_large.")
    request_id: str | None = Field(None, description="Also in the X-Request-ID response header and the access log.")


class Candidate(BaseModel):
    source: str
    score: float


class DetectorEvidence(BaseModel):
    """What one detector says about one image (see attrib.detectors.Evidence)."""

    model_config = ConfigDict(extra="allow")
    detector: str
    verdict: Literal["synthetic", "real", "undetermined"]
    score: float | None = Field(description="In [0, 1]: 1 points to a generated image, 0 to a real one.")
    source_hint: str | None
    details: dict[str, Any]
    error: str | None = Field(description="Null, or one line: why this detector gave no answer.")


class Verdict(BaseModel):
    """The decision and the detectors' evidence reconciled by ordered rules (attrib.verdict)."""

    model_config = ConfigDict(extra="allow")
    label: Literal["ai-generated", "camera", "undetermined"]
    source: str | None = Field(description="The generator (or camera class) the verdict names; null when none is sure.")
    basis: list[dict[str, Any]] = Field(
        description="Findings the verdict agrees with, in rule order: {rule, detector, label, source, sure, forgeable, value, reason, decisive}."
    )
    conflicts: list[dict[str, Any]] = Field(
        description="Findings that disagree: the basis fields plus about (label or source), against {rule, detector, label, source} and resolution."
    )
    errors: list[dict[str, Any]] = Field(description="Rules that raised or returned something malformed: {rule, plugin, error}.")


class IdentifyRow(BaseModel):
    """One uploaded image (as one line of ``attrib identify --json``)."""

    model_config = ConfigDict(extra="allow")
    path: str = Field(description="The upload's file name (or image<i>): only a label.")
    source: str | None = Field(description="The attributed source; null when unknown or unreadable.")
    score: float | None
    threshold: float | None
    margin: float | None
    candidates: list[Candidate]
    lineage: list[str] = Field(
        description="Path from the family to the decided source: [family, root, ..., source]; [] when unknown or unreadable. "
        "In a gallery with a tree, source may be an inner node or the family (the deepest node sure of the image)."
    )
    error: str | None = Field(description="Null, or one line saying why this image could not be read.")
    view: str | None = Field(
        None,
        description="The view the image was scored in: `jpeg` for a JPEG file (compared with the sources' "
        "samples re-saved as JPEG), null for the plain view or an unreadable image (README, Views).",
    )
    detectors: list[DetectorEvidence] = Field(description="Each detector's evidence ([] when none ran or the image is unreadable).")
    verdict: Verdict = Field(description="One verdict from the decision and the evidence (undetermined for an unreadable image).")


class VerifyRow(BaseModel):
    """One uploaded image verified against ``source`` (as ``attrib verify --generator --json``)."""

    path: str
    source: str = Field(description="The source verified against (the request's `generator`).")
    generator: str = Field(description="The same as `source`: its name in earlier releases, kept as an alias.")
    score: float | None
    threshold: float | None
    accepted: bool | None
    far: float | None
    error: str | None


class VerifyPair(BaseModel):
    """Two images, same source or not (as ``attrib verify --json A B``)."""

    a: str
    b: str
    score: float
    threshold: float
    accepted: bool
    far: float


class Duplicate(BaseModel):
    path: str | None
    source: str


class Failure(BaseModel):
    path: str
    error: str


class EnrollResult(BaseModel):
    """As ``attrib enroll --json``."""

    source: str
    enrolled: int
    duplicate: int
    failed: int
    duplicates: list[Duplicate]
    failures: list[Failure]


class Source(BaseModel):
    """As one element of ``attrib sources list --json``."""

    model_config = ConfigDict(extra="allow")
    name: str
    family: str
    metadata: dict[str, Any]
    samples: int
    prototypes: int
    threshold: float
    far: float
    expected_tar: float | None
    created_at: str | None
    updated_at: str | None
    parent: str | None = Field(None, description="Parent source; null for a root.")
    children: list[str] = Field(default_factory=list, description="Sources whose parent this is.")
    lineage: list[str] = Field(default_factory=list, description="[family, root, ..., name].")


class Sample(BaseModel):
    id: int
    sha256: str
    width: int | None
    height: int | None
    format: str | None
    origin: str | None
    added_at: str | None


class SourceDetail(Source):
    """As ``attrib sources show --json``."""

    sample_list: list[Sample]


class Removed(BaseModel):
    source: str
    removed_samples: int
    children: str | None = Field(None, description="What became of its children (reparent or cascade), when the request said.")


class GalleryInfo(BaseModel):
    encoder_id: str
    dim: int
    schema_version: int
    generation: int
    sources: int
    samples: int
    prototypes: int
    views: dict[str, int] = Field(default_factory=dict, description="Prototypes per view (JPEG re-saves of the samples: README, Views).")
    rejected: int
    far: float


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    gallery: GalleryInfo
    writes_enabled: bool


class Detector(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    description: str
    plugin: str | None


class Plugin(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    hooks: list[str]
