"""Prometheus text exposition (format 0.0.4) of the service's counters, without a client library.

Every value lives in the worker process that counted it: with ``--workers N`` each scrape sees one
worker (the ``worker`` label tells which). All updates happen on the event loop thread.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable

#: latency buckets in seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: encoder batch size buckets
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _labels(pairs: Iterable[tuple[str, object]]) -> str:
    parts = [f'{k}="{_escape(str(v))}"' for k, v in pairs]
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    f = float(v)
    if f == float("inf"):
        return "+Inf"
    return str(int(f)) if f.is_integer() else repr(f)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: tuple[tuple[str, object], ...]) -> list[str]:
        out, running = [], 0
        for b, c in zip(self.buckets + (float("inf"),), self.counts):
            running += c
            out.append(f"{name}_bucket{_labels(labels + (('le', _num(b)),))} {running}")
        out.append(f"{name}_sum{_labels(labels)} {self.sum:.6f}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class Metrics:
    """The service's metrics; :meth:`render` writes them out."""

    def __init__(self):
        self.worker = str(os.getpid())
        self.requests: dict[tuple, int] = defaultdict(int)  # (method, route, status)
        self.latency: dict[tuple, Histogram] = {}  # (method, route)
        self.images: dict[tuple, int] = defaultdict(int)  # (operation, outcome)
        self.batches: dict[str, Histogram] = {}  # kind -> batch sizes
        self.encode_seconds: dict[str, float] = defaultdict(float)
        self.in_flight = 0
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, str(status))] += 1
        key = (method, route)
        if key not in self.latency:
            self.latency[key] = Histogram(LATENCY_BUCKETS)
        self.latency[key].observe(seconds)

    def count_images(self, operation: str, outcome: str, n: int = 1) -> None:
        if n:
            self.images[(operation, outcome)] += n

    def observe_batch(self, size: int, seconds: float, bulk: bool) -> None:
        kind = "bulk" if bulk else "interactive"
        if kind not in self.batches:
            self.batches[kind] = Histogram(BATCH_BUCKETS)
        self.batches[kind].observe(size)
        self.encode_seconds[kind] += seconds

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_, read)

    def render(self) -> str:
        w = (("worker", self.worker),)
        out = [
            "# HELP attrib_http_requests_total HTTP requests by method, route template and status.",
            "# TYPE attrib_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(f"attrib_http_requests_total{_labels(w + (('method', method), ('route', route), ('status', status)))} {n}")
        out += [
            "# HELP attrib_http_request_duration_seconds Time from request start to the end of the response.",
            "# TYPE attrib_http_request_duration_seconds histogram",
        ]
        for (method, route), h in sorted(self.latency.items()):
            out += h.lines("attrib_http_request_duration_seconds", w + (("method", method), ("route", route)))
        out += ["# HELP attrib_images_total Images received, by operation and outcome.", "# TYPE attrib_images_total counter"]
        for (op, outcome), n in sorted(self.images.items()):
            out.append(f"attrib_images_total{_labels(w + (('operation', op), ('outcome', outcome)))} {n}")
        out += ["# HELP attrib_encoder_batch_size Images per encoder call.", "# TYPE attrib_encoder_batch_size histogram"]
        for kind, h in sorted(self.batches.items()):
            out += h.lines("attrib_encoder_batch_size", w + (("queue", kind),))
        out += ["# HELP attrib_encoder_seconds_total Seconds spent in encoder calls.", "# TYPE attrib_encoder_seconds_total counter"]
        for kind, s in sorted(self.encode_seconds.items()):
            out.append(f"attrib_encoder_seconds_total{_labels(w + (('queue', kind),))} {s:.6f}")
        out += [
            "# HELP attrib_http_requests_in_flight Requests being handled now.",
            "# TYPE attrib_http_requests_in_flight gauge",
            f"attrib_http_requests_in_flight{_labels(w)} {self.in_flight}",
        ]
        for name, (help_, read) in sorted(self.gauges.items()):
            try:
                value = float(read())
            except Exception:  # a gauge that cannot be read is left out, never fails the scrape
                continue
            out += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name}{_labels(w)} {_num(value)}"]
        return "\n".join(out) + "\n"
