"""Our Yamux measures a connection's RTT when it opens, then every
RTT_REMEASURE (5 min), not every 30 s from both ends as py-libp2p does:
on an idle node those pings were most of its wake-ups."""

from __future__ import annotations

from typing import Any

import libp2p.stream_muxer.yamux.yamux as library_yamux

from agentp2p.network.yamux import RTT_REMEASURE, GuardedYamux
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


def _muxed(a: Node, b: Node) -> Any:
    conns = a.host.get_network().get_connections(b.host.get_id())
    return conns[0].muxed_conn if conns else None


async def test_the_library_pings_every_30_s_and_we_every_5_min() -> None:
    assert library_yamux.RTT_MEASURE_INTERVAL == 30
    assert RTT_REMEASURE == 300


async def test_the_rtt_is_measured_once_the_connection_opens() -> None:
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False, bootstrap=[a.addrs[0]])) as b:
        await wait_until(lambda: _muxed(b, a) is not None, 10, "b connected to a")
        muxed = _muxed(b, a)
        assert isinstance(muxed, GuardedYamux)
        await wait_until(lambda: muxed.rtt_pings == 1 and muxed.rtt() > 0, 15, "the first RTT measurement")


async def test_remeasurement_follows_rtt_remeasure(monkeypatch: Any) -> None:
    monkeypatch.setattr("agentp2p.network.yamux.RTT_REMEASURE", 0.2)
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False, bootstrap=[a.addrs[0]])) as b:
        await wait_until(lambda: _muxed(b, a) is not None, 10, "b connected to a")
        muxed = _muxed(b, a)
        await wait_until(lambda: muxed.rtt_pings >= 3, 15, "three measurements, 0.2 s apart")
