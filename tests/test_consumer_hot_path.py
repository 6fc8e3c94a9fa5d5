"""The consumers' hot path: rates from sampled counters, the exact integer VWAP and the view
decided against it, and the consumer-side trace budget."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction

import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import TradeTick, subjects
from schemas.wire import TradeMsg, decode_trade
from services.common.bus import Bus
from services.common.consumer import MarketDataSubscriber
from services.common.messaging import TRACEPARENT
from services.common.rates import RollingCounter, SampledRates
from services.common.telemetry import TelemetrySettings, setup_telemetry
from services.common.vwap import RollingVwap, scaled
from services.strategy_engine.settings import StrategySettings
from services.strategy_engine.vwap import VwapDeviation
from tests.helpers import eventually
from tests.otlp_receiver import OTLPReceiver

S = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- rates from counters, sampled ------------------------------------------------------------


def test_sampled_rates_put_each_event_in_its_second_and_age_the_last_one() -> None:
    clock = Clock()
    totals = {"trade": 0, "depth": 0}
    rates = SampledRates(lambda: totals, clock=clock)

    totals["trade"] += 30  # arrived during second 1000
    rates.sync()
    clock.now += 1
    totals["trade"] += 20
    totals["depth"] += 5
    rates.sync()
    clock.now += 45
    rates.sync()  # nothing new: the last change stays at second 1001
    clock.now += 14  # second 1060: the minute holds the second batch, not the first

    assert rates.counters["trade"].count() == 20
    assert rates.counters["depth"].count() == 5
    assert rates.last_change == 1001.0


async def test_sampled_rates_sync_once_a_second_on_their_own() -> None:
    totals = {"trade": 0, "depth": 0}
    rates = SampledRates(lambda: totals)
    rates.start(every_s=0.01)
    totals["trade"] = 7
    try:
        await eventually(lambda: rates.counters["trade"].total == 7)
    finally:
        rates.stop()


def test_the_rolling_counter_counts_within_and_across_seconds() -> None:
    clock = Clock()
    counter = RollingCounter(window_s=60, clock=clock)
    for second in range(70):
        for _ in range(second % 3 + 1):
            counter.add()
        clock.now += 1

    clock.now -= 1  # the last second that received adds
    assert counter.count() == sum(s % 3 + 1 for s in range(10, 70))
    assert counter.total == sum(s % 3 + 1 for s in range(70))


async def test_the_subscriber_counts_rates_and_age_from_its_counters(nats_url: str, unique: str) -> None:
    bus = await Bus.connect(nats_url, "test-rates")
    seen: list[TradeMsg] = []
    subscriber = MarketDataSubscriber(bus, [unique], lambda t, _: seen.append(t), lambda d, _: None)
    publisher = await nats.connect(nats_url)
    try:
        await subscriber.start()
        assert subscriber.last_message_monotonic is None
        for i in range(25):
            await publisher.publish(subjects.trades(unique), _trade(i, unique).to_json())
        await publisher.flush()
        await eventually(lambda: len(seen) == 25)
        metrics = subscriber.metrics()
    finally:
        subscriber.stop()
        await publisher.drain()
        await bus.drain()

    assert metrics["trades"]["per_minute_count"] == 25
    assert metrics["trades"]["per_second_rate"] == round(25 / 60, 3)
    assert subscriber.last_message_monotonic is not None


def _trade(i: int, symbol: str, price: str = "100.5", ts: int = 1_700_000_000 * S) -> TradeTick:
    return TradeTick(
        exchange="stub",
        symbol=symbol,
        trade_id=i,
        price=Decimal(price),
        qty=Decimal("0.25"),
        side="buy",
        is_buyer_maker=False,
        ts_event=ts + i,
        ts_recv=ts + i,
    )


# ---- the exact VWAP ----------------------------------------------------------------------------


def test_scaled_takes_plain_decimal_text_and_finite_decimals_only() -> None:
    assert scaled("50012.34") == (5001234, 2)
    assert scaled("7") == (7, 0)
    assert scaled(Decimal("1E+3")) == (1000, 0)
    assert scaled(Decimal("-0.05")) == (-5, 2)
    for bad in ("1e5", "-1", ".5", "1.2.3", "١٢", "", "9" * 300):
        with pytest.raises(ValueError, match="plain decimal"):
            scaled(bad)
    for bad_decimal in (Decimal("NaN"), Decimal("Infinity"), Decimal("1E+999")):
        with pytest.raises(ValueError, match="finite decimal"):
            scaled(bad_decimal)


def test_an_unusable_trade_is_left_out_and_reported() -> None:
    vwap = RollingVwap(10 * S)
    vwap.add(1, "100", "1")
    vwap.add(2, Decimal("NaN"), Decimal("1"))

    assert len(vwap) == 1 and vwap.value == Decimal("100.0000000000")
    assert vwap.repairs == 1 and vwap.problem is not None


class CountedAudits(RollingVwap):
    audits = 0

    def audit(self) -> None:
        self.audits += 1
        super().audit()


def test_audits_stay_o1_amortised_however_large_the_window() -> None:
    vwap = CountedAudits(window_ns=10**18, audit_every=100)  # every trade stays in the window

    for i in range(20_000):
        vwap.add(i, "100.25", "0.5")

    # every max(100, 8 x window) trades: at 100, 900 and 8,100 - 9,100 trades re-summed for 20,000
    assert vwap.audits == 3
    assert vwap.repairs == 0 and vwap.value == Decimal("100.2500000000")


rule_decimals = st.builds(
    lambda whole, fraction: f"{whole}.{fraction}" if fraction else str(whole),
    st.integers(0, 10**12),
    st.text(alphabet="0123456789", max_size=12),
).filter(lambda text: Decimal(text) > 0)


@given(trades=st.lists(st.tuples(st.integers(0, 40), rule_decimals, rule_decimals), min_size=1, max_size=60))
def test_the_fraction_is_the_exact_vwap_of_the_window(trades: list[tuple[int, str, str]]) -> None:
    vwap = RollingVwap(window_ns=50)
    seen: list[tuple[int, str, str]] = []
    ts = 0
    for step, price, qty in trades:
        ts += step
        vwap.add(ts, price, qty)
        seen.append((ts, price, qty))
        window = [(Fraction(p), Fraction(q)) for t, p, q in seen if t > ts - 50]
        exact = sum(p * q for p, q in window) / sum(q for _, q in window)
        fraction = vwap.fraction()
        assert fraction is not None and Fraction(*fraction) == exact
        assert vwap.value == Decimal(round(exact * 10**10)).scaleb(-10)  # round(): half to even


@given(
    prices=st.lists(
        st.integers(99_500, 100_500).map(lambda c: f"{c // 1000}.{c % 1000:03d}"), min_size=3, max_size=80
    ),
    threshold=st.sampled_from([1.0, 2.5, 10.0, 0.1]),
)
def test_the_view_is_decided_against_the_exact_vwap(prices: list[str], threshold: float) -> None:
    settings = StrategySettings(vwap_window_s=1000, vwap_threshold_bps=threshold, vwap_min_trades=2)
    strategy = VwapDeviation(settings)
    bound = Fraction(str(threshold))
    view = "flat"
    window: list[Fraction] = []
    expected: list[tuple[int, str]] = []
    for i, price in enumerate(prices):
        window.append(Fraction(price))
        if len(window) >= 2:  # the reference: Fractions, all the way
            vwap = sum(window, Fraction(0)) / len(window)
            bps = (Fraction(price) - vwap) / vwap * 10_000
            new = _reference_view(bps, bound, view)
            if new != view:
                expected.append((i, new))
                view = new
    got = [
        (i, signal.side)
        for i, price in enumerate(prices)
        for signal in strategy.on_trade(decode_trade(_trade(i, "X", price, ts=i * S).to_json()))
    ]

    assert got == expected


def _reference_view(bps: Fraction, bound: Fraction, view: str) -> str:
    if bps >= bound:
        return "sell"
    if bps <= -bound:
        return "buy"
    return "flat" if abs(bps) <= bound / 2 else view


# ---- the trace budget on the consumer side ------------------------------------------------------


async def test_a_publisher_tracing_everything_gets_only_the_budget(nats_url: str, unique: str) -> None:
    with OTLPReceiver() as receiver:
        settings = TelemetrySettings(
            otel_exporter_otlp_endpoint=receiver.endpoint, otel_exporter_otlp_protocol="http/protobuf"
        )
        telemetry = setup_telemetry("budget-test", settings.model_copy(update={"md_trace_max_per_s": 5}))
        bus = await Bus.connect(nats_url, "test-budget")
        seen: list[TradeMsg] = []
        subscriber = MarketDataSubscriber(
            bus, [unique], lambda t, _: seen.append(t), lambda d, _: None, telemetry=telemetry
        )
        publisher = await nats.connect(nats_url)
        try:
            await subscriber.start()
            for i in range(200):
                header = {TRACEPARENT: f"00-{i + 1:032x}-{i + 1:016x}-01"}
                await publisher.publish(subjects.trades(unique), _trade(i, unique).to_json(), headers=header)
            await publisher.flush()
            await eventually(lambda: len(seen) == 200)
        finally:
            subscriber.stop()
            await publisher.drain()
            await bus.drain()
            telemetry.shutdown()
        await asyncio.sleep(0)
        spans, _ = receiver.snapshot()

    consumer_spans = [s for s in spans if s["name"] == "process md.{symbol}.trades"]
    assert 5 <= len(consumer_spans) <= 10  # a second's worth of budget, and what refilled meanwhile
    assert subscriber.trace_budget_skips == 200 - len(consumer_spans)
