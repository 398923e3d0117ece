"""Bounded encode/decode of Kademlia RPC messages (proto/kad_dht.proto).

decode_message() returns a checked :class:`Message` or raises
:class:`CodecError` — one exception type, whatever the bytes — so a hostile
peer can make us drop its message and count it, never crash us. The size cap
is checked *before* parsing (parsing is where the memory goes), and the count
caps right after, before anything iterates over the peers, so one response
cannot carry 10,000 "closer peers" into the core. The adapter reads the
unsigned-varint length prefix itself and should refuse a length over
``Limits.max_message_bytes`` without reading the body.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from google.protobuf.message import DecodeError

from agentp2p.pb import kad_dht_pb2 as pb


class CodecError(ValueError):
    """A message that is undecodable, oversized, or breaks one of :class:`Limits`."""


class MessageType(enum.IntEnum):
    PUT_VALUE = 0
    GET_VALUE = 1
    ADD_PROVIDER = 2
    GET_PROVIDERS = 3
    FIND_NODE = 4
    PING = 5


class ConnectionType(enum.IntEnum):
    NOT_CONNECTED = 0
    CONNECTED = 1
    CAN_CONNECT = 2
    CANNOT_CONNECT = 3


@dataclass(frozen=True, slots=True)
class Peer:
    id: bytes
    addrs: tuple[bytes, ...] = ()
    connection: ConnectionType = ConnectionType.NOT_CONNECTED


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: bytes
    time_received: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    key: bytes = b""
    record: Record | None = None
    closer_peers: tuple[Peer, ...] = field(default=())
    provider_peers: tuple[Peer, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-message bounds. An honest peer sends k = 20 closer peers with a
    handful of addresses each; the provider cap leaves room for popular keys;
    the size cap fits the largest value plus a full peer list."""

    max_message_bytes: int = 128 * 1024
    max_key_bytes: int = 512
    max_value_bytes: int = 64 * 1024
    max_closer_peers: int = 64
    max_provider_peers: int = 256
    max_addrs_per_peer: int = 64
    max_peer_id_bytes: int = 128
    max_addr_bytes: int = 512
    max_time_received_chars: int = 64


DEFAULT_LIMITS: Final = Limits()


# ---------------------------------------------------------------- encode


def _peer_pb(out: pb.Message.Peer, p: Peer) -> None:
    out.id = p.id
    out.addrs.extend(p.addrs)
    out.connection = int(p.connection)


def encode_message(msg: Message) -> bytes:
    """Serialise (without the length prefix)."""
    m = pb.Message(type=int(msg.type), key=msg.key)
    if msg.record is not None:
        m.record.key = msg.record.key
        m.record.value = msg.record.value
        m.record.timeReceived = msg.record.time_received
    for p in msg.closer_peers:
        _peer_pb(m.closerPeers.add(), p)
    for p in msg.provider_peers:
        _peer_pb(m.providerPeers.add(), p)
    return m.SerializeToString()


def _varint_len(n: int) -> int:
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


def _ld(n: int) -> int:
    """A length-delimited field of ``n`` bytes (every tag here is one byte: fields < 16)."""
    return n + 2 if n < 0x80 else 1 + _varint_len(n) + n


def _peer_size(p: Peer) -> int:
    n = len(p.id)
    n = (n + 2 if n < 0x80 else _ld(n)) if n else 0
    for a in p.addrs:
        la = len(a)
        n += la + 2 if la < 0x80 else _ld(la)
    return n + 2 if p.connection else n


def encoded_size(msg: Message) -> int:
    """``len(encode_message(msg))``, computed without encoding: the simulator
    (simnet.py, ``wire="size"``) counts the bytes of every message it hands
    over as an object. Pure arithmetic on protobuf's rules (proto3: default
    scalars are not written; a set ``record`` is, even when empty)."""
    n = (1 + _varint_len(int(msg.type))) if msg.type else 0
    if msg.key:
        n += _ld(len(msg.key))
    r = msg.record
    if r is not None:
        rn = (_ld(len(r.key)) if r.key else 0) + (_ld(len(r.value)) if r.value else 0)
        if r.time_received:
            rn += _ld(len(r.time_received.encode()))
        n += _ld(rn)
    for peers in (msg.closer_peers, msg.provider_peers):
        for p in peers:
            ps = _peer_size(p)
            n += ps + 2 if ps < 0x80 else _ld(ps)
    return n


# ---------------------------------------------------------------- decode


def _bounded(raw: bytes, cap: int, what: str) -> bytes:
    if len(raw) > cap:
        raise CodecError(f"{what} of {len(raw)} bytes exceeds {cap}")
    return bytes(raw)


def _peers(raw: object, cap: int, what: str, lim: Limits) -> tuple[Peer, ...]:
    peers = list(raw)  # type: ignore[call-overload]
    if len(peers) > cap:
        raise CodecError(f"{len(peers)} {what} exceed {cap}")
    out = []
    for p in peers:
        if not p.id:
            raise CodecError(f"{what}: empty peer id")
        if len(p.addrs) > lim.max_addrs_per_peer:
            raise CodecError(f"{what}: {len(p.addrs)} addresses exceed {lim.max_addrs_per_peer}")
        try:
            conn = ConnectionType(p.connection)
        except ValueError:
            conn = ConnectionType.NOT_CONNECTED  # an open proto3 enum: unknown means no information
        out.append(
            Peer(
                _bounded(p.id, lim.max_peer_id_bytes, "peer id"),
                tuple(_bounded(a, lim.max_addr_bytes, "address") for a in p.addrs),
                conn,
            )
        )
    return tuple(out)


def decode_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse and check one message (without its varint length prefix)."""
    if len(data) > limits.max_message_bytes:
        raise CodecError(f"message of {len(data)} bytes exceeds {limits.max_message_bytes}")
    m = pb.Message()
    try:
        m.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable message: {exc}") from None
    try:
        mtype = MessageType(m.type)
    except ValueError:
        raise CodecError(f"unknown message type {m.type}") from None
    record = None
    if m.HasField("record"):
        r = m.record
        if len(r.timeReceived) > limits.max_time_received_chars:
            raise CodecError("timeReceived too long")
        record = Record(
            _bounded(r.key, limits.max_key_bytes, "record key"),
            _bounded(r.value, limits.max_value_bytes, "record value"),
            r.timeReceived,
        )
    return Message(
        type=mtype,
        key=_bounded(m.key, limits.max_key_bytes, "key"),
        record=record,
        closer_peers=_peers(m.closerPeers, limits.max_closer_peers, "closer peers", limits),
        provider_peers=_peers(m.providerPeers, limits.max_provider_peers, "provider peers", limits),
    )
