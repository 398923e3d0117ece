"""Connection, identify and ping between an agentp2p node and go-libp2p.

Both directions: the Python node dials the Go peer, and the Go peer dials
the Python node. Either way the connection must be Noise + Yamux (the only
stack both sides offer), and identify must show each side the other's
agent version and protocols.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libp2p.peer.id import ID
from libp2p.security.noise.io import NoiseTransportReadWriter
from libp2p.stream_muxer.yamux.yamux import Yamux

from agentp2p.network.host import AGENT_VERSION as PY_AGENT_VERSION
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until
from tests.interop.gopeer import AGENT_VERSION as GO_AGENT_VERSION
from tests.interop.gopeer import DHT_PROTOCOL, GoPeer

pytestmark = pytest.mark.interop

# What an agentp2p node serves and a Go peer must see over identify.
PY_PROTOCOLS = {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", DHT_PROTOCOL, "/meshsub/1.1.0", "/meshsub/1.0.0"}
# The subset of go-peer's protocols that we rely on.
GO_PROTOCOLS = {"/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", DHT_PROTOCOL, "/meshsub/1.1.0"}


@contextlib.asynccontextmanager
async def connected_pair(
    binary: Path, python_dials: bool, listen: str | None = None, **config: object
) -> AsyncIterator[tuple[Node, GoPeer]]:
    """A Python node and a Go peer, connected by whichever side ``python_dials``
    says; ``listen``: both listen (and dial) on that address kind only (QUIC)."""
    listens = [listen] if listen else None

    def pick(addrs: list[str]) -> str:
        kind = listen.split("/")[3] if listen else "tcp"  # tcp, or udp for QUIC
        return next(a for a in addrs if f"/{kind}/" in a)

    async with Node(local_config(**({"listen": listens} if listens else {}), **config)) as py:
        if python_dials:
            async with GoPeer(binary, listen=listens) as go:
                assert str(await py.connect(pick(go.addrs))) == go.peer_id
                yield py, go
        else:
            # --bootstrap makes go-peer dial (and finish identify) before "ready".
            async with GoPeer(binary, listen=listens, bootstrap=[pick(py.addrs)]) as go:
                await wait_until(lambda: py.is_connected(go.peer_id), what="inbound connection from Go")
                yield py, go


DIRECTIONS = [pytest.param(True, id="python-dials-go"), pytest.param(False, id="go-dials-python")]


@pytest.mark.parametrize("python_dials", DIRECTIONS)
async def test_noise_yamux_connection(go_peer_binary: Path, python_dials: bool) -> None:
    async with connected_pair(go_peer_binary, python_dials) as (py, go):
        conns = py.host.get_network().get_connections(ID.from_base58(go.peer_id))
        assert len(conns) == 1
        muxed = conns[0].muxed_conn
        assert isinstance(muxed, Yamux)
        assert isinstance(muxed.secured_conn.conn, NoiseTransportReadWriter)
        assert muxed.secured_conn.is_initiator is python_dials
        # The Noise handshake authenticated the key behind each peer ID.
        assert str(muxed.secured_conn.get_remote_peer()) == go.peer_id
        assert str(py.peer_id) in await go.peers()


@pytest.mark.parametrize("python_dials", DIRECTIONS)
async def test_identify_both_ways(go_peer_binary: Path, python_dials: bool) -> None:
    async with connected_pair(go_peer_binary, python_dials) as (py, go):
        theirs = await py.identify(go.peer_id)
        assert theirs.agent_version == GO_AGENT_VERSION
        assert GO_PROTOCOLS <= set(theirs.protocols)
        assert any(a in go.addr for a in theirs.listen_addrs)

        ours = await go.identify(str(py.peer_id))
        assert ours["agent_version"] == PY_AGENT_VERSION == "agentp2p/0.1.0"
        assert PY_PROTOCOLS <= set(ours["protocols"])
        assert ours["protocol_version"] == "ipfs/0.1.0"
        assert any(a in py.addrs[0] for a in ours["addrs"])


@pytest.mark.parametrize("python_dials", DIRECTIONS)
async def test_ping_both_ways(go_peer_binary: Path, python_dials: bool) -> None:
    async with connected_pair(go_peer_binary, python_dials) as (py, go):
        for _ in range(3):
            assert 0 < await py.ping(go.peer_id) < 5.0  # seconds
            assert 0 < await go.ping(str(py.peer_id)) < 5000.0  # milliseconds
        # Still the one connection: pings reuse it rather than redialling.
        assert len(py.host.get_network().get_connections(ID.from_base58(go.peer_id))) == 1
