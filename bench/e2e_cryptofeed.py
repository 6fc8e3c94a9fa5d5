"""cryptofeed 2.4.1 + a nats-py publish in its callbacks, pointed at the bench's fake Binance.

Runs with the interpreter of its own virtualenv (``bench/e2e_binance.py`` creates it on demand:
cryptofeed==2.4.1 nats-py orjson uvloop; never part of ``.[dev]``), standalone:

    python bench/e2e_cryptofeed.py --ws-url ws://127.0.0.1:PORT --rest-url http://127.0.0.1:PORT \\
        --nats-url nats://... --trades-subject md.BTCUSDT.trades --depth-subject md.BTCUSDT.depth

Only what the shared reference (``binance.md``, "Running cryptofeed 2.4.1 against a loopback fake")
says is needed is changed: the Binance class's endpoints point at the fake (which serves
``exchangeInfo``), and cryptofeed's websocket connection skips its refusal of ``ws://`` addresses;
connecting, reading, parsing and book keeping are cryptofeed's own. TRADES (``@aggTrade``) and
L2_BOOK (``@depth@100ms``, REST snapshot, U/u checks) are subscribed, as our feed does trades and
depth. Each trade is published as a small JSON dict; each book delta as its levels.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, ClassVar

import nats
import orjson


def levels(pairs: Any) -> list[list[str]]:
    """(Decimal, Decimal) pairs as exact decimal strings."""
    return [[str(price), str(qty)] for price, qty in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in ("--ws-url", "--rest-url", "--nats-url", "--trades-subject", "--depth-subject"):
        parser.add_argument(name, required=True)
    parser.add_argument("--log", default="cryptofeed.log", help="cryptofeed's own log file")
    args = parser.parse_args()

    import cryptofeed.feed
    from cryptofeed import FeedHandler
    from cryptofeed.connection import AsyncConnection, RestEndpoint, Routes, WebsocketEndpoint, WSAsyncConn
    from cryptofeed.defines import ASK, BID, L2_BOOK, TRADES
    from cryptofeed.exchanges import Binance

    class LoopbackWSAsyncConn(WSAsyncConn):  # type: ignore[misc, unused-ignore]
        """cryptofeed's own websocket connection, minus the check that refuses ``ws://``."""

        def __init__(
            self,
            address: str,
            conn_id: str,
            authentication: Any = None,
            subscription: Any = None,
            **kwargs: Any,
        ) -> None:
            self.address = address
            AsyncConnection.__init__(
                self,
                f"{conn_id}.ws.{self.conn_count}",
                authentication=authentication,
                subscription=subscription,
            )
            self.ws_kwargs = kwargs

    cryptofeed.feed.WSAsyncConn = LoopbackWSAsyncConn

    class FakeBinance(Binance):  # type: ignore[misc, unused-ignore]
        websocket_endpoints: ClassVar[list[Any]] = [WebsocketEndpoint(args.ws_url)]
        rest_endpoints: ClassVar[list[Any]] = [
            RestEndpoint(
                args.rest_url,
                routes=Routes("/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}"),
            )
        ]

    handler = FeedHandler(config={"uvloop": True, "log": {"filename": args.log, "level": "WARNING"}})
    loop = asyncio.new_event_loop()  # a uvloop loop: FeedHandler has set the policy
    asyncio.set_event_loop(loop)  # FeedHandler.run() calls get_event_loop()
    nc = loop.run_until_complete(nats.connect(args.nats_url))

    async def on_trade(trade: Any, receipt_timestamp: float) -> None:
        payload = {
            "exchange": trade.exchange,
            "symbol": trade.symbol,
            "trade_id": int(trade.id),
            "price": str(trade.price),
            "qty": str(trade.amount),
            "side": trade.side,
            "ts_event": int(trade.timestamp * 1e9),
            "ts_recv": int(receipt_timestamp * 1e9),
        }
        await nc.publish(args.trades_subject, orjson.dumps(payload))

    async def on_book(book: Any, receipt_timestamp: float) -> None:
        delta = book.delta
        if delta is None:  # a (re)snapshot: the whole book
            bids, asks = book.book.bids.to_dict().items(), book.book.asks.to_dict().items()
        else:
            bids, asks = delta[BID], delta[ASK]
        payload = {
            "symbol": book.symbol,
            "snapshot": delta is None,
            "sequence": book.sequence_number,
            "bids": levels(bids),
            "asks": levels(asks),
            "ts_recv": int(receipt_timestamp * 1e9),
        }
        await nc.publish(args.depth_subject, orjson.dumps(payload))

    handler.add_feed(
        FakeBinance(
            symbols=["BTC-USDT"], channels=[TRADES, L2_BOOK], callbacks={TRADES: on_trade, L2_BOOK: on_book}
        )
    )
    handler.run()


if __name__ == "__main__":
    main()
