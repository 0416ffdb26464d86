"""The service's outer layer (pure ASGI): request ids, API keys, body bounds, content types,
access logs, metrics, and a JSON 500 for anything unexpected.

Checks run before a byte of the body is read: a write without a valid key gets 401 (403 when the
server has no key at all), a POST that is not ``multipart/form-data`` 415, a ``Content-Length``
over the bound 413. A body without a length is counted while it streams in and cut off at the
bound (413 as well).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import os
import re
import time

from starlette.exceptions import HTTPException

from .errors import error_bytes, request_id_var

access_log = logging.getLogger("attrib.access")
error_log = logging.getLogger("attrib.service")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: scope key the middleware sets: True when the request carried a valid API key
AUTH_KEY = "attrib.authorized"


def is_write(method: str, path: str) -> bool:
    """Enroll and remove (any non-read method under /v1/sources/) need an API key."""
    return method not in ("GET", "HEAD", "OPTIONS") and path.startswith("/v1/sources/")


class KeyRing:
    """API keys, compared in constant time (digests of equal length, every key tried)."""

    def __init__(self, keys):
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def check(self, presented: str | None) -> bool:
        if not presented or not self._digests:
            return False
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(digest, d)
        return ok


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key else None


class ServiceMiddleware:
    def __init__(self, app, state):
        self.app = app
        self.state = state  # attrib.service.app.ServiceState
        self._prefix = os.urandom(8).hex()  # unique per worker process; a counter after it
        self._ids = itertools.count(1)

    def _next_id(self) -> str:
        return f"{self._prefix}{next(self._ids):016x}"

    def _route(self, scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path:
            return path
        from starlette.routing import Match

        for r in getattr(self.state, "routes", ()):
            match, _ = r.matches(dict(scope, type="http"))
            if match == Match.FULL:
                return r.path
        return "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _REQUEST_ID.match(incoming) else self._next_id()
        token = request_id_var.set(rid)
        self.state.metrics.in_flight += 1
        exchange = _Exchange(receive, send, rid, self.state.config.max_body_bytes)
        try:
            await self._handle(scope, headers, exchange)
        except HTTPException as exc:  # raised by exchange.receive outside a route handler
            if not exchange.started:
                await self._send_error(exchange.send, exc.status_code, str(exc.detail), [(b"connection", b"close")])
        except asyncio.CancelledError:
            if not exchange.started:
                exchange.status = 499  # the client went away first (nginx's convention, logs only)
            raise
        except Exception as exc:  # never a traceback to the client; always one in the log
            error_log.exception("unhandled error", extra={"fields": {"request_id": rid, "error": type(exc).__name__}})
            if not exchange.started:
                await self._send_error(exchange.send, 500, f"internal error (request id {rid})")
        finally:
            self.state.metrics.in_flight -= 1
            self._log(scope, exchange, time.perf_counter() - t0)
            request_id_var.reset(token)

    async def _handle(self, scope, headers, exchange: _Exchange) -> None:
        """Answer what the checks refuse before the body is read (and close: don't drain it), else
        pass the request on with its body counted against the bound."""
        presented = presented_key(headers)
        scope[AUTH_KEY] = self.state.keys.check(presented) if presented else False
        problem = self._precheck(scope["method"], scope["path"], headers, scope[AUTH_KEY], presented is not None)
        if problem is not None:
            status, message, extra = problem
            await self._send_error(exchange.send, status, message, [*extra, (b"connection", b"close")])
        else:
            await self.app(scope, exchange.receive, exchange.send)

    def _log(self, scope, exchange: _Exchange, seconds: float) -> None:
        """The request's metrics and its access log line."""
        method, path = scope["method"], scope["path"]
        route = self._route(scope)
        self.state.metrics.observe_request(method, route, exchange.status, seconds)
        client = scope.get("client")
        access_log.info(
            "request",
            extra={
                "fields": {
                    "request_id": exchange.rid,
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": exchange.status,
                    "duration_ms": round(seconds * 1000, 2),
                    "bytes_in": exchange.bytes_in,
                    "bytes_out": exchange.bytes_out,
                    "client": client[0] if client else None,
                }
            },
        )

    def _precheck(self, method, path, headers, authorized, presented):
        if is_write(method, path):
            if not self.state.keys:
                return 403, "writes are disabled on this server: start it with --api-key-file or ATTRIB_API_KEY", []
            if not authorized:
                why = "invalid API key" if presented else "this operation needs an API key (Authorization: Bearer KEY)"
                return 401, why, [(b"www-authenticate", b'Bearer realm="attrib"')]
        if method == "POST" and path.startswith("/v1/"):
            ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            if ctype != "multipart/form-data":
                shown = ctype or "no content type"
                return 415, f"send multipart/form-data with the images in 'image' fields (got {shown})", []
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return 400, "Content-Length is not a number", []
            if n > self.state.config.max_body_bytes:
                return 413, f"request body of {n:,} bytes is over the {self.state.config.max_body_bytes:,}-byte bound", []
        return None

    @staticmethod
    async def _send_error(send, status, message, extra=()):
        body = error_bytes(status, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Exchange:
    """One request's ASGI channels, wrapped: the response gets its X-Request-ID header and is
    counted (status, bytes out); the body is counted as it streams in and cut off past ``limit``."""

    def __init__(self, receive, send, rid: str, limit: int):
        self._receive, self._send = receive, send
        self.rid, self.limit = rid, limit
        self.status = 500
        self.started = False
        self.bytes_in = self.bytes_out = 0

    async def send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
            message = dict(message, headers=[*(message.get("headers") or []), (b"x-request-id", self.rid.encode())])
        elif message["type"] == "http.response.body":
            self.bytes_out += len(message.get("body", b""))
        await self._send(message)

    async def receive(self):
        message = await self._receive()
        if message["type"] == "http.request":
            self.bytes_in += len(message.get("body", b""))
            if self.bytes_in > self.limit:
                raise HTTPException(413, f"request body is over the {self.limit:,}-byte bound")
        return message
