"""Multiaddr parsing with errors a user can act on."""

from __future__ import annotations

import ipaddress

import base58
from multiaddr import Multiaddr

from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from agentp2p.errors import AddressError

_TRANSPORTS = ("tcp", "quic-v1")


def tcp_multiaddr(ip: str, port: int) -> Multiaddr:
    """``/ip4/<ip>/tcp/<port>`` (``/ip6/`` for an IPv6 address)."""
    return Multiaddr(f"/{'ip6' if ':' in ip else 'ip4'}/{ip}/tcp/{port}")


def parse_multiaddr(text: str) -> Multiaddr:
    """Parse ``text`` or raise :class:`AddressError` naming the bad address."""
    if not isinstance(text, str) or not text.startswith("/"):
        raise AddressError(f"invalid multiaddr {text!r}: must start with '/' (e.g. /ip4/127.0.0.1/tcp/4001)")
    try:
        return Multiaddr(text)
    except Exception as exc:
        raise AddressError(f"invalid multiaddr {text!r}: {exc}") from None


def parse_listen_addr(text: str) -> Multiaddr:
    """A listen address: IP (v4/v6) plus TCP, optionally ``/ws``, or UDP with
    ``/quic-v1`` (which turns QUIC on: docs/reachability.md); no ``/p2p``."""
    ma = parse_multiaddr(text)
    names = [p.name for p in ma.protocols()]
    if not names or names[0] not in ("ip4", "ip6"):
        raise AddressError(f"listen address {text!r} must start with /ip4 or /ip6")
    if "p2p" in names:
        raise AddressError(f"listen address {text!r} must not contain /p2p/")
    if "udp" in names:
        if names[1:] != ["udp", "quic-v1"]:
            raise AddressError(f"listen address {text!r}: UDP is for QUIC only, as /udp/<port>/quic-v1")
        return ma
    if "tcp" not in names:
        raise AddressError(f"listen address {text!r} needs a /tcp/<port> component (or /udp/<port>/quic-v1)")
    extra = set(names) - {"ip4", "ip6", "tcp", "ws"}
    if extra:
        raise AddressError(f"listen address {text!r}: unsupported protocol(s) {sorted(extra)}")
    return ma


def parse_peer_addr(text: str) -> PeerInfo:
    """A dialable address ending in ``/p2p/<peer id>`` (bootstrap entries, connect).

    A circuit, ``/…/p2p/<relay>/p2p-circuit/p2p/<peer>``, names the peer
    after the circuit; its address is the circuit up to ``/p2p-circuit``
    (the dialer reaches the peer through the relay).
    """
    if "/p2p-circuit" in text:
        head, _, tail = text.partition("/p2p-circuit")
        relay = parse_peer_addr(head)  # the relay's own address must be dialable
        if not tail.startswith("/p2p/") or tail.count("/") != 2:
            raise AddressError(f"circuit address {text!r} must end with /p2p-circuit/p2p/<peer id>")
        try:
            peer_id = ID(parse_peer_id(tail[5:]).to_bytes())
        except ValueError as exc:
            raise AddressError(f"circuit address {text!r}: {exc}") from None
        circuit = Multiaddr(f"{relay.addrs[0]}/p2p/{relay.peer_id}/p2p-circuit")
        return PeerInfo(peer_id, [circuit])
    ma = parse_multiaddr(text)
    try:
        peer_str = ma.value_for_protocol("p2p")
    except Exception:
        peer_str = None
    if not peer_str:
        raise AddressError(f"peer address {text!r} must end with /p2p/<peer id>")
    try:
        peer_id = ID.from_base58(peer_str)
    except Exception:
        raise AddressError(f"peer address {text!r}: {peer_str!r} is not a valid peer ID") from None
    transport = ma.decapsulate(Multiaddr(f"/p2p/{peer_str}"))
    names = [p.name for p in transport.protocols()]
    if not any(t in names for t in _TRANSPORTS):
        raise AddressError(f"peer address {text!r} has no /tcp or /udp/…/quic-v1 transport")
    return PeerInfo(peer_id, [transport])


def parse_peer_id(text: str) -> ID:
    """A base58 peer ID that decodes to a well-formed multihash (identity
    multihash of a key, or sha2-256); ValueError otherwise.

    py-libp2p's ``ID.from_base58`` accepts any base58 string, so a typo in a
    config file or a request would become a peer nobody can be.
    """
    if not isinstance(text, str) or not 1 <= len(text) <= 128:
        raise ValueError("a peer ID is a base58 string")
    try:
        raw = base58.b58decode(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid peer ID (not base58)") from None
    identity = len(raw) >= 2 and raw[0] == 0x00 and raw[1] == len(raw) - 2 and 0 < raw[1] <= 42
    sha256 = len(raw) == 34 and raw[0] == 0x12 and raw[1] == 0x20
    if not (identity or sha256):
        raise ValueError(f"{text!r} is not a valid peer ID")
    return ID(raw)


def to_peer_id(peer: ID | str) -> ID:
    """``peer`` as an ID; a string must be a base58 peer ID (ValueError otherwise)."""
    if isinstance(peer, ID):
        return peer
    try:
        return ID.from_base58(peer)
    except Exception:
        raise ValueError(f"{peer!r} is not a valid peer ID") from None


def with_peer_id(addr: Multiaddr, peer_id: ID) -> str:
    """The full address other nodes can bootstrap from."""
    return f"{addr}/p2p/{peer_id.to_base58()}"


_PRIVATE_V4 = [ipaddress.ip_network(n) for n in
               ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4")]
_PRIVATE_V6 = [ipaddress.ip_network(n) for n in ("::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8")]


def is_private_ip(ip: str) -> bool:
    """Loopback, RFC 1918, shared (CGNAT), link-local, multicast or unspecified.

    Not Python's ``is_private``, which also counts the documentation
    ranges (TEST-NET): those stand in for public addresses in our NAT lab.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    nets = _PRIVATE_V4 if addr.version == 4 else _PRIVATE_V6
    return any(addr in net for net in nets)
