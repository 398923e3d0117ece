"""Circuit relay v2: what a relayed connection costs against a direct one.

Three agentp2p nodes in one process on 127.0.0.1: a relay R (service on),
B with a reservation on R, and A. For each of "direct" (A dials B's TCP
address) and "relayed" (A dials ``/…/p2p/R/p2p-circuit/p2p/B``):

* connect: median and max of ``--connects`` fresh connections (each one
  closed before the next);
* ping RTT over the connection (median of 20);
* one-way throughput: ``--size`` bytes on one stream, B counts them and
  answers (the relayed bytes cross R's process too, so on one machine the
  relay's CPU is in the figure).

Also: the time B takes to get its reservation. The relay's circuit limit is
lifted for the run (``circuit_data = 0``); its defaults would cut the
transfer at 4 MiB.

    .venv/bin/python benchmarks/relay.py [--connects 20] [--size 16777216]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import count_stream  # noqa: E402

MiB = 1 << 20
COUNT = "/agentp2p/bench/count/1.0.0"


async def measure(a: Any, b: Any, target: str, connects: int, size: int) -> dict[str, Any]:
    times = []
    for _ in range(connects):
        await a.disconnect(b.peer_id)
        with trio.fail_after(10):
            while a.is_connected(b.peer_id) or b.is_connected(a.peer_id):
                await trio.sleep(0.005)
        if "p2p-circuit" in target:
            # What identify taught A of B's direct addresses would be tried first.
            a.host.get_peerstore().clear_addrs(b.peer_id)
        t0 = time.perf_counter()
        await a.connect(target)
        times.append(time.perf_counter() - t0)
    from agentp2p.network.relayed import relayed_connections

    assert bool(relayed_connections(a.host, b.peer_id)) == ("p2p-circuit" in target), "not the path asked for"
    rtts = [await a.ping(b.peer_id) for _ in range(20)]
    stream = await a.dialer.open_stream(b.peer_id, [COUNT], lookup=False)
    chunk = b"x" * 65536
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(size // len(chunk)):
        await stream.write(chunk)
    await stream.close()
    with trio.fail_after(300):
        got = int(await stream.read(64) or b"0")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"connect_median_ms": round(statistics.median(times) * 1000, 1),
            "connect_max_ms": round(max(times) * 1000, 1),
            "rtt_median_ms": round(statistics.median(rtts) * 1000, 2),
            "MiB_per_s": round(size / wall / MiB, 1), "process_cpu_s": round(cpu, 2), "received": got}


async def main(connects: int, size: int) -> None:
    from agentp2p.node import Node
    from agentp2p.protocol.autonat.config import AutoNATConfig
    from agentp2p.protocol.relay.config import RelayConfig
    from agentp2p.testing import local_config, wait_until

    quiet = AutoNATConfig(client=False)

    def cfg(**relay: Any) -> Any:
        return local_config(swim=False, autonat=quiet, relay=RelayConfig(**relay))

    async with Node(cfg(service="on", circuit_data=0)) as r:
        t0 = time.perf_counter()
        async with Node(cfg(relays=[r.addrs[0]])) as b:
            await wait_until(lambda: bool(b.stats()["relay"]["circuit_addrs"]), 30, "B's reservation")
            print({"reservation_s": round(time.perf_counter() - t0, 3)}, flush=True)
            b.host.set_stream_handler(COUNT, count_stream)
            circuit = b.stats()["relay"]["circuit_addrs"][0] + f"/p2p/{b.peer_id}"
            async with Node(cfg()) as a:
                for label, target in (("direct", b.addrs[0]), ("relayed", circuit)):
                    print({label: await measure(a, b, target, connects, size)}, flush=True)
                print({"relay": r.stats()["relay"]["relay"]}, flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connects", type=int, default=20)
    p.add_argument("--size", type=int, default=16 * MiB)
    args = p.parse_args()
    trio.run(main, args.connects, args.size)
