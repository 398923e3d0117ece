"""Concurrent pings to one peer (issue found while testing private networks).

The library's behaviour: py-libp2p's ping handler resets a third concurrent
ping stream from one peer, so callers that do not know of each other (the
control API, records' liveness probes) failed with StreamReset. Ours: pings
to one peer take turns, and all succeed.
"""

from __future__ import annotations

import os

import trio
from libp2p.host.ping import ID as PING

from agentp2p.node import Node
from agentp2p.testing import local_config


async def _raw_library_ping(node: Node, peer: object) -> None:
    stream = await node.host.new_stream(peer, [PING])
    payload = os.urandom(32)
    await stream.write(payload)
    got = b""
    while len(got) < 32:
        chunk = await stream.read(32 - len(got))
        if not chunk:
            break
        got += chunk
    await stream.close()
    assert got == payload


async def test_ten_concurrent_pings_each_way_all_succeed() -> None:
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        await a.connect(b.addrs[0])
        # the library, straight: some of ten concurrent ping streams are reset
        library_failures: list[BaseException] = []

        async def raw() -> None:
            try:
                await _raw_library_ping(a, b.peer_id)
            except Exception as exc:  # noqa: BLE001 — counted
                library_failures.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(raw)
        assert library_failures, "py-libp2p accepted 10 concurrent ping streams: the premise changed"

        failures: list[BaseException] = []
        rtts: list[float] = []

        async def ours(x: Node, y: Node) -> None:
            try:
                rtts.append(await x.ping(y.peer_id, timeout=20))
            except Exception as exc:  # noqa: BLE001 — asserted below
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(ours, a, b)
                nursery.start_soon(ours, b, a)
        assert failures == [] and len(rtts) == 20
