"""What one Prometheus scrape of ``/metrics`` costs the node (issue #16).

One node serving the API with metrics on, connected to ``P`` peers in this
process, all subscribed to one topic (so there is a mesh, scores, SWIM
members and streams to report). For each ``P``: the time of

* ``stats``: ``node.stats()`` alone (what ``GET /v1/node/stats`` costs);
* ``collect``: the collector and the text encoding, in the node's thread
  (what the node pays per scrape; includes ``node.stats()``);
* ``http``: a whole ``GET /metrics`` over loopback, client included;

and the size of one scrape (bytes, series). Samples are taken while the
network is idle; the node runs in the same process as its peers, so the
figures include their share of the scheduler.

    .venv/bin/python benchmarks/metrics_scrape.py [--peers 1,10,30] [--scrapes 50] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import trio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentp2p.application.api import ApiService
from agentp2p.application.api.metrics import metrics_registry
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until
from benchmarks.common import emit, summary_ms

TOPIC = "bench-metrics"


async def measure(peers: int, scrapes: int) -> dict:
    api = ApiService("127.0.0.1:0", metrics=True)
    async with Node(local_config(), services=[api]) as node, node.subscribe(TOPIC):
        await api.ready.wait()
        async with trio.open_nursery() as nursery:
            others: list[Node] = []
            stop = trio.Event()

            async def peer() -> None:
                async with Node(local_config(bootstrap=[node.addrs[0]])) as other, other.subscribe(TOPIC):
                    others.append(other)
                    await stop.wait()

            for _ in range(peers):
                nursery.start_soon(peer)
            await wait_until(lambda: len(others) == peers and len(node.peers()) >= peers, timeout=120,
                             what=f"{peers} peers connected")
            await wait_until(lambda: len(node.topic_peers(TOPIC)) >= peers, timeout=60, what="subscriptions known")
            registry = metrics_registry(node)
            stats, collect, http = [], [], []
            body = b""
            async with httpx.AsyncClient(timeout=30) as client:
                headers = {"Authorization": f"Bearer {api.token}"}
                for _ in range(scrapes):
                    t0 = time.perf_counter()
                    node.stats()
                    stats.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    body = generate_latest(registry)
                    collect.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    r = await client.get(api.base_url + "/metrics", headers=headers)
                    http.append(time.perf_counter() - t0)
                    assert r.status_code == 200
                    await trio.sleep(0.02)
            series = sum(len(f.samples) for f in text_string_to_metric_families(body.decode()))
            stop.set()
    return {
        "peers": peers,
        "stats": summary_ms(stats),
        "collect": summary_ms(collect),
        "http": summary_ms(http),
        "bytes": len(body),
        "samples": series,
    }


async def main(args: argparse.Namespace) -> None:
    results = [await measure(p, args.scrapes) for p in args.peers]
    emit({"benchmark": "metrics_scrape", "scrapes": args.scrapes, "results": results}, args.json)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 30])
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    trio.run(main, ap.parse_args())
