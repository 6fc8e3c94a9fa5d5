from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import DepthUpdate, Signal, TradeTick, json_schemas, subjects
from schemas.__main__ import render

JSON_DIR = Path(__file__).parent.parent / "schemas" / "json"


def _trade(**overrides: object) -> TradeTick:
    fields: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "trade_id": 7,
        "price": "0.00000001",
        "qty": "100.50000000",
        "side": "sell",
        "is_buyer_maker": True,
        "ts_event": 1_700_000_000_000_000_000,
        "ts_recv": 1_700_000_000_001_000_000,
    }
    fields.update(overrides)
    return TradeTick.model_validate(fields)


def test_trade_keeps_the_exact_decimal_strings_on_the_wire() -> None:
    tick = _trade()

    wire = json.loads(tick.to_json())

    assert wire["price"] == "0.00000001"  # not "1E-8"
    assert wire["qty"] == "100.50000000"  # trailing zeros kept
    assert isinstance(wire["ts_event"], int)
    assert wire["schema_version"] == 1
    assert TradeTick.model_validate_json(tick.to_json()) == tick


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", "NaN"),
        ("price", "inf"),
        ("price", "-1"),
        ("price", "0"),
        ("qty", "-0.1"),
        ("qty", "0"),
        ("side", "long"),
        ("symbol", "BTC.USDT"),
        ("symbol", "BTC USDT"),
        ("exchange", "Binance"),
        ("trade_id", -1),
    ],
)
def test_trade_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        _trade(**{field: value})


def test_trade_rejects_side_contradicting_maker_flag() -> None:
    with pytest.raises(ValidationError, match="contradicts"):
        _trade(side="buy", is_buyer_maker=True)


def test_models_are_frozen_and_ignore_unknown_fields() -> None:
    tick = TradeTick.model_validate({**json.loads(_trade().to_json()), "future_field": 1})

    with pytest.raises(ValidationError):
        tick.price = Decimal(1)  # type: ignore[misc]
    assert "future_field" not in tick.model_dump()


def test_depth_delta_needs_ordered_ids() -> None:
    base = {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "bids": [["1.0", "2"]],
        "asks": [],
        "is_snapshot": False,
        "last_update_id": 10,
        "ts_event": 1,
        "ts_recv": 2,
    }

    assert DepthUpdate.model_validate({**base, "first_update_id": 8}).bids[0] == (Decimal("1.0"), Decimal(2))
    with pytest.raises(ValidationError, match="first_update_id"):
        DepthUpdate.model_validate(base)
    with pytest.raises(ValidationError):
        DepthUpdate.model_validate({**base, "first_update_id": 11})


def test_signal_strength_is_a_signed_decimal_string() -> None:
    signal = Signal(
        strategy="vwap",
        symbol="BTCUSDT",
        side="sell",
        strength=Decimal("-0.0000125"),
        reason="x",
        ts_event=1,
        ts=2,
    )

    assert json.loads(signal.to_json())["strength"] == "-0.0000125"


@pytest.mark.parametrize("bad", ["", "BTC.USDT", "BTC*", ">", "BTC USDT", "BTC\tX"])
def test_subject_helpers_reject_bad_tokens(bad: str) -> None:
    with pytest.raises(ValueError, match="subject token"):
        subjects.trades(bad)
    with pytest.raises(ValueError, match="subject token"):
        subjects.depth(bad)


def test_subject_helpers_build_the_documented_subjects() -> None:
    assert subjects.trades("BTCUSDT") == "md.BTCUSDT.trades"
    assert subjects.depth("BTCUSDT-PERP") == "md.BTCUSDT-PERP.depth"
    assert subjects.signals("vwap", "ETHUSDT") == "signals.vwap.ETHUSDT"
    assert subjects.context_snapshot("BTCUSDT") == "context.BTCUSDT.snapshot"
    assert subjects.health("context") == "health.context"


def test_json_schema_files_match_the_models() -> None:
    """Fails when a model changes without `python -m schemas` being re-run."""
    generated = json_schemas()

    on_disk = {p.stem for p in JSON_DIR.glob("*.json")}
    assert on_disk == set(generated), "schemas/json/ has missing or stale files: run `python -m schemas`"
    for stem, schema in generated.items():
        assert (JSON_DIR / f"{stem}.json").read_text() == render(schema), f"{stem}.json drifted"
