"""The ``Strategy`` plug-in point: market-data events in, ``Signal`` contracts out.

Hooks get the decoded messages (``schemas.wire.TradeMsg`` / ``DepthMsg``: prices and quantities
are the exact wire strings; ``Decimal(tick.price)`` is exact) and return an iterable of ``Signal``
(a list, a tuple, or be a generator). They are synchronous and should be quick; each strategy runs
behind its own bounded queue and task, and every call is isolated (``runner``), so a slow or
failing strategy cannot stall the NATS callbacks, the other strategies or the engine.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Iterable
from typing import ClassVar

from schemas import Signal
from schemas.wire import DepthMsg, TradeMsg
from services.strategy_engine.settings import StrategySettings


class Strategy(abc.ABC):
    #: Published in ``Signal.strategy`` and the subject ``signals.<name>.<SYMBOL>``.
    name: ClassVar[str]

    def __init__(self, settings: StrategySettings) -> None:
        self.settings = settings

    def on_trade(self, tick: TradeMsg) -> Iterable[Signal]:
        """Signals caused by this trade (default: none)."""
        return ()

    def on_depth(self, update: DepthMsg) -> Iterable[Signal]:
        """Signals caused by this depth update (default: none)."""
        return ()

    def problems(self) -> list[str]:
        """Broken invariants of the strategy's own state, shown in health (default: none)."""
        return []


def load_strategies(names: list[str], settings: StrategySettings) -> list[Strategy]:
    """Built-in names (``vwap``) or ``package.module:ClassName``; ValueError with a clear message."""
    from services.strategy_engine.vwap import VwapDeviation

    built_in: dict[str, type[Strategy]] = {VwapDeviation.name: VwapDeviation}
    strategies = []
    for spec in names:
        cls = built_in.get(spec) or _import(spec, list(built_in))
        strategies.append(cls(settings))
    seen = [s.name for s in strategies]
    if len(set(seen)) != len(seen):
        raise ValueError(f"strategy names must be unique, got {seen}")
    return strategies


def _import(spec: str, built_in: list[str]) -> type[Strategy]:
    module_name, sep, class_name = spec.partition(":")
    if not sep:
        raise ValueError(
            f"unknown strategy {spec!r}: built-ins are {built_in}, or use package.module:ClassName"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError as error:
        raise ValueError(f"cannot import strategy module {module_name!r}: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"{spec!r} is not a Strategy subclass")
    return cls
