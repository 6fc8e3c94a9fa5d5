"""Telemetry end to end: the three services as processes, exporting OTLP to a real receiver."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider

from schemas import subjects
from services.common.bus import settled
from services.common.telemetry import TelemetrySettings, setup_telemetry
from tests.otlp_receiver import OTLPReceiver

ROOT = Path(__file__).parent.parent
MODULES = {
    "connector_feed": "services.connector_feed",
    "strategy_engine": "services.strategy_engine",
    "context": "services.context",
}


def _env(nats_url: str, symbol: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STUB_", "VWAP_", "DATA_SOURCE"))
    }
    env.update(
        {
            "NATS_URL": nats_url,
            "SYMBOLS": symbol,
            "DATA_SOURCE": "hft_connector",
            "CONNECTOR_NAME": "stub",
            "STUB_TRADES_PER_S": "100",
            "STUB_DEPTH_PER_S": "10",
            "STUB_SEED": "5",
            "STUB_SWING_BPS": "0",  # the plain one-cent walk: the view flips often, signals come quickly
            "VWAP_MIN_TRADES": "2",
            "VWAP_THRESHOLD_BPS": "0.001",  # one 0.01 tick on 50000 is 0.002 bps
            "PYTHONPATH": str(ROOT),
            "OTEL_METRIC_EXPORT_INTERVAL": "300",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "MD_TRACE_MAX_PER_S": "0",  # every sampled message, however fast
            **extra,
        }
    )
    return env


@contextmanager
def services(
    env: dict[str, str], names: tuple[str, ...] = tuple(MODULES)
) -> Iterator[list[subprocess.Popen[bytes]]]:
    # Consumers first, so they are subscribed before the feed publishes its first traced message.
    order = sorted(names, key=lambda n: n == "connector_feed")
    processes = [
        subprocess.Popen([sys.executable, "-m", MODULES[n]], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        for n in order
    ]
    try:
        time.sleep(0.5)
        yield processes
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)  # flush on SIGTERM is part of what is tested
        for process in processes:
            assert process.wait(timeout=15) == 0


def _trace_with_all_hops(receiver: OTLPReceiver, symbol: str) -> dict[str, Any] | None:
    spans, _ = receiver.snapshot()
    producers = {
        s["span_id"]: s
        for s in spans
        if s["service"] == "connector_feed"
        and s["name"] == "publish md.{symbol}.trades"
        and s["attributes"].get("symbol") == symbol
    }
    consumers: dict[str, dict[str, dict[str, Any]]] = {}
    for span in spans:
        if span["kind"] == "CONSUMER" and span["parent_span_id"] in producers:
            consumers.setdefault(span["parent_span_id"], {})[span["service"]] = span
    signal_spans = [s for s in spans if s["name"] == "publish signals.{strategy}.{symbol}"]
    for producer_id, by_service in consumers.items():
        if {"strategy_engine", "context"} <= set(by_service):
            engine_span = by_service["strategy_engine"]["span_id"]
            signals = [s for s in signal_spans if s["parent_span_id"] == engine_span]
            if signals:
                return {"producer": producers[producer_id], "consumers": by_service, "signal": signals[0]}
    return None


def _point(receiver: OTLPReceiver, service: str, name: str) -> list[dict[str, Any]]:
    _, points = receiver.snapshot()
    return [p for p in points if p["service"] == service and p["name"] == name]


def test_one_trace_from_the_feed_through_both_consumers_and_into_a_signal(nats_url: str, unique: str) -> None:
    with OTLPReceiver() as receiver:
        env = _env(
            nats_url,
            unique,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_TRACES_SAMPLER_ARG="1.0",
        )
        with services(env):
            receiver.wait_for(lambda r: _trace_with_all_hops(r, unique) is not None)
            asyncio.run(_traced_requests(nats_url, unique))
            receiver.wait_for(lambda r: bool(_point(r, "context", "context.query.duration")))
            receiver.wait_for(
                lambda r: all(
                    _point(r, s, "md.lag.publish_to_consume") for s in ("strategy_engine", "context")
                )
            )
        found = _trace_with_all_hops(receiver, unique)
        spans, points = receiver.snapshot()

    assert found is not None
    producer = found["producer"]
    assert producer["kind"] == "PRODUCER"
    assert producer["attributes"]["messaging.system"] == "nats"
    assert producer["attributes"]["messaging.destination.name"] == f"md.{unique}.trades"
    assert producer["attributes"]["messaging.destination.template"] == "md.{symbol}.trades"
    assert producer["attributes"]["messaging.operation.type"] == "publish"
    assert producer["attributes"]["messaging.message.body.size"] > 100
    assert producer["attributes"]["exchange"] == "stub"
    receive = [s for s in spans if s["span_id"] == producer["parent_span_id"]]
    assert receive and receive[0]["name"] == "receive md.{symbol}.trades"  # receive -> normalise
    for service, consumer in found["consumers"].items():
        assert consumer["name"] == "process md.{symbol}.trades", service
        assert consumer["trace_id"] == producer["trace_id"]
        assert consumer["attributes"]["messaging.operation.type"] == "process"
        assert consumer["attributes"]["messaging.destination.name"] == f"md.{unique}.trades"
        assert consumer["attributes"]["symbol"] == unique
    assert found["signal"]["kind"] == "PRODUCER"
    assert found["signal"]["trace_id"] == producer["trace_id"]
    assert found["signal"]["attributes"]["messaging.destination.name"].startswith(f"signals.vwap.{unique}")

    servers = {s["name"]: s for s in spans if s["kind"] == "SERVER"}
    assert servers["health connector_feed"]["parent_span_id"] == "00000000000000aa"
    assert servers["query context.{symbol}.snapshot"]["parent_span_id"] == "00000000000000bb"

    def latest(service: str, name: str) -> dict[str, Any]:
        matching = [p for p in points if p["service"] == service and p["name"] == name]
        assert matching, f"{service} exported no {name}"
        return matching[-1]

    sent = latest("connector_feed", "messaging.client.sent.messages")
    assert sent["value"] > 0 and sent["attributes"]["messaging.system"] == "nats"
    assert latest("connector_feed", "md.events.received")["attributes"]["exchange"] == "stub"
    assert latest("connector_feed", "md.events.published")["value"] > 0
    assert "md.queue.size" in {p["name"] for p in points if p["service"] == "connector_feed"}
    lag = latest("connector_feed", "md.lag.exchange_to_receive")
    assert lag["unit"] == "s" and lag["count"] > 0 and 0 <= lag["sum"] / lag["count"] < 1
    assert latest("connector_feed", "md.lag.receive_to_publish")["count"] > 0
    assert latest("connector_feed", "md.connector.reconnects")["value"] == 0
    for consumer in ("strategy_engine", "context"):
        assert latest(consumer, "messaging.client.consumed.messages")["value"] > 0
        assert latest(consumer, "messaging.process.duration")["count"] > 0
        delay = latest(consumer, "md.lag.publish_to_consume")
        assert 0 < delay["sum"] / delay["count"] < 1  # seconds
    assert latest("strategy_engine", "strategy.signals")["value"] > 0
    assert latest("strategy_engine", "strategy.errors")["value"] == 0
    assert latest("context", "context.query.duration")["count"] >= 1


async def _traced_requests(nats_url: str, symbol: str) -> None:
    """Health and context requests with a known parent span, as a traced client would send them."""
    nc = await nats.connect(nats_url)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    await nc.request(
        subjects.health("connector_feed"),
        b"",
        timeout=2,
        headers={"traceparent": f"00-{trace_id}-00000000000000aa-01"},
    )
    await nc.request(
        subjects.context_snapshot(symbol),
        b"",
        timeout=2,
        headers={"traceparent": f"00-{trace_id}-00000000000000bb-01"},
    )
    await nc.drain()


def test_ratio_zero_publishes_no_traceparent(nats_url: str, unique: str) -> None:
    with OTLPReceiver() as receiver:
        env = _env(
            nats_url,
            unique,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_TRACES_SAMPLER_ARG="0",
            STUB_TRADES_PER_S="400",
        )
        headers = asyncio.run(_headers_seen(nats_url, unique, env, count=600))
        spans, _ = receiver.snapshot()

    assert len(headers) == 600
    assert not any(h and "traceparent" in h for h in headers)
    assert any(h and "Md-Publish-Ns" in h for h in headers)  # the lag sample still flows
    assert not [s for s in spans if s["name"].startswith(("publish md.", "receive md."))]


async def _headers_seen(
    nats_url: str, symbol: str, env: dict[str, str], count: int
) -> list[dict[str, str] | None]:
    nc = await nats.connect(nats_url)
    seen: list[dict[str, str] | None] = []
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        seen.append(msg.headers)
        if len(seen) >= count:
            done.set()

    await nc.subscribe(subjects.trades(symbol), cb=on_msg)
    await settled(nc)
    with services(env, ("connector_feed",)):
        await asyncio.wait_for(done.wait(), 20)
    await nc.drain()
    return seen[:count]


def test_sdk_disabled_exports_nothing(nats_url: str, unique: str) -> None:
    with OTLPReceiver() as receiver:
        env = _env(
            nats_url,
            unique,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_SDK_DISABLED="true",
            OTEL_TRACES_SAMPLER_ARG="1.0",
        )
        headers = asyncio.run(_headers_seen(nats_url, unique, env, count=100))
        time.sleep(1.0)  # well past the 300 ms export interval

    assert receiver.requests == 0
    assert not any(h and "traceparent" in h for h in headers)


def test_no_endpoint_means_no_exporter_and_no_spans() -> None:
    telemetry = setup_telemetry("x", TelemetrySettings(_env_file=None))

    assert telemetry.tracer_provider is None and telemetry.meter_provider is None
    assert not telemetry.sample()
    assert isinstance(telemetry.tracer(), trace.NoOpTracer)


@pytest.mark.parametrize(
    ("variables", "ratio"),
    [
        ({}, 0.01),
        ({"otel_traces_sampler_arg": 0.25}, 0.25),
        ({"otel_traces_sampler": "always_off"}, 0.0),
        ({"otel_traces_sampler": "always_on"}, 1.0),
    ],
)
def test_market_data_sampling_ratio(variables: dict[str, Any], ratio: float) -> None:
    settings = TelemetrySettings(otel_exporter_otlp_endpoint="http://127.0.0.1:9", **variables)

    telemetry = setup_telemetry("x", settings)
    try:
        assert telemetry.ratio == ratio
        assert isinstance(telemetry.tracer_provider, TracerProvider)
    finally:
        telemetry.shutdown()


def test_trace_context_round_trips_through_nats_style_headers() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("p") as span:
        headers: dict[str, str] = {}
        propagate.inject(headers)

    parent = trace.get_current_span(propagate.extract(headers)).get_span_context()
    assert parent.trace_id == span.get_span_context().trace_id
    assert parent.span_id == span.get_span_context().span_id


def test_trace_budget_caps_traced_messages_per_second() -> None:
    settings = TelemetrySettings(otel_exporter_otlp_endpoint="http://127.0.0.1:9", md_trace_max_per_s=10)
    telemetry = setup_telemetry("x", settings)
    try:
        start = 1_700_000_000 * 10**9
        allowed = [telemetry.within_budget(start + i * 10**7) for i in range(100)]  # 100 over one second
    finally:
        telemetry.shutdown()

    assert sum(allowed) == 10
    assert telemetry.budget_skips == 90


def test_geometric_gaps_average_one_over_the_ratio() -> None:
    settings = TelemetrySettings(
        otel_exporter_otlp_endpoint="http://127.0.0.1:9", otel_traces_sampler_arg=0.01
    )
    telemetry = setup_telemetry("x", settings)
    try:
        gaps = [telemetry.gap() for _ in range(20_000)]
    finally:
        telemetry.shutdown()

    assert min(gaps) >= 1
    assert 90 < sum(gaps) / len(gaps) < 110


def test_sigterm_flushes_what_is_buffered(nats_url: str, unique: str) -> None:
    with OTLPReceiver() as receiver:
        env = _env(
            nats_url,
            unique,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_TRACES_SAMPLER_ARG="1.0",
            OTEL_METRIC_EXPORT_INTERVAL="600000",
            OTEL_BSP_SCHEDULE_DELAY="600000",
        )
        asyncio.run(_headers_seen(nats_url, unique, env, count=50))  # runs the feed, then SIGTERM
        spans, points = receiver.snapshot()

    assert any(s["name"] == "publish md.{symbol}.trades" for s in spans), "spans not flushed on SIGTERM"
    assert any(p["name"] == "md.events.published" for p in points), "metrics not flushed on SIGTERM"


def test_cli_requests_are_client_spans_parenting_the_servers(nats_url: str, unique: str) -> None:
    with OTLPReceiver() as receiver:
        env = _env(
            nats_url, unique, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_TRACES_SAMPLER_ARG="0"
        )
        with services(env, ("connector_feed", "context")):
            time.sleep(1.0)
            health = subprocess.run(
                [sys.executable, "-m", "services.cli", "health", "context", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            snapshot = subprocess.run(
                [sys.executable, "-m", "services.cli", "snapshot", unique, "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            receiver.wait_for(lambda r: len([s for s in r.snapshot()[0] if s["kind"] == "SERVER"]) >= 2)
        spans, _ = receiver.snapshot()

    assert health.returncode == 0, health.stderr
    assert '"context"' in health.stdout  # JSON on stdout, nothing else
    assert snapshot.returncode == 0 and json.loads(snapshot.stdout)["symbol"] == unique
    clients = {s["name"]: s for s in spans if s["kind"] == "CLIENT" and s["service"] == "hftfeed_cli"}
    servers = {s["name"]: s for s in spans if s["kind"] == "SERVER"}
    for name in ("health context", "query context.{symbol}.snapshot"):
        assert servers[name]["parent_span_id"] == clients[name]["span_id"]
        assert servers[name]["trace_id"] == clients[name]["trace_id"]
