"""Memory, idle CPU and idle bandwidth of agentp2p nodes.

* ``import``: RSS of a fresh interpreter after importing nothing, ``trio``,
  ``libp2p``, ``agentp2p.node``, and ``agentp2p.node`` behind
  :mod:`agentp2p._lean_import` (which stubs the QUIC/TLS/HTTP/metrics/mDNS
  packages py-libp2p imports eagerly but a TCP+Noise node never uses).
* ``daemon``: RSS (and USS, the memory only this process holds) of one
  ``agentp2p daemon`` after it settles, plain and lean.
* ``nodes``: RSS of one process running N connected nodes (N = 1, 10, 50),
  and the MB each extra node adds.
* ``breakdown``: where an idle daemon's memory goes, package by package:
  one fresh interpreter behind the lean import, as the daemon runs, imports
  the daemon's dependencies in dependency order (each step's RSS growth and
  module count is what that step added over the ones before it), then the
  daemon itself, settled: RSS, USS and PSS.
* ``idle``: two daemons, B bootstrapped from A, left alone for ``--window``
  seconds: CPU % of each (psutil ``cpu_times`` delta / window; 100 % = one
  core) and the bytes on their TCP connection. The bytes come from the
  kernel's per-socket counters (``ss -ti`` ``bytes_sent``/``bytes_received``
  on A's end of the connection: exact payload bytes, that connection only).
  Machine-wide interface counters would count every other process's
  loopback traffic, and ``/proc/<pid>/io`` ``rchar``/``wchar`` are no
  bound at all: they count read()/write() but not the send()/recv() calls
  trio uses on sockets (we measured 0 there while the socket carried data).

* ``quic``: what QUIC costs a daemon: RSS (USS) of a settled daemon listening
  on TCP only and on TCP + ``/udp/0/quic-v1`` (aioquic then stays real under
  the lean import), and the MB each of ``--clients`` idle client connections
  adds over TCP and over QUIC (clients are nodes in this process).

    .venv/bin/python benchmarks/resources.py [--window 30] [--settle 5] [--only import,daemon,nodes,idle,quic] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import trio

from benchmarks.common import PYTHON, emit, tcp_bytes, temp_daemon

PARTS = ("import", "daemon", "breakdown", "nodes", "idle", "quic")
LEAN = "from agentp2p import _lean_import; assert _lean_import.install()\n"

_RSS = (
    "def _rss():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmRSS:'):\n"
    "            return int(line.split()[1]) / 1024\n"
)


def _run_py(code: str) -> dict[str, Any]:
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_cost() -> dict[str, Any]:
    cases = {
        "bare_python": "",
        "trio": "import trio\n",
        "libp2p": "import libp2p\n",
        "agentp2p.node": "import agentp2p.node\n",
        "agentp2p.node_lean": LEAN + "import agentp2p.node\n",
    }
    out = {}
    for name, body in cases.items():
        code = (
            "import json, sys, time\n" + _RSS + "t = time.perf_counter()\n" + body
            + "print(json.dumps({'rss_mb': round(_rss(), 1), 'modules': len(sys.modules), 'seconds': round(time.perf_counter() - t, 2)}))\n"
        )
        out[name] = _run_py(code)
    return out


def _mem(pid: int) -> dict[str, float]:
    p = psutil.Process(pid)
    full = p.memory_full_info()
    return {
        "rss_mb": round(full.rss / 2**20, 1),
        "uss_mb": round(full.uss / 2**20, 1),
        "pss_mb": round(full.pss / 2**20, 1),
    }


# The daemon's imports in dependency order: each step is charged what it adds
# over the steps before it (a package shared by two steps goes to the first).
BREAKDOWN_STEPS: tuple[tuple[str, str], ...] = (
    ("trio (and the stdlib it pulls: ssl, socket, selectors)", "import trio"),
    ("cryptography (Ed25519, X25519, ChaCha20, hashes)",
     "import cryptography.hazmat.primitives.asymmetric.ed25519, cryptography.hazmat.primitives.ciphers.aead"),
    ("PyNaCl", "import nacl.bindings, nacl.signing"),
    ("protobuf", "import google.protobuf.message"),
    ("multiaddr and dnspython (for /dns addresses)", "import multiaddr, multiaddr.resolvers"),
    ("py-libp2p's other key types (pycryptodome, coincurve, fastecdsa)",
     "import Crypto.PublicKey.RSA, Crypto.Signature.pkcs1_15, Crypto.Hash.SHA256, coincurve, fastecdsa.curve"),
    ("py-libp2p: the host (swarm, TCP, Noise, Yamux, identify, ping)", "import libp2p"),
    ("agentp2p: the node (our protocols, services, assembly)", "import agentp2p.node"),
    ("the control API (hypercorn, starlette, our routes)", "import agentp2p.application.api.server"),
    ("the daemon's CLI and logging", "import agentp2p.cli, agentp2p.log"),
)


def breakdown() -> dict[str, Any]:
    code = (
        "import json, sys\n" + _RSS + LEAN
        + "steps = []\nprev = (_rss(), len(sys.modules))\n"
        + "steps.append({'what': 'python (+ the lean-import hook)', 'rss_mb': round(prev[0], 1), 'modules': prev[1]})\n"
        + "".join(
            f"{stmt}\n"
            f"now = (_rss(), len(sys.modules))\n"
            f"steps.append({{'what': {what!r}, 'rss_mb': round(now[0] - prev[0], 1), 'modules': now[1] - prev[1]}})\n"
            "prev = now\n"
            for what, stmt in BREAKDOWN_STEPS
        )
        + "print(json.dumps({'steps': steps, 'total_mb': round(prev[0], 1), 'modules': prev[1]}))\n"
    )
    return _run_py(code)


async def settled_daemon(settle: float) -> dict[str, Any]:
    async with temp_daemon("rss") as d:
        await trio.sleep(settle)
        return _mem(d.pid)


async def daemon_rss(settle: float) -> dict[str, Any]:
    out = {}
    # The daemon skips the unused imports by default; --full-import is "plain".
    for name, extra in (("plain", ("--full-import",)), ("lean", ())):
        async with temp_daemon("rss", *extra) as d:
            await trio.sleep(settle)
            out[name] = _mem(d.pid)
    return out


NODES_CODE = (
    "import json, sys, trio\n{lean}" + _RSS
    + "from agentp2p.testing import network\n"
    "async def main():\n"
    "    async with network({n}) as nodes:\n"
    "        await trio.sleep({settle})\n"
    "        print(json.dumps({{'rss_mb': round(_rss(), 1), 'connections': sum(len(x.peers()) for x in nodes)}}))\n"
    "trio.run(main)\n"
)


def nodes_rss(settle: float, sizes: tuple[int, ...] = (1, 10, 50)) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, lean in (("plain", ""), ("lean", LEAN)):
        per = {n: _run_py(NODES_CODE.format(lean=lean, n=n, settle=settle)) for n in sizes}
        lo, hi = min(sizes), max(sizes)
        out[label] = {
            "rss_mb": {n: v["rss_mb"] for n, v in per.items()},
            "mb_per_extra_node": round((per[hi]["rss_mb"] - per[lo]["rss_mb"]) / (hi - lo), 2),
        }
    return out


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


async def idle(window: float, settle: float) -> dict[str, Any]:
    async with temp_daemon("a") as a:
        async with temp_daemon("b", "--bootstrap", a.addrs[0]) as b:
            await b.wait_log_async("peer connected")
            await trio.sleep(settle)
            pids = {"a": a.pid, "b": b.pid}
            cpu0 = {k: _cpu(p) for k, p in pids.items()}
            net0 = tcp_bytes(a.port)
            t0 = time.monotonic()
            await trio.sleep(window)
            elapsed = time.monotonic() - t0
            cpu1 = {k: _cpu(p) for k, p in pids.items()}
            net1 = tcp_bytes(a.port)
            mem = {k: _mem(p) for k, p in pids.items()}
    tcp = (net1["sent"] - net0["sent"]) + (net1["received"] - net0["received"])
    return {
        "window_s": round(elapsed, 1),
        "cpu_pct": {k: round(100 * (cpu1[k] - cpu0[k]) / elapsed, 2) for k in pids},
        "tcp_bytes_per_s": round(tcp / elapsed, 1),
        "tcp_sockets": net1["sockets"],
        "mem_after": mem,
    }


QUIC_LISTEN = "/ip4/127.0.0.1/udp/0/quic-v1"


async def quic_cost(settle: float, clients: int) -> dict[str, Any]:
    from agentp2p.node import Node
    from agentp2p.testing import local_config, wait_until

    out: dict[str, Any] = {}
    for label, flags, transport in (("tcp", (), "/tcp/"), ("tcp+quic", ("--listen", QUIC_LISTEN), "/quic-v1/")):
        async with temp_daemon("q", *flags) as d:
            await trio.sleep(settle)
            idle_mem = _mem(d.pid)
            addr = next(a for a in d.addrs if transport in a)
            async with contextlib.AsyncExitStack() as stack:
                nodes = [
                    await stack.enter_async_context(Node(local_config(listen=[QUIC_LISTEN if "quic" in transport else "/ip4/127.0.0.1/tcp/0"], swim=False)))
                    for _ in range(clients)
                ]
                for node in nodes:
                    await node.connect(addr)
                await wait_until(lambda: all(n.is_connected(d.peer_id) for n in nodes), timeout=60, what="clients")
                await trio.sleep(settle)
                loaded = _mem(d.pid)
            out[label] = {
                "idle": idle_mem, f"with_{clients}_clients": loaded,
                "mb_per_connection": round((loaded["uss_mb"] - idle_mem["uss_mb"]) / clients, 3),
            }
    return out


async def _async_parts(parts: list[str], window: float, settle: float, clients: int = 40) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "quic" in parts:
        out["quic"] = await quic_cost(settle, clients)
    if "daemon" in parts:
        out["daemon"] = await daemon_rss(settle)
    if "breakdown" in parts:
        out["breakdown"] = {**breakdown(), "daemon": await settled_daemon(settle)}
    if "idle" in parts:
        out["idle"] = await idle(window, settle)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=float, default=30.0, help="idle measurement window in seconds (default 30)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds to let a node settle before measuring (default 5)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--clients", type=int, default=40, help="client connections in the quic part (default 40)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    parts = [x for x in args.only.split(",") if x]
    result: dict[str, Any] = {"benchmark": "resources"}
    if "import" in parts:
        result["import"] = import_cost()
    if "nodes" in parts:
        result["nodes"] = nodes_rss(min(args.settle, 3.0))
    result.update(trio.run(_async_parts, parts, args.window, args.settle, args.clients))
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
