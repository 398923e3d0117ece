"""QUIC (quic-v1) between an agentp2p node and go-libp2p (quic-go), both ways.

Our QUIC is py-libp2p's transport with our fixes (agentp2p/network/quic/);
go-peer adds go-libp2p's QUIC transport when a listen address asks for it.
Each direction: the connection is QUIC on both sides, identify and ping work
both ways, and pub/sub messages cross it both ways (a long-lived stream
each way, as gossipsub keeps them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from libp2p.peer.id import ID

from agentp2p.network.host import AGENT_VERSION as PY_AGENT_VERSION
from tests.interop.gopeer import AGENT_VERSION as GO_AGENT_VERSION
from tests.interop.test_interop_connect import DIRECTIONS, connected_pair
from tests.interop.test_interop_pubsub import go_receive, joined, receive_from

pytestmark = pytest.mark.interop

QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
TOPIC = "quic-interop"


@pytest.mark.parametrize("python_dials", DIRECTIONS)
async def test_quic_connection_identify_ping_pubsub(go_peer_binary: Path, python_dials: bool) -> None:
    async with connected_pair(go_peer_binary, python_dials, QUIC, swim=False) as (py, go):
        (conn,) = py.host.get_network().get_connections(ID.from_base58(go.peer_id))
        assert type(conn.muxed_conn).__name__ == "QUICConnection"
        # Our side of a QUIC handshake ends half a round trip before go's
        # (it still waits for our Finished), so go may add it a moment later.
        async def go_has_it() -> bool:
            return bool((await go.command("conns", str(py.peer_id)))["conns"])

        await go.wait_until(go_has_it, what="go's side of the connection")
        (theirs,) = (await go.command("conns", str(py.peer_id)))["conns"]
        assert "/quic-v1" in theirs["remote_addr"]
        assert theirs["direction"] == ("Inbound" if python_dials else "Outbound")

        assert (await py.identify(go.peer_id)).agent_version == GO_AGENT_VERSION
        assert (await go.identify(str(py.peer_id)))["agent_version"] == PY_AGENT_VERSION
        for _ in range(3):
            assert 0 < await py.ping(go.peer_id) < 5.0
            assert 0 < await go.ping(str(py.peer_id)) < 5000.0

        async with py.subscribe(TOPIC) as sub:
            await go.subscribe(TOPIC)
            await joined(py, go, TOPIC)
            await go.publish(TOPIC, b"from go")
            assert await receive_from(sub, go.peer_id, 1) == [b"from go"]
            await py.publish(TOPIC, b"from python")
            assert await go_receive(go, str(py.peer_id), 1) == [b"from python"]
