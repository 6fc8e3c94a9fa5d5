"""Helpers for cheap metrics: observable instruments over plain integers, sampled histograms."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

Points = Callable[[], Iterable[tuple[float, dict[str, Any]]]]


def _callback(points: Points) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attributes) for value, attributes in points()]

    return callback


def observable_counter(
    meter: Meter, name: str, points: Points, unit: str = "{event}", description: str = ""
) -> None:
    """A monotonic counter read from our own integers at export time (no SDK call per event)."""
    meter.create_observable_counter(name, callbacks=[_callback(points)], unit=unit, description=description)


def observable_gauge(meter: Meter, name: str, points: Points, unit: str = "1", description: str = "") -> None:
    meter.create_observable_gauge(name, callbacks=[_callback(points)], unit=unit, description=description)


def messaging_attributes(template: str, service: str) -> dict[str, Any]:
    return {"messaging.system": "nats", "messaging.destination.template": template, "service": service}


#: Lag / duration histograms take one event in this many (sampled, never an SDK call per tick).
LAG_SAMPLE_EVERY = 64
