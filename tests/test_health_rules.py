from __future__ import annotations

import pytest

from services.common.health import Condition, evaluate


@pytest.mark.parametrize(
    ("condition", "status"),
    [
        (Condition(connected=True, last_data_age_s=1.0, stale_after_s=10), "ok"),
        (Condition(connected=True, last_data_age_s=11.0, stale_after_s=10), "degraded"),
        (Condition(connected=True, last_data_age_s=None, stale_after_s=10), "degraded"),
        (
            Condition(connected=True, last_data_age_s=1.0, stale_after_s=10, problems=("X resyncing: gap",)),
            "degraded",
        ),
        (Condition(connected=True, last_data_age_s=1.0, stale_after_s=10, last_drop_age_s=30), "degraded"),
        (Condition(connected=True, last_data_age_s=1.0, stale_after_s=10, last_drop_age_s=61), "ok"),
        (Condition(connected=False, last_data_age_s=1.0, stale_after_s=10), "down"),
        (Condition(connected=True, last_data_age_s=1.0, stale_after_s=10, gave_up=True), "down"),
    ],
)
def test_status_rules(condition: Condition, status: str) -> None:
    assert evaluate(condition)[0] == status


def test_reasons_explain_a_degraded_status() -> None:
    status, reasons = evaluate(
        Condition(
            connected=True,
            last_data_age_s=12.5,
            stale_after_s=10,
            problems=("BTCUSDT resyncing: sequence gap",),
        )
    )

    assert status == "degraded"
    assert reasons == ["stale: no data for 12.5s (> 10s)", "BTCUSDT resyncing: sequence gap"]


def test_reasons_give_the_cause_of_down_when_it_is_known() -> None:
    cause = "cannot resolve stream.binance.com (Name or service not known)"

    lost = evaluate(Condition(connected=False, last_data_age_s=None, stale_after_s=10, cause=cause))
    gave_up = evaluate(
        Condition(connected=False, last_data_age_s=None, stale_after_s=10, gave_up=True, cause=cause)
    )
    unknown = evaluate(Condition(connected=False, last_data_age_s=None, stale_after_s=10))

    assert lost == ("down", [f"not connected: {cause}"])
    assert gave_up == ("down", [f"gave up reconnecting: {cause}"])
    assert unknown == ("down", ["not connected"])


def test_a_service_down_still_says_which_symbols_it_costs() -> None:
    status, reasons = evaluate(
        Condition(
            connected=False,
            last_data_age_s=1.0,
            stale_after_s=10,
            problems=("BTCUSDT reconnecting: connection lost", "ETHUSDT down: refused"),
        )
    )

    assert status == "down"
    assert reasons == ["not connected", "BTCUSDT reconnecting: connection lost", "ETHUSDT down: refused"]
