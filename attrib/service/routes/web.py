"""The web page over the service: ``/`` (identify), ``/sources`` (the gallery and its map) and
``/enroll`` (enroll and remove, with the API key typed into the page).

Server-rendered from Jinja2 templates (autoescaped: every source name, file name, metadata value
and detector detail is escaped) plus one small plain-JS file; every asset is served from
``/static`` by attrib itself. Pages carry a Content-Security-Policy that allows scripts, styles
and connections from this server only (no inline script, no other origin).

The page calls the HTTP API for writes (``POST /v1/sources/{name}/samples``, ``DELETE
/v1/sources/{name}``) with the key in the ``Authorization`` header, so the page's writes are
checked exactly as any client's. Identify runs through :func:`.attribution.identify_uploads`, the
API's own path, and answers an HTML fragment (``/ui/identify``); nothing uploaded is kept.
Not in the OpenAPI document: these answers are HTML for people, not a contract for programs.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

from ... import __version__, report
from ...gallery.projection import GalleryMap, gallery_map
from ...imageio import THUMB_SIDE
from ...report import jsonable
from ...sources import FAMILIES, NAME_RE
from .. import schemas
from ..errors import ServiceError
from ..intake import read_form
from ..state import ServiceState
from .attribution import identify_uploads
from .common import State

router = APIRouter(include_in_schema=False)

#: the pages' policy: nothing from another origin, no inline script or style, no framing
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(resources.files("attrib.service") / "templates")),
    autoescape=True,  # every page and fragment, whatever its file name
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.2e}"


def _short(value: Any, limit: int = 8) -> str:
    """A detail value in one readable line: numbers rounded, long lists cut."""
    if isinstance(value, list):
        shown = ", ".join(_short(v, limit) for v in value[:limit])
        return f"[{shown}{', … ' + str(len(value) - limit) + ' more' if len(value) > limit else ''}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v, limit)}" for k, v in list(value.items())[:limit]) + "}"
    if isinstance(value, float):
        return _num(value)
    if value is None:
        return "–"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 300 else text[:297] + "..."


def readable(details: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """A detector's ``details`` as (key, text) rows: nested dicts flattened to dotted keys (two
    levels), everything else shortened to one line. Escaping is the template's job."""
    rows: list[tuple[str, str]] = []
    for key, value in details.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and depth < 2:
            rows.extend(readable(value, name + ".", depth + 1))
        else:
            rows.append((name, _short(value)))
    return rows


def bar(value: float | None) -> float:
    """A score in [0, 1] of the bar's width (scores are cosine similarities; below 0 shows empty)."""
    if value is None or not math.isfinite(value):
        return 0.0
    return round(max(0.0, min(1.0, float(value))) * 100, 2)


#: NAME_RE for an HTML ``pattern`` attribute (anchored by the browser; the v flag wants the '-' escaped)
NAME_PATTERN = NAME_RE.pattern.removeprefix("^").removesuffix("$").replace("+-]", "+\\-]")

_env.filters["num"] = _num
_env.globals.update(readable=readable, bar=bar, version=__version__, families=FAMILIES, name_pattern=NAME_PATTERN)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status, headers=SECURITY_HEADERS)


async def current_map(state: ServiceState) -> GalleryMap:
    """The gallery's map, refitted when the gallery has changed (one fit per generation)."""

    def read(g) -> GalleryMap:
        cached = getattr(state, "web_map", None)
        if cached is not None and cached.generation == g.generation:
            return cached
        state.web_map = gallery_map(g.store)
        return state.web_map

    return await state.store.read(read)


async def _sources_context(state: ServiceState) -> dict[str, Any]:
    def read(g):
        return g.sources(), g.store.thumbnail_ids(), g.far, g.encoder.id, g.tree()

    sources, thumbs, far, encoder, tree = await state.store.read(read)
    for s in sources:
        s["thumbnails"] = thumbs.get(s["name"], [])
        s["depth"] = tree.depth(s["name"])
    if tree.active:  # the tree's order: each source under its parent
        order = {name: i for i, name in enumerate(tree.ordered())}
        sources.sort(key=lambda s: order[s["name"]])
    return {
        "sources": sources,
        "far": far,
        "encoder": encoder,
        "thumb_side": THUMB_SIDE,
        "writes_enabled": bool(state.keys),
        "tree": tree.active,
    }


@router.get("/", response_class=HTMLResponse)
async def identify_page(request: Request, state: State):
    return page(request, "identify.html", active="identify", results=None, error=None)


@router.get("/sources", response_class=HTMLResponse)
async def sources_page(request: Request, state: State):
    return page(request, "sources.html", active="sources", **await _sources_context(state))


@router.get("/enroll", response_class=HTMLResponse)
async def enroll_page(request: Request, state: State):
    return page(request, "enroll.html", active="enroll", **await _sources_context(state))


@router.get("/ui/source-list", response_class=HTMLResponse)
async def source_list_fragment(request: Request, state: State):
    """The enroll page's list of sources, refreshed after each enroll or remove."""
    return page(request, "_source_list.html", **await _sources_context(state))


@router.get("/ui/map.json")
async def map_json(state: State):
    """Map coordinates of every prototype and (a bounded share of) the samples, by source."""
    return JSONResponse(jsonable((await current_map(state)).to_dict()), headers=SECURITY_HEADERS)


@router.get("/ui/thumbnails/{sample_id}")
async def thumbnail(state: State, sample_id: int):
    data = await state.store.read(lambda g: g.store.thumbnail(sample_id))
    if not data:
        raise ServiceError(404, f"no thumbnail for sample {sample_id}")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})


@router.post("/ui/identify", response_class=HTMLResponse)
async def identify_fragment(request: Request, state: State, fragment: bool = False):
    """Identify the uploaded images and answer the results as HTML: the fragment the page's
    script inserts (``?fragment=1``; errors then come as the API's JSON error), or the whole page
    (a browser without script: errors shown on the page)."""
    try:
        uploads, form = await read_form(request, schemas.IdentifyForm, state.config.max_images)
        if form.keep_unknown:
            raise ServiceError(422, "keep_unknown is not offered on the page (nothing uploaded here is kept)")
        done = await identify_uploads(state, uploads, form)
        results = await _results(state, done, form.far)
    except ServiceError as exc:
        if fragment:
            raise
        return page(request, "identify.html", status=exc.status, active="identify", results=None, error=exc.message)
    name = "_results.html" if fragment else "identify.html"
    return page(request, name, active="identify", results=results, error=None)


async def _results(state: ServiceState, done, far: float | None) -> list[dict[str, Any]]:
    rows = report.identify_rows(done.items, done.decisions, done.evidence, done.judge)
    wanted = sorted({c["source"] for r in rows for c in r["candidates"]})
    views = sorted({r["view"] for r in rows if r["view"] is not None})
    # each candidate against its threshold in the view its image was scored in (attrib.views)
    thresholds, default_far = await state.store.read(
        lambda g: ({v: g.thresholds(far, sources=wanted, view=v) for v in [None, *views]}, g.far)
    )
    gmap = await current_map(state)
    placed = iter(gmap.place(done.embeddings).tolist() if len(done.embeddings) and gmap.sources else [])
    for row in rows:
        row["far"] = default_far if far is None else far
        for c in row["candidates"]:
            c["threshold"] = thresholds[row["view"]].get(c["source"])
        row["xy"] = next(placed, None) if row["error"] is None else None
    return rows
