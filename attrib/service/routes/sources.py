"""Tag ``sources``: the enrolled sources, and enrollment into them (a write: API key)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from ... import report
from ...errors import GalleryError
from ...gallery import THUMBS_PER_SOURCE
from ...pipeline import view_embeddings
from ...sources import check_name
from ...views import VIEWS
from .. import schemas
from ..errors import ServiceError
from ..intake import Admitted, embed, read_form
from .common import READ_ERRORS, WRITE_ERRORS, FarQuery, SourceName, State, answer

router = APIRouter(tags=["sources"])

ChildrenQuery = Annotated[
    Literal["reparent", "cascade"] | None,
    Query(description="A source with children: `reparent` hangs them under its parent, `cascade` removes them too."),
]


@router.get("/v1/sources", response_model=list[schemas.Source], responses=READ_ERRORS)
async def list_sources(state: State, far: FarQuery = None):
    """Enrolled sources with family, sample count and threshold (as `attrib sources list --json`)."""
    return answer(await state.store.read(lambda g: g.sources(far)))


@router.get("/v1/sources/{name}", response_model=schemas.SourceDetail, responses=READ_ERRORS)
async def show_source(state: State, name: SourceName, far: FarQuery = None):
    """One source: metadata, calibration and its samples (as `attrib sources show --json`)."""
    return answer(await state.store.read(lambda g: g.source(name, far)))


@router.delete("/v1/sources/{name}", response_model=schemas.Removed, responses=WRITE_ERRORS)
async def remove_source(state: State, name: SourceName, children: ChildrenQuery = None):
    """Remove a source and all its samples (needs an API key). A source with children is refused
    (409) unless `children` says what becomes of them (as `attrib sources remove --reparent /
    --recursive`)."""
    n = await state.store.write(lambda g: _remove(g, name, children))
    return answer({"source": name, "removed_samples": n, **({"children": children} if children else {})})


def _remove(gallery, name: str, children: str | None) -> int:
    gallery.require_source(name)
    if gallery.tree().children.get(name) and children is None:
        try:
            gallery.remove_source(name)
        except GalleryError as exc:
            raise ServiceError(
                409, str(exc).replace("--reparent", "children=reparent").replace("--recursive", "children=cascade")
            ) from None
    return gallery.remove_source(name, children=children or "refuse")


@router.put("/v1/sources/{name}", response_model=schemas.Source, responses=WRITE_ERRORS)
async def add_node(state: State, name: SourceName, body: schemas.NodeBody):
    """Add an inner node: a source with no samples of its own, whose prototypes are its
    descendants' (as `attrib sources add`; needs an API key). 409 when the name is taken."""

    def add(g):
        if g.has_source(name):
            raise ServiceError(409, f"source {name!r} exists already (move it with PUT /v1/sources/{name}/parent)")
        g.add_node(name, family=body.family, parent=body.parent, metadata=body.meta)
        return next(r for r in g.sources() if r["name"] == name)

    return answer(await state.store.write(add))


@router.put("/v1/sources/{name}/parent", response_model=schemas.Moved, responses=WRITE_ERRORS)
async def move_source(state: State, name: SourceName, body: schemas.MoveBody):
    """Re-parent a source with its subtree (as `attrib sources move`; needs an API key). Cycles
    and unknown parents are refused (422)."""
    return answer(await state.store.write(lambda g: g.move_source(name, body.parent)))


@router.post(
    "/v1/sources/{name}/samples",
    response_model=schemas.EnrollResult,
    responses=WRITE_ERRORS,
    openapi_extra={"requestBody": schemas.multipart_request(schemas.EnrollForm)},
)
async def enroll(request: Request, state: State, name: SourceName):
    """Enroll sample images into a source, created if new (as `attrib enroll --json`; needs an API key).

    One transaction: readers see all of it or none of it. Images already in the gallery (same
    sha256) are reported as duplicates; unreadable ones as failures."""
    uploads, form = await read_form(request, schemas.EnrollForm, state.config.max_images)
    check_name(name)
    try:
        metadata = report.parse_metadata(form.meta)
    except ValueError as exc:
        raise ServiceError(422, f"meta: {exc}") from None
    async with Admitted(state, uploads, "enroll") as items:
        good, emb = await embed(state, items, bulk=True, views=VIEWS)
        failed = [{"path": it.path, "error": it.error} for it in items if it.error is not None]
        if not good:
            raise ServiceError(422, f"no image could be read ({len(failed)} failed): nothing enrolled; first: {failed[0]['error']}")
        await asyncio.get_running_loop().run_in_executor(state.decode_pool, _thumbnails, good[:THUMBS_PER_SOURCE])
        records, views = [it.record for it in good], view_embeddings(good)
    result = await state.store.write(
        lambda g: g.enroll(name, emb, records, family=form.family, metadata=metadata, parent=form.parent, views=views)
    )
    result.failed = failed
    state.metrics.count_images("enroll", "enrolled", result.enrolled)
    return answer(result.to_dict())


def _thumbnails(items) -> None:
    for it in items:
        it.make_thumbnail()
