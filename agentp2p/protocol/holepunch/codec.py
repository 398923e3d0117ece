"""DCUtR messages: bytes to checked protobuf and back, and the addresses they carry.

A ``HolePunch`` message is small (go-libp2p and the spec refuse more than
4 KiB). What a peer says about its addresses is only a hint: we keep the
ones we could punch to — TCP over IPv4 or IPv6, no relay, no DNS — and at
most :data:`MAX_ADDRS` of them (each dialed once a round, network/punch.py),
so a peer cannot make us dial a list.
"""

from __future__ import annotations

import ipaddress

from multiaddr import Multiaddr

from agentp2p.network.addresses import is_private_ip
from agentp2p.network.framing import parse_bounded
from agentp2p.pb import holepunch_pb2 as pb

__all__ = ["CONNECT", "CodecError", "MAX_ADDRS", "MAX_MESSAGE_BYTES", "PROTOCOL", "SYNC", "connect", "decode",
           "punchable", "sync"]

PROTOCOL = "/libp2p/dcutr"
MAX_MESSAGE_BYTES = 4096
#: Addresses of a peer we try at once (each one is a socket and a SYN).
MAX_ADDRS = 8

CONNECT = pb.HolePunch.CONNECT
SYNC = pb.HolePunch.SYNC


class CodecError(ValueError):
    """Not a DCUtR message we can act on."""


def decode(data: bytes) -> pb.HolePunch:
    return parse_bounded(pb.HolePunch(), data, MAX_MESSAGE_BYTES, CodecError, "DCUtR message")


def connect(addrs: list[Multiaddr]) -> bytes:
    return pb.HolePunch(type=CONNECT, ObsAddrs=[a.to_bytes() for a in addrs]).SerializeToString()


def sync() -> bytes:
    return pb.HolePunch(type=SYNC).SerializeToString()


def punchable(raw: list[bytes], *, allow_private: bool) -> list[tuple[str, int]]:
    """The ``(ip, port)`` pairs among a peer's ``ObsAddrs`` worth a TCP punch
    (the first :data:`MAX_ADDRS`, no duplicates); unreadable ones are skipped.

    Private ones (:func:`~agentp2p.network.addresses.is_private_ip`: RFC 1918,
    loopback, link-local...) only with ``allow_private`` (a LAN, the tests).
    """
    out: list[tuple[str, int]] = []
    for item in raw:
        if len(out) >= MAX_ADDRS:
            break
        pair = tcp_endpoint(item)
        if pair is None or pair in out:
            continue
        if is_private_ip(pair[0]) and not allow_private:
            continue
        out.append(pair)
    return out


def tcp_endpoint(item: bytes | Multiaddr) -> tuple[str, int] | None:
    """``/ip4|ip6/X/tcp/N`` (nothing after but ``/p2p/<id>``) as ``(X, N)``; else None."""
    try:
        ma = item if isinstance(item, Multiaddr) else Multiaddr(item)
        names = [p.name for p in ma.protocols()]
        if len(names) < 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp" or any(
                n != "p2p" for n in names[2:]):
            return None
        ip = ma.value_for_protocol(names[0])
        port = int(ma.value_for_protocol("tcp"))
        ipaddress.ip_address(ip)
    except Exception:  # noqa: BLE001 — a peer's bytes
        return None
    if not 0 < port < 65536:
        return None
    return ip, port

