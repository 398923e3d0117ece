"""The policy's ``connect`` rules applied to connections already open.

The gates refuse a peer at once when its peer ID decides
(:meth:`~agentp2p.security.authorizer.Authorizer.refuses_connection`). When
its groups decide, nothing is known until its certificates are fetched —
over that very connection — so the connection is admitted, and this task
checks it: fetch, decide, and if the rules say no, close every connection to
the peer and refuse it for ``backoff`` seconds (so it is not fetched from
again and again). The same check runs over every connected peer when the
policy changes. Bounded: one check per peer at a time, at most
``max_checks`` at once; the peers due are a set of connected peers, so
nothing is ever dropped unchecked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.peer.id import ID

from agentp2p.security.authorizer import Authorizer

__all__ = ["ConnectionGater"]

log = logging.getLogger("agentp2p.security.gater")


class ConnectionGater:
    def __init__(
        self,
        authorizer: Authorizer,
        *,
        peers: Callable[[], list[ID]],
        cut_off: Callable[[list[ID]], Awaitable[None]],
        backoff: float = 60.0,
        max_checks: int = 16,
    ) -> None:
        self.authorizer = authorizer
        self.backoff = backoff
        self._peers = peers
        self._cut_off = cut_off
        # Peers to check: a set, so it is bounded by the connected peers
        # (the connection limits) and nothing queued can be dropped.
        self._due: set[ID] = set()
        self._checking: set[ID] = set()
        self._wake = trio.Event()
        self._slots = trio.Semaphore(max_checks)
        self.cut_off = 0
        authorizer.on_change(self._policy_changed)

    def _queue(self, peer: ID) -> None:
        if peer not in self._checking:
            self._due.add(peer)
            self._wake.set()

    def _policy_changed(self, policy: Any) -> None:
        if policy.governs("connect"):
            for peer in self._peers():
                self._queue(peer)

    async def run(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, events)
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._due:
                    peer = self._due.pop()
                    await self._slots.acquire()
                    self._checking.add(peer)
                    nursery.start_soon(self._check, peer)

    async def _watch(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for ev in events:
            if ev.connected and self.authorizer.governs("connect"):
                self._queue(ev.peer_id)
            elif not ev.connected:
                self._due.discard(ev.peer_id)

    async def _check(self, peer: ID) -> None:
        auth = self.authorizer
        try:
            if peer not in self._peers():
                return  # gone already: the gates decide if it comes back
            if not await auth.authorize(peer, "connect", "*"):
                auth.refuse_for(peer, self.backoff)
                self.cut_off += 1
                log.info("policy: cut off %s (its connect rules refuse it; refused for %gs)", peer, self.backoff)
                await self._cut_off([peer])
        finally:
            self._checking.discard(peer)
            self._slots.release()

    def stats(self) -> dict[str, int]:
        return {"cut_off": self.cut_off, "checks_due": len(self._due)}
