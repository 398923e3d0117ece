"""py-libp2p 0.8.1's QUIC against TCP + Noise + Yamux, on 127.0.0.1.

Why QUIC is not on in agentp2p yet (docs/reachability.md, "QUIC"): this
measures, with two bare py-libp2p hosts in one process (QUIC listens on
``/udp/0/quic-v1``, TCP on ``/tcp/0`` with Noise and Yamux, one connection
per peer as our host has it):

* connect: the median and max of ``--connects`` fresh connections;
* one-way throughput: ``--size`` bytes written on one stream, the receiver
  counts them and answers, wall and CPU time;
* a slow reader: the receiver waits ``--stall`` seconds before reading
  while the sender writes ``--size`` bytes. TCP/Yamux holds the sender
  back (flow control); QUIC should too — the line says how many bytes
  arrived.

    .venv/bin/python benchmarks/quic_vs_tcp.py [--connects 20] [--size 8388608] [--stall 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio
from multiaddr import Multiaddr

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import count_stream  # noqa: E402

MiB = 1 << 20


def make_host(quic: bool, ours: bool = False) -> tuple[Any, list[Multiaddr]]:
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as x25519
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as Noise
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    kp = create_new_key_pair()
    addrs = [Multiaddr("/ip4/127.0.0.1/udp/0/quic-v1" if quic else "/ip4/127.0.0.1/tcp/0")]
    host = new_host(
        key_pair=kp, listen_addrs=addrs,
        sec_opt={NOISE_ID: Noise(kp, noise_privkey=x25519().private_key)},
        muxer_opt={TProtocol(YAMUX_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        enable_quic=quic,
        quic_transport_opt=_our_quic_config() if ours else None,
    )
    return host, addrs


def _our_quic_config() -> Any:
    from agentp2p.network import quic

    return quic.transport_config(max_connections=300, max_streams_per_connection=256, dial_timeout=10.0)


async def run(kind: str, connects: int, size: int, stall: float) -> dict[str, Any]:
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import info_from_p2p_addr

    quic = kind != "tcp"
    a, a_addrs = make_host(quic, ours=kind == "ours")
    b, b_addrs = make_host(quic, ours=kind == "ours")
    fast, slow = TProtocol("/bench/count/1"), TProtocol("/bench/slow-count/1")
    b.set_stream_handler(fast, lambda s: count_stream(s, 0.0))
    b.set_stream_handler(slow, lambda s: count_stream(s, stall))
    out: dict[str, Any] = {"transport": kind}
    async with a.run(a_addrs), b.run(b_addrs):
        info = info_from_p2p_addr(Multiaddr(f"{b.get_addrs()[0]}"))
        times = []
        for _ in range(connects):
            t0 = time.perf_counter()
            await a.connect(info)
            times.append(time.perf_counter() - t0)
            await a.disconnect(info.peer_id)
            with trio.move_on_after(5):
                while a.get_network().get_connections(info.peer_id):
                    await trio.sleep(0.01)
        out["connect_median_ms"] = round(statistics.median(times) * 1000, 1)
        out["connect_max_ms"] = round(max(times) * 1000, 1)
        await a.connect(info)
        for label, proto in (("one_way", fast), ("slow_reader", slow)):
            stream = await a.new_stream(info.peer_id, [proto])
            chunk = b"x" * 65536
            w0, c0 = time.perf_counter(), time.process_time()
            for _ in range(size // len(chunk)):
                await stream.write(chunk)
            await stream.close_write() if hasattr(stream, "close_write") else await stream.close()
            try:
                with trio.fail_after(120):
                    ack = await stream.read(64)
            except Exception as exc:  # noqa: BLE001 — py-libp2p's QUIC can lose the FIN, then resets
                out[label] = {"error": f"no count from the receiver: {type(exc).__name__} "
                                       "(its FIN was dropped with an overflowing chunk; it read until its 30 s timeout)"}
                continue
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            got = int(ack or b"0")
            out[label] = {"MiB_per_s": round(size / wall / MiB, 2), "cpu_s": round(cpu, 2),
                          "bytes_sent": size, "bytes_received": got, "lost": size - got}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connects", type=int, default=20)
    p.add_argument("--size", type=int, default=8 * MiB)
    p.add_argument("--stall", type=float, default=3.0)
    p.add_argument("--kinds", default="tcp,quic,ours",
                   help="tcp; quic (py-libp2p's as shipped); ours (with agentp2p.network.quic installed)")
    args = p.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    for kind in args.kinds.split(","):
        if kind == "ours":  # process-wide: after the library's own QUIC has run
            from agentp2p.network import quic

            quic.install()
        print(trio.run(run, kind, args.connects, args.size, args.stall), flush=True)


if __name__ == "__main__":
    main()
