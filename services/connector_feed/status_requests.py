"""The current state of every instrument, on request (``md.status``), for subscribers that join late.

``md.<SYMBOL>.status`` carries changes only: a subscriber that arrives after the last change would
otherwise know nothing. It subscribes to the status subjects, then asks ``md.status``; each feed
answers with a ``FeedStatus``: one ``Status`` per instrument it publishes, as of the reply's ``ts``.

A symbol's state is the last one its connector reported (with that change's reason); a symbol it
never reported on is ``live`` while the connector is connected and ``reconnecting`` (with the
connect error as the reason) while it is not; every symbol is ``down`` once the feed gave up.

Each feed process answers in a queue group of its own (``connector_feed.<feed_run>``), so a
requester that gathers replies for a moment hears from every feed on the bus; a plain request gets
the first. (Book requests, by contrast, go to one member of the ``connector_feed`` group.)
"""

from __future__ import annotations

import time

from nats.micro.request import Request

from schemas import FeedStatus, Status, subjects
from services.common.health import ExtraEndpoint
from services.connector_feed.stream import HFTConnectorStream


class StatusRequests:
    def __init__(self, stream: HFTConnectorStream) -> None:
        self.stream = stream
        self.requests = 0

    def endpoint(self) -> ExtraEndpoint:
        """The micro endpoint: ``md.status``, in this process's own queue group."""
        return ExtraEndpoint(
            "status",
            subjects.FEED_STATUS,
            self.on_request,
            queue_group=f"connector_feed.{self.stream.feed_run}",
        )

    def current(self) -> FeedStatus:
        stream = self.stream
        now = time.time_ns()
        connector = stream.connector
        if stream.gave_up:
            fallback = ("down", f"the feed gave up reconnecting: {connector.last_error() or 'no connection'}")
        elif stream.connected:
            fallback = ("live", "connected; no state change reported since the feed started")
        else:
            fallback = ("reconnecting", f"not connected: {connector.last_error() or 'connecting'}")
        statuses = []
        for symbol in sorted(stream.instruments):
            state, reason = stream.symbol_states.get(symbol, fallback)
            if stream.gave_up:
                state, reason = fallback
            statuses.append(
                Status(
                    exchange=connector.exchange,
                    symbol=symbol,
                    stream="all",
                    state=state,
                    reason=reason[:2000],
                    ts=now,
                )
            )
        return FeedStatus(exchange=connector.exchange, feed_run=stream.feed_run, statuses=statuses, ts=now)

    async def on_request(self, request: Request) -> None:
        self.requests += 1
        await request.respond(self.current().to_json(), headers={"Content-Type": "application/json"})
