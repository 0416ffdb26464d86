"""``attrib serve``: the CLI's operations over HTTP, on the same gallery.

    GET    /v1/health                     liveness, encoder, gallery generation and counts
    GET    /v1/sources                    as `attrib sources list --json`
    GET    /v1/sources/{name}             as `attrib sources show --json`
    POST   /v1/sources/{name}/samples     enroll (API key), as `attrib enroll --json`
    DELETE /v1/sources/{name}             remove (API key)
    POST   /v1/identify                   as `attrib identify --json` (a list, one object per image)
    POST   /v1/verify                     as `attrib verify --json` (source mode: list; pair mode: object)
    GET    /v1/detectors                  detectors for identify's `detectors` field
    GET    /v1/plugins                    as `attrib plugins --json`
    GET    /metrics                       Prometheus text
    GET    /openapi.json, /docs           the OpenAPI document

Library use::

    from attrib.service import ServiceConfig, create_app
    app = create_app(ServiceConfig(gallery="g").load_keys())   # any ASGI server

docs/service.md is the guide: security model, bounds, throughput, operations.
"""

from .app import app_from_env, create_app
from .config import ServiceConfig

__all__ = ["ServiceConfig", "app_from_env", "create_app"]
