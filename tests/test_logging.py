from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.common.logging import configure_logging, get_logger


def test_log_lines_are_json_with_the_seed_key_order(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", service="test")

    get_logger("t1").info("connector_connected", symbol="BTCUSDT", connector="hft")
    get_logger("t1").debug("connector_trade", price="1")  # below INFO: not written

    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert len(lines) == 1
    assert list(lines[0])[:3] == ["timestamp", "level", "event"]
    assert lines[0]["event"] == "connector_connected" and lines[0]["service"] == "test"
    assert "trace_id" not in lines[0]  # not inside a span


def test_log_lines_inside_a_span_carry_its_ids(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    tracer = TracerProvider().get_tracer("t")

    with tracer.start_as_current_span("work") as span:
        get_logger("t2").info("inside")
    context = span.get_span_context()

    line = json.loads(capfd.readouterr().out.splitlines()[-1])
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
