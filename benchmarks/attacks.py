"""The attacks ``adversarial.py`` runs, by name.

Each is ``async def attack(target, duration) -> str``: it attacks the daemon
at ``target`` for ``duration`` seconds from this process and returns a short
note of what it did (counts). The attackers themselves live beside the
regression tests in ``tests/adversarial/`` so that the code the tests prove
is the code measured here.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from agentp2p.node import Node
from agentp2p.testing import local_config


@dataclass(frozen=True)
class Target:
    addr: str  # full multiaddr ending in /p2p/<id>
    peer_id: str
    api_addr: str
    token: str

    @property
    def host_port(self) -> tuple[str, int]:
        parts = self.addr.split("/")
        return parts[2], int(parts[4])


Attack = Callable[[Target, float], Awaitable[str]]
ATTACKS: dict[str, Attack] = {}


def attack(name: str) -> Callable[[Attack], Attack]:
    def register(fn: Attack) -> Attack:
        ATTACKS[name] = fn
        return fn

    return register


@attack("none")
async def no_attack(target: Target, duration: float) -> str:
    """The baseline: the same daemon and checks with nobody attacking."""
    await trio.sleep(duration)
    return "idle"


@attack("conn_churn")
async def conn_churn(target: Target, duration: float) -> str:
    """One identity connecting and disconnecting as fast as it can (finding 2)."""
    cycles = failures = 0
    async with Node(local_config(swim=False)) as attacker:
        with trio.move_on_after(duration):
            while True:
                try:
                    await attacker.connect(target.addr)
                    await attacker.disconnect(target.peer_id)
                    cycles += 1
                except Exception:  # noqa: BLE001 — refused dials are part of the figure
                    failures += 1
                    await trio.sleep(0.05)
    return f"{cycles} connect/disconnect cycles, {failures} refused"


@attack("silent_sockets")
async def silent_sockets(target: Target, duration: float, count: int = 800) -> str:
    """Hold ``count`` TCP sockets open that never speak (finding 8); reopen any the daemon closes."""
    host, port = target.host_port
    opened = 0
    socks: list[socket.socket] = []

    def open_one() -> socket.socket | None:
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((host, port))
        return s

    try:
        with trio.move_on_after(duration):
            while True:
                alive = []
                for s in socks:
                    try:
                        if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                            s.close()
                            continue
                    except BlockingIOError:
                        pass
                    except OSError:
                        s.close()
                        continue
                    alive.append(s)
                socks = alive
                while len(socks) < count:
                    s = open_one()
                    if s is None:
                        break
                    socks.append(s)
                    opened += 1
                await trio.sleep(0.2)
    finally:
        for s in socks:
            s.close()
    return f"{opened} silent sockets opened ({count} held at a time)"


@attack("garbage_streams")
async def garbage_streams(target: Target, duration: float) -> str:
    """Random bytes on every protocol the daemon serves, stream after stream."""
    from libp2p.peer.id import ID

    sent = refused = 0
    peer = ID.from_base58(target.peer_id)
    async with Node(local_config(swim=False)) as attacker:
        await attacker.connect(target.addr)
        protocols = (await attacker.identify(peer)).protocols
        with trio.move_on_after(duration):
            while True:
                for proto in protocols:
                    try:
                        with trio.fail_after(2):
                            if not attacker.is_connected(peer):
                                await attacker.connect(target.addr)
                            stream = await attacker.host.new_stream(peer, [proto])
                            await stream.write(os.urandom(512))
                            with contextlib.suppress(Exception):
                                await stream.reset()
                        sent += 1
                    except Exception:  # noqa: BLE001
                        refused += 1
                        await trio.sleep(0.05)
    return f"{sent} garbage streams on {len(protocols)} protocols, {refused} refused"


def _victim(target: Target):  # type: ignore[no-untyped-def]
    from libp2p.peer.id import ID
    from multiaddr import Multiaddr

    return ID.from_base58(target.peer_id), [Multiaddr(target.addr.rsplit("/p2p/", 1)[0])]


async def _repeat(duration: float, one_round: Callable[[list[int]], Awaitable[None]]) -> tuple[int, int]:
    """Run ``one_round(tally)`` (a fresh attacker identity each time) for ``duration`` seconds.

    A round adds what it sent to ``tally[0]`` as it goes, so a round the
    victim cuts off still counts. Returns (units sent, rounds cut off).
    """
    tally = [0]
    refused = 0
    with trio.move_on_after(duration):
        while True:
            try:
                await one_round(tally)
            except Exception:  # noqa: BLE001 — the victim closing on us or banning us is the defence working
                refused += 1
                await trio.sleep(0.05)
    return tally[0], refused


@attack("yamux_overrun")
async def yamux_overrun(target: Target, duration: float) -> str:
    """DATA frames far past the granted window on a ping stream (finding 3)."""
    from tests.adversarial.yamux_raw import FIRST_RAW_STREAM, SYN, TYPE_DATA, closed, flood_stream, frame, raw_attacker, select, write

    peer, addrs = _victim(target)

    async def one_round(tally: list[int]) -> None:
        async with raw_attacker(peer, addrs) as muxed:
            # identify answers and closes its side without reading: what we
            # write stays in the victim's receive buffer, past the window.
            await write(muxed, frame(TYPE_DATA, SYN, FIRST_RAW_STREAM, select("/ipfs/id/1.0.0")))
            tally[0] += await flood_stream(muxed, FIRST_RAW_STREAM, 64 << 20)
            closed_by_victim[0] += closed(muxed)
            rounds[0] += 1

    closed_by_victim, rounds = [0], [0]
    sent, _ = await _repeat(duration, one_round)
    return f"{sent >> 20} MiB written in {rounds[0]} connections, {closed_by_victim[0]} closed by the victim"


@attack("stream_flood")
async def stream_flood(target: Target, duration: float) -> str:
    """Hundreds of concurrent streams per protocol that never finish (stream limits)."""
    peer, _ = _victim(target)
    opened = refused = 0
    async with Node(local_config(swim=False)) as attacker, trio.open_nursery() as nursery:
        held: list[object] = []
        with trio.move_on_after(duration):
            while True:
                try:
                    with trio.fail_after(2):
                        if not attacker.is_connected(peer):
                            await attacker.connect(target.addr)
                        held.append(await attacker.host.new_stream(peer, ["/agentp2p/kad/1.0.0"]))
                    opened += 1
                except Exception:  # noqa: BLE001
                    refused += 1
                    await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    return f"{opened} streams opened and held, {refused} refused"


async def _meshsub_flood(target: Target, duration: float, batch: Callable[[Any, int], list[Any]], rounds: int) -> tuple[int, int]:
    """A fresh identity subscribes to the records topic and publishes ``rounds`` batches; again."""
    from tests.adversarial.pubsub_attacker import raw_meshsub

    from agentp2p.application.records.announce import ANNOUNCE_TOPIC

    peer, addrs = _victim(target)

    async def one_round(tally: list[int]) -> None:
        async with raw_meshsub(peer, addrs) as raw:
            await raw.subscribe(ANNOUNCE_TOPIC)
            for i in range(rounds):
                msgs = batch(raw, i)
                await raw.publish(*msgs)
                tally[0] += len(msgs)

    return await _repeat(duration, one_round)


@attack("pubsub_killer")
async def pubsub_killer(target: Target, duration: float) -> str:
    """The one gossipsub message that used to end the daemon (finding 1), over and over."""
    from tests.adversarial.pubsub_attacker import killer_message

    from agentp2p.application.records.announce import ANNOUNCE_TOPIC

    sent, cut = await _meshsub_flood(target, duration, lambda raw, i: [killer_message(ANNOUNCE_TOPIC, i + 1)], 200)
    return f"{sent} killer messages, {cut} identities cut off"


@attack("pubsub_bogus_sigs")
async def pubsub_bogus_sigs(target: Target, duration: float) -> str:
    """Well-formed messages with wrong signatures, as fast as possible (findings 1, 7)."""
    from tests.adversarial.pubsub_attacker import bogus_signature_message

    from agentp2p.application.records.announce import ANNOUNCE_TOPIC

    def batch(raw: Any, i: int) -> list[Any]:
        return [bogus_signature_message(ANNOUNCE_TOPIC, raw.peer_id, 50 * i + k + 1) for k in range(50)]

    sent, cut = await _meshsub_flood(target, duration, batch, 40)
    return f"{sent} bogus-signature messages, {cut} identities cut off"


@attack("dht_put_flood")
async def dht_put_flood(target: Target, duration: float) -> str:
    """PUT_VALUE of 60 KB values, a new identity every 300 PUTs (finding 4, DHT)."""
    peer, _ = _victim(target)
    stored = [0]

    async def one_round(tally: list[int]) -> None:
        async with Node(local_config(swim=False)) as attacker:
            await attacker.connect(target.addr)
            put = attacker.dht.store_at
            for _ in range(300):
                stored[0] += bool(await put(peer, b"/agentp2p/" + os.urandom(16).hex().encode(), os.urandom(60_000)))
                tally[0] += 1

    sent, cut = await _repeat(duration, one_round)
    return f"{sent} PUTs of 60 KB, {stored[0]} stored, {cut} identities cut off"


@contextlib.asynccontextmanager
async def _raw_sender(target: Target) -> AsyncIterator[Any]:
    """A fresh attacker node connected to the daemon, writing /agentp2p/msg/1.0.0 frames by hand."""
    from tests.adversarial.test_messaging_attack import RawSender

    peer, _ = _victim(target)

    class _Victim:
        peer_id = peer

    async with Node(local_config(swim=False)) as attacker:
        await attacker.connect(target.addr)
        yield RawSender(attacker, _Victim())  # type: ignore[arg-type]


@attack("msg_hello_reset")
async def msg_hello_reset(target: Target, duration: float) -> str:
    """Fill the receive window with 48 KiB messages nobody reads, then a new Hello, again (finding 4)."""
    payload = b"F" * (48 * 1024)

    async def one_round(tally: list[int]) -> None:
        async with _raw_sender(target) as raw:
            await raw.open()
            for _ in range(20):
                sid = os.urandom(16)
                await raw.hello(sid)
                for first in range(1, 385, 16):
                    await raw.data(sid, [raw.envelope(sid, s, payload) for s in range(first, first + 16)])
                    tally[0] += 16

    sent, cut = await _repeat(duration, one_round)
    return f"{sent} unread 48 KiB messages across session resets, {cut} identities cut off"


@attack("msg_oversize")
async def msg_oversize(target: Target, duration: float) -> str:
    """Signed 3.9 MB envelopes, above the 1 MiB limit (finding 4)."""

    async def one_round(tally: list[int]) -> None:
        async with _raw_sender(target) as raw:
            for _ in range(10):
                await raw.open()
                sid = os.urandom(16)
                await raw.hello(sid)
                tally[0] += 1  # the victim resets the stream as soon as it reads the length
                await raw.data(sid, [raw.envelope(sid, 1, os.urandom(3_900_000))])

    sent, cut = await _repeat(duration, one_round)
    return f"{sent} oversized envelopes, {cut} identities cut off"


@attack("swim_poison")
async def swim_poison(target: Target, duration: float) -> str:
    """Pings carrying 32 'alive' updates each for fake members (finding 5)."""
    import random

    from tests.adversarial.swim_attacker import alive_flood

    peer, _ = _victim(target)
    rng = random.Random(1)
    fakes: set[bytes] = set()

    async def one_round(tally: list[int]) -> None:
        from tests.adversarial.swim_attacker import Attacker

        async with trio.open_nursery() as nursery, Node(local_config(swim=False)) as node:
            att = Attacker(node, nursery)
            await node.connect(target.addr)
            att.addrs[peer.to_bytes()] = target.addr
            for _ in range(20):
                msgs, new = alive_flood(peer.to_bytes(), rng, 10)
                fakes.update(new)
                await att.send(peer, msgs)
                tally[0] += len(msgs)
            nursery.cancel_scope.cancel()

    frames, cut = await _repeat(duration, one_round)
    from libp2p.peer.id import ID

    from agentp2p.client import Client

    fake_ids = {str(ID(f)) for f in fakes}
    async with Client(target.api_addr, token=target.token) as client:
        listed = sum(1 for m in await client.members() if m.peer_id in fake_ids)
    return f"{frames} poisoned pings ({len(fakes)} fake members), {listed} fakes listed, {cut} identities cut off"
