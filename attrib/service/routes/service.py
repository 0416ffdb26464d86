"""Tag ``service``: liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ... import __version__
from .. import schemas
from ..state import gallery_info
from .common import ERROR, State, answer

router = APIRouter(tags=["service"])


@router.get("/v1/health", response_model=schemas.Health, responses={503: ERROR})
async def health(state: State):
    """Liveness and what is being served: encoder, gallery generation, counts."""
    info = await state.store.read(gallery_info)
    return answer({"status": "ok", "version": __version__, "gallery": info, "writes_enabled": bool(state.keys)})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: State):
    """Prometheus text format: requests, latency, images, encoder batches, queue depth (this worker)."""
    return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
