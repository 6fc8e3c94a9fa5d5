"""Discovery the way ``nats micro ls`` does it, and the official reply schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import nats.errors
from nats.aio.client import Client

MICRO_SCHEMAS = {
    verb: json.loads((Path(__file__).parent / "data" / "nats_micro" / f"{verb}_response.json").read_text())
    for verb in ("ping", "info", "stats")
}


async def gather(nc: Client, subject: str, wait_s: float = 0.5) -> list[dict[str, Any]]:
    """Publish one request and collect every reply until ``wait_s`` passes without one."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    replies = []
    try:
        while True:
            replies.append(json.loads((await sub.next_msg(timeout=wait_s)).data))
    except nats.errors.TimeoutError:
        pass
    await sub.unsubscribe()
    return replies


async def validated_discovery(nc: Client, name: str) -> dict[str, dict[str, Any]]:
    """PING, INFO and STATS of service ``name``, each validated against the official schema."""
    found = {}
    for verb in ("ping", "info", "stats"):
        replies = await gather(nc, f"$SRV.{verb.upper()}.{name}")
        assert len(replies) == 1, f"{verb}: expected one {name} instance, got {len(replies)}"
        jsonschema.validate(replies[0], MICRO_SCHEMAS[verb])
        found[verb] = replies[0]
    return found
