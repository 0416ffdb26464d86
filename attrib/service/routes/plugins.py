"""Tag ``plugins``: the detectors and plugins this server has."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from .. import extensions, schemas
from .common import ERROR, State, answer

router = APIRouter(tags=["plugins"])


@router.get("/v1/detectors", response_model=list[schemas.Detector])
async def list_detectors(state: State):
    """Detectors installed (built-in and from plugins), for identify's `detectors` field."""
    return answer(state.detectors.listing())


@router.get("/v1/plugins", response_model=list[schemas.Plugin], responses={422: ERROR})
async def list_plugins(
    state: State,
    include_builtin: Annotated[bool, Query(alias="all", description="Include the built-in plugins.")] = False,
):
    """Installed plugins, their hooks and what they register (as `attrib plugins --json`)."""
    return answer(extensions.list_plugins(state.pm, include_builtin=include_builtin))
