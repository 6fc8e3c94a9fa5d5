"""OpenTelemetry set up once per process, from the standard OTEL_* variables.

- No OTLP endpoint variable set (or OTEL_SDK_DISABLED=true): no provider and no exporter is
  created; every instrument and tracer stays the API's no-op, so nothing blocks, retries or logs.
- Otherwise traces and metrics go over OTLP (``grpc`` or ``http/protobuf``, per signal, from
  OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_PROTOCOL; the exporters read their endpoints themselves).
- Market-data tracing is head-sampled by the caller (``Telemetry.sample()``) *before* the tracer is
  touched, at OTEL_TRACES_SAMPLER_ARG (default 0.01); the SDK sampler is parent-based always-on so
  a message we chose to trace is recorded in every service it reaches. ``always_off`` turns every
  span off, ``always_on`` traces every message.
- ``shutdown()`` flushes both providers; services call it on SIGINT/SIGTERM.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.sdk.trace.sampling import ALWAYS_ON as SDK_ALWAYS_ON
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services import __version__
from services.common.logging import get_logger

log = get_logger(__name__)

Protocol = Literal["grpc", "http/protobuf"]
DEFAULT_MD_RATIO = 0.01


class TelemetrySettings(BaseSettings):
    """The standard OpenTelemetry variables this project reads (names as in the OTel spec)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    otel_sdk_disabled: bool = Field(default=False, description="true: no telemetry at all")
    otel_service_name: str | None = Field(
        default=None,
        description="service.name; unset: the service's own (connector_feed, strategy_engine ...)",
    )
    otel_resource_attributes: str | None = Field(
        default=None, description="extra resource attributes, k=v,k2=v2"
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP endpoint for traces and metrics; unset = no exporter at all (nothing blocks, "
        "retries or logs)",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, description="traces only, used verbatim"
    )
    otel_exporter_otlp_metrics_endpoint: str | None = Field(
        default=None, description="metrics only, used verbatim"
    )
    otel_exporter_otlp_protocol: Protocol = Field(
        default="http/protobuf",
        description="http/protobuf (appends /v1/traces, /v1/metrics to the base endpoint) or grpc "
        "(http://host:4317)",
    )
    otel_exporter_otlp_traces_protocol: Protocol | None = Field(
        default=None, description="traces only; unset: OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    otel_exporter_otlp_metrics_protocol: Protocol | None = Field(
        default=None, description="metrics only; unset: OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    otel_traces_sampler: str = Field(
        default="parentbased_traceidratio",
        description="always_off disables spans, always_on traces every market-data message",
    )
    otel_traces_sampler_arg: float | None = Field(
        default=None,
        ge=0,
        le=1,
        validation_alias=AliasChoices("otel_traces_sampler_arg"),
        description=f"share of market-data messages traced, decided before any tracer call; unset: "
        f"{DEFAULT_MD_RATIO}",
    )
    #: Our own guard (not an OTel variable): at most this many market-data traces per second per
    #: process, however fast the data, so a burst cannot turn tracing into the bottleneck
    #: (a traced message costs ~100 µs of span work and OTLP encoding in-process). 0 = no cap.
    md_trace_max_per_s: float = Field(
        default=100.0,
        ge=0,
        description="ours, not OpenTelemetry's: at most this many market-data traces per second per "
        "process (0 = no cap), so a burst cannot make tracing the bottleneck",
    )

    @property
    def traces_enabled(self) -> bool:
        return not self.otel_sdk_disabled and bool(
            self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint
        )

    @property
    def metrics_enabled(self) -> bool:
        return not self.otel_sdk_disabled and bool(
            self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_metrics_endpoint
        )

    @property
    def md_sample_ratio(self) -> float:
        """The share of market-data messages that get a trace."""
        sampler = self.otel_traces_sampler.lower()
        if sampler in ("always_off", "parentbased_always_off"):
            return 0.0
        if sampler in ("always_on", "parentbased_always_on"):
            return 1.0
        return DEFAULT_MD_RATIO if self.otel_traces_sampler_arg is None else self.otel_traces_sampler_arg


@dataclass
class Telemetry:
    """What a service needs: a tracer, a meter, the md sampling decision, and shutdown."""

    service: str
    settings: TelemetrySettings
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    ratio: float = 0.0
    _rng: random.Random = field(default_factory=random.Random)
    _next_allowed_ns: int = 0
    #: Sampled messages left untraced because the per-second budget was spent.
    budget_skips: int = 0

    @property
    def tracing(self) -> bool:
        return self.tracer_provider is not None and self.ratio > 0

    def sample(self) -> bool:
        """Head sampling for one market-data message, decided before any tracer call."""
        return self.tracer_provider is not None and self._rng.random() < self.ratio

    def gap(self) -> int:
        """Messages until the next sampled one (geometric, mean 1/ratio); 0 = never sample.

        A hot loop counts this down instead of drawing a random number per message.
        """
        if self.tracer_provider is None or self.ratio <= 0:
            return 0
        if self.ratio >= 1:
            return 1
        return int(math.log(1.0 - self._rng.random()) / math.log(1.0 - self.ratio)) + 1

    def within_budget(self, now_ns: int) -> bool:
        """MD_TRACE_MAX_PER_S: spaces traced messages at least 1/max seconds apart."""
        cap = self.settings.md_trace_max_per_s
        if cap <= 0:
            return True
        if now_ns < self._next_allowed_ns:
            self.budget_skips += 1
            return False
        self._next_allowed_ns = now_ns + int(1e9 / cap)
        return True

    def tracer(self) -> trace.Tracer:
        if self.tracer_provider is None:
            return trace.NoOpTracer()
        return self.tracer_provider.get_tracer("hftfeed", __version__)

    def meter(self) -> metrics.Meter:
        if self.meter_provider is None:
            return metrics.NoOpMeter("hftfeed")
        return self.meter_provider.get_meter("hftfeed", __version__)

    def shutdown(self) -> None:
        """Flush and stop both providers (idempotent)."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception as error:  # shutdown boundary: never block the exit
                    log.warning("telemetry_shutdown_failed", error=repr(error))
        self.tracer_provider = self.meter_provider = None


def _resource(service: str, settings: TelemetrySettings) -> Resource:
    attributes: dict[str, Any] = {"service.version": __version__}
    in_attributes = "service.name=" in (settings.otel_resource_attributes or "")
    if not settings.otel_service_name and not in_attributes:
        attributes["service.name"] = service  # our default; the OTEL_* variables win
    return Resource.create(attributes)  # merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME


def _endpoint(settings: TelemetrySettings, signal: str, protocol: Protocol) -> str:
    """The spec's rules: a per-signal endpoint is used verbatim; the base endpoint gets
    ``/v1/<signal>`` appended for OTLP/HTTP and is used as is (scheme://host:port) for gRPC."""
    specific = getattr(settings, f"otel_exporter_otlp_{signal}_endpoint")
    if specific:
        return str(specific)
    base = str(settings.otel_exporter_otlp_endpoint)
    return base if protocol == "grpc" else f"{base.rstrip('/')}/v1/{signal}"


def _span_exporter(settings: TelemetrySettings, protocol: Protocol) -> Any:
    endpoint = _endpoint(settings, "traces", protocol)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        return GrpcSpans(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    return HttpSpans(endpoint=endpoint)


def _metric_exporter(settings: TelemetrySettings, protocol: Protocol) -> Any:
    endpoint = _endpoint(settings, "metrics", protocol)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        return GrpcMetrics(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

    return HttpMetrics(endpoint=endpoint)


def setup_telemetry(service: str, settings: TelemetrySettings | None = None) -> Telemetry:
    """Create the providers this process needs, or none at all (see the module docstring)."""
    settings = settings or TelemetrySettings()
    telemetry = Telemetry(service, settings)
    if not (settings.traces_enabled or settings.metrics_enabled):
        return telemetry
    resource = _resource(service, settings)
    if settings.traces_enabled:
        off = settings.otel_traces_sampler.lower() in ("always_off", "parentbased_always_off")
        provider = TracerProvider(
            resource=resource, sampler=ParentBased(ALWAYS_OFF if off else SDK_ALWAYS_ON)
        )
        protocol = settings.otel_exporter_otlp_traces_protocol or settings.otel_exporter_otlp_protocol
        provider.add_span_processor(BatchSpanProcessor(_span_exporter(settings, protocol)))
        telemetry.tracer_provider = provider
        telemetry.ratio = settings.md_sample_ratio
    if settings.metrics_enabled:
        protocol = settings.otel_exporter_otlp_metrics_protocol or settings.otel_exporter_otlp_protocol
        reader = PeriodicExportingMetricReader(
            _metric_exporter(settings, protocol)
        )  # OTEL_METRIC_EXPORT_INTERVAL
        telemetry.meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    log.info(
        "telemetry_enabled",
        traces=settings.traces_enabled,
        metrics=settings.metrics_enabled,
        md_sample_ratio=telemetry.ratio,
    )
    return telemetry
