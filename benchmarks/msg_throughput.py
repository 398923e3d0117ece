"""Reliable messaging between two processes on loopback, against a raw py-libp2p stream.

    .venv/bin/python benchmarks/msg_throughput.py [--messages N] [--rate R] [--seconds S]
        [--transport tcp|quic] [--scenarios raw-unbatched,raw-batched,msg,msg-thread-verify,latency]

The sender (this process) starts a receiver process per scenario
(``--role receiver``), connects to it over 127.0.0.1 and measures:

* ``raw-unbatched``: N length-prefixed 100-byte messages on one py-libp2p
  stream, one ``write`` each; time until the receiver confirms it read all.
* ``raw-batched``: the same with 1,000 messages per ``write``.
* ``msg``: N acknowledged 100-byte messages through MessagingService (signed,
  verified, ACK = the receiver's application took it), from many concurrent
  ``send`` calls; msgs/s = N / time until the last ACK.
* ``msg-thread-verify``: the same with signature checks of big batches in a
  worker thread (PyNaCl releases the GIL).
* ``latency``: a fixed offered load of R msg/s for S seconds; send-to-deliver
  latency (sender's wall clock in the payload, read when the receiver's
  application gets the message) P50/P99, and send-to-ACK as seen by ``send``.

``--transport quic`` runs every scenario over QUIC (``/udp/0/quic-v1``,
agentp2p/network/quic) instead of TCP + Noise + Yamux.

Prints a table and one JSON line. The machine has 2 cores shared by both
processes (and whatever else runs): figures are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF

from agentp2p.messaging.config import MessagingConfig
from agentp2p.messaging.service import MessagingService
from agentp2p.node import Node
from agentp2p.testing import local_config

RAW_PROTOCOL = "/agentp2p/bench-raw/1.0.0"
SIZE = 100
_TS = struct.Struct(">d")
LISTEN = {"tcp": "/ip4/127.0.0.1/tcp/0", "quic": "/ip4/127.0.0.1/udp/0/quic-v1"}
TRANSPORT = "tcp"  # set from --transport in both processes


def _config() -> Any:
    return local_config(listen=[LISTEN[TRANSPORT]])


def _percentile(xs: list[float], p: float) -> float:
    if not xs:
        return math.nan
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


# ----------------------------------------------------------------- receiver
async def receiver(mode: str, expect: int, verify_batch: int) -> None:
    out = sys.stdout
    if mode == "raw":
        async with Node(_config()) as node:
            done = trio.Event()

            async def handle(stream: Any) -> None:
                need = expect * (SIZE + 1)
                got = 0
                while got < need:
                    try:
                        got += len(await stream.read(65536))
                    except StreamEOF:
                        return
                await stream.write(b"ok")
                done.set()

            node.set_stream_handler(RAW_PROTOCOL, handle)
            print(json.dumps({"addr": node.addrs[0]}), file=out, flush=True)
            await done.wait()
            await trio.sleep_forever()  # the sender closes us (stdin EOF)
    svc = MessagingService(MessagingConfig(verify_thread_batch=verify_batch))
    async with Node(_config(), services=[svc]) as node:
        print(json.dumps({"addr": node.addrs[0]}), file=out, flush=True)
        lat: list[float] = []
        n = 0
        t_first = None
        async for msg in svc.incoming():
            now = time.time()
            if t_first is None:
                t_first = time.perf_counter()
            n += 1
            if msg.type == "lat":
                lat.append(now - _TS.unpack_from(msg.payload)[0])
            if n == expect:
                break
        elapsed = time.perf_counter() - (t_first or 0)
        st = svc.stats()
        print(
            json.dumps(
                {
                    "received": n,
                    "deliver_p50_ms": _percentile(lat, 50) * 1000,
                    "deliver_p99_ms": _percentile(lat, 99) * 1000,
                    "deliver_max_ms": max(lat, default=math.nan) * 1000,
                    "rx_seconds": elapsed,
                    "verified_in_thread": st.get("verified_in_thread", 0),
                    "rejected": sum(st["rejected"].values()),
                    "duplicates_dropped": st["duplicates_dropped"],
                }
            ),
            file=out,
            flush=True,
        )
        await trio.sleep_forever()


# ------------------------------------------------------------------- sender
class Peer:
    """A receiver process for one scenario."""

    def __init__(self, mode: str, expect: int, verify_batch: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "receiver", "--mode", mode, "--expect", str(expect),
             "--verify-thread-batch", str(verify_batch), "--transport", TRANSPORT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    async def line(self, timeout: float = 60) -> dict[str, Any]:
        with trio.fail_after(timeout):
            text = await trio.to_thread.run_sync(self.proc.stdout.readline)  # type: ignore[union-attr]
        if not text:
            raise RuntimeError("receiver process exited early")
        return json.loads(text)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def raw_run(n: int, batch: int) -> dict[str, Any]:
    peer = Peer("raw", n)
    try:
        addr = (await peer.line())["addr"]
        async with Node(_config()) as node:
            pid = await node.connect(addr)
            stream = await node.host.new_stream(pid, [TProtocol(RAW_PROTOCOL)])
            msg = bytes([SIZE]) + b"x" * SIZE
            t0 = time.perf_counter()
            if batch == 1:
                for _ in range(n):
                    await stream.write(msg)
            else:
                for i in range(0, n, batch):
                    await stream.write(msg * min(batch, n - i))
            with trio.fail_after(120):
                assert await stream.read(2) == b"ok"
            elapsed = time.perf_counter() - t0
        return {"messages": n, "seconds": elapsed, "msgs_per_s": n / elapsed}
    finally:
        peer.close()


async def msg_run(n: int, workers: int, verify_batch: int) -> dict[str, Any]:
    peer = Peer("msg", n, verify_batch)
    try:
        addr = (await peer.line())["addr"]
        svc = MessagingService()
        async with Node(_config(), services=[svc]) as node:
            pid = await node.connect(addr)
            await svc.send(pid, b"w" * SIZE, type="warmup", timeout=30)  # the stream is up
            payload = b"x" * SIZE
            left = n - 1

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await svc.send(pid, payload, timeout=60)

            t0 = time.perf_counter()
            with trio.fail_after(300):
                async with trio.open_nursery() as nursery:
                    for _ in range(workers):
                        nursery.start_soon(worker)
            elapsed = time.perf_counter() - t0
            rx = await peer.line()
            st = svc.stats()
        return {
            "messages": n - 1, "seconds": elapsed, "msgs_per_s": (n - 1) / elapsed,
            "retransmitted": st["retransmitted"], "failed": st["failed"], **rx,
        }
    finally:
        peer.close()


async def latency_run(rate: int, seconds: float) -> dict[str, Any]:
    n = int(rate * seconds)
    peer = Peer("msg", n + 1)
    try:
        addr = (await peer.line())["addr"]
        svc = MessagingService()
        async with Node(_config(), services=[svc]) as node:
            pid = await node.connect(addr)
            await svc.send(pid, b"w" * SIZE, type="warmup", timeout=30)
            pad = b"x" * (SIZE - _TS.size)
            acks: list[float] = []

            async def one() -> None:
                t = time.time()
                await svc.send(pid, _TS.pack(t) + pad, type="lat", timeout=60)
                acks.append(time.time() - t)

            tick = 0.002  # offer the load in 2 ms slices, on schedule (no drift)
            per_tick = rate * tick
            t0 = trio.current_time()
            sent = 0
            with trio.fail_after(seconds + 120):
                async with trio.open_nursery() as nursery:
                    k = 0
                    while sent < n:
                        k += 1
                        due = min(n, int(k * per_tick))
                        while sent < due:
                            nursery.start_soon(one)
                            sent += 1
                        await trio.sleep_until(t0 + k * tick)
                    offered_s = trio.current_time() - t0
            rx = await peer.line()
        return {
            "offered_rate": rate, "messages": n, "offered_seconds": offered_s,
            "ack_p50_ms": _percentile(acks, 50) * 1000, "ack_p99_ms": _percentile(acks, 99) * 1000, **rx,
        }
    finally:
        peer.close()


async def sender(ns: argparse.Namespace) -> None:
    results: dict[str, Any] = {"transport": TRANSPORT}
    want = set(ns.scenarios.split(","))
    if "raw-unbatched" in want:
        results["raw-unbatched"] = await raw_run(ns.messages, 1)
    if "raw-batched" in want:
        results["raw-batched"] = await raw_run(ns.messages * 10, 1000)
    if "msg" in want:
        results["msg"] = await msg_run(ns.messages, ns.workers, 0)
    if "msg-thread-verify" in want:
        results["msg-thread-verify"] = await msg_run(ns.messages, ns.workers, 32)
    if "latency" in want:
        results["latency"] = await latency_run(ns.rate, ns.seconds)
        if ns.low_rate:
            results["latency-low"] = await latency_run(ns.low_rate, ns.seconds)
    print(f"{'scenario':<20} {'messages':>9} {'msgs/s':>10}  notes ({TRANSPORT})")
    for name in ("raw-unbatched", "raw-batched", "msg", "msg-thread-verify"):
        r = results.get(name)
        if r is None:
            continue
        notes = ""
        if name.startswith("msg"):
            notes = f"acknowledged; retransmitted={r['retransmitted']} failed={r['failed']}"
            if r.get("verified_in_thread"):
                notes += f" verified_in_thread={r['verified_in_thread']}"
        print(f"{name:<20} {r['messages']:>9} {r['msgs_per_s']:>10,.0f}  {notes}")
    for name in ("latency", "latency-low"):
        lat = results.get(name)
        if lat is None:
            continue
        print(
            f"latency @ {lat['offered_rate']} msg/s offered for {lat['offered_seconds']:.1f} s: "
            f"send->deliver P50 {lat['deliver_p50_ms']:.1f} ms, P99 {lat['deliver_p99_ms']:.1f} ms, "
            f"max {lat['deliver_max_ms']:.1f} ms; send->ack P50 {lat['ack_p50_ms']:.1f} ms, "
            f"P99 {lat['ack_p99_ms']:.1f} ms"
        )
    print(json.dumps({"benchmark": "msg_throughput", "loadavg": os.getloadavg(), **results}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", choices=["sender", "receiver"], default="sender")
    p.add_argument("--mode", choices=["raw", "msg"], default="msg")
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--verify-thread-batch", type=int, default=0)
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=2_000, help="concurrent send() calls in the throughput run")
    p.add_argument("--rate", type=int, default=5_000)
    p.add_argument("--low-rate", type=int, default=1_000, help="a second latency run below capacity (0: skip)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--transport", choices=sorted(LISTEN), default="tcp")
    p.add_argument("--scenarios", default="raw-unbatched,raw-batched,msg,msg-thread-verify,latency")
    ns = p.parse_args()
    global TRANSPORT
    TRANSPORT = ns.transport
    if ns.role == "receiver":
        trio.run(receiver, ns.mode, ns.expect, ns.verify_thread_batch)
    else:
        trio.run(sender, ns)


if __name__ == "__main__":
    main()
