"""``agentp2p devnet``: a local test network of full nodes (docs/devnet.md).

Thin: the flags become a :class:`~agentp2p.devnet.controller.DevnetOptions`
and :class:`~agentp2p.devnet.controller.Devnet` does the rest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_devnet_command", "run_devnet"]

#: More nodes than this would not run on one machine anyway (and the controller keeps per-node state).
MAX_NODES = 1000


def add_devnet_command(sub: Any) -> None:
    d = sub.add_parser(
        "devnet",
        help="run N full nodes on 127.0.0.1 in worker processes, with a live summary and commands (docs/devnet.md)",
    )
    d.add_argument("--nodes", type=int, required=True, metavar="N", help=f"nodes to run (1-{MAX_NODES})")
    d.add_argument("--procs", type=int, default=2, metavar="P",
                   help="worker processes holding the nodes, contiguous blocks (default 2); "
                        "`pause` stops a whole worker")  # fmt: skip
    d.add_argument("--seeds", type=int, default=3, metavar="S",
                   help="the first S nodes are the bootstrap nodes of all others (default 3)")  # fmt: skip
    d.add_argument("--bootstraps", type=int, default=2, metavar="K",
                   help="seeds each other node bootstraps from, picked at random (default 2)")  # fmt: skip
    d.add_argument("--concurrency", type=int, default=4, metavar="C", help="nodes a worker starts at once (default 4)")
    d.add_argument("--join-rate", type=float, default=0.0, metavar="R",
                   help="at most R node starts a second after node 0, the seeds included (default 0: as fast as the workers go)")
    d.add_argument("--caps", type=int, default=10, metavar="C",
                   help="distinct capabilities; node i offers cap-(i mod C) (default 10)")  # fmt: skip
    d.add_argument("--topic", default="devnet", help="the pub/sub topic every node subscribes to (default devnet)")
    d.add_argument("--interval", type=float, default=3.0, metavar="S",
                   help="seconds between summaries (default 3; 0: none)")  # fmt: skip
    d.add_argument("--probe-every", type=float, metavar="S",
                   help="seconds between discovery probes (default: the interval; 0: none)")  # fmt: skip
    d.add_argument("--rate", type=float, default=1.0, metavar="R",
                   help="background messages per second on the topic, from random nodes (default 1; 0: none)")  # fmt: skip
    d.add_argument("--deliver-timeout", type=float, default=10.0, metavar="S",
                   help="how long `publish` waits for every reachable node (default 10)")  # fmt: skip
    d.add_argument("--config", metavar="FILE", help="TOML node config for every node (keys as in NodeConfig)")
    d.add_argument("--log-dir", metavar="DIR", help="write each worker's log to DIR/worker-W.log (default: discard)")
    d.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="warning",
                   help="the workers' log level (default warning)")  # fmt: skip
    d.add_argument("--script", metavar="FILE", help="run the commands in FILE (one per line) once up, then quit")
    d.add_argument("--run", metavar="CMDS", help='run these commands once up, then quit: "find 3 cap-01; stats"')
    d.add_argument("--json", action="store_true", help="one JSON object per line (events and command results)")
    d.add_argument("--seed", type=int, help="seed for the random choices (bootstraps, probes, traffic)")
    d.add_argument("--dashboard", nargs="?", const="127.0.0.1:0", metavar="HOST:PORT",
                   help="serve a live dashboard of the whole devnet (default 127.0.0.1, any port) and print a "
                        "one-time login link; the `dashboard` command prints another")  # fmt: skip


def _check(args: argparse.Namespace) -> str | None:
    if not 1 <= args.nodes <= MAX_NODES:
        return f"--nodes must be between 1 and {MAX_NODES}"
    if min(args.procs, args.seeds, args.bootstraps, args.concurrency, args.caps) < 1:
        return "--procs, --seeds, --bootstraps, --concurrency and --caps must be at least 1"
    if args.join_rate < 0:
        return "--join-rate cannot be negative"
    if args.interval < 0 or args.rate < 0 or (args.probe_every is not None and args.probe_every < 0):
        return "--interval, --probe-every and --rate cannot be negative"
    if args.deliver_timeout <= 0:
        return "--deliver-timeout must be positive"
    if args.config and not Path(args.config).is_file():
        return f"--config {args.config}: no such file"
    if args.dashboard is not None:
        from agentp2p.client.discovery import parse_api_address

        try:
            if parse_api_address(args.dashboard).is_unix:
                return "--dashboard needs HOST:PORT (a browser cannot open a Unix socket)"
        except ValueError as exc:
            return f"--dashboard: {exc}"
    return None


def run_devnet(args: argparse.Namespace) -> int:
    """Run the devnet the flags describe; its exit status."""
    problem = _check(args)
    if problem is not None:
        print(f"agentp2p: error: {problem}", file=sys.stderr)
        return 2
    import trio

    from agentp2p.devnet.commands import split_run
    from agentp2p.devnet.console import Console
    from agentp2p.devnet.controller import Devnet, DevnetOptions

    commands: list[str] | None = None
    if args.script:
        try:
            commands = Path(args.script).read_text().splitlines()
        except OSError as exc:
            print(f"agentp2p: error: --script {args.script}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    if args.run:
        commands = (commands or []) + split_run(args.run)
    options = DevnetOptions(
        nodes=args.nodes, procs=args.procs, seeds=args.seeds, bootstraps=args.bootstraps, concurrency=args.concurrency,
        join_rate=args.join_rate, caps=args.caps, topic=args.topic, interval=args.interval, probe_every=args.probe_every, rate=args.rate,
        deliver_timeout=args.deliver_timeout, config=Path(args.config) if args.config else None,
        log_dir=Path(args.log_dir) if args.log_dir else None, log_level=args.log_level, commands=commands,
        json=args.json, seed=args.seed, dashboard=args.dashboard,
    )  # fmt: skip
    return trio.run(Devnet(options, Console(json_mode=args.json)).run)
