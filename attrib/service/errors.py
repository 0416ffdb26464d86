"""HTTP errors of the service: one JSON shape, one line of message.

    {"error": "one line a client can act on", "status": 413, "code": "payload_too_large",
     "request_id": "5f0c..."}
"""
from __future__ import annotations

import json
from contextvars import ContextVar

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
