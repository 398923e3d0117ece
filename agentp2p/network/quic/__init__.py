"""QUIC (``/udp/N/quic-v1``), on py-libp2p's transport with our fixes.

Off unless a listen address asks for it: py-libp2p's QUIC is ~8× slower
than our TCP here and imports aioquic (docs/reachability.md, "QUIC"), so a
node without a QUIC listen address never imports it. With one,
:func:`install` makes the process's py-libp2p QUIC:

* **lossless** — :mod:`.stream` buffers what QUIC delivers and reads without
  a race; :mod:`.credit` grants flow-control credit for bytes *read*, so a
  slow reader holds the sender back and one connection holds at most its
  window;
* **exclusive and bounded** — :mod:`.listener`: a UDP port another process
  holds is an error, pending handshakes are capped (oldest evicted), short
  or undecryptable Initials make no state, new handshakes are rate-limited
  per source IP and in all, only connection IDs we issued are registered
  and retired ones are forgotten, and stream data that arrives with a handshake's last flight
  reaches the connection;
* **closed for good** — :mod:`.closing`: a close that a caller's deadline
  interrupts still takes the connection out of the swarm;

and :func:`transport_config` sets QUIC v1 only (go-libp2p dropped draft-29),
the windows and the per-connection stream cap. The inbound gate
(:mod:`agentp2p.network.inbound`) applies the per-IP, ban and connection
limits to QUIC connections as to TCP ones.
"""

from __future__ import annotations

import logging
from typing import Any

from multiaddr import Multiaddr

_INSTALLED = "_agentp2p_quic"
#: Per-stream and per-connection receive windows (bytes a peer may send
#: beyond what our reader has taken).
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 3 << 19  # 1.5 MiB


def is_quic(addr: Multiaddr) -> bool:
    """A ``/udp/N/quic-v1`` address."""
    return "quic-v1" in [p.name for p in addr.protocols()]


#: py-libp2p's own functions that :func:`install` replaced (tests show their behaviour).
LIBRARY: dict[str, Any] = {}


def install() -> None:
    """Put our stream, credit and listener socket into py-libp2p's QUIC
    (idempotent, process-wide, as :func:`agentp2p.network.listen.install`)."""
    from aioquic.quic.connection import QuicConnection
    from libp2p.transport.quic import connection, listener, transport

    if getattr(connection, _INSTALLED, False):
        return
    from agentp2p.network.quic.credit import credited
    from agentp2p.network.quic.listener import (
        CountedDatagrams,
        bounded_handshakes,
        create_exclusive_udp_socket,
        forget_retired_connection_ids,
        keep_early_stream_data,
        only_issued_connection_ids,
    )
    from agentp2p.network.quic.closing import bounded_close, bounded_termination
    from libp2p.transport.quic.connection_id_registry import ConnectionIDRegistry
    from agentp2p.network.quic.stream import LosslessQUICStream

    LIBRARY.update(
        create_socket=listener.QUICListener._create_socket,
        handle_new_connection=listener.QUICListener._handle_new_connection,
        process_quic_events=listener.QUICListener._process_quic_events,
        register_connection_id=ConnectionIDRegistry.register_new_connection_id_for_existing_conn,
        close=connection.QUICConnection.close,
        connection_id_retired=connection.QUICConnection._handle_connection_id_retired,
        connection_terminated=connection.QUICConnection._handle_connection_terminated,
    )
    connection.QUICStream = LosslessQUICStream  # type: ignore[misc]
    transport.NativeQUICConnection = credited(QuicConnection)  # type: ignore[misc]
    server = type("CountedServerQuicConnection", (CountedDatagrams, listener.ServerQuicConnection), {})
    listener.ServerQuicConnection = credited(server)  # type: ignore[misc]
    listener.QUICListener._create_socket = create_exclusive_udp_socket  # type: ignore[method-assign]
    listener.QUICListener._handle_new_connection = bounded_handshakes(  # type: ignore[method-assign]
        LIBRARY["handle_new_connection"]
    )
    listener.QUICListener._process_quic_events = keep_early_stream_data(  # type: ignore[method-assign]
        LIBRARY["process_quic_events"]
    )
    ConnectionIDRegistry.register_new_connection_id_for_existing_conn = (  # type: ignore[method-assign]
        only_issued_connection_ids(LIBRARY["register_connection_id"])
    )
    connection.QUICConnection.close = bounded_close(LIBRARY["close"])  # type: ignore[method-assign]
    connection.QUICConnection._handle_connection_terminated = bounded_termination(  # type: ignore[method-assign]
        LIBRARY["connection_terminated"]
    )
    connection.QUICConnection._handle_connection_id_retired = (  # type: ignore[method-assign]
        forget_retired_connection_ids(LIBRARY["connection_id_retired"])
    )
    # aioquic logs every new connection at INFO: one line per flooded Initial.
    logging.getLogger("quic").setLevel(logging.WARNING)
    setattr(connection, _INSTALLED, True)


def transport_config(
    max_connections: int,
    max_streams_per_connection: int,
    dial_timeout: float,
    max_pending_handshakes: int = 64,
    resources: Any = None,
) -> Any:
    """py-libp2p's ``QUICTransportConfig`` with our limits; ``resources``: the
    node's resource manager, which QUIC stream buffers reserve from."""
    from libp2p.transport.quic.config import QUICTransportConfig

    from agentp2p.network.quic.listener import PENDING_LIMIT
    from agentp2p.network.quic.stream import RESOURCES

    config = QUICTransportConfig(
        enable_draft29=False,
        enable_v1=True,
        max_connections=max_connections,
        max_connections_per_peer=1,
        connection_timeout=dial_timeout,
        CONNECTION_HANDSHAKE_TIMEOUT=dial_timeout,
        MAX_INCOMING_STREAMS=max_streams_per_connection,
        STREAM_FLOW_CONTROL_WINDOW=STREAM_WINDOW,
        CONNECTION_FLOW_CONTROL_WINDOW=CONNECTION_WINDOW,
        # Our stream never drops; this only has to pass the config's checks.
        MAX_STREAM_RECEIVE_BUFFER=CONNECTION_WINDOW,
        STREAM_RECEIVE_BUFFER_HIGH_WATERMARK=STREAM_WINDOW // 2,
        # How long close() lets streams end gracefully (py-libp2p: 10 s).
        CONNECTION_CLOSE_TIMEOUT=1,
    )
    setattr(config, PENDING_LIMIT, max_pending_handshakes)
    setattr(config, RESOURCES, resources)
    return config
