"""Private networks between an agentp2p node and go-libp2p (``libp2p.PrivateNetwork``).

The Go peer reads the key file with go-libp2p's own ``pnet.DecodeV1PSK``
(``--psk FILE``) and protects its TCP connections with go-libp2p's
p2p/net/pnet: if our nonce exchange or XSalsa20 were off by one byte,
nothing below would connect. Same key: connect in both directions, ping
both ways, gossipsub both ways. Different key, or one side without a key:
no connection, an error on the dialer's side, nobody crashes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from agentp2p.errors import DialError
from agentp2p.network.psk import encode_psk, generate_psk, write_psk_file
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until
from tests.interop.gopeer import GoPeer, GoPeerError

pytestmark = pytest.mark.interop


class PnetGoPeer(GoPeer):
    """A go-peer started with ``--psk FILE`` (None: the public network)."""

    def __init__(self, binary: Path, psk: Path | None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(binary, **kwargs)
        if psk is not None:
            self._argv += ["--psk", str(psk)]


def _key(tmp_path: Path, name: str, encoding: str = "base16") -> Path:
    path = tmp_path / f"{name}.key"
    if encoding == "base16":
        write_psk_file(path)
    else:
        path.write_bytes(encode_psk(generate_psk(), encoding))
        path.chmod(0o600)
    return path


def _cfg(psk: Path | None, dial_timeout: float = 10.0):  # type: ignore[no-untyped-def]
    return local_config(psk=psk, swim=False, dial_timeout=dial_timeout)


@contextlib.asynccontextmanager
async def pnet_pair(binary: Path, key: Path, python_dials: bool) -> AsyncIterator[tuple[Node, GoPeer]]:
    async with Node(_cfg(key)) as py:
        if python_dials:
            async with PnetGoPeer(binary, key) as go:
                assert str(await py.connect(go.addr)) == go.peer_id
                yield py, go
        else:
            # --bootstrap: go-peer dials us (and finishes identify) before "ready".
            async with PnetGoPeer(binary, key, bootstrap=[py.addrs[0]]) as go:
                await wait_until(lambda: py.is_connected(go.peer_id), what="inbound connection from Go")
                yield py, go


DIRECTIONS = [pytest.param(True, id="python-dials-go"), pytest.param(False, id="go-dials-python")]


@pytest.mark.parametrize("python_dials", DIRECTIONS)
async def test_same_key_connects_and_pings_both_ways(go_peer_binary: Path, tmp_path: Path, python_dials: bool) -> None:
    async with pnet_pair(go_peer_binary, _key(tmp_path, "net"), python_dials) as (py, go):
        for _ in range(3):
            assert 0 < await py.ping(go.peer_id) < 5.0  # seconds
            assert 0 < await go.ping(str(py.peer_id)) < 5000.0  # milliseconds
        assert str(py.peer_id) in await go.peers()
        # identify runs over the protected connection too
        assert (await py.identify(go.peer_id)).agent_version == "go-peer/interop"


async def test_same_key_base64_file_on_the_go_side(go_peer_binary: Path, tmp_path: Path) -> None:
    """One key, two encodings: go-libp2p decodes our base64 file as we do."""
    b64 = _key(tmp_path, "net", "base64")
    async with Node(_cfg(b64)) as py, PnetGoPeer(go_peer_binary, b64) as go:
        await py.connect(go.addr)
        assert 0 < await go.ping(str(py.peer_id)) < 5000.0


async def test_same_key_gossipsub_both_ways(go_peer_binary: Path, tmp_path: Path) -> None:
    topic, n = "pnet-interop", 50
    async with pnet_pair(go_peer_binary, _key(tmp_path, "net"), True) as (py, go):
        await go.subscribe(topic)
        async with py.subscribe(topic) as sub:
            await go.wait_mesh(topic, str(py.peer_id))
            await wait_until(lambda: go.peer_id in {str(p) for p in py.topic_peers(topic)}, what="Go in our topic")
            for i in range(n):
                await py.publish(topic, b"py%d" % i)
            got_go = set()
            with trio.fail_after(20):
                while len(got_go) < n:
                    msg = await go.next_message(timeout=20)
                    assert msg.from_peer == str(py.peer_id)
                    got_go.add(msg.data)
            assert got_go == {b"py%d" % i for i in range(n)}

            for i in range(n):
                await go.publish(topic, b"go%d" % i)
            got_py = set()
            with trio.fail_after(20):
                while len(got_py) < n:
                    msg = await sub.receive()
                    if str(msg.sender) == go.peer_id:
                        got_py.add(msg.data)
            assert got_py == {b"go%d" % i for i in range(n)}


async def test_wrong_key_fails_both_ways(go_peer_binary: Path, tmp_path: Path) -> None:
    ours, theirs = _key(tmp_path, "ours"), _key(tmp_path, "theirs")
    async with Node(_cfg(ours, dial_timeout=8.0)) as py, PnetGoPeer(go_peer_binary, theirs) as go:
        with trio.fail_after(15), pytest.raises(DialError, match="private network handshake failed"):
            await py.connect(go.addr)
        with pytest.raises(GoPeerError):
            await go.connect(py.addrs[0])
        assert not py.is_connected(go.peer_id)
        assert await go.peers() == []
        # Both still alive and serving their own networks.
        async with PnetGoPeer(go_peer_binary, ours) as friend:
            await py.connect(friend.addr)
            assert 0 < await friend.ping(str(py.peer_id)) < 5000.0


async def test_go_pnet_and_python_plain_cannot_connect(go_peer_binary: Path, tmp_path: Path) -> None:
    key = _key(tmp_path, "net")
    async with Node(_cfg(None, dial_timeout=5.0)) as plain, PnetGoPeer(go_peer_binary, key) as go:
        # go-libp2p waits for a 24-byte nonce that our 20-byte multistream
        # header never completes: the dial ends at its deadline.
        with trio.fail_after(15), pytest.raises(DialError):
            await plain.connect(go.addr)
        with pytest.raises(GoPeerError):
            await go.connect(plain.addrs[0])
        assert not plain.is_connected(go.peer_id)


async def test_python_pnet_and_go_plain_cannot_connect(go_peer_binary: Path, tmp_path: Path) -> None:
    key = _key(tmp_path, "net")
    async with Node(_cfg(key, dial_timeout=8.0)) as py, PnetGoPeer(go_peer_binary, None) as go:
        with trio.fail_after(15), pytest.raises(DialError, match="private network handshake failed"):
            await py.connect(go.addr)
        with pytest.raises(GoPeerError):
            await go.connect(py.addrs[0])
        assert not py.is_connected(go.peer_id)
        assert await go.peers() == []


async def test_go_peer_rejects_a_bad_key_file(go_peer_binary: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"/key/swarm/psk/1.0.0/\n/base32/\nabc\n")
    with pytest.raises(GoPeerError, match="exited before it was ready"):
        async with PnetGoPeer(go_peer_binary, bad, ready_timeout=20):
            pass
