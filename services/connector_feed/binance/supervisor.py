"""The link supervisor: Binance connections, their limits, replacement, staleness and heartbeats.

- Every planned connection is opened and kept: a connection lost unexpectedly is reopened alone
  (the shared reconnect policy, per connection), its symbols ``reconnecting`` meanwhile; healthy
  connections are never touched.
- **Make-before-break** on rotation (BINANCE_ROTATE_AFTER_S, before the 24 h cut), on
  ``serverShutdown`` and when a depth stream goes stale: the new connection is opened while the
  old one keeps being read; the new one's frames are held until it has joined the old one's
  stream (``join``), then it takes over and the old one is closed. A rotation that cannot join
  within ROTATION_MAX_S, or whose old socket the venue cuts first, switches anyway (any gap is
  then counted, never silent); the path is replaced once either way.
- **Heartbeats**: a connection carrying depth (a 100 ms heartbeat) silent for BINANCE_HALF_OPEN_S
  is half-open: its symbols go ``reconnecting`` and it is replaced at once; a connection without
  depth is pinged after 1.5 s of silence and closed when no pong comes within 1.5 s (``links``).
- ``close`` closes every connection at once, each with a short timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable

from services.common.logging import get_logger
from services.common.neterrors import describe_connect_error
from services.common.reconnect import Reconnector, ReconnectPolicy
from services.connector_feed.binance.join import Join, holding, watching
from services.connector_feed.binance.links import FrameHandler, Link, connect
from services.connector_feed.connector import ConnectorGaveUp

log = get_logger("binance")

SUPERVISE_EVERY_S = 0.1
ROTATION_MAX_S = 10.0
JOIN_SETTLE_S = 0.5
ROTATION_RETRY_S = 5.0

#: (the link's streams, up, reason) -> awaited when a connection is lost (False) or (re)opened (True).
LinkState = Callable[[list[str], bool, str], Awaitable[None]]
#: Awaited after a frame handler asked to pause: returns when the feed has room again.
Room = Callable[[], Awaitable[None]]


class LinkSupervisor:
    def __init__(
        self,
        ws_url: str,
        planned: list[tuple[str, list[str]]],
        handle: FrameHandler,
        on_link: LinkState,
        room: Room,
        policy: ReconnectPolicy,
        rotate_after_s: float,
        half_open_s: float,
        ping_timeout_s: float,
    ) -> None:
        self.ws_url = ws_url
        self.planned = planned
        self._handle = handle
        self._on_link = on_link
        self._room = room
        self.policy = policy
        self.rotate_after_s = rotate_after_s
        self.half_open_s = half_open_s
        self.ping_timeout_s = ping_timeout_s
        self.links: list[Link] = []
        self._joins: dict[Link, tuple[Join, Link]] = {}  # a new link -> (its join, the old link)
        self._group: asyncio.TaskGroup | None = None
        self._request_ids = itertools.count(1)
        self._reconnectors: dict[str, Reconnector] = {}
        self.rotations = 0
        self.forced_rotations = 0
        self.reconnects = 0
        self.half_open = 0
        self.resubscribes = 0
        self.pauses = 0
        self.closing = False
        #: Why the last connect failed, naming the host (health's cause); None once connected.
        self.last_error: str | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Open every connection, then keep them (ends only by cancellation or ``ConnectorGaveUp``).
        Every task it starts is owned by one task group: a failure in any of them ends ``run``."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for path, streams in self.planned:
                    group.create_task(self._keep(path, streams), name=f"binance-link{path}")
                group.create_task(self._supervise(), name="binance-supervisor")
        except* ConnectorGaveUp as gave_up:
            raise gave_up.exceptions[0] from None
        finally:
            self._group = None

    async def close(self) -> None:
        """Close every connection at once (each with a short timeout)."""
        self.closing = True
        links = [*self.links, *self._joins]
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)

    def is_connected(self) -> bool:
        return len(self.links) >= len(self.planned) and all(link.is_open for link in self.links)

    def reconnection_attempts(self) -> int:
        return max((r.attempts for r in self._reconnectors.values()), default=0)

    # ---- one planned connection, kept open -------------------------------------------------

    async def _open(self, path: str, streams: list[str], join: tuple[Join, Link] | None = None) -> Link:
        """A connection whose frames go straight to the handler, or (a replacement) are held back
        from its very first frame until it has joined the old one's stream."""
        link = Link(path, streams, handler=self._handle, resume=self._pause)
        if join is not None:
            link.handler = holding(join[0])
            self._joins[link] = join
        try:
            return await connect(self.ws_url, link, self.ping_timeout_s)
        except BaseException:
            self._joins.pop(link, None)
            raise

    async def _keep(self, path: str, streams: list[str], link: Link | None = None) -> None:
        """Keep one planned connection open (``link``: a replacement already open): reopen it with the
        policy's backoff when it is lost. Returns when it is replaced (its replacement's task keeps it)."""
        reconnector = self._reconnectors.setdefault(f"{path}?{streams[0]}", Reconnector(self.policy))
        first = link is None
        while True:
            if link is None:
                try:
                    link = await self._open(path, streams)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # transient: back off per the policy, others are untouched
                    self.last_error = describe_connect_error(error, self.ws_url)
                    log.warning(
                        "binance_connect_failed",
                        path=path,
                        cause=self.last_error,
                        error=repr(error),
                        attempt=reconnector.attempts + 1,
                    )
                    if first and reconnector.attempts == 0:  # never connected: say why, once
                        await self._on_link(streams, False, f"cannot connect: {self.last_error}")
                    await self._backoff(reconnector, path)
                    continue
                self.last_error = None
                reconnector.connected()
                self.links.append(link)
                log.info("binance_connected", path=path, streams=len(streams), connections=len(self.links))
                await self._on_link(streams, True, "connected: building the book" if first else "reconnected")
                first = False
            if not await self._until_lost(link):
                return
            link = None
            await self._backoff(reconnector, path)

    async def _until_lost(self, link: Link) -> bool:
        """Wait until ``link`` ends. True when it was lost (reported; to be reopened); False when it was
        replaced or we are closing. While a replacement is under way, the replacement decides."""
        await link.wait_closed()  # frames flow through its handler meanwhile
        if link.retiring:
            await link.replaced.wait()
        if link not in self.links or self.closing:
            return False
        self.links.remove(link)
        log.warning("binance_connection_closed", path=link.path, code=link.close_code)
        await self._on_link(link.streams, False, "connection to the venue lost; reconnecting")
        await link.close()
        self.reconnects += 1
        return True

    async def _backoff(self, reconnector: Reconnector, path: str) -> None:
        delay = reconnector.next_delay()
        if delay is None:
            because = f": {self.last_error}" if self.last_error else ""
            raise ConnectorGaveUp(
                f"Binance {path}: no connection after {reconnector.attempts} attempts{because}"
            )
        log.info("binance_reconnecting", path=path, attempt=reconnector.attempts, delay_s=round(delay, 3))
        await asyncio.sleep(delay)

    def _pause(self, link: Link) -> None:
        """A link stopped reading (the feed is full): resume it once there is room."""
        self.pauses += 1
        if self._group is not None:
            self._group.create_task(self._resume(link), name="binance-resume")
        else:
            link.resume_reading()

    async def _resume(self, link: Link) -> None:
        await self._room()
        link.resume_reading()

    # ---- replacement -----------------------------------------------------------------------

    def replace(
        self, link: Link, reason: str, join: bool = True, ignore: frozenset[str] = frozenset()
    ) -> None:
        """Replace ``link`` make-before-break (once at a time). ``join=False`` (a dead connection):
        switch as soon as the new one is open; ``ignore``: streams not to wait for (stale ones)."""
        if link.retiring or link not in self.links or self.closing or self._group is None:
            return
        link.retiring = True
        self._group.create_task(self._rotate(link, reason, join, ignore), name="binance-rotate")

    async def _rotate(self, old: Link, reason: str, wait: bool, ignore: frozenset[str]) -> None:
        try:
            new = await self._switch(old, reason, wait, ignore)
        finally:
            old.replaced.set()
        if new is not None:  # this task keeps the replacement from now on
            await self._keep(new.path, new.streams, new)

    async def _switch(self, old: Link, reason: str, wait: bool, ignore: frozenset[str]) -> Link | None:
        """Open the replacement, hold its frames until it has joined ``old``'s stream (``wait``), hand
        them on, switch, close ``old``. None if the replacement could not be opened."""
        if not wait:  # a dead connection: its symbols are reconnecting (their books start over)
            self.reconnects += 1
            await self._on_link(old.streams, False, reason)
        join = Join([s for s in old.streams if s not in ignore], JOIN_SETTLE_S)
        old.handler = watching(join, self._handle)  # the old side: where its stream has got to
        try:
            new = await self._open(old.path, old.streams, (join, old))
        except Exception as error:
            old.handler = self._handle
            old.retiring = False
            log.warning("binance_rotation_failed", path=old.path, reason=reason, error=repr(error))
            if wait and old.is_open:  # the old connection stays; try again later
                old.opened_at = time.monotonic() - self.rotate_after_s + ROTATION_RETRY_S
            else:  # dead or gone: its keeper reopens it, with the policy's backoff
                await old.close()
            return None
        quiet = not old.carries_depth
        deadline = time.monotonic() + ROTATION_MAX_S
        while wait and old.is_open and not join.joined(quiet) and time.monotonic() < deadline:
            join.changed.clear()  # set by every frame of either socket; the timeout lets time settle
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(join.changed.wait(), 0.05)
        # Not joined: timed out, or the venue cut the old socket first (any gap is counted downstream).
        forced = wait and not join.joined(quiet)
        del self._joins[new]
        for frame, ts_recv, binary in join.held:  # the new socket's frames so far (duplicates filtered)
            self._handle(frame, ts_recv, new, binary)
        new.handler = old.handler = self._handle  # from the next frame on (no frame can come between)
        index = self.links.index(old) if old in self.links else len(self.links)
        self.links.insert(index, new)
        if old in self.links:
            self.links.remove(old)
        await old.close()
        self.rotations += 1
        self.forced_rotations += forced
        log.info(
            "binance_rotated",
            path=old.path,
            reason=reason,
            streams=len(old.streams),
            held_frames=len(join.held),
            forced=forced,
        )
        if not wait:
            await self._on_link(new.streams, True, "reconnected")
        return new

    # ---- supervision -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            now = time.monotonic()
            for link in list(self.links):
                if link.retiring:
                    continue
                if now - link.opened_at >= self.rotate_after_s:
                    self.replace(link, "age")
                elif link.carries_depth and now - link.last_frame_at > self.half_open_s:
                    self.half_open += 1
                    silent = now - link.last_frame_at
                    log.warning("binance_half_open", path=link.path, silent_s=round(silent, 1))
                    reason = f"half-open connection (no frame for {silent:.1f}s): replacing it"
                    self.replace(link, reason, join=False)

    def link_of(self, stream: str) -> Link | None:
        return next((link for link in self.links if stream in link.streams), None)

    def resubscribe(self, stream: str) -> None:
        link = self.link_of(stream)
        if link is None or link.retiring:
            return
        self.resubscribes += 1
        log.info("binance_resubscribe", stream=stream, path=link.path)
        link.send_subscribe([stream], next(self._request_ids))
