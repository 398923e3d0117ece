"""Attacks on a real daemon, each for a fixed time: does it stay up, bounded
and useful to an honest peer?

For every attack a fresh ``agentp2p daemon`` (records on, control API on) is
started; the attack runs from this process for ``--duration`` seconds while
a benign checker, every ``--check-every`` seconds, brings up a fresh honest
node that connects, pings, completes a pub/sub round trip through the
daemon's control API in both directions and has a direct message read by
the daemon's reader. Reported per attack: the daemon's peak RSS and its CPU
share, benign checks passed / run, whether the daemon survived, and what
its counters say (limit hits, bans, drops).

The attack code lives with the regression tests (``tests/adversarial/``);
this script only drives it for longer against a daemon subprocess.

    .venv/bin/python benchmarks/adversarial.py                      # all attacks, 20 s each
    .venv/bin/python benchmarks/adversarial.py --only conn_churn --duration 60
"""

from __future__ import annotations

import argparse
import logging
import math
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import trio

if __package__ in (None, ""):
    # benchmarks.* and the attack code in tests.adversarial.* import from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.attacks import ATTACKS, Target  # noqa: E402
from benchmarks.common import emit, md_table, percentile  # noqa: E402

from agentp2p.client import Client  # noqa: E402
from agentp2p.node import Node  # noqa: E402
from agentp2p.testing import DaemonProcess, local_config, wait_until  # noqa: E402


@dataclass
class Outcome:
    attack: str
    seconds: float = 0.0
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    cpu_percent: float = 0.0
    checks_ok: int = 0
    checks: int = 0
    survived: bool = True
    attack_note: str = ""
    failures: list[str] = field(default_factory=list)
    check_seconds: list[float] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)


async def benign_check(target: Target, client: Client, timeout: float) -> None:
    """An honest peer: connect, ping, pub/sub both ways via the daemon's API, one direct message."""
    topic = f"bench/benign/{secrets.token_hex(3)}"
    with trio.fail_after(timeout):
        async with Node(local_config()) as honest:
            await honest.connect(target.addr)
            await honest.ping(target.peer_id)
            async with client.subscribe(topic) as remote_sub, honest.subscribe(topic) as local_sub:
                await wait_until(lambda: target.peer_id in {str(p) for p in honest.topic_peers(topic)}, timeout)
                await honest.publish(topic, b"to daemon")
                while (await remote_sub.receive()).data != b"to daemon":
                    pass
                await client.publish(topic, b"to honest")
                while True:
                    msg = await local_sub.receive()
                    if str(msg.sender) == target.peer_id and msg.data == b"to honest":
                        break
            async with client.incoming() as inbox, trio.open_nursery() as nursery:
                nursery.start_soon(lambda: honest.send(target.peer_id, b"direct", timeout=timeout))
                while True:
                    got = await inbox.receive()
                    await inbox.ack(got)  # the sender's send() returns once we have acknowledged it
                    if got.sender == str(honest.peer_id):
                        break


async def run_one(name: str, run: Callable[[Target, float], Awaitable[str]], args: argparse.Namespace) -> Outcome:
    out = Outcome(name)
    with tempfile.TemporaryDirectory(prefix="ap2p-adv-") as tmp:
        daemon = await DaemonProcess(Path(tmp), "--agent-name", "victim", "--capability", "bench").start_async()
        try:
            proc = psutil.Process(daemon.pid)
            target = Target(daemon.addrs[0], daemon.peer_id, daemon.api_addr, daemon.token)
            out.rss_start_mb = proc.memory_info().rss / 1e6
            peak = out.rss_start_mb
            cpu0 = proc.cpu_times()
            t0 = time.monotonic()
            async with Client(target.api_addr, token=target.token) as client:

                async def sample() -> None:
                    nonlocal peak
                    while True:
                        try:
                            peak = max(peak, proc.memory_info().rss / 1e6)
                        except psutil.NoSuchProcess:
                            return
                        await trio.sleep(0.1)

                async def one_check(label: str) -> None:
                    out.checks += 1
                    t = time.monotonic()
                    try:
                        await benign_check(target, client, args.check_timeout)
                        out.checks_ok += 1
                        out.check_seconds.append(time.monotonic() - t)
                    except Exception as exc:  # noqa: BLE001 — a failed check is a figure
                        out.failures.append(f"{label}{type(exc).__name__}: {exc}"[:200])

                async def checks(stop: trio.Event) -> None:
                    while not stop.is_set():
                        await one_check("")
                        with trio.move_on_after(args.check_every):
                            await stop.wait()

                stop = trio.Event()
                async with trio.open_nursery() as sampler:
                    sampler.start_soon(sample)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(checks, stop)
                        with trio.move_on_after(args.duration + 30):
                            try:
                                out.attack_note = await run(target, args.duration)
                            except Exception as exc:  # noqa: BLE001
                                out.attack_note = f"attack ended: {type(exc).__name__}: {exc}"[:200]
                        stop.set()  # the check under way finishes; no new one starts
                    out.seconds = time.monotonic() - t0
                    # One more check after the attack: the daemon must still serve.
                    await one_check("after: ")
                    sampler.cancel_scope.cancel()
                out.survived = daemon.alive()
                if out.survived:
                    cpu1 = proc.cpu_times()
                    used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
                    out.cpu_percent = round(100 * used / max(out.seconds, 1e-9), 1)
                    with trio.move_on_after(10):
                        stats = await client.stats()
                        members = await client.members()
                        out.counters = {
                            "limit_hits": sum(stats.get("resources", {}).get("hits", {}).values()),
                            "bans": stats.get("penalties", {}).get("bans", 0),
                            "handler_failures": sum(stats.get("handler_failures", {}).values()),
                            "members_alive": sum(1 for m in members if m.state == "alive"),
                        }
            out.rss_peak_mb = round(peak, 1)
            out.rss_start_mb = round(out.rss_start_mb, 1)
        finally:
            await daemon.aclose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds each attack runs")
    parser.add_argument("--check-every", type=float, default=2.0, help="seconds between benign checks")
    parser.add_argument("--check-timeout", type=float, default=15.0)
    parser.add_argument("--only", default="", help="comma-separated attack names")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # py-libp2p logs every refused stream and dial at ERROR; the figures are what matter here.
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    logging.getLogger("agentp2p").setLevel(logging.ERROR)  # the attackers' own side
    names = [n for n in args.only.split(",") if n] or list(ATTACKS)
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        parser.error(f"unknown attacks {unknown}; known: {', '.join(ATTACKS)}")
    outcomes = []
    for name in names:
        outcomes.append(await run_one(name, ATTACKS[name], args))
        if not args.json:
            o = outcomes[-1]
            print(f"{name}: peak {o.rss_peak_mb} MB, {o.checks_ok}/{o.checks} checks, alive={o.survived}", flush=True)
    rows = [
        (
            o.attack,
            f"{o.rss_start_mb:.0f} → {o.rss_peak_mb:.0f}",
            o.cpu_percent,
            f"{o.checks_ok}/{o.checks}",
            f"{percentile(o.check_seconds, 50):.1f} / {max(o.check_seconds, default=math.nan):.1f}",
            "yes" if o.survived else "**no**",
            o.attack_note,
            ", ".join(f"{k}={v}" for k, v in o.counters.items() if v) or "-",
        )
        for o in outcomes
    ]
    table = md_table(["attack", "RSS MB (start → peak)", "CPU %", "benign checks", "check s (P50 / max)", "survived", "attack", "counters"], rows)
    result = {
        "duration_s": args.duration,
        "outcomes": [o.__dict__ for o in outcomes],
        "max_peak_rss_mb": max((o.rss_peak_mb for o in outcomes), default=math.nan),
    }
    if args.json:
        emit(result, True)
    else:
        print(table)
        for o in outcomes:
            for f in o.failures[:3]:
                print(f"  {o.attack}: {f}")


if __name__ == "__main__":
    trio.run(main)
