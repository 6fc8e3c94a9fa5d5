"""hftbacktest 2.4.4's own ``binancefutures.convert`` reads a USD-M recording of ours: trade rows
(one per ``X == MARKET`` print of the ``@trade`` stream we record beside ``@aggTrade``) as well as
depth and snapshot rows (``bench/hftbacktest_check.py``, run against the fake venue)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.hftbacktest_check import OTHER_PRINT_EVERY, convert, record, recorded_kinds

pytestmark = pytest.mark.timeout(900)  # the first hftbacktest test may create its virtualenv


async def test_hftbacktests_converter_yields_trades_depth_and_snapshots_from_our_usdm_recording(
    hbt_python: Path, nats_url: str, tmp_path: Path
) -> None:
    steps = 4 * OTHER_PRINT_EVERY
    recording = await record(tmp_path, nats_url, steps)

    kinds = recorded_kinds(recording)
    rows = await asyncio.to_thread(convert, str(hbt_python), recording)

    assert kinds["aggTrade"] == kinds["trade_MARKET"] == kinds["depthUpdate"] == steps
    assert kinds["trade_INSURANCE_FUND"] == kinds["trade_ADL"] == 2 and kinds["snapshot"] >= 1
    assert rows["trade"] == kinds["trade_MARKET"], "one trade row per market print, the others skipped"
    assert rows["depth"] > steps and rows["clear"] >= 1 and rows["snapshot"] > 0
