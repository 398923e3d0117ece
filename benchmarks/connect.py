"""Dial latency: how long ``connect`` takes on loopback, three ways.

* ``in_process``: two agentp2p nodes in this process; node B dials A ``--dials``
  times (disconnecting in between and waiting until A saw the close, so each
  dial is a fresh TCP + Noise + Yamux upgrade).
* ``daemon``: an ``agentp2p daemon`` subprocess; a node in this process dials it.
  Both sides get their own interpreter (and core, if one is free).
* ``libp2p_default``: two py-libp2p hosts from ``new_host()`` with its default
  ConnectionConfig (for comparison). Its happy-eyeballs dialer waits a fixed
  250 ms before using a connection whenever more than one connection per
  peer is allowed; agentp2p sets ``max_connections_per_peer=1``
  (agentp2p/network/host.py), which skips that wait.

    .venv/bin/python benchmarks/connect.py [--dials 50] [--only in_process,daemon,libp2p_default] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

from benchmarks.common import emit, summary_ms, temp_daemon
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until

MODES = ("in_process", "daemon", "libp2p_default")


def _dial_summary(durations: list[float]) -> dict:
    """The first dial (cold code paths, lazy imports) is reported apart from the rest."""
    return {**summary_ms(durations[1:]), "first_ms": round(durations[0] * 1000, 3)}


async def _dial_loop(dialer: Node, target_addr: str, target_connected, dials: int) -> list[float]:  # type: ignore[no-untyped-def]
    """``dials`` fresh connections from ``dialer`` to ``target_addr``; durations in s."""
    out = []
    peer = target_addr.rsplit("/p2p/", 1)[1]
    for _ in range(dials + 1):
        t0 = time.perf_counter()
        await dialer.connect(target_addr)
        out.append(time.perf_counter() - t0)
        await dialer.disconnect(peer)
        # The next dial must not find (or race) the old connection.
        await wait_until(lambda: not dialer.is_connected(peer) and not target_connected(), timeout=10, what="disconnect")
    return out


async def bench_in_process(dials: int) -> dict:
    # SWIM off: it would re-dial a member we just disconnected from, and this
    # measures bare dial latency.
    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        durations = await _dial_loop(b, a.addrs[0], lambda: a.is_connected(b.peer_id), dials)
    return _dial_summary(durations)


async def bench_daemon(dials: int) -> dict:
    # SWIM off, as in bench_in_process.
    async with temp_daemon("target", extra_env={"AGENTP2P_SWIM": "false"}) as d, Node(local_config(swim=False)) as b:
        peer = d.addrs[0].rsplit("/p2p/", 1)[1]
        durations = []
        for _ in range(dials + 1):
            t0 = time.perf_counter()
            await b.connect(d.addrs[0])
            durations.append(time.perf_counter() - t0)
            await b.disconnect(peer)
            await wait_until(lambda: not b.is_connected(peer), timeout=10, what="disconnect")
            # ...and until the daemon logged the close (it allows one connection per peer).
            await d.wait_log_async("peer disconnected", count=len(durations))
    return _dial_summary(durations)


async def bench_libp2p_default(dials: int) -> dict:
    from libp2p import new_host
    from libp2p.peer.peerinfo import PeerInfo
    from multiaddr import Multiaddr

    listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
    a, b = new_host(listen_addrs=listen), new_host(listen_addrs=listen)
    async with a.run(listen), b.run(listen):
        info = PeerInfo(a.get_id(), list(a.get_addrs()))
        durations = []
        for _ in range(dials + 1):
            b.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
            t0 = time.perf_counter()
            with trio.fail_after(10):
                await b.connect(info)
            durations.append(time.perf_counter() - t0)
            await b.disconnect(info.peer_id)
            await wait_until(
                lambda: not b.get_network().get_connections(info.peer_id)
                and not a.get_network().get_connections(b.get_id()),
                timeout=10,
                what="disconnect",
            )
    return _dial_summary(durations)


async def main(dials: int, only: list[str]) -> dict:
    result: dict = {"benchmark": "connect", "dials": dials}
    for mode in only:
        fn = {"in_process": bench_in_process, "daemon": bench_daemon, "libp2p_default": bench_libp2p_default}[mode]
        result[mode] = await fn(dials)
    return result


def cli(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dials", type=int, default=50)
    p.add_argument("--only", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    only = [m for m in args.only.split(",") if m]
    for m in only:
        if m not in MODES:
            p.error(f"unknown mode {m!r}")
    result = trio.run(main, args.dials, only)
    emit(result, args.json)
    return result


if __name__ == "__main__":
    cli()
