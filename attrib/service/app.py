"""The ASGI app: the CLI's operations over HTTP, answering the CLI's ``--json`` shapes.

This module only assembles: the shared state (:mod:`.state`), the routers, one per tag
(:mod:`.routes`), the error handlers (:mod:`.errors`) and the outer middleware
(:mod:`.middleware`). Every handler does the same steps as its CLI command, on the service's
machinery: uploads are checked and decoded (:mod:`.intake`), embedded through the shared
micro-batcher (:mod:`.batching`), answered from the gallery on a reader thread or changed on the
writer thread (:mod:`.store`), and the answer is built by :mod:`attrib.report`, as the CLI's. The
event loop itself only parses HTTP and moves bytes.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..plugins import make_plugin_manager
from .config import ServiceConfig
from .errors import install_error_handlers
from .middleware import ServiceMiddleware
from .routes import ROUTERS, web
from .state import ServiceState, preflight

log = logging.getLogger("attrib.service")

__all__ = ["app_from_env", "create_app", "preflight"]

DESCRIPTION = (
    "The `attrib` CLI over HTTP. Images are uploaded as `multipart/form-data` file fields named "
    "`image` (repeatable); answers have the shapes of the CLI's `--json` output. Reads are open; "
    "enroll and remove need an API key (`Authorization: Bearer KEY`). Errors are "
    '`{"error": "one line", "status", "code", "request_id"}`.'
)


def create_app(config: ServiceConfig, pm=None) -> FastAPI:
    """The app for ``config`` (with API keys already loaded: :meth:`ServiceConfig.load_keys`)."""
    state = ServiceState(config, pm or make_plugin_manager())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.get_running_loop().run_in_executor(None, state.start)
        await state.batcher.start()
        try:
            yield
        finally:  # uvicorn has let in-flight requests finish before this runs
            await state.batcher.stop()
            await asyncio.get_running_loop().run_in_executor(None, state.stop)
            log.info("stopped", extra={"fields": {"requests": sum(state.metrics.requests.values())}})

    app = FastAPI(
        title="attrib",
        version=__version__,
        summary="Which generator made this image? Open-set attribution and fingerprint verification.",
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.attrib = state
    install_error_handlers(app)
    for router in (*ROUTERS, web.router):
        app.include_router(router)
    # the web page's script, style sheet and icons: every asset the page uses comes from here
    app.mount("/static", StaticFiles(packages=[("attrib.service", "static")]), name="static")
    app.add_middleware(ServiceMiddleware, state=state)
    # the routes, flat, for the middleware to name the route of a request it answers itself
    # (recent FastAPI keeps an included router as one opaque entry of app.routes)
    state.routes = [r for r in app.routes if hasattr(r, "path")] + [r for router in (*ROUTERS, web.router) for r in router.routes]
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` and ``attrib serve --workers N`` (settings from the environment)."""
    return create_app(ServiceConfig.from_env())
