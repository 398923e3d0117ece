"""Fakes for PeerSender tests: a peer whose streams answer when the test says so."""

from __future__ import annotations

from typing import Any

import trio

from agentp2p.network.framing import length_prefixed
from agentp2p.protocol.kademlia.streams import Abandoned, PeerSender, SenderStats, Ticket


class FakeStream:
    """Answers each request when the test says so; records writes and resets."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.answer = trio.Event()
        self.resets = 0

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append(data)

    async def read(self, n: int) -> bytes:
        await self.answer.wait()
        self.answer = trio.Event()
        return length_prefixed(b"answer")

    async def reset(self) -> None:
        self.resets += 1


class Peer:
    """Opens a fresh FakeStream per open (optionally only once let through)."""

    def __init__(self, opening: bool = True) -> None:
        self.streams: list[FakeStream] = []
        self.opening = trio.Event()
        if opening:
            self.opening.set()

    async def open(self) -> FakeStream:
        await self.opening.wait()
        s = FakeStream()
        self.streams.append(s)
        return s


def asker(sender: PeerSender, got: dict[str, Any]) -> Any:
    """A task body: request ``name`` with ``ticket``; its answer, or the
    Abandoned it ended with, lands in ``got[name]``."""
    async def ask(name: str, ticket: Ticket) -> None:
        try:
            got[name] = await sender.request(name.encode(), True, ticket)
        except Abandoned as exc:
            got[name] = exc
    return ask


def rig(peer: Peer) -> tuple[Peer, PeerSender, SenderStats, dict[str, Any], Any]:
    sender, stats = sender_for(peer)
    got: dict[str, Any] = {}
    return peer, sender, stats, got, asker(sender, got)


def sender_for(peer: Peer) -> tuple[PeerSender, SenderStats]:
    stats = SenderStats()
    return PeerSender(peer.open, max_message_bytes=1024, max_idle=60.0, stats=stats), stats
