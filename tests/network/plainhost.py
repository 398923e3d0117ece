"""A bare py-libp2p host (Noise + the library's own Yamux), for tests that
show the library's behaviour next to ours."""

from __future__ import annotations

from typing import Any

from multiaddr import Multiaddr

from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from agentp2p.network.host import security_options
from agentp2p.network.identity import Identity

LOOPBACK = Multiaddr("/ip4/127.0.0.1/tcp/0")


def plain_host(**kwargs: Any) -> Any:
    ident = Identity.generate()
    # one connection per peer: no 250 ms happy-eyeballs wait per dial
    kwargs.setdefault("connection_config", ConnectionConfig(max_connections_per_peer=1))
    return new_host(
        key_pair=ident.key_pair,
        sec_opt=security_options(ident),  # type: ignore[arg-type]
        muxer_opt={TProtocol(YAMUX_ID): Yamux},  # type: ignore[dict-item]
        listen_addrs=[LOOPBACK],
        **kwargs,
    )
