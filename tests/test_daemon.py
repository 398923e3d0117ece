"""The daemon and CLI as a user runs them: subprocesses, real sockets, signals."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import trio

from agentp2p.testing import DaemonProcess, run_cli


async def test_two_daemons_connect_and_stop_cleanly(tmp_path: Path) -> None:
    async with DaemonProcess(tmp_path, name="one") as one:
        peer_one = one.addrs[0].rsplit("/p2p/", 1)[1]
        assert one.addrs[0].startswith("/ip4/127.0.0.1/tcp/")
        async with DaemonProcess(tmp_path, "--bootstrap", one.addrs[0], name="two") as two:
            peer_two = two.addrs[0].rsplit("/p2p/", 1)[1]
            await two.wait_log_async(f"peer connected: {peer_one}", 20)
            await one.wait_log_async(f"peer connected: {peer_two}", 20)
            start = trio.current_time()
            assert await two.stop_async(signal.SIGINT, 5) == 0
            assert trio.current_time() - start < 5
        await one.wait_log_async(f"peer disconnected: {peer_two}", 20)
        assert await one.stop_async(timeout=5) == 0
    assert all(not e.get("raw") for e in one.logs), "stderr must be JSON lines with --json-logs"


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp, *args)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr


def test_bad_multiaddr(tmp_path: Path) -> None:
    _assert_one_line_error(_run(tmp_path, "daemon", "--listen", "/ip4/300.1.1.1/tcp/1"), "invalid multiaddr")
    _assert_one_line_error(_run(tmp_path, "daemon", "--bootstrap", "/ip4/127.0.0.1/tcp/1"), "/p2p/")


@contextlib.contextmanager
def _default_ports_taken() -> Iterator[None]:
    """Hold the daemon's default ports, as a user's own daemon would (if
    something already holds one, the condition holds all the same)."""
    from agentp2p.client.discovery import DEFAULT_API_LISTEN

    api_host, api_port = DEFAULT_API_LISTEN.rsplit(":", 1)
    with contextlib.ExitStack() as stack:
        for host, port in (("0.0.0.0", 4001), (api_host, int(api_port))):
            s = stack.enter_context(socket.socket())
            with contextlib.suppress(OSError):
                s.bind((host, port))
                s.listen()
        yield


def test_port_in_use(tmp_path: Path) -> None:
    # Hermetic: passes whether or not another daemon holds the default ports.
    with _default_ports_taken(), socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = _run(
            tmp_path, "daemon", "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--identity", str(tmp_path / "k"),
            "--api", "127.0.0.1:0",
        )  # fmt: skip
    _assert_one_line_error(result, "address already in use")


def test_unknown_config_key(tmp_path: Path) -> None:
    cfg = tmp_path / "agentp2p.toml"
    cfg.write_text('listen = ["/ip4/127.0.0.1/tcp/0"]\nlisten_adress = "typo"\n')
    _assert_one_line_error(_run(tmp_path, "daemon", "--config", str(cfg)), "unknown config key 'listen_adress'")


def test_corrupt_identity_is_kept(tmp_path: Path) -> None:
    key = tmp_path / "id.key"
    key.write_bytes(b"not a key")
    key.chmod(0o600)
    _assert_one_line_error(_run(tmp_path, "daemon", "--identity", str(key)), "not a libp2p private key")
    assert key.read_bytes() == b"not a key"


def test_id_creates_then_reuses(tmp_path: Path) -> None:
    first = _run(tmp_path, "id", "--identity", str(tmp_path / "k"))
    second = _run(tmp_path, "id", "--identity", str(tmp_path / "k"))
    assert first.returncode == 0 and first.stdout == second.stdout
    assert first.stdout.startswith("12D3KooW")
    # default location under $HOME/.agentp2p
    default = _run(tmp_path, "id")
    assert default.returncode == 0 and (tmp_path / ".agentp2p" / "identity.key").exists()
