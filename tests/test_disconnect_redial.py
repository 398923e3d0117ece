"""``disconnect`` closes the connections that existed, not one the peer opened
meanwhile (issue #11: py-libp2p's ``close_peer`` dropped every connection of
the peer from the swarm's table after awaiting the closes, leaving a redialed
connection open but untracked: no ``peers``, no ping, no pub/sub)."""

from __future__ import annotations

from typing import Any

import trio

from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


async def test_peer_redialing_during_disconnect_stays_tracked() -> None:
    async with Node(local_config()) as a, Node(local_config()) as b:
        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), what="a sees b")
        network = a.host.get_network()
        [old] = network.get_connections(b.peer_id)

        def has_new_conn() -> bool:
            return any(c is not old for c in network.connections.get(b.peer_id, []))

        close = old.close

        async def slow_close() -> None:
            # Hold this close until b's redial has landed on a — the window a
            # fast redial (js-libp2p's DHT keep-alive) hits by itself.
            await close()
            await wait_until(has_new_conn, what="b's redial to reach a")

        old.close = slow_close  # type: ignore[method-assign]

        async def redial() -> None:
            await wait_until(lambda: not b.is_connected(a.peer_id), what="b to see the close")
            await b.connect(a.addrs[0])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(redial)
            with trio.fail_after(15):
                await a.disconnect(b.peer_id)

        assert b.peer_id in a.peers()
        [new] = network.get_connections(b.peer_id)
        assert new is not old and not new.muxed_conn.is_closed
        assert await a.ping(b.peer_id) > 0

        # Pub/sub over the redialed connection.
        async with b.subscribe("after-redial") as sub:
            await wait_until(lambda: b.peer_id in a.topic_peers("after-redial"), what="b's subscription at a")
            await a.publish("after-redial", b"still here")
            with trio.fail_after(10):
                msg: Any = await sub.receive()
            assert msg.data == b"still here"


async def test_disconnect_closes_every_connection_open_at_the_call() -> None:
    # SWIM off: its probes may redial at once (as disconnect() allows), and
    # then b would be in a's peers again, on a new connection.
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        await b.connect(a.addrs[0])
        await wait_until(lambda: a.is_connected(b.peer_id), what="a sees b")
        [conn] = a.host.get_network().get_connections(b.peer_id)
        await a.disconnect(b.peer_id)
        assert conn.muxed_conn.is_closed
        assert conn not in a.host.get_network().get_connections(b.peer_id)
        assert b.peer_id not in a.peers()
        await wait_until(lambda: not b.is_connected(a.peer_id), what="b to see the close")
