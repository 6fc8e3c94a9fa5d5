"""Process lifecycle: run a service until SIGINT/SIGTERM, then stop it gracefully.

The service's ``main(stop)`` coroutine owns its tasks and its shutdown (drain NATS, flush
telemetry); this module only turns signals into the ``stop`` event, turns a second signal into an
immediate exit, and maps the outcome to an exit code.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from services.common.bus import Bus, BusConnectError
from services.common.logging import configure_logging, get_logger
from services.common.settings import CommonSettings, SettingsError, load_settings
from services.common.telemetry import Telemetry, TelemetrySettings, setup_telemetry

log = get_logger(__name__)

SettingsT = TypeVar("SettingsT", bound=CommonSettings)
ServiceMain = Callable[[asyncio.Event], Coroutine[Any, Any, int]]


class FatalError(Exception):
    """The service cannot go on (e.g. the connector gave up): exit non-zero with this message."""


async def _run(main: ServiceMain) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():  # second signal: the user really wants out now
            log.warning("forced_exit", signal=signal.Signals(signum).name)
            os._exit(130)
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    # Everything imported so far (hundreds of thousands of objects: pydantic, OpenTelemetry, nats)
    # lives as long as the process: out of the collector's way, a full collection on the hot path
    # takes well under a millisecond instead of several.
    gc.collect()
    gc.freeze()
    return await main(stop)


def run_service(main: ServiceMain, event_loop: str = "uvloop") -> int:
    """Run ``main`` on a fresh event loop (uvloop: lower publish/deliver latency); returns the exit code."""
    try:
        if event_loop == "uvloop":
            import uvloop

            return uvloop.run(_run(main))
        return asyncio.run(_run(main))
    except FatalError as error:
        log.error("service_failed", error=str(error))
        print(f"error: {error}", file=sys.stderr)
        return 1


async def run_until_stopped(stop: asyncio.Event, *workers: asyncio.Task[Any]) -> BaseException | None:
    """Wait for ``stop`` or for any worker to end; cancel the rest; return the first worker error.

    Workers are the service's owned long-running tasks: one ending on its own is an error
    (returned, so the caller can clean up before exiting non-zero).
    """
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        done, _ = await asyncio.wait({stopper, *workers}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopper, *workers):
            task.cancel()
        await asyncio.gather(stopper, *workers, return_exceptions=True)
    for task in workers:
        if task in done and not task.cancelled():
            error = task.exception()
            if error is None:
                return RuntimeError(f"task {task.get_name()} ended unexpectedly")
            # TaskGroup wraps errors: surface the first real one.
            while isinstance(error, BaseExceptionGroup) and error.exceptions:
                error = error.exceptions[0]
            return error
    return None


def service_main(
    name: str,
    settings_cls: type[SettingsT],
    run: Callable[[SettingsT, asyncio.Event], Coroutine[Any, Any, int]],
) -> int:
    """The whole ``__main__`` of a service: load settings once, configure logging, run until stopped."""
    try:
        settings = load_settings(settings_cls)
        load_settings(TelemetrySettings)  # bad OTEL_* values fail here, one line per variable
    except SettingsError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, service=name)
    return run_service(lambda stop: run(settings, stop), settings.event_loop)


async def start_runtime(
    service: str, settings: CommonSettings, trusted_subjects: bool = False
) -> tuple[Bus, Telemetry]:
    """Telemetry (from the OTEL_* variables) and the NATS connection every service starts with;
    ``FatalError`` naming NATS_URL if NATS cannot be reached in time (``Bus.connect`` for
    ``trusted_subjects``)."""
    telemetry = setup_telemetry(service)
    try:
        bus = await Bus.connect(
            settings.nats_url,
            service,
            settings.nats_connect_timeout_s,
            settings.nats_security(),
            trusted_subjects=trusted_subjects,
        )
    except BusConnectError as error:
        telemetry.shutdown()
        raise FatalError(str(error)) from None
    return bus, telemetry
