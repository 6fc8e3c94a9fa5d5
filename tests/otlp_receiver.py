"""A real OTLP/HTTP (protobuf) receiver for tests: what a collector would receive, decoded.

Built on opentelemetry-proto; runs in a thread on a free loopback port. Spans and metric points
are flattened into dicts so tests can query them.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    return getattr(value, field) if field else None


def _attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items if isinstance(kv, KeyValue)}


class OTLPReceiver:
    def __init__(self, decode: bool = True) -> None:
        self.spans: list[dict[str, Any]] = []
        self.points: list[dict[str, Any]] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if not decode and self.path in ("/v1/traces", "/v1/metrics"):
                    reply = b""  # a sink: an empty Export*ServiceResponse
                elif self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver._add_spans(request)
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    metrics_request = ExportMetricsServiceRequest()
                    metrics_request.ParseFromString(body)
                    receiver._add_metrics(metrics_request)
                    reply = ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _add_spans(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = _attrs(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append(
                            {
                                "service": resource.get("service.name"),
                                "name": span.name,
                                "kind": _KINDS.get(span.kind, str(span.kind)),
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "attributes": _attrs(span.attributes),
                                "status": span.status.code,
                            }
                        )

    def _add_metrics(self, request: ExportMetricsServiceRequest) -> None:
        with self._lock:
            self.requests += 1
            for resource_metrics in request.resource_metrics:
                service = _attrs(resource_metrics.resource.attributes).get("service.name")
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        kind = metric.WhichOneof("data")
                        for point in getattr(metric, kind).data_points:
                            record: dict[str, Any] = {
                                "service": service,
                                "name": metric.name,
                                "type": kind,
                                "unit": metric.unit,
                                "attributes": _attrs(point.attributes),
                            }
                            if kind == "histogram":
                                record.update(count=point.count, sum=point.sum)
                            else:
                                field = point.WhichOneof("value")
                                record["value"] = getattr(point, field) if field else None
                            self.points.append(record)

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self._lock:
            return list(self.spans), list(self.points)

    def wait_for(self, condition: Callable[[OTLPReceiver], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                spans, points = self.snapshot()
                names = sorted({(s["service"], s["name"]) for s in spans})
                metric_names = sorted({(p["service"], p["name"]) for p in points})
                raise AssertionError(
                    f"telemetry condition not met in {timeout_s}s; spans {names}; metrics {metric_names}"
                )
            time.sleep(0.05)


def main() -> None:
    """``python -m tests.otlp_receiver``: a sink in a process of its own (benchmarks); prints the endpoint.

    It accepts and acknowledges OTLP/HTTP without decoding, so its CPU cost stays out of the way.
    """
    with OTLPReceiver(decode=False) as receiver:
        print(receiver.endpoint, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
