"""Write coalescing in the gossipsub adapter (``pubsub.write_coalesce``), on real sockets.

A peer's write follows its previous one by at least ``write_coalesce``, so a
busy link carries many RPCs per write (a lone write costs more CPU at both ends
than the messages in it); the first write after a quiet spell is not held, so
an idle link adds no latency. Nothing is lost either way.
"""

from __future__ import annotations


import pytest
import trio
import trio.testing
from libp2p.peer.id import ID

from agentp2p.config import ConfigError, NodeConfig, PubSubConfig
from agentp2p.network.identity import Identity
from agentp2p.node import Node
from agentp2p.protocol.gossipsub.codec import Limits
from agentp2p.protocol.gossipsub.events import Verdict
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import Control, Graft, Message, Rpc
from agentp2p.protocol.gossipsub.service import WRITE_BUDGET, WRITE_COALESCE, GossipSubService, PubSubStats
from agentp2p.testing import local_config, wait_until

WINDOW = 0.05  # large, so the bound below is far from what an uncoalesced link does


def _config(coalesce: float) -> NodeConfig:
    # A long heartbeat: after its first (0.1 s after start), no control traffic of its own.
    return local_config(swim=False, pubsub=PubSubConfig(write_coalesce=coalesce, heartbeat_interval=30.0))


async def _paced(coalesce: float, count: int = 150, gap: float = 0.002) -> tuple[int, float, int]:
    """Publish ``count`` messages ``gap`` apart; (writes the publisher made, seconds it took, writes held)."""
    async with Node(_config(coalesce)) as pub, Node(_config(coalesce)) as sub_node:
        await sub_node.connect(pub.addrs[0])
        async with sub_node.subscribe("c") as sub:
            await wait_until(lambda: sub_node.peer_id in pub.topic_peers("c"), what="subscription")
            got: list[bytes] = []

            async def read() -> None:
                async for msg in sub:
                    got.append(msg.data)
                    if len(got) == count:
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                before = pub.stats()["pubsub"]
                t0 = trio.current_time()
                for i in range(count):
                    await pub.publish("c", i.to_bytes(4, "big"))
                    await trio.sleep(gap)
                await wait_until(lambda: len(got) == count, 10, "every message")  # the reader ends with it
            elapsed = trio.current_time() - t0
            after = pub.stats()["pubsub"]
            assert got == [i.to_bytes(4, "big") for i in range(count)], "every message, in order, once"
            return after["writes"] - before["writes"], elapsed, after["writes_held"] - before["writes_held"]


async def test_a_busy_link_writes_at_most_once_per_window() -> None:
    writes, elapsed, held = await _paced(WINDOW)
    bound = elapsed / WINDOW + 2
    assert writes <= bound, f"{writes} writes in {elapsed:.2f} s with a {WINDOW} s window"
    assert held > 0
    # The same load without coalescing: about a write per message, far above the bound.
    writes0, elapsed0, held0 = await _paced(0.0)
    assert held0 == 0
    assert writes0 > elapsed0 / WINDOW + 2, f"uncoalesced: {writes0} writes in {elapsed0:.2f} s"


async def test_an_idle_link_sends_at_once() -> None:
    """Seen through the counter: a lone message after a quiet spell is never held."""
    async with Node(_config(WINDOW)) as pub, Node(_config(WINDOW)) as sub_node:
        await sub_node.connect(pub.addrs[0])
        async with sub_node.subscribe("i") as sub:
            await wait_until(lambda: sub_node.peer_id in pub.topic_peers("i"), what="subscription")
            for i in range(5):
                await trio.sleep(3 * WINDOW)  # the scenario: a link quiet for longer than the window
                held = pub.stats()["pubsub"]["writes_held"]
                await pub.publish("i", bytes([i]))
                with trio.fail_after(10):
                    assert (await sub.receive()).data == bytes([i])
                assert pub.stats()["pubsub"]["writes_held"] == held, "a lone message after a quiet spell was held"


@pytest.mark.parametrize("bad", [{"write_coalesce": -0.001}, {"write_coalesce": 0.06},
                                 {"write_coalesce": 0.02, "publish_timeout": 0.1}])
def test_write_coalesce_out_of_range_is_a_config_error(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="write_coalesce"):
        local_config(pubsub=PubSubConfig(**bad)).validate()


def test_the_config_default_is_the_adapters() -> None:
    assert PubSubConfig().write_coalesce == WRITE_COALESCE


# ---------------------------------------------------------------- the write loop alone, on a mock clock


class _RecordingStream:
    def __init__(self) -> None:
        self.writes: list[tuple[float, int]] = []  # (when, bytes)

    async def write(self, data: bytes) -> None:
        self.writes.append((trio.current_time(), len(data)))
        await trio.lowlevel.checkpoint()


def _service(window: float) -> GossipSubService:
    return GossipSubService(
        identity=Identity.generate(), params=GossipSubParams(), limits=Limits(), stats=PubSubStats(),
        deliver=lambda *_: None, validate=lambda *_: Verdict.ACCEPT, peer_queue_size=10_000,
        peer_queue_bytes=1 << 24, inbound_rate_per_peer=1000.0, inbound_burst_per_peer=1000.0,
        write_coalesce=window,
    )


def _msg(data: bytes) -> Rpc:
    return Rpc(publish=(Message("t", data),))


async def test_the_write_loop_spaces_holds_and_lets_control_and_full_batches_through(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.autojump_threshold = 0
    svc = _service(WINDOW)
    peer = svc._peer(ID(b"\x00\x04test"))
    stream = _RecordingStream()
    start = trio.current_time()

    async def at(t: float) -> None:
        await trio.sleep_until(start + t)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(svc._write_loop, peer, stream)
        await at(0.0)
        svc._send(peer.key, _msg(b"first"))  # a quiet link: out at once
        await at(0.001)
        svc._send(peer.key, _msg(b"a"))  # held until 0 + WINDOW ...
        await at(0.02)
        svc._send(peer.key, _msg(b"b"))  # ... and goes in the same write
        await at(WINDOW + 0.01)
        svc._send(peer.key, Rpc(control=Control(graft=(Graft("t"),))))  # control-only: not held
        await at(WINDOW + 0.02)
        svc._send(peer.key, _msg(b"x" * (WRITE_BUDGET + 1)))  # a full batch: not held
        await at(WINDOW + 0.03)
        svc._send(peer.key, _msg(b"late"))  # held; the writer is stopped during the hold
        await at(WINDOW + 0.04)
        nursery.cancel_scope.cancel()

    times = [round(t - start, 6) for t, _ in stream.writes]
    assert times == pytest.approx([0.0, WINDOW, WINDOW + 0.01, WINDOW + 0.02]), times
    assert svc.stats.writes_held >= 2
    # The message held when the writer stopped is still queued, none of it in flight.
    assert len(peer.queue.items) == 1 and peer.queue.inflight_items == 0
