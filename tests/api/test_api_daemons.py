"""Daemons as subprocesses, driven the way agent programs and users drive them.

Each daemon has its own home (identity, api.addr, api.token) and the API on
a free loopback port. Readiness is the daemon's log line, never a sleep.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from agentp2p.testing import CLI, DaemonProcess, cli_env, poll_until, run_cli, started_together

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def two_daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, DaemonProcess]]:
    """One pair for the module: each test uses its own topic, and starting daemons is the slow part."""
    tmp = tmp_path_factory.mktemp("pair")
    with started_together(DaemonProcess(tmp / "a"), DaemonProcess(tmp / "b")) as (a, b):
        yield a, b


def _program(name: str, a: DaemonProcess, b: DaemonProcess) -> dict:
    result = subprocess.run(
        [sys.executable, str(HERE / name), str(a.home), str(b.home)],
        capture_output=True, text=True, timeout=90, env=cli_env(a.home),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_asyncio_program_publishes_and_receives_through_two_daemons(two_daemons: tuple[DaemonProcess, DaemonProcess]) -> None:
    a, b = two_daemons
    assert _program("prog_asyncio_pubsub.py", a, b) == {"loop": "asyncio", "received": {"a": 10, "b": 10}}
    assert a.alive() and b.alive()


def test_trio_program_publishes_and_receives_through_two_daemons(two_daemons: tuple[DaemonProcess, DaemonProcess]) -> None:
    a, b = two_daemons
    assert _program("prog_trio_pubsub.py", a, b) == {"loop": "trio", "received": {"a": 10, "b": 10}}


def test_cli_subscribe_sees_what_publish_sends_through_another_daemon(two_daemons: tuple[DaemonProcess, DaemonProcess]) -> None:
    a, b = two_daemons
    connected = a.run_cli("connect", b.addrs[0])
    assert connected.returncode == 0 and b.peer_id in connected.stdout
    sub = subprocess.Popen(
        [*CLI, "subscribe", "chat", "--count", "2", *b.client_args()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(b.home),
    )  # fmt: skip
    try:
        # The subscriber says so on stderr once its daemon is subscribed.
        assert sub.stderr is not None and "subscribed to chat" in sub.stderr.readline()
        from agentp2p.client import SyncClient

        with SyncClient(home=a.home) as client:
            poll_until(lambda: b.peer_id in client.topic_peers("chat"), 20, "b's subscription seen by a")
        assert a.run_cli("publish", "chat", "hello from a").returncode == 0
        stdin_pub = a.run_cli("publish", "chat", "-", input="line two")
        assert stdin_pub.returncode == 0, stdin_pub.stderr
        out, err = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, err
    assert out.splitlines() == ["hello from a", "line two"]
    status = b.run_cli("status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["node"]["peer_id"] == b.peer_id
    peers = b.run_cli("peers")
    assert a.peer_id in peers.stdout


def test_requests_without_or_with_a_wrong_token_are_refused(two_daemons: tuple[DaemonProcess, DaemonProcess], tmp_path: Path) -> None:
    d = two_daemons[0]
    token_path = d.home / "api.token"
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    base = f"http://{d.api_addr}"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {d.token}x"}):
        r = httpx.get(f"{base}/v1/node", headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert httpx.get(f"{base}/v1/node", headers={"Authorization": f"Bearer {d.token}"}).status_code == 200
    bad = tmp_path / "bad.token"
    bad.write_text("not-the-token\n")
    refused = d.run_cli("status", "--token-file", str(bad))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "refused the API token" in refused.stderr and "Traceback" not in refused.stderr
    missing = d.run_cli("status", "--token-file", str(tmp_path / "absent"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert d.alive()


def _non_loopback_ipv4() -> list[str]:
    out = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                out.append(a.address)
    return out


def test_default_api_is_loopback_only_and_clients_say_when_it_is_gone(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path / "d", api=None).start()  # no --api: the default address
    try:
        host, port = d.api_addr.rsplit(":", 1)
        assert host == "127.0.0.1"
        listening = [
            c.laddr for c in psutil.Process(d.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)
        ]  # fmt: skip
        assert [addr.ip for addr in listening] == ["127.0.0.1"]
        for ip in _non_loopback_ipv4():
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect((ip, int(port)))
    finally:
        d.close()
    assert d.returncode == 0
    # A clean stop removes api.addr: the client says no daemon is running.
    assert not (d.home / "api.addr").exists()
    gone = d.run_cli("status")
    assert gone.returncode == 1 and "no agentp2p daemon found" in gone.stderr and "agentp2p daemon" in gone.stderr
    # A stale address (as after a crash): nobody answers there. Not the daemon's
    # own (the default port, which a test in another process may take now): a
    # port held bound by this test without listening, so a connect is refused.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        stale = d.run_cli("status", "--api", "127.0.0.1:%d" % held.getsockname()[1])
    assert stale.returncode == 1 and "no agentp2p daemon answers" in stale.stderr
    assert stale.stderr.count("\n") == 1 and "Traceback" not in stale.stderr


def test_explicit_api_address_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        home = tmp_path / "d"
        result = run_cli(home, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--identity", str(home / "identity.key"),
                         "--api", f"127.0.0.1:{port}")  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot listen for the API" in lines[0] and "address already in use" in lines[0], result.stderr


def test_api_over_a_unix_socket(tmp_path: Path) -> None:
    sock_path = tmp_path / "api.sock"
    with DaemonProcess(tmp_path / "d", api=f"unix:{sock_path}") as d:
        assert stat.S_IMODE(sock_path.stat().st_mode) & 0o077 == 0
        assert d.api_addr == f"unix:{sock_path}"
        status = d.run_cli("status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["node"]["peer_id"] == d.peer_id
    assert not sock_path.exists()


def test_cli_deny_and_allow(two_daemons: tuple[DaemonProcess, DaemonProcess]) -> None:
    """Last in this module: it cuts the shared pair apart, then joins it again."""
    a, b = two_daemons
    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    denied = a.run_cli("deny", b.peer_id)
    assert denied.returncode == 0 and f"denied {b.peer_id}" in denied.stdout
    assert a.run_cli("deny").stdout.split() == [b.peer_id]
    assert json.loads(a.run_cli("peers", "--json").stdout)["denied"] == [b.peer_id]

    refused = a.run_cli("connect", b.addrs[0])
    assert refused.returncode == 1
    assert "deny list" in refused.stderr and "HTTP 403 forbidden" in refused.stderr

    usage = a.run_cli("allow")
    assert usage.returncode == 2 and "--all" in usage.stderr
    allowed = a.run_cli("allow", b.peer_id)
    assert allowed.returncode == 0 and f"allowed {b.peer_id}" in allowed.stdout
    assert a.run_cli("connect", b.addrs[0]).returncode == 0
    assert json.loads(a.run_cli("deny", "--json").stdout) == {"denied": []}


def test_cli_allow_list_says_when_it_is_off(two_daemons: tuple[DaemonProcess, DaemonProcess]) -> None:
    a, b = two_daemons
    shown = a.run_cli("allow-list")
    assert shown.returncode == 0 and "allow_only = false" in shown.stdout
    assert json.loads(a.run_cli("allow-list", "--json").stdout) == {"allow_only": False, "allowed": []}
    refused = a.run_cli("allow-list", "add", b.peer_id)
    assert refused.returncode == 1 and "HTTP 409 conflict" in refused.stderr
    assert a.run_cli("allow-list", "add").returncode == 2
