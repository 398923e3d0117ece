"""The NAT lab itself: what the reachability tests rely on is really there.

A NATed host reaches the internet and is seen there as its router's
address; nothing from outside reaches it; a symmetric NAT gives every
connection its own outside port and a cone NAT keeps the host's port.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.reachability.natlab import NatLab, available

_WHY = available()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

# Listens on PORT, accepts COUNT connections, prints each peer's "ip:port".
_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    c, addr = s.accept(); print(f"{addr[0]}:{addr[1]}", flush=True); c.close()
"""

# Connects to IP:PORT from a fixed local port (or any); prints "ok" or the error.
_CLIENT = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if len(sys.argv) > 3: s.bind(("0.0.0.0", int(sys.argv[3])))
s.settimeout(float(sys.argv[4]) if len(sys.argv) > 4 else 3)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("ok")
except OSError as e:
    print(type(e).__name__)
"""


def _serve(lab: NatLab, host: str, port: int, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(lab.exec_args(host, sys.executable, "-c", _SERVER, str(port), str(count)),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _connect(lab: NatLab, host: str, ip: str, port: int, *extra: str) -> str:
    out = lab.run(host, sys.executable, "-c", _CLIENT, ip, str(port), *extra, timeout=20)
    return out.stdout.strip()


def test_natted_host_reaches_out_and_is_seen_as_its_router() -> None:
    with NatLab() as lab:
        pub = lab.add_public("pub")
        priv = lab.add_natted("priv", "cone")
        server = _serve(lab, "pub", 4001, 1)
        try:
            assert _connect(lab, "priv", pub.ip, 4001, "45678") == "ok"
            seen = server.stdout.readline().strip()  # type: ignore[union-attr]
        finally:
            server.kill()
            server.wait()
        assert seen == f"{priv.public_ip}:45678", "a cone NAT keeps the port and shows the router's address"
        assert priv.public_ip != priv.ip


def test_nothing_from_outside_reaches_a_natted_host() -> None:
    with NatLab() as lab:
        lab.add_public("pub")
        priv = lab.add_natted("priv", "cone")
        server = _serve(lab, "priv", 4001, 1)
        try:
            # Neither its inside address (no route) nor its router's (no mapping) answers.
            assert _connect(lab, "pub", priv.public_ip, 4001, "0", "1.5") != "ok"
            assert _connect(lab, "pub", priv.ip, 4001, "0", "1.5") != "ok"
            # ... while the host itself is listening.
            assert _connect(lab, "priv", "127.0.0.1", 4001) == "ok"
        finally:
            server.kill()
            server.wait()


def test_symmetric_nat_maps_each_connection_to_its_own_port() -> None:
    with NatLab() as lab:
        a = lab.add_public("a")
        lab.add_natted("priv", "symmetric")
        server = _serve(lab, "a", 4001, 2)
        try:
            seen = []
            for _ in range(2):
                assert _connect(lab, "priv", a.ip, 4001, "45678") == "ok"
                seen.append(server.stdout.readline().strip())  # type: ignore[union-attr]
        finally:
            server.kill()
            server.wait()
        ports = {s.split(":")[1] for s in seen}
        assert "45678" not in ports, json.dumps(seen)


def test_a_lab_leaves_no_namespace_behind() -> None:
    with NatLab() as lab:
        lab.add_natted("priv", "cone")
        prefix = lab.prefix
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed
