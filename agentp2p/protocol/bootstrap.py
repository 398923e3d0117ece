"""Bootstrap: reach the configured peers, and come back to them when alone.

Each bootstrap address is dialed at start; failures are retried with
exponential backoff (``bootstrap_retry_initial`` doubling up to
``bootstrap_retry_max``, with jitter so a restarted fleet does not stampede).
After the first success the node runs a self-lookup in the DHT to learn its
neighbourhood. Whenever the routing table or the connection list empties,
bootstrapping starts again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence

import trio

from libp2p.peer.peerinfo import PeerInfo

from agentp2p.contract import Dialing

log = logging.getLogger("agentp2p.bootstrap")


class Bootstrapper:
    def __init__(
        self,
        dialer: Dialing,
        peers: Sequence[PeerInfo],
        on_connected: Callable[[], Awaitable[None]],
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.dialer = dialer
        self.peers = list(peers)
        self.on_connected = on_connected
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.rng = rng or random.Random()
        self.attempts = 0
        self.successes = 0
        self.rounds = 0
        self._wake = trio.Event()
        self.first_round_done = trio.Event()

    def wake(self) -> None:
        """Ask for a new round now (the routing table or peer list emptied)."""
        self._wake.set()

    async def _dial(self, info: PeerInfo) -> bool:
        self.attempts += 1
        try:
            # Our own backoff decides when to retry a bootstrap peer (the
            # dialer clears the swarm's 60 s negative cache).
            await self.dialer.connect(info.peer_id, info.addrs, lookup=False, purpose="bootstrap")
        except Exception as exc:  # noqa: BLE001 — any failure means "retry later"
            log.info("bootstrap dial %s failed: %s", info.peer_id, exc)
            return False
        self.successes += 1
        return True

    async def _round(self) -> bool:
        """Dial every bootstrap peer not yet connected; True if any is connected."""
        self.rounds += 1
        results: list[bool] = []

        async def one(info: PeerInfo) -> None:
            if self.dialer.is_connected(info.peer_id):
                results.append(True)
                return
            results.append(await self._dial(info))

        async with trio.open_nursery() as nursery:
            for info in self.peers:
                nursery.start_soon(one, info)
        return any(results)

    async def run(self) -> None:
        if not self.peers:
            self.first_round_done.set()
            return
        while True:
            delay = self.initial_delay
            while True:
                ok = await self._round()
                self.first_round_done.set()
                if ok:
                    try:
                        await self.on_connected()
                    except Exception as exc:  # noqa: BLE001
                        log.debug("post-bootstrap lookup failed: %r", exc)
                    break
                jitter = delay * 0.2 * self.rng.random()
                # The backoff is slept out whatever wakes us: a wake asks for
                # a new round, which this loop is already running — and a peer
                # that refuses us right after the handshake wakes us itself
                # (its connection was our last one for a moment), which would
                # turn the backoff into a redial loop.
                await trio.sleep(delay + jitter)
                self._wake = trio.Event()
                delay = min(delay * 2, self.max_delay)
            await self._wake.wait()
            self._wake = trio.Event()
