"""Finding 3: Yamux receive windows are not enforced by py-libp2p.

An attacker speaking raw Yamux over Noise writes DATA frames past the
256 KiB window it was granted. The library buffers all of it (shown with
2 MB); our GuardedYamux closes the connection (GO_AWAY, protocol error),
reports an offence, keeps RSS bounded, and the victim goes on serving.
"""

from __future__ import annotations

from typing import Any

import trio

from libp2p.custom_types import TProtocol
from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE

from agentp2p.network.resources import ResourceLimits
from agentp2p.network.yamux import GuardedYamux
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

from tests.adversarial.benign import assert_serves, rss_mb
from tests.adversarial.yamux_raw import (
    FIRST_RAW_STREAM,
    LOOPBACK,
    SINK,
    SYN,
    TYPE_DATA,
    closed,
    flood_stream,
    frame,
    plain_host,
    raw_attacker,
    select,
    write,
)

#: RSS growth we allow the victim (this process) during an attack that
#: tries to push 200 MB (one stream) or 64 MB (many streams) at it.
RSS_BOUND_MB = 100
MiB = 1 << 20


async def _sink(stream: Any) -> None:
    """A handler that never reads: whatever arrives stays buffered."""
    await trio.sleep_forever()


def _conn_now(victim_host: Any, peer: Any) -> Any:
    conns = victim_host.get_network().get_connections(peer)
    return conns[0].muxed_conn if conns else None


async def _victim_conn(victim_host: Any, peer: Any) -> Any:
    """The victim's side of the attacker's connection, once it has it: the
    dialer's connect returns before the listener has set its muxer up (the
    muxer proposal rides without waiting, network/multistream.py)."""
    await wait_until(lambda: _conn_now(victim_host, peer) is not None, 10, "the victim's side of the connection")
    return _conn_now(victim_host, peer)


async def _open_raw_stream(muxed: Any, sid: int, extra: bytes = b"") -> bool:
    """SYN a stream to the sink protocol with multistream-select pipelined."""
    return await write(muxed, frame(TYPE_DATA, SYN, sid, select(SINK) + extra))


async def test_library_yamux_buffers_past_the_window() -> None:
    victim = plain_host()
    victim.set_stream_handler(TProtocol(SINK), _sink)
    async with victim.run([LOOPBACK]):
        async with raw_attacker(victim.get_id(), victim.get_transport_addrs()) as muxed:
            attacker_id = muxed.attacker_host.get_id()
            sid = FIRST_RAW_STREAM
            assert await _open_raw_stream(muxed, sid)
            sent = await flood_stream(muxed, sid, 2 * MiB)
            assert sent == 2 * MiB
            conn = await _victim_conn(victim, attacker_id)
            assert conn is not None and type(conn).__name__ == "Yamux"
            await wait_until(
                lambda: len(conn.stream_buffers.get(sid, b"")) >= 2 * MiB, 20, "the library to buffer 2 MB"
            )
            # eight times the window it granted, and the connection is still up
            assert len(conn.stream_buffers[sid]) > 7 * DEFAULT_WINDOW_SIZE
            assert not conn.is_closed


async def _attack_and_check(victim: Node, attack: Any) -> None:
    before = rss_mb()
    async with raw_attacker(victim.peer_id, victim.listen_addrs) as muxed:
        attacker_id = muxed.attacker_host.get_id()
        conn = await _victim_conn(victim.host, attacker_id)
        assert isinstance(conn, GuardedYamux)
        sent = await attack(muxed)
        await wait_until(lambda: closed(muxed), 20, "the victim to close the attacker's connection")
        await wait_until(lambda: not victim.is_connected(attacker_id), 20, "the victim to drop the attacker")
        # Blamed: it has points, or enough already for a ban (which resets them;
        # under load the stream-rate offences can get there first).
        assert victim.penalties.points(attacker_id) > 0 or victim.penalties.is_banned(attacker_id)
    grown = rss_mb() - before
    assert grown < RSS_BOUND_MB, f"RSS grew {grown:.0f} MB (attacker sent {sent / MiB:.1f} MB)"
    await wait_until(lambda: victim.resources.memory == 0, 10, "yamux reservations released")
    await assert_serves(victim)


async def test_overrun_on_one_stream_closes_the_connection() -> None:
    async with Node(local_config(swim=False)) as victim:
        victim.set_stream_handler(SINK, _sink)

        async def attack(muxed: Any) -> int:
            assert await _open_raw_stream(muxed, FIRST_RAW_STREAM)
            return await flood_stream(muxed, FIRST_RAW_STREAM, 200 * MiB)

        await _attack_and_check(victim, attack)
        assert victim.penalties.stats()["offences"] >= 1
        network = victim.stats()["network"]
        assert network["yamux"]["window_overruns"] == 1 and network["yamux"]["connections_closed"] == 1
        assert network["inbound"]["accepted"] >= 2  # the attacker and the benign checker


async def test_overrun_on_many_streams_closes_the_connection() -> None:
    """Each stream gets a full window, then one frame more."""
    async with Node(local_config(swim=False)) as victim:
        victim.set_stream_handler(SINK, _sink)

        async def attack(muxed: Any) -> int:
            sent = 0
            for i in range(256):
                sid = FIRST_RAW_STREAM + 2 * i
                if not await _open_raw_stream(muxed, sid, b"\x00" * (DEFAULT_WINDOW_SIZE - 64)):
                    break
                sent += await flood_stream(muxed, sid, 2 * 65536)
                if closed(muxed):
                    break
            return sent

        await _attack_and_check(victim, attack)


async def test_many_streams_within_their_windows_hit_the_memory_limit() -> None:
    """256 streams x 250 KiB stay inside every window but add up to 62 MB,
    past the peer's 32 MiB share: the refused reservation closes the
    connection like an overrun. (The per-protocol stream limit and the
    stream-open rate are lifted so that the memory limit is the one that
    acts: at 50 opens a second after a burst of 100, a fast attacker was
    refused opens, and banned for it, before it held 32 MiB — a CI run
    failed so.)"""
    limits = ResourceLimits(max_streams_per_peer_protocol=1000, stream_opens_per_second=10_000,
                            stream_open_burst=1000)
    async with Node(local_config(swim=False, resources=limits)) as victim:
        victim.set_stream_handler(SINK, _sink)

        async def attack(muxed: Any) -> int:
            sent = 0
            for i in range(256):
                sid = FIRST_RAW_STREAM + 2 * i
                if not await _open_raw_stream(muxed, sid, b"\x00" * (250 * 1024)):
                    break
                sent += 250 * 1024
            return sent

        await _attack_and_check(victim, attack)
        assert victim.resources.hits["memory_per_peer"] >= 1


async def test_streams_beyond_the_per_connection_limit_are_reset() -> None:
    limits = ResourceLimits(max_streams_per_connection=8)
    async with Node(local_config(swim=False, resources=limits)) as victim:
        victim.set_stream_handler(SINK, _sink)
        async with raw_attacker(victim.peer_id, victim.listen_addrs) as muxed:
            attacker_id = muxed.attacker_host.get_id()
            conn = await _victim_conn(victim.host, attacker_id)
            assert isinstance(conn, GuardedYamux)
            for i in range(20):
                assert await _open_raw_stream(muxed, FIRST_RAW_STREAM + 2 * i)
            # At most 8 are taken (fewer while the attacker's identify stream
            # still holds a slot, and it may end at any moment): at least 12
            # refused, and never more than 8 inbound at once.
            await wait_until(
                lambda: victim.resources.hits["streams_per_connection"] >= 20 - 8, 10, "refused SYNs"
            )
            assert conn.inbound_streams() <= 8
            # a refusal is not a violation: the connection stays up
            assert not closed(muxed) and victim.is_connected(attacker_id)


async def test_honest_bulk_transfer_is_not_a_violation() -> None:
    """20 MB on one stream between two nodes: windows grow by auto-tuning,
    nothing is refused, and every reserved byte is released."""
    got = trio.Event()
    received = 0

    async def drain(stream: Any) -> None:
        nonlocal received
        while received < 20 * MiB:
            chunk = await stream.read(65536)
            if not chunk:
                break
            received += len(chunk)
        got.set()

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        b.set_stream_handler("/agentp2p/test-bulk/1.0.0", drain)
        await a.connect(b.addrs[0])
        stream = await a.host.new_stream(b.peer_id, [TProtocol("/agentp2p/test-bulk/1.0.0")])
        block = b"\x5a" * MiB
        with trio.fail_after(60):
            for _ in range(20):
                await stream.write(block)
            await got.wait()
        assert received == 20 * MiB
        assert a.is_connected(b.peer_id)
        assert b.penalties.points(a.peer_id) == 0
        await stream.close()
        await wait_until(lambda: b.resources.memory == 0, 10, "reservations released")
