from __future__ import annotations

from services.connector_feed.binance.book import LocalBook
from services.connector_feed.binance.parse import DepthDiff, Snapshot


def _diff(
    first: int, last: int, bids: list[tuple[str, str]] | None = None, prev: int | None = None
) -> DepthDiff:
    return DepthDiff("X", first, last, prev, bids or [], [], last * 1000, last * 1000 + 1)


def _snapshot(last: int) -> Snapshot:
    return Snapshot(last, [("10.0", "1"), ("9.0", "2")], [("11.0", "1")])


def test_spot_buffers_drops_stale_and_publishes_one_snapshot_then_deltas() -> None:
    book = LocalBook("binance", "X", futures=False)
    assert book.on_diff(_diff(95, 99)) == []  # buffered, snapshot wanted
    assert book.on_diff(_diff(100, 102, [("10.0", "0")])) == []
    assert book.snapshot_wanted

    published = book.on_snapshot(_snapshot(100))  # 95..99 covered; 100..102 straddles 101
    published += book.on_diff(_diff(103, 104, [("9.5", "4")]))

    assert [(d.is_snapshot, d.first_update_id, d.last_update_id) for d in published] == [
        (True, None, 102),
        (False, 103, 104),
    ]
    assert published[0].bids == [("9.0", "2")]  # 10.0 removed by the straddling diff
    assert book.book.bids() == [("9.5", "4"), ("9.0", "2")]
    assert (book.stats.resyncs, book.stats.stale_dropped, book.stats.gaps) == (1, 1, 0)


def test_spot_snapshot_older_than_the_first_buffered_event_is_refetched() -> None:
    book = LocalBook("binance", "X", futures=False)
    book.on_diff(_diff(95, 99))

    assert book.on_snapshot(_snapshot(90)) == []  # 90 < U=95: go back to step 3
    assert book.snapshot_wanted and book.stats.refetches == 1
    assert book.on_snapshot(_snapshot(96))[0].last_update_id == 99


def test_spot_gap_restarts_this_book_only() -> None:
    book = LocalBook("binance", "X", futures=False)
    book.on_diff(_diff(100, 101))
    book.on_snapshot(_snapshot(100))

    assert book.on_diff(_diff(103, 105)) == []  # 102 is missing
    assert (book.state, book.stats.gaps, book.snapshot_wanted) == ("waiting", 1, True)
    assert book.on_diff(_diff(104, 104)) == []  # old news, stays buffered until the snapshot decides
    published = book.on_snapshot(_snapshot(103))
    assert [(d.is_snapshot, d.last_update_id) for d in published] == [(True, 105)]


def test_futures_pu_chain() -> None:
    book = LocalBook("binance_usdm", "X", futures=True)
    book.on_diff(_diff(90, 95, prev=80))  # u < L: dropped
    book.on_diff(_diff(96, 110, [("10.5", "1")], prev=95))  # U <= L=100 <= u: first processed
    published = book.on_snapshot(_snapshot(100))
    published += book.on_diff(_diff(111, 130, prev=110))

    assert [(d.is_snapshot, d.last_update_id, d.prev_last_update_id) for d in published] == [
        (True, 110, None),
        (False, 130, 110),
    ]
    assert book.on_diff(_diff(131, 140, prev=129)) == []  # pu != last u: a gap
    assert book.stats.gaps == 1 and book.snapshot_wanted


def test_futures_snapshot_newer_than_everything_waits_for_the_straddling_event() -> None:
    book = LocalBook("binance_usdm", "X", futures=True)
    book.on_diff(_diff(90, 95, prev=80))

    assert book.on_snapshot(_snapshot(100)) == []  # everything buffered is covered
    assert book.state == "waiting" and not book.snapshot_wanted
    assert book.on_diff(_diff(98, 104, prev=95))[0].last_update_id == 104


def test_spot_step_4_to_the_letter_refetches_when_the_snapshot_id_is_below_u() -> None:
    book = LocalBook("binance", "X", futures=False)
    book.on_diff(_diff(101, 101))

    assert book.on_snapshot(_snapshot(100)) == []  # 100 < U=101: "go back to step 3"
    assert book.snapshot_wanted and book.stats.refetches == 1
