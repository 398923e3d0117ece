"""Go-to-Go checks of the interop harness itself.

Two go-peer processes, driven through tests/interop/gopeer.py, exercise
every control command our py-libp2p interop tests rely on. If these fail,
an interop failure says nothing about our Python node.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from tests.interop.gopeer import AGENT_VERSION, DHT_PROTOCOL, GoPeer, GoPeerError, expected_peer_id

pytestmark = pytest.mark.interop


def raw_cid(key: str) -> str:
    """CIDv1, raw codec, sha256 of the key's UTF-8 bytes, base32: built by
    hand here so the Go side's answer is checked against the definition."""
    digest = hashlib.sha256(key.encode()).digest()
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


async def test_connect_identify_ping(go_peer_binary: Path) -> None:
    async with GoPeer(go_peer_binary, seed=1) as a, GoPeer(go_peer_binary) as b:
        assert a.peer_id == expected_peer_id(1)
        assert a.addr.startswith("/ip4/127.0.0.1/tcp/")
        assert a.addr.endswith(f"/p2p/{a.peer_id}")

        assert await b.connect(a.addr) == a.peer_id
        assert a.peer_id in await b.peers()
        assert b.peer_id in await a.peers()

        info = await b.identify(a.peer_id)
        assert info["agent_version"] == AGENT_VERSION
        assert DHT_PROTOCOL in info["protocols"]
        assert "/meshsub/1.1.0" in info["protocols"]

        assert await b.ping(a.peer_id) > 0


async def test_dht_values_providers_and_peers(go_peer_binary: Path) -> None:
    async with GoPeer(go_peer_binary) as a, GoPeer(go_peer_binary) as b:
        await b.connect(a.addr)
        assert await a.rt_wait(1) == 1
        assert await b.rt_wait(1) == 1

        await a.put("/agentp2p/alice", b"\x00hello\xff")
        assert await b.get("/agentp2p/alice") == b"\x00hello\xff"
        await b.put("/agentrec/bob", b"record")
        assert await a.get("/agentrec/bob") == b"record"

        # Our validator: 64 KiB is the limit, unknown namespaces are refused.
        await a.put("/agentp2p/big", bytes(64 * 1024))
        with pytest.raises(GoPeerError, match="limit"):
            await a.put("/agentp2p/too-big", bytes(64 * 1024 + 1))
        with pytest.raises(GoPeerError):
            await a.put("/elsewhere/x", b"v")
        with pytest.raises(GoPeerError, match="not found"):
            await b.get("/agentp2p/nobody-put-this")

        # CIDv1 raw sha256 of the key's bytes, as our Python side computes it.
        assert await a.provide("agent:alice") == raw_cid("agent:alice")
        assert await b.find_providers("agent:alice", 1) == [a.peer_id]

        assert any(addr in a.addr for addr in await b.find_peer(a.peer_id))
        assert await b.bootstrap() >= 1
        assert await b.rt_size() == 1


async def test_pubsub_burst_both_ways(go_peer_binary: Path) -> None:
    n = 500
    topic = "agentp2p/smoke"
    async with GoPeer(go_peer_binary) as a, GoPeer(go_peer_binary) as b:
        await b.connect(a.addr)
        await a.subscribe(topic)
        await b.subscribe(topic)
        await a.wait_mesh(topic, b.peer_id)
        await b.wait_mesh(topic, a.peer_id)

        for i in range(n):
            await a.publish(topic, b"a%d" % i)
            await b.publish(topic, b"b%d" % i)

        async def collect(peer: GoPeer) -> list[bytes]:
            return [(await peer.next_message()).data for _ in range(n)]

        got_b = await collect(b)
        got_a = await collect(a)
        # Gossipsub does not promise order; it promises no loss here.
        assert sorted(got_b) == sorted(b"a%d" % i for i in range(n))
        assert sorted(got_a) == sorted(b"b%d" % i for i in range(n))

        await b.publish(topic, b"last")
        msg = await a.next_message()
        assert msg.data == b"last"
        assert msg.from_peer == b.peer_id
        assert msg.topic == topic
        assert len(msg.seqno) == 8


async def test_bad_input_gets_error_replies(go_peer_binary: Path) -> None:
    async with GoPeer(go_peer_binary) as a, GoPeer(go_peer_binary) as b:
        for verb, args in [
            ("no-such-command", ()),
            ("ping", ("not-a-peer-id",)),
            ("ping", ()),
            ("put", ("/agentp2p/x", "zz")),
            ("findprovs", ("k", "-1")),
            ("connect", ("/ip4/127.0.0.1/tcp/1",)),
            ("identify", (b.peer_id,)),  # not connected
        ]:
            with pytest.raises(GoPeerError):
                await a.command(verb, *args)
        # Still alive and serving.
        await b.connect(a.addr)
        assert await a.ping(b.peer_id) > 0
    assert a.returncode == 0 and b.returncode == 0


async def test_driver_reports_startup_failure_and_cleans_up(go_peer_binary: Path) -> None:
    async with GoPeer(go_peer_binary, seed=2) as a:
        dead = a.addr
    # a has quit: its address now refuses connections, so --bootstrap fails.
    with pytest.raises(GoPeerError, match="exited before it was ready") as info:
        async with GoPeer(go_peer_binary, bootstrap=[dead]):
            pass  # pragma: no cover
    assert "--bootstrap" in str(info.value)

    # An exception in the body propagates unwrapped and the process is gone.
    peer = GoPeer(go_peer_binary)
    with pytest.raises(KeyError):
        async with peer:
            raise KeyError("boom")
    assert peer.returncode is not None
