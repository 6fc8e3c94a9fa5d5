"""Our own small OpenTelemetry instrumentation for NATS (none exists for nats-py).

W3C trace context travels in NATS headers (``traceparent``). Only messages the publisher chose to
trace carry it; a consumer creates a span only for a message that has one, as a child of the
producer span (a parent, not just a link, so Jaeger draws one trace across services).
Request/reply (health, context queries) is traced as CLIENT / SERVER.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

SYSTEM = "nats"
TRACEPARENT = "traceparent"
#: Publish time (ns) on a sample of messages, for the publish -> consume lag histogram.
PUBLISH_NS_HEADER = "Md-Publish-Ns"


def attributes(subject: str, template: str, operation: str, body_size: int, **extra: Any) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.destination.name": subject,
        "messaging.destination.template": template,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.message.body.size": body_size,
        **{k: v for k, v in extra.items() if v is not None},
    }


def start_receive(tracer: trace.Tracer, template: str, start_ns: int, **extra: Any) -> Span:
    """The feed's receive -> normalise span of one sampled event (INTERNAL, a trace root)."""
    return tracer.start_span(
        f"receive {template}",
        kind=SpanKind.INTERNAL,
        start_time=start_ns,
        attributes={"messaging.system": SYSTEM, **extra},
    )


def producer(
    tracer: trace.Tracer,
    subject: str,
    template: str,
    body_size: int,
    parent: Context | None,
    headers: dict[str, str],
    **extra: Any,
) -> Span:
    """A PRODUCER span ``publish <template>``; its context is injected into ``headers``."""
    span = tracer.start_span(
        f"publish {template}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=attributes(subject, template, "publish", body_size, **extra),
    )
    propagate.inject(headers, context=trace.set_span_in_context(span))
    return span


def consumer(
    tracer: trace.Tracer,
    subject: str,
    template: str,
    body_size: int,
    headers: Mapping[str, str] | None,
    **extra: Any,
) -> Span | None:
    """A CONSUMER span ``process <template>`` child of the producer, or None if not traced."""
    if not headers or TRACEPARENT not in headers:
        return None
    parent = propagate.extract(headers)
    return tracer.start_span(
        f"process {template}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes(subject, template, "process", body_size, **extra),
    )


def fail(span: Span, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, str(error)))


@contextmanager
def server_span(
    tracer: trace.Tracer, name: str, subject: str, headers: Mapping[str, str] | None, **extra: Any
) -> Iterator[Span]:
    """SERVER side of a request/reply (health, context query); parented to the client if traced."""
    parent = propagate.extract(headers) if headers and TRACEPARENT in headers else None
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "messaging.system": SYSTEM,
            "rpc.system": "nats",
            "messaging.destination.name": subject,
            **extra,
        },
    ) as span:
        yield span


@contextmanager
def client_span(tracer: trace.Tracer, name: str, subject: str) -> Iterator[dict[str, str]]:
    """CLIENT side of a request/reply: yields the headers to send (with ``traceparent``)."""
    with tracer.start_as_current_span(
        name,
        kind=SpanKind.CLIENT,
        attributes={"messaging.system": SYSTEM, "rpc.system": "nats", "messaging.destination.name": subject},
    ):
        headers: dict[str, str] = {}
        propagate.inject(headers)
        yield headers


def now_ns() -> int:
    return time.time_ns()
