"""A port in use and an identity in use are errors (issue #11: py-libp2p sets
SO_REUSEPORT, so a second daemon on the same port started and the kernel
split inbound dials between the two; both wrote the same api.addr)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from agentp2p.errors import IdentityInUseError, ListenError
from agentp2p.node import Node
from agentp2p.testing import CLI, cli_env, local_config


def _port(node: Node) -> int:
    return int(node.listen_addrs[0].value_for_protocol("tcp"))


async def test_second_node_on_a_port_in_use_fails() -> None:
    async with Node(local_config()) as a:
        port = _port(a)
        with pytest.raises(ListenError, match="address already in use"):
            async with Node(local_config(listen=[f"/ip4/127.0.0.1/tcp/{port}"])):
                pass
        # The first node still answers on its port.
        async with Node(local_config()) as b:
            await b.connect(a.addrs[0])
            assert await b.ping(a.peer_id) > 0


async def test_port_held_by_a_reuseport_socket_is_not_shared() -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ListenError, match="address already in use"):
            async with Node(local_config(listen=[f"/ip4/127.0.0.1/tcp/{port}"])):
                pass


async def test_node_listener_refuses_a_reuseport_newcomer() -> None:
    async with Node(local_config()) as a:
        with socket.socket() as newcomer:
            newcomer.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with pytest.raises(OSError):
                newcomer.bind(("127.0.0.1", _port(a)))


async def test_second_node_on_the_same_identity_file_refuses_to_start(tmp_path: Path) -> None:
    key = tmp_path / "id.key"
    async with Node(local_config(identity_path=key)):
        with pytest.raises(IdentityInUseError, match="in use by another running agentp2p node"):
            async with Node(local_config(identity_path=key)):
                pass
    # Released when the first stops.
    async with Node(local_config(identity_path=key)) as again:
        assert again.peer_id


async def test_second_daemon_same_identity_or_port_is_a_one_line_error(tmp_path: Path) -> None:
    key = tmp_path / "id.key"
    # Before the fix both daemons started and ran until killed: the deadline
    # turns that into a failure.
    with trio.fail_after(60):
        await _two_refused_daemons(tmp_path, key)


async def _two_refused_daemons(tmp_path: Path, key: Path) -> None:
    async with Node(local_config(identity_path=key)) as first:
        port = _port(first)
        same_identity = await trio.run_process(
            [*CLI, "daemon", "--identity", str(key), "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "off"],
            capture_stdout=True, capture_stderr=True, check=False, env=cli_env(tmp_path),
        )  # fmt: skip
        same_port = await trio.run_process(
            [*CLI, "daemon", "--identity", str(tmp_path / "other.key"), "--listen", f"/ip4/127.0.0.1/tcp/{port}",
             "--api", "off"],
            capture_stdout=True, capture_stderr=True, check=False, env=cli_env(tmp_path),
        )  # fmt: skip
    for result, needle in ((same_identity, "in use by another running agentp2p node"), (same_port, "address already in use")):
        stderr = result.stderr.decode()
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and len(lines) == 1 and needle in lines[0], stderr
        assert result.stdout == b""
