"""What one connection and one DHT request cost in CPU, both ends together.

The 100-node discovery benchmark spends minutes of CPU building its network
(docs/dht.md, "Real sockets"); ``discovery.py`` counts the work it did
(connections, DHT requests, ...). This script prices the units, in one
process holding every node, so the CPU of both ends is counted:

* ``connection``: node B connects to node A, both nodes' services do what a
  new connection sets off (identify, pub/sub's stream and hello, the DHT's
  identify wait, ...), B disconnects and both see it. Default services, SWIM
  off (it would redial). CPU per cycle, minus what the idle nodes use.
* ``dht_request``: FIND_NODE from B to A over B's reused stream, one at a
  time (A's per-peer request rate is lifted for the run, so that it is not
  the rate limiter that answers). A floor: A's answer names one peer, where
  a network's answers name up to 20, and stores validate records.
* Neither is the whole of what a network pays: DHT streams opened on new
  connections are not in the request's price, and the connection's price
  includes a teardown, which a network building itself mostly does not do.

    .venv/bin/python benchmarks/unit_costs.py [--connections 60] [--requests 2000] [--json]

The idle baseline is measured over ``--idle`` seconds first (``raw`` keeps
it in). The process applies ``agentp2p.gc_policy`` as the daemon does; the
prices include the collections their garbage causes. Figures: docs/dht.md
("Real sockets").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

from benchmarks.common import emit
from agentp2p.config import DHTConfig
from agentp2p.node import Node
from agentp2p.protocol.kademlia.codec import Message, MessageType
from agentp2p.testing import local_config, wait_until

#: Time each connection is left up, for its services to finish what it set off.
SETTLE_S = 0.3


async def _price(op: Callable[[], Awaitable[None]], count: int, idle_s: float) -> tuple[float, float, float, float]:
    """Run ``op`` ``count`` times after measuring what the idle nodes use over ``idle_s``:
    CPU seconds per op with and without that baseline subtracted, wall seconds per op,
    and the idle share of a core."""
    c0 = time.process_time()
    await trio.sleep(idle_s)
    idle = (time.process_time() - c0) / idle_s
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(count):
        await op()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return (cpu - idle * wall) / count, cpu / count, wall / count, idle


async def connection_cost(cycles: int, idle_s: float) -> dict[str, float]:
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        peer = a.peer_id

        async def cycle() -> None:
            await b.connect(a.addrs[0])
            await trio.sleep(SETTLE_S)  # the services' work on the new connection (not a synchronisation)
            await b.disconnect(str(peer))
            await wait_until(lambda: not b.is_connected(peer) and not a.is_connected(b.peer_id),
                             timeout=10, what="both ends to see the disconnect")

        await cycle()  # warm: lazy imports, first-use caches
        cpu, raw, _wall, idle = await _price(cycle, cycles, idle_s)
    return {"cycles": cycles, "cpu_ms": round(1000 * cpu, 2), "raw_cpu_ms": round(1000 * raw, 2),
            "idle_cpu_pct": round(100 * idle, 2)}


async def request_cost(requests: int, idle_s: float) -> dict[str, float]:
    lifted = DHTConfig(inbound_requests_per_second=1e9, inbound_request_burst=10**9)
    async with Node(local_config(swim=False, dht=lifted)) as a, \
            Node(local_config(swim=False)) as b, Node(local_config(swim=False)) as c:
        await b.connect(a.addrs[0])
        await c.connect(a.addrs[0])  # so that A's answers carry a peer
        await wait_until(lambda: a.dht.routing_table_size >= 2, 10, "A's routing table")
        service = b.dht.service
        assert service is not None
        msg = Message(MessageType.FIND_NODE, key=os.urandom(32))
        async def request() -> None:
            await service.request(a.peer_id, msg)

        for _ in range(50):  # warm: the stream, the codec
            await request()
        cpu, raw, wall, idle = await _price(request, requests, idle_s)
    return {"requests": requests, "cpu_us": round(1e6 * cpu, 1), "raw_cpu_us": round(1e6 * raw, 1),
            "wall_us": round(1e6 * wall, 1), "idle_cpu_pct": round(100 * idle, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=60)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds to measure the idle baseline")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from agentp2p import gc_policy

    gc_policy.apply()  # as the daemon and discovery.py's workers do
    result = {
        "connection": trio.run(connection_cost, args.connections, args.idle),
        "dht_request": trio.run(request_cost, args.requests, args.idle),
    }
    emit({"benchmark": "unit_costs", **result}, as_json=args.json)


if __name__ == "__main__":
    main()
