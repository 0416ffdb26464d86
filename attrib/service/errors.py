"""HTTP errors of the service: one JSON shape, one line of message, and the app's handlers for them.

{"error": "one line a client can act on", "status": 413, "code": "payload_too_large",
 "request_id": "5f0c..."}
"""

from __future__ import annotations

import json
from contextvars import ContextVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AttribError, EncoderMismatch, UnknownSource

#: the current request's id (set by the middleware; read by handlers and log records)
request_id_var: ContextVar[str | None] = ContextVar("attrib_request_id", default=None)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    500: "internal_error",
    503: "unavailable",
}


class ServiceError(Exception):
    """An error answered with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.headers = headers or {}


def one_line(message: object, limit: int = 500) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_body(status: int, message: str) -> dict:
    return {"error": one_line(message), "status": status, "code": CODES.get(status, "error"), "request_id": request_id_var.get()}


def error_bytes(status: int, message: str) -> bytes:
    return json.dumps(error_body(status, message)).encode()


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error answer; a 413 also closes the connection (the rest of an oversized body is
    not worth reading)."""
    if status == 413:
        headers = {**(headers or {}), "Connection": "close"}
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def validation_message(errors) -> str:
    """pydantic's validation errors in one line: at most three, each ``where: what``."""
    parts = []
    for err in list(errors)[:3]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request"
        msg = err.get("msg", "invalid")
        if err.get("type") == "missing":
            msg = "is required" + (" (upload images as multipart file fields named 'image')" if where == "image" else "")
            parts.append(f"{where} {msg}")
        else:
            parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


def _http_message(request: Request, exc: StarletteHTTPException) -> str:
    """Starlette's terse HTTP errors, said so that a client knows what to do."""
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        return f"no such endpoint: {request.method} {request.url.path} (see /openapi.json)"
    if exc.status_code == 400:
        return f"malformed request body ({message.rstrip('.')}): send multipart/form-data"
    if exc.status_code == 405:
        return f"{request.method} is not allowed on {request.url.path}"
    return message


def _attrib_status(exc: AttribError) -> int:
    if isinstance(exc, UnknownSource):
        return 404
    if isinstance(exc, EncoderMismatch):
        return 409
    return 422  # GalleryError (bad name, family), ImageError, EncoderError


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can meet, answered in the one JSON shape: the service's own, request
    validation, Starlette's HTTP errors, and attrib's domain errors."""

    async def service_error(request: Request, exc: ServiceError):
        return error_response(exc.status, exc.message, exc.headers)

    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(422, validation_message(exc.errors()))

    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, _http_message(request, exc), exc.headers)

    async def attrib_error(request: Request, exc: AttribError):
        return error_response(_attrib_status(exc), str(exc))

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(AttribError, attrib_error)
