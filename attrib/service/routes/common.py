"""What every router uses: the shared state (by dependency), JSON answers, the documented error
responses, and the path and query parameters that recur."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from ...report import FAR_MAX, FAR_MIN, jsonable
from ...sources import NAME_RE
from .. import schemas
from ..errors import ServiceError
from ..middleware import AUTH_KEY
from ..state import ServiceState


def get_state(request: Request) -> ServiceState:
    """The app's :class:`ServiceState` (set by :func:`attrib.service.app.create_app`)."""
    return request.app.state.attrib


State = Annotated[ServiceState, Depends(get_state)]

_E = {"model": schemas.Error}
ERROR = _E
READ_ERRORS = {404: _E, 422: _E, 503: _E}
UPLOAD_ERRORS = {400: _E, 409: _E, 413: _E, 415: _E, 422: _E, 503: _E}
WRITE_ERRORS = {400: _E, 401: _E, 403: _E, 404: _E, 409: _E, 413: _E, 415: _E, 422: _E, 503: _E}

FarQuery = Annotated[
    float | None,
    Query(ge=FAR_MIN, le=FAR_MAX, description="False-accept rate the thresholds are shown for (default: the gallery's)."),
]
SourceName = Annotated[str, Path(pattern=NAME_RE.pattern, max_length=128, description="Source name.")]


def answer(content: Any, status: int = 200) -> JSONResponse:
    """A JSON answer, made strict JSON by :func:`attrib.report.jsonable` (NaN -> null), as the CLI's."""
    return JSONResponse(jsonable(content), status_code=status)


def require_key(request: Request, state: ServiceState, what: str) -> None:
    """A write riding on a read endpoint (identify's keep_unknown) needs a key too; the
    middleware has already checked the key of every request to a write endpoint."""
    if not state.keys:
        raise ServiceError(403, f"{what} is a write, and writes are disabled on this server (no API key configured)")
    if not request.scope.get(AUTH_KEY):
        raise ServiceError(
            401, f"{what} is a write: it needs an API key (Authorization: Bearer KEY)", {"WWW-Authenticate": 'Bearer realm="attrib"'}
        )
