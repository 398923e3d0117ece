"""agentp2p._lean_import: a node still works with QUIC/TLS/HTTP/metrics stubbed out.

Each check runs in a fresh interpreter, because this test process imported
libp2p for real long ago (and install() must refuse in that case).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from agentp2p import _lean_import

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from agentp2p import _lean_import
    assert _lean_import.install() is True
    import trio
    from agentp2p.node import Node
    from agentp2p.testing import local_config, wait_until

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    async def main():
        out = {"rss_mb": rss_mb()}
        async with Node(local_config()) as a, Node(local_config()) as b:
            await b.connect(a.addrs[0])
            out["ping_ok"] = (await b.ping(a.peer_id)) > 0
            out["agent"] = (await b.identify(a.peer_id)).agent_version
            async with a.subscribe("t") as sub, b.subscribe("t"):
                await wait_until(lambda: a.peer_id in b.topic_peers("t"))
                await b.publish("t", b"hello")
                with trio.fail_after(10):
                    msg = await sub.receive()
                out["pubsub"] = [msg.data.decode(), str(msg.sender) == str(b.peer_id)]
            await wait_until(lambda: a.dht.routing_table_size >= 1 and b.dht.routing_table_size >= 1)
            await a.dht_put("k", b"v")
            out["dht"] = (await b.dht_get("k")).decode()
        out["stubbed"] = sorted(m for m in sys.modules if getattr(sys.modules[m], "__lean_stub__", False))
        try:
            from aioquic.quic.connection import QuicConnection
            QuicConnection()
        except _lean_import.LeanImportError as exc:
            out["use_error"] = str(exc)
        print(json.dumps(out))

    trio.run(main)
    """
)


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_node_connects_publishes_and_uses_dht_with_lean_import() -> None:
    out = _run(SCRIPT)
    assert out["ping_ok"] is True
    assert out["agent"].startswith("agentp2p/")
    assert out["pubsub"] == ["hello", True]
    assert out["dht"] == "v"
    # the hook really was active: QUIC's dependency was a stub...
    assert "aioquic" in out["stubbed"] and "httpx" in out["stubbed"]
    # ...and using it fails loudly, naming the package
    assert "'aioquic'" in out["use_error"] and "stubbed out" in out["use_error"]


def test_lean_import_lowers_rss_after_importing_the_node() -> None:
    measure = (
        "import sys\n"
        "if sys.argv[1] == 'lean':\n"
        "    from agentp2p import _lean_import; assert _lean_import.install()\n"
        "import agentp2p.node\n"
        "print(int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20)\n"
    )
    full = float(subprocess.run([sys.executable, "-c", measure, "full"], capture_output=True, text=True, check=True).stdout)
    lean = float(subprocess.run([sys.executable, "-c", measure, "lean"], capture_output=True, text=True, check=True).stdout)
    assert lean < full - 10, (full, lean)


def test_install_refuses_once_libp2p_is_imported() -> None:
    import libp2p  # noqa: F401  (already imported by the suite; made explicit)

    if _lean_import._finder() is None:
        assert _lean_import.install() is False
        assert not _lean_import.is_stub("aioquic")


def test_mdns_keeps_zeroconf_real() -> None:
    code = (
        "from agentp2p import _lean_import as L\n"
        "assert L.install(mdns=True)\n"
        "import libp2p, zeroconf, sys\n"
        "assert not L.is_stub('zeroconf') and L.is_stub('aioquic')\n"
        "print('{}')\n"
    )
    _run(code)


def test_hollow_packages_skip_their_init_but_load_what_is_imported() -> None:
    """py-libp2p's ``libp2p.relay`` init loads circuit relay, DCUtR, and through
    them the library's Kademlia and bitswap; ``basic_host`` needs one function
    from ``relay.circuit_v2.nat``. Hollow, only that module loads — and a name
    the skipped init would have defined fails at import time, not later."""
    code = textwrap.dedent(
        """
        import json, sys
        from agentp2p import _lean_import as L
        assert L.install()
        import agentp2p.node
        from libp2p.relay.circuit_v2.nat import is_private_ip
        out = {
            "hollow": getattr(sys.modules["libp2p.relay"], "__lean_hollow__", False),
            "loaded": sorted(m for m in ("libp2p.relay.circuit_v2.transport", "libp2p.kad_dht", "libp2p.bitswap")
                             if m in sys.modules),
            "nat": [is_private_ip("10.1.2.3"), is_private_ip("8.8.8.8")],
        }
        try:
            from libp2p.relay import CircuitV2Transport
        except ImportError as exc:
            out["import_error"] = str(exc)
        print(json.dumps(out))
        """
    )
    out = _run(code)
    assert out["hollow"] is True
    assert out["loaded"] == []
    assert out["nat"] == [True, False]
    assert "CircuitV2Transport" in out["import_error"]
    # The library on its own (no hook) loads all of it: what the hollow package saves.
    plain = _run(
        "import json, sys, libp2p.host.basic_host\n"
        "print(json.dumps(sorted(m for m in ('libp2p.relay.circuit_v2.transport', 'libp2p.kad_dht') if m in sys.modules)))"
    )
    assert plain == ["libp2p.kad_dht", "libp2p.relay.circuit_v2.transport"]
