"""A SWIM node in its own process, for tests that must kill a node hard.

``python swim_node_proc.py --seed HEX --bootstrap MADDR --config JSON``
starts a Node with a SwimService, prints one JSON line
``{"peer_id": ..., "addrs": [...]}`` once it listens, then runs until killed
(SIGKILL: a crash; SIGTERM/SIGINT: a clean stop, which announces "left").
Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

import trio

from agentp2p.network.identity import Identity
from agentp2p.node import Node
from agentp2p.protocol.swim import SwimConfig
from agentp2p.protocol.swim.service import SwimService
from agentp2p.testing import local_config


async def main(args: argparse.Namespace) -> None:
    identity = Identity.from_seed(bytes.fromhex(args.seed))
    svc = SwimService(SwimConfig(**json.loads(args.config)))
    cfg = local_config(bootstrap=[args.bootstrap] if args.bootstrap else [])
    async with Node(cfg, identity=identity, services=[svc]) as node:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            print(json.dumps({"peer_id": str(node.peer_id), "addrs": node.addrs}), flush=True)
            async for _ in signals:
                await svc.leave()
                break


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seed", required=True)
    p.add_argument("--bootstrap", default="")
    p.add_argument("--config", default="{}")
    trio.run(main, p.parse_args())
    sys.exit(0)
