"""Construction of the libp2p host with safe settings.

py-libp2p's ``new_host()`` defaults are unsafe or slow for us, so every host
agentp2p creates goes through :func:`build_host`, which:

* offers **Noise only**. Without ``sec_opt`` the library also accepts
  plaintext, secio and TLS; a plaintext peer would get an unauthenticated,
  unencrypted connection.
* speaks Yamux only, as our :class:`~.yamux.GuardedYamux`, which holds
  peers to their receive windows, reserves what it buffers and caps
  inbound streams per connection. mplex is not offered: it has no flow
  control at all (go-libp2p stopped offering it by default in v0.51).
* limits connections (total and per peer). ``max_connections_per_peer=1``
  also turns off the library's happy-eyeballs timer, which otherwise makes
  every dial wait a fixed 250 ms even on loopback.
* replaces the identify handler so peers see our agent version.
* guards the swarm's inbound stream entry point (see :mod:`.handlers`).
* replaces the swarm's inbound connection path (:mod:`.inbound`): per-IP
  admission, a bounded table of pending handshakes with a deadline, banned
  peers refused, and slots released when each connection closes.
* limits inbound streams per (peer, protocol) for every handler
  (:mod:`.streams`).
* opens TCP listeners without ``SO_REUSEPORT`` (:mod:`.listen`), so a port
  another process listens on is an error instead of a shared port.
* with a ``/udp/N/quic-v1`` listen address, also QUIC (:mod:`.quic`:
  lossless streams, credit for what is held, an exclusive UDP port, capped
  handshakes; the inbound gate admits its connections as it does TCP's;
  TCP still dialed first where a peer has both). Not with a pre-shared key.
* detaches py-libp2p's own resource manager, which leaks under
  cancellation; ours accounts for everything it did.
* with a pre-shared key, makes the host a member of that private network
  (:mod:`.pnet`: every connection encrypted with the key before
  multistream-select and Noise; py-libp2p's own ``psk=`` is not the spec
  and stays unset). ``LIBP2P_FORCE_PNET=1`` refuses to build a host without
  one, as in go-libp2p.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio
from multiaddr import Multiaddr

from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.identity.identify import identify as _identify
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL
from libp2p.network.config import ConnectionConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.utils.varint import encode_varint_prefixed

from agentp2p import __version__
from agentp2p.errors import ConfigError
from agentp2p.network.interfaces import expand_wildcards
from agentp2p.network.library_logs import demote_library_logs
from agentp2p.network.handlers import HandlerFailures, install_swarm_guard
from agentp2p.network.identity import Identity
from agentp2p.network.inbound import InboundGate, install_ban_gate
from agentp2p.network.buffered import install_buffered_reads
from agentp2p.network.pnet import install_pnet
from agentp2p.network.listen import install as install_exclusive_listeners
from agentp2p.network.multistream import install as install_one_round_trip_select
from agentp2p.network.resources import ResourceManager
from agentp2p.network.streams import limit_streams
from agentp2p.network.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from agentp2p.network.yamux import GuardedYamux, YamuxGuard, install_guarded_muxer

AGENT_VERSION = f"agentp2p/{__version__}"


@dataclass(frozen=True)
class HostLimits:
    """Connection limits; see docs/architecture.md for how they interact."""

    max_connections: int = 300
    max_connections_per_peer: int = 1
    dial_timeout: float = 10.0


def security_options(identity: Identity) -> dict[TProtocol, object]:
    """Noise and nothing else: plaintext, secio and TLS are never offered."""
    noise_static = new_x25519_key_pair()
    return {
        NOISE_PROTOCOL_ID: NoiseTransport(identity.key_pair, noise_privkey=noise_static.private_key)
    }


def muxer_options() -> dict[TProtocol, type]:
    """Our flow-controlled Yamux, and nothing else (mplex has no flow control)."""
    return {TProtocol(YAMUX_PROTOCOL_ID): GuardedYamux}


def advertise_extra_addrs(host: IHost, extra: Callable[[], Sequence[Multiaddr]]) -> None:
    """Advertise ``extra()`` addresses (the circuits through our relays) as the
    host's own: identify's listen addresses *and* its signed peer record. A
    receiver keeps only the record's addresses when both come (py-libp2p's
    ``update_peerstore_from_identify``), so adding them to the list alone
    was undone on arrival. Not through the library's ``addrs_factory``: its
    ``get_addrs`` cuts an address at its first ``/p2p/`` to re-append ours,
    which turns a circuit into the relay's own address.

    A wildcard bind is advertised as each local interface's address: nobody
    can dial ``0.0.0.0``, and a go-libp2p peer would drop it anyway."""
    inner = host.get_addrs
    me = f"/p2p/{host.get_id()}"

    def get_addrs() -> list[Multiaddr]:
        base = expand_wildcards(inner())
        seen = {str(a) for a in base}
        for addr in extra():
            full = f"{addr}{me}"
            if full not in seen:
                seen.add(full)
                base.append(Multiaddr(full))
        return base

    host.get_addrs = get_addrs  # type: ignore[method-assign]


def _identify_handler(host: IHost):  # type: ignore[no-untyped-def]
    """Identify, as the library answers it, but with our agent version."""

    async def handle_identify(stream) -> None:  # type: ignore[no-untyped-def]
        observed = None
        try:
            remote = stream.get_remote_address()
            observed = _identify._remote_address_to_multiaddr(remote) if remote else None
        except Exception:
            observed = None
        msg = _identify._mk_identify_protobuf(host, observed)
        msg.agent_version = AGENT_VERSION
        with trio.move_on_after(5):
            await stream.write(encode_varint_prefixed(msg.SerializeToString()))
        await stream.close()

    return handle_identify


def _disable_auto_connector(host: IHost) -> None:
    """Stop py-libp2p from dialing every peerstore address on its own.

    Its auto-connector aims at the midpoint of the watermarks (150 with any
    usable setting) and fires that many dials every 30 s at whatever the
    peerstore holds — DHT contacts, stale addresses. Which peers we connect
    to is the bootstrapper's, the DHT's and the protocols' decision.
    """

    async def no_auto_connect() -> None:
        return None

    host.get_network().auto_connector.maybe_connect = no_auto_connect  # type: ignore[method-assign]


def _ensure_dial_transports(host: IHost) -> None:
    """Dial TCP and WebSocket whatever we listen on.

    py-libp2p builds transports from the listen addresses only, so a
    TCP-only node could not dial a ``/ws`` peer (and a ws-only node no TCP
    peer).
    """
    from libp2p.transport.tcp.tcp import TCP
    from libp2p.transport.websocket.transport import WebsocketTransport

    swarm = host.get_network()
    manager = swarm.transport_manager
    have = {type(t) for t in manager.get_transports()}
    if TCP not in have:
        manager.add_transport(TCP())
    if WebsocketTransport not in have:
        manager.add_transport(WebsocketTransport(swarm.upgrader))


def _drop_library_resource_manager(host: IHost) -> None:
    """Use our resource manager only.

    ``new_host()`` attaches py-libp2p's own ``rcmgr`` to the swarm. Its
    connection count leaks a slot for every handshake or dial cancelled
    from outside (its clean-up awaits before releasing, so ``Cancelled``
    skips the release): after one silent-socket flood 938 of its 1000 slots
    stayed taken, and "graceful degradation" had cut its limits by 20%. It
    also caps established inbound connections and streams on its own
    terms. Every scope it covers is accounted in
    :class:`~agentp2p.network.resources.ResourceManager` instead.
    """
    host.get_network().set_resource_manager(None)


def _quic_options(
    listen_addrs: Sequence[Multiaddr], limits: HostLimits, resources: ResourceManager, psk: bytes | None
) -> object | None:
    """QUIC's transport settings when a listen address is ``/quic-v1``, else
    None (and aioquic is never imported)."""
    from agentp2p.network import quic  # its package imports no aioquic; install() does

    if not any(map(quic.is_quic, listen_addrs)):
        return None
    if psk is not None:
        # A private network encrypts the TCP byte stream before Noise; QUIC
        # has none to wrap (go-libp2p refuses QUIC with a PSK as well).
        raise ConfigError("QUIC cannot be used in a private network (--psk): listen on TCP only")
    quic.install()
    return quic.transport_config(
        max_connections=limits.max_connections,
        max_streams_per_connection=resources.limits.max_streams_per_connection,
        dial_timeout=limits.dial_timeout,
        max_pending_handshakes=resources.limits.max_pending_handshakes,
        resources=resources,
    )


def build_host(
    identity: Identity,
    listen_addrs: Sequence[Multiaddr],
    limits: HostLimits = HostLimits(),
    failures: HandlerFailures | None = None,
    resources: ResourceManager | None = None,
    is_banned: Callable[[object], bool] | None = None,
    on_offence: Callable[[object, str, float], None] | None = None,
    psk: bytes | None = None,
) -> IHost:
    """Create (but do not start) a hardened libp2p host.

    ``resources`` is the node's resource manager (a private one if None);
    ``is_banned`` says which peers to refuse (the node's penalty box and
    deny list: the inbound gate counts both as ``refused_banned``);
    ``on_offence(peer, reason, weight)`` hears of muxer violations;
    ``psk``: the private network's 32-byte key (None: the public network).
    """
    if psk is None and os.environ.get("LIBP2P_FORCE_PNET") == "1":
        raise ConfigError("LIBP2P_FORCE_PNET=1 but no private network key is set (--psk FILE)")
    resources = resources or ResourceManager()
    # Listeners without SO_REUSEPORT: a port in use is an error, not shared.
    install_exclusive_listeners()
    # multistream-select sends its header and first proposal in one write:
    # a round trip less per negotiation (security, muxer, every new stream).
    install_one_round_trip_select()
    # Prune above max_connections. The low watermark only matters to the
    # library's auto-connector, which we switch off below.
    conn_config = ConnectionConfig(
        max_connections=limits.max_connections,
        high_watermark=limits.max_connections,
        low_watermark=0,
        min_connections=0,
        max_connections_per_peer=limits.max_connections_per_peer,
        dial_timeout=limits.dial_timeout,
    )
    quic_opt = _quic_options(listen_addrs, limits, resources, psk)
    host = new_host(
        key_pair=identity.key_pair,
        sec_opt=security_options(identity),  # type: ignore[arg-type]
        muxer_opt=muxer_options(),  # type: ignore[arg-type]
        listen_addrs=list(listen_addrs),
        connection_config=conn_config,
        enable_quic=quic_opt is not None,
        quic_transport_opt=quic_opt,
    )
    _ensure_dial_transports(host)
    if quic_opt is not None:
        from agentp2p.network.quic.preference import prefer_tcp

        prefer_tcp(host.get_network())
    _disable_auto_connector(host)
    host.set_stream_handler(IDENTIFY_PROTOCOL, _identify_handler(host))
    install_swarm_guard(host, failures or HandlerFailures())
    _drop_library_resource_manager(host)
    install_guarded_muxer(host, YamuxGuard(resources, on_offence))
    InboundGate(host.get_network(), resources, is_banned).install()
    if is_banned is not None:
        install_ban_gate(host, is_banned)
    limit_streams(host, resources)
    # A peer's first bytes (nonce, multistream header) come within one round
    # trip; the bound is shorter than a dial's so its error is the one seen.
    install_pnet(host, psk, timeout=min(resources.limits.handshake_timeout, limits.dial_timeout / 2))
    # Below pnet and Noise: reads of the socket in bulk (buffered.py).
    install_buffered_reads(host)
    # py-libp2p's per-event WARNING/ERROR lines about peers become DEBUG (library_logs.py).
    demote_library_logs()
    return host
