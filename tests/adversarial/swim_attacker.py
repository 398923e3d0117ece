"""A hostile SWIM peer on real sockets, for tests/adversarial/test_swim_poison.py.

The attacker is a plain agentp2p Node with SWIM *off*; it speaks
/agentp2p/swim/1.0.0 by hand: it opens raw streams to its victims, writes
hand-made frames (the same encoder the real service uses, so the frames are
well-formed and authenticated by Noise like any peer's), and answers the pings
it gets with acks, so that to its victims it looks like a healthy member.
Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.network.framing import FrameError, FrameReader, length_prefixed
from agentp2p.node import Node
from agentp2p.protocol.swim import Ack, Message, MemberUpdate, Ping, State, SwimConfig, decode, encode
from agentp2p.protocol.swim.service import SwimService
from agentp2p.protocol.swim.wire import MAX_FRAME_BYTES, PROTOCOL_ID, WireError
from agentp2p.testing import local_config, wait_until

#: The real-socket SWIM tests' config: 0.3 s period.
FAST = SwimConfig(probe_interval=0.3, probe_timeout=0.15, reconnect_every=2, suspicion_mult=4)


@dataclass
class Honest:
    node: Node
    swim: SwimService

    @property
    def peer_id(self) -> ID:
        return self.node.peer_id

    @property
    def pid(self) -> bytes:
        return self.node.peer_id.to_bytes()


@contextlib.asynccontextmanager
async def honest_nodes(
    n: int, *, config: SwimConfig = FAST, service_kw: Callable[[int], dict[str, Any]] | None = None,
    identity_paths: list[Path | None] | None = None, node_kw: dict[str, Any] | None = None,
) -> AsyncIterator[list[Honest]]:
    """``n`` SWIM nodes on 127.0.0.1, bootstrapped from the first; yields once
    every view has the n-1 others alive (and no suspects)."""
    async with contextlib.AsyncExitStack() as stack:
        out: list[Honest] = []
        for i in range(n):
            svc = SwimService(config, seed=i, **(service_kw(i) if service_kw else {}))
            boot = [out[0].node.addrs[0]] if out else []
            ident = identity_paths[i] if identity_paths else None
            node = await stack.enter_async_context(Node(local_config(bootstrap=boot, identity_path=ident,
                                                                     **(node_kw or {})), services=[svc]))
            out.append(Honest(node, svc))
        await wait_until(
            lambda: all([m.state for m in h.swim.members()].count("alive") >= n - 1 for h in out),
            40,
            f"{n} nodes see each other alive",
        )
        yield out


def fake_peer_id(rng: random.Random) -> bytes:
    """A random peer ID of the Ed25519 shape (identity multihash of a key)."""
    return b"\x00\x24\x08\x01\x12\x20" + rng.randbytes(32)


def fake_addr(rng: random.Random) -> bytes:
    """127.0.0.1 on a low port nothing listens on: a dial is refused at once."""
    return Multiaddr(f"/ip4/127.0.0.1/tcp/{rng.randrange(2, 1000)}").to_bytes()


class Attacker:
    """A Node without SWIM that writes hand-made SWIM frames."""

    def __init__(self, node: Node, nursery: trio.Nursery) -> None:
        self.node = node
        self._nursery = nursery
        self._streams: dict[bytes, Any] = {}
        self.addrs: dict[bytes, str] = {}  # victims' addresses, to reconnect
        self.reconnects = 0
        self.frames_sent = 0
        self.pings_answered = 0
        node.set_stream_handler(PROTOCOL_ID, self._serve)

    @property
    def pid(self) -> bytes:
        return self.node.peer_id.to_bytes()

    async def _serve(self, stream: Any) -> None:
        """Answer every Ping on ``stream`` with an Ack (we look healthy)."""
        reader = FrameReader(MAX_FRAME_BYTES)
        with contextlib.suppress(Exception):
            while data := await stream.read(65536):
                try:
                    frames = reader.feed(data)
                except FrameError:
                    return
                for f in frames:
                    try:
                        msg = decode(f)
                    except WireError:
                        continue
                    if isinstance(msg.body, Ping):
                        await stream.write(length_prefixed(encode(Message(msg.seq, 0, Ack()))))
                        self.pings_answered += 1

    async def stream_to(self, peer: ID) -> Any:
        key = peer.to_bytes()
        s = self._streams.get(key)
        if s is None:
            s = self._streams[key] = await self.node.host.new_stream(peer, [TProtocol(PROTOCOL_ID)])
            self._nursery.start_soon(self._serve, s)
        return s

    async def send(self, peer: ID, messages: list[Message]) -> None:
        """Write ``messages`` to ``peer`` in one go, on one stream."""
        await self.send_raw(peer, [encode(m) for m in messages])

    async def send_raw(self, peer: ID, frames: list[bytes]) -> None:
        data = b"".join(length_prefixed(f) for f in frames)
        for attempt in range(5):
            try:
                await (await self.stream_to(peer)).write(data)
                break
            except Exception:  # noqa: BLE001 - the victim reset the stream or the connection: again
                self._streams.pop(peer.to_bytes(), None)
                self.reconnects += 1
                if attempt == 4:
                    raise
                with contextlib.suppress(Exception):
                    await self.node.connect(self.addrs[peer.to_bytes()])
        self.frames_sent += len(frames)


@contextlib.asynccontextmanager
async def attacker(connect_to: list[Honest]) -> AsyncIterator[Attacker]:
    async with trio.open_nursery() as nursery:
        async with Node(local_config(swim=False)) as node:
            att = Attacker(node, nursery)
            for h in connect_to:
                await node.connect(h.node.addrs[0])
                att.addrs[h.pid] = h.node.addrs[0]
            yield att
        nursery.cancel_scope.cancel()


def ping_with(target: bytes, updates: list[MemberUpdate], seq: int = 1) -> Message:
    return Message(seq, 0, Ping(target), tuple(updates))


def alive_flood(
    target: bytes, rng: random.Random, frames: int, per_frame: int = 32
) -> tuple[list[Message], set[bytes]]:
    """``frames`` Pings each carrying ``per_frame`` alive updates about fresh fake peers."""
    fakes: set[bytes] = set()
    msgs = []
    for i in range(frames):
        ups = []
        for _ in range(per_frame):
            p = fake_peer_id(rng)
            fakes.add(p)
            ups.append(MemberUpdate(p, State.ALIVE, rng.randrange(0, 1000), (fake_addr(rng),)))
        msgs.append(ping_with(target, ups, seq=i))
    return msgs, fakes


async def sample_over_periods(
    observer: Honest, periods: int, sample: Callable[[], None], deadline: float = 60.0
) -> int:
    """Call ``sample()`` about every 20 ms until ``observer`` has started
    ``periods`` more probe periods (its protocol clock, not ours). Returns the
    number of samples."""
    end = observer.swim.periods + periods
    n = 0
    with trio.fail_after(deadline):
        while observer.swim.periods < end:
            sample()
            n += 1
            await trio.sleep(0.02)
    return n


def random_signature() -> bytes:
    return os.urandom(64)
