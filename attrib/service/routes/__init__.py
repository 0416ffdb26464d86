"""The HTTP API, one router per OpenAPI tag: ``service`` (health, metrics), ``sources`` (list,
show, remove, enroll), ``attribution`` (identify, verify), ``plugins`` (detectors, plugins)."""

from . import attribution, plugins, service, sources

#: in the order their paths appear in the OpenAPI document
ROUTERS = (service.router, sources.router, attribution.router, plugins.router)

__all__ = ["ROUTERS"]
