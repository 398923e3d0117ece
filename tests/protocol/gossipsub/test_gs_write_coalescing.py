"""Write coalescing in the gossipsub adapter (``pubsub.write_coalesce``), on real sockets.

A peer's write follows its previous one by at least ``write_coalesce``, so a
busy link carries many RPCs per write (a lone write costs more CPU at both ends
than the messages in it); the first write after a quiet spell is not held, so
an idle link adds no latency. Nothing is lost either way.
"""

from __future__ import annotations

import pytest
import trio

from agentp2p.config import ConfigError, PubSubConfig
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

WINDOW = 0.05  # large, so the bound below is far from what an uncoalesced link does


def _config(coalesce: float):  # type: ignore[no-untyped-def]
    # A long heartbeat: no control traffic of its own between the publishes below.
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


@pytest.mark.parametrize("bad", [-0.001, 0.5])
def test_write_coalesce_out_of_range_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="write_coalesce"):
        local_config(pubsub=PubSubConfig(write_coalesce=bad)).validate()
