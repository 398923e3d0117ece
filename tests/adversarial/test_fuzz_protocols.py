"""Malformed and oversized frames on every protocol a node serves.

Hypothesis makes the frames: raw bytes, varint length prefixes claiming
anything up to 2**63 with short or long bodies, and many frames back to
back. Each example is thrown at a fresh node running every service (SWIM,
messaging, records, pub/sub, DHT) on every protocol it lists in identify;
the node must still answer a ping afterwards and must not grow beyond a
stated bound. A last test throws a fixed barrage and then runs the full
benign check.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial.benign import assert_serves, rss_mb

from agentp2p.application.records.service import RecordService
from agentp2p.node import Node
from agentp2p.testing import local_config

#: Protocols never listed but reachable through negotiation anyway.
EXTRA_PROTOCOLS = ["/ipfs/id/push/1.0.0"]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


lengths = st.one_of(st.integers(0, 300), st.integers(2**20 - 2, 2**20 + 2), st.integers(2**24, 2**63 - 1))
prefixed = st.builds(lambda n, body: _varint(n) + body, lengths, st.binary(max_size=512))
frames = st.lists(st.one_of(st.binary(min_size=1, max_size=2048), prefixed), min_size=1, max_size=6)


async def _victim_and_attacker(stack: contextlib.AsyncExitStack) -> tuple[Node, Node, list[str]]:
    victim = await stack.enter_async_context(
        Node(local_config(), services=[RecordService(name="victim", capabilities=["fuzz"])])
    )
    attacker = await stack.enter_async_context(Node(local_config(swim=False)))
    await attacker.connect(victim.addrs[0])
    ident = await attacker.identify(victim.peer_id)
    return victim, attacker, sorted(set(ident.protocols) | set(EXTRA_PROTOCOLS))


async def _throw(attacker: Node, victim: Node, protocol: str, chunks: list[bytes]) -> None:
    """Open ``protocol`` and write ``chunks``; whatever the victim does to the stream is fine."""
    with trio.move_on_after(3):
        try:
            if not attacker.is_connected(victim.peer_id):
                await attacker.connect(victim.addrs[0])
            stream = await attacker.host.new_stream(victim.peer_id, [protocol])
            for chunk in chunks:
                await stream.write(chunk)
            with contextlib.suppress(Exception):
                await stream.close()
        except Exception:  # noqa: BLE001 — refusal and reset are correct answers to garbage
            pass


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=frames, which=st.integers(0, 1000))
async def test_garbage_on_any_protocol_never_stops_the_node(frames: list[bytes], which: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        victim, attacker, protocols = await _victim_and_attacker(stack)
        before = rss_mb()
        await _throw(attacker, victim, protocols[which % len(protocols)], frames)
        # Alive and answering, from a peer that did nothing wrong.
        async with Node(local_config(swim=False)) as honest:
            await honest.connect(victim.addrs[0])
            await honest.ping(victim.peer_id)
        assert rss_mb() - before < 100


async def test_a_barrage_on_every_protocol_leaves_the_node_serving() -> None:
    rng = os.urandom
    async with contextlib.AsyncExitStack() as stack:
        victim, attacker, protocols = await _victim_and_attacker(stack)
        before = rss_mb()
        barrage = [
            [rng(4096)],
            [_varint(2**62) + rng(64)],
            [_varint(2**20 + 1) + rng(2**20 + 1)],  # one byte over the usual 1 MiB frame cap
            [_varint(10) + rng(10)] * 200,
            [b"\x00" * 65536],
        ]
        for protocol in protocols:
            for chunks in barrage:
                await _throw(attacker, victim, protocol, chunks)
        await assert_serves(victim)
        assert rss_mb() - before < 150, "garbage should not be buffered"
        assert victim.stats()["peer_id"] == str(victim.peer_id)
