"""Round trips a new connection and a new stream cost, through a delaying proxy.

Loopback has no latency to speak of, so counting round trips there needs a
link that has one: a TCP proxy in this process holds every chunk ``--delay``
ms in each direction (order kept, no bandwidth limit), so one round trip
costs ``2 × delay``. Two of our hosts (``build_host``: Noise, our Yamux,
identify) meet through it, and the script times, ``--runs`` times:

* ``connect``: ``host.connect`` through the proxy (TCP, multistream-select of
  the security protocol, Noise XX, multistream-select of the muxer) — what
  a stream's dial waits for;
* ``connect_accepted``: the same until the listener has accepted our muxer
  (``Dialer.connect``, and so ``Node.connect``, waits for it);
* ``stream``: a new stream with its protocol negotiated, then one 1-byte
  request and its answer (what a first DHT request costs on a live
  connection);
* ``cold``: both, as a first request to a peer not yet connected;
* ``lazy_stream``: a new stream whose proposal rides with its request
  (:class:`~agentp2p.network.multistream.LazyStream`, what the dialer opens
  when identify said the peer speaks the protocol, and what the DHT opens
  always), its request and answer;
* ``lazy_cold``: ``connect`` then a lazy stream's request: a DHT request to
  a peer not yet connected.

Each is printed in milliseconds and in round trips (time / RTT, CPU time
included: on an idle machine it is a few ms). The proxy accepts TCP at once,
so TCP's own handshake is not delayed: on a real link ``connect`` and
``cold`` take one round trip more than printed. ``--library`` runs the same
with py-libp2p 0.8.1's own multistream client (header, wait, proposal,
wait) instead of ours (header and proposal in one write), for the
before/after figure (agentp2p/network/multistream.py)::

    .venv/bin/python benchmarks/round_trips.py [--delay 25] [--runs 10] [--library]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio
from multiaddr import Multiaddr

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import emit  # noqa: E402

ECHO = "/bench/echo/1"


async def _pump(src: trio.SocketStream, dst: trio.SocketStream, delay: float) -> None:
    """Copy src → dst, each chunk ``delay`` s late, in order."""
    send, recv = trio.open_memory_channel[tuple[float, bytes]](10_000)

    async def later() -> None:
        async for due, chunk in recv:
            await trio.sleep_until(due)
            await dst.send_all(chunk)
        await dst.send_eof()

    async with trio.open_nursery() as n:
        n.start_soon(later)
        async with send:
            while chunk := await src.receive_some(65536):
                await send.send((trio.current_time() + delay, chunk))


async def delay_proxy(target_port: int, delay: float, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on 127.0.0.1 and relay every connection to ``target_port``, ``delay`` s each way."""

    async def serve(client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream("127.0.0.1", target_port)
            async with client, server, trio.open_nursery() as n:
                n.start_soon(_pump, client, server, delay)
                n.start_soon(_pump, server, client, delay)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(serve, listeners)


async def _echo(stream: Any) -> None:
    data = await stream.read(1)
    await stream.write(data)
    await stream.close()


async def _lazy_echo(b: Any, peer: Any, library: bool) -> None:
    """One request on a new lazy stream (negotiated first with ``library``: it has none)."""
    from libp2p.custom_types import TProtocol

    from agentp2p.network.multistream import LazyStream

    if library:
        stream = await b.new_stream(peer, [TProtocol(ECHO)])
    else:
        stream = LazyStream(await b.get_network().new_stream(peer), ECHO)
    await stream.write(b"y")
    assert await stream.read(1) == b"y"
    await stream.close()


async def _disconnect(a: Any, b: Any) -> None:
    await b.disconnect(a.get_id())
    with trio.fail_after(10):
        while a.get_network().get_connections(b.get_id()) or b.get_network().get_connections(a.get_id()):
            await trio.sleep(0.01)


async def run(delay_ms: float, runs: int, library: bool) -> dict[str, Any]:
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import PeerInfo

    from agentp2p.network import multistream
    from agentp2p.network.host import build_host
    from agentp2p.network.identity import Identity
    from agentp2p.network.multistream import wait_accepted

    if library:
        multistream.uninstall()
    listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
    a, b = build_host(Identity.generate(), listen), build_host(Identity.generate(), listen)
    if library:
        multistream.uninstall()  # build_host installs ours
    a.set_stream_handler(TProtocol(ECHO), _echo)
    delay = delay_ms / 1000
    rtt = 2 * delay
    times: dict[str, list[float]] = {"connect": [], "connect_accepted": [], "stream": [], "cold": [],
                                     "lazy_stream": [], "lazy_cold": []}
    async with a.run(listen), b.run(listen), trio.open_nursery() as nursery:
        port = int(str(a.get_addrs()[0]).split("/tcp/")[1].split("/")[0])
        proxy_port = await nursery.start(delay_proxy, port, delay)
        info = PeerInfo(a.get_id(), [Multiaddr(f"/ip4/127.0.0.1/tcp/{proxy_port}")])
        for _ in range(runs + 1):  # the first is a warm-up (lazy imports, cold caches)
            # identify told b a's own address: only the proxy's may be dialed.
            b.get_peerstore().clear_addrs(a.get_id())
            t0 = time.perf_counter()
            await b.connect(info)
            t1 = time.perf_counter()
            stream = await b.new_stream(a.get_id(), [TProtocol(ECHO)])
            await stream.write(b"x")
            assert await stream.read(1) == b"x"
            t2 = time.perf_counter()
            await stream.close()
            t3 = time.perf_counter()
            await _lazy_echo(b, a.get_id(), library)
            t4 = time.perf_counter()
            times["connect"].append(t1 - t0)
            times["stream"].append(t2 - t1)
            times["cold"].append(t2 - t0)
            times["lazy_stream"].append(t4 - t3)
            await _disconnect(a, b)
            b.get_peerstore().clear_addrs(a.get_id())
            t0 = time.perf_counter()
            await b.connect(info)
            await _lazy_echo(b, a.get_id(), library)
            times["lazy_cold"].append(time.perf_counter() - t0)
            await _disconnect(a, b)
            b.get_peerstore().clear_addrs(a.get_id())
            t0 = time.perf_counter()
            await b.connect(info)
            await wait_accepted(b.get_network().get_connections(a.get_id())[0].muxed_conn)
            times["connect_accepted"].append(time.perf_counter() - t0)
            await _disconnect(a, b)
        nursery.cancel_scope.cancel()
    out: dict[str, Any] = {"client": "py-libp2p" if library else "ours", "delay_ms": delay_ms, "rtt_ms": rtt * 1000}
    for name, values in times.items():
        med = statistics.median(values[1:])
        out[name] = {"median_ms": round(med * 1000, 1), "round_trips": round(med / rtt, 2)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--delay", type=float, default=25.0, help="one-way delay of the proxy, ms")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--library", action="store_true", help="py-libp2p's multistream client instead of ours")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    emit(trio.run(run, args.delay, args.runs, args.library), args.json)


if __name__ == "__main__":
    main()
