"""Least privilege on the bus, proved against a real nats-server running deploy/nats/nats-server.conf
(mutual TLS; each client is the user its certificate names): who may publish, subscribe, request
and answer what, and what a refused operation costs (a counted violation, never the connection).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import orjson
import pytest
from nats.aio.msg import Msg
from pydantic import SecretStr

from schemas import subjects
from services.common.bus import Bus, BusConnectError, settled
from services.common.health import Condition, HealthService
from services.common.natsauth import NatsSecurity
from services.common.pki import ensure_pki
from tests.helpers import collect, eventually
from tests.micro import gather
from tests.secure_nats import CONSUMERS, SERVICES, SecureNats, identity_security

IDENTITIES = (*SERVICES, "reader")


def _fresh() -> Condition:
    return Condition(connected=True, last_data_age_s=0.0, stale_after_s=10.0)


@pytest.fixture
async def buses(secure_nats: SecureNats) -> AsyncIterator[dict[str, Bus]]:
    """One connection per identity of the stack."""
    connected = {name: await secure_nats.bus(name) for name in IDENTITIES}
    yield connected
    for bus in connected.values():
        await bus.drain()


async def test_only_the_feed_can_publish_market_data(buses: dict[str, Bus], unique: str) -> None:
    market_data = [subjects.trades(unique), subjects.depth(unique), subjects.status(unique)]
    received = await collect(buses["reader"].nc, "md.>")

    for name, bus in buses.items():
        for subject in market_data:
            await bus.publish(subject, name.encode())
        await settled(bus.nc)
    await eventually(lambda: all(buses[n].stats.permission_violations == 3 for n in (*CONSUMERS, "reader")))
    await settled(buses["reader"].nc)  # everything the server routed to the reader has arrived
    await eventually(lambda: len(received) >= len(market_data))  # ... and reached its callback

    assert sorted((m.subject, m.data) for m in received) == sorted(
        (s, b"connector_feed") for s in market_data
    )
    assert buses["connector_feed"].stats.permission_violations == 0
    assert all(bus.is_connected for bus in buses.values())


# (identity, subject, allowed): publishing outside one's own subjects is refused.
PUBLISH_CASES = [
    ("strategy_engine", "signals.vwap.{u}", True),
    ("strategy_engine", "paper.{u}.fill", True),
    ("strategy_engine", "context.{u}.snapshot", False),
    ("strategy_engine", "health.context", False),
    ("strategy_engine", "orders.{u}", False),
    ("context", "signals.vwap.{u}", False),
    ("context", "paper.{u}.fill", False),
    ("connector_feed", "signals.vwap.{u}", False),
    ("connector_feed", "paper.{u}.fill", False),
    ("reader", "signals.vwap.{u}", False),
    ("reader", "paper.{u}.fill", False),
    ("reader", "anything.{u}", False),
    ("reader", "_INBOX.context.{u}", False),  # forging a reply to someone's request
    ("reader", "health.{u}", True),  # a request to a query endpoint: the only thing it may send
]


async def test_each_identity_publishes_only_its_own_subjects(buses: dict[str, Bus], unique: str) -> None:
    reader = buses["reader"]
    signals = await collect(reader.nc, "signals.>")
    paper = await collect(reader.nc, "paper.>")
    violations_before = {name: bus.stats.permission_violations for name, bus in buses.items()}
    refused: dict[str, int] = dict.fromkeys(buses, 0)

    for name, pattern, allowed in PUBLISH_CASES:
        await buses[name].publish(pattern.format(u=unique), name.encode())
        refused[name] += 0 if allowed else 1
    for bus in buses.values():
        await settled(bus.nc)
    await eventually(
        lambda: all(
            bus.stats.permission_violations - violations_before[n] == refused[n] for n, bus in buses.items()
        )
    )
    await settled(reader.nc)
    await eventually(lambda: signals and paper)  # delivery to another connection is not ordered by a flush

    assert [(m.subject, m.data) for m in signals] == [(f"signals.vwap.{unique}", b"strategy_engine")]
    assert [(m.subject, m.data) for m in paper] == [(f"paper.{unique}.fill", b"strategy_engine")]
    assert all(bus.is_connected for bus in buses.values())


async def test_a_client_without_a_certificate_cannot_connect(secure_nats: SecureNats) -> None:
    ca = secure_nats.identities["reader"].ca
    attempts = {
        "no client certificate": NatsSecurity(tls_ca=ca),
        "plain client (no TLS settings)": NatsSecurity(),
        "user and password instead": NatsSecurity(user="connector_feed", password=SecretStr("x"), tls_ca=ca),
    }

    for what, security in attempts.items():
        started = time.monotonic()
        with pytest.raises(BusConnectError) as refused:
            await Bus.connect(secure_nats.url, "intruder", 5.0, security)

        assert "TLS handshake failed" in str(refused.value), what
        assert time.monotonic() - started < 2.0, f"{what}: not refused at once (nats.py#718 hang?)"


async def test_a_certificate_the_server_does_not_know_is_refused(
    secure_nats: SecureNats, tmp_path: Path
) -> None:
    stranger = secure_nats.issue("intruder")  # our CA, but no such user
    forged = ensure_pki(tmp_path / "rogue-ca", ["connector_feed"])["connector_feed"]  # another CA

    with pytest.raises(BusConnectError) as unknown:
        await Bus.connect(secure_nats.url, "intruder", 3.0, identity_security(stranger))
    with pytest.raises(BusConnectError) as rogue:
        await Bus.connect(
            secure_nats.url,
            "rogue",
            3.0,
            NatsSecurity(tls_ca=stranger.ca, tls_cert=forged.cert, tls_key=forged.key),
        )

    assert "authorization violation" in str(unknown.value)
    assert "cannot connect to NATS" in str(rogue.value)


async def test_permission_violations_are_counted_in_health_and_never_fatal(
    buses: dict[str, Bus], unique: str
) -> None:
    strategy, reader = buses["strategy_engine"], buses["reader"]
    health = HealthService(
        "strategy_engine",
        "test",
        lambda: Condition(connected=strategy.is_connected, last_data_age_s=0.0, stale_after_s=10.0),
    )
    await health.start(strategy)
    try:
        before = orjson.loads((await reader.request(subjects.health("strategy_engine"), timeout_s=2)).data)
        signals = await collect(reader.nc, subjects.signals("vwap", unique))

        await strategy.publish(subjects.trades(unique), b"forged")  # refused
        await eventually(lambda: strategy.stats.permission_violations == 1)
        await strategy.publish(subjects.signals("vwap", unique), b"{}")  # the connection still works
        await eventually(lambda: len(signals) == 1)
        after = orjson.loads((await reader.request(subjects.health("strategy_engine"), timeout_s=2)).data)
    finally:
        await health.stop()

    assert (before["status"], before["permission_violations"]) == ("ok", 0)
    assert (after["status"], after["permission_violations"]) == ("degraded", 1)
    assert "NATS permission violations in the last minute" in after["reasons"]
    assert strategy.is_connected


async def test_every_service_answers_discovery_and_health_with_its_own_identity(
    buses: dict[str, Bus],
) -> None:
    reader = buses["reader"]
    services = [
        HealthService(
            name, "test", lambda: Condition(connected=True, last_data_age_s=0.0, stale_after_s=10.0)
        )
        for name in SERVICES
    ]
    for service in services:
        await service.start(buses[service.name])
    try:
        pings = await gather(reader.nc, "$SRV.PING")
        infos = await gather(reader.nc, "$SRV.INFO")
        statuses = {
            name: orjson.loads((await reader.request(subjects.health(name), timeout_s=2)).data)["status"]
            for name in SERVICES
        }
    finally:
        for service in services:
            await service.stop()

    assert sorted(p["name"] for p in pings) == sorted(SERVICES)
    assert sorted(i["name"] for i in infos) == sorted(SERVICES)
    assert statuses == dict.fromkeys(SERVICES, "ok")
    assert all(buses[name].stats.permission_violations == 0 for name in SERVICES)


async def test_no_service_can_answer_for_another(buses: dict[str, Bus]) -> None:
    impostor = HealthService("context", "test", _fresh)

    await impostor.start(buses["strategy_engine"])  # registers as "context": subscriptions refused
    try:
        await eventually(lambda: buses["strategy_engine"].stats.permission_violations >= 1)
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await buses["reader"].request(subjects.health("context"), timeout_s=0.5)
    finally:
        await impostor.stop()


async def test_requests_and_replies_stay_between_requester_and_responder(
    secure_nats: SecureNats, buses: dict[str, Bus], unique: str
) -> None:
    feed, context, strategy = buses["connector_feed"], buses["context"], buses["strategy_engine"]
    book_subject = f"md.{unique}.book"  # the feed's book endpoint (issue 13)

    async def answer(msg: Msg) -> None:
        await msg.respond(b"book")

    await feed.subscribe(book_subject, answer, queue="connector_feed")
    await settled(feed.nc)
    seen_by_strategy = await collect(strategy.nc, "md.>")
    await strategy.subscribe(book_subject, answer, queue="connector_feed")  # steal the requests? refused
    await eventually(lambda: strategy.stats.permission_violations == 1)
    await strategy.subscribe("_INBOX.context.>", answer)  # read context's replies? refused
    await eventually(lambda: strategy.stats.permission_violations == 2)

    replies = [(await context.request(book_subject, timeout_s=2)).data for _ in range(4)]
    wrong_inbox = await secure_nats.bus("context", inbox_prefix="_INBOX")
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await wrong_inbox.request(book_subject, timeout_s=0.5)
        await eventually(lambda: wrong_inbox.stats.permission_violations == 1)
    finally:
        await wrong_inbox.drain()
    await settled(strategy.nc)

    assert replies == [b"book"] * 4
    assert [m.subject for m in seen_by_strategy] == []  # md.> without md.*.book: requests are not data


async def test_every_identity_may_ask_the_feed_for_its_states_and_none_reads_the_requests(
    buses: dict[str, Bus], unique: str
) -> None:
    feed = buses["connector_feed"]
    answered = []

    async def answer(msg: Msg) -> None:
        answered.append(msg.subject)
        await msg.respond(unique.encode())

    await feed.subscribe(subjects.FEED_STATUS, answer, queue=f"connector_feed.{unique}")
    await settled(feed.nc)
    seen = {name: await collect(buses[name].nc, "md.>") for name in ("strategy_engine", "context", "reader")}
    await buses["strategy_engine"].subscribe(subjects.FEED_STATUS, answer)  # take the requests? refused
    await eventually(lambda: buses["strategy_engine"].stats.permission_violations == 1)

    replies = {
        name: (await buses[name].request(subjects.FEED_STATUS, timeout_s=2)).data
        for name in ("strategy_engine", "context", "reader")
    }
    for name in seen:
        await settled(buses[name].nc)

    assert replies == dict.fromkeys(replies, unique.encode())
    assert answered == [subjects.FEED_STATUS] * 3
    assert [m.subject for messages in seen.values() for m in messages] == []  # requests are not data
    assert feed.stats.permission_violations == 0
