"""``/agentp2p/record/1.0.0``: ask a peer for an agent record, directly.

Why a protocol next to the DHT: the agent itself always holds its newest
record, so asking it is one round trip, needs no lookup, and doubles as a
liveness check (a provider that answers is up). The DHT copy is the fallback
for agents we cannot reach.

Wire (one request, one response per stream; both sides bounded):

    request  = uvarint(len) || peer-id bytes   (len 0: "your own record")
    response = uvarint(len) || envelope bytes  (len 0: "I have no record for it")

A server answers a request for its own peer ID (or an empty one) with its
own record, and a request for another peer from its cache, so any peer can
serve as a relay for records it has verified. The client never trusts the
answer: the envelope goes through ``signed.open`` with the peer it asked
about, exactly like a DHT value. Each side gives the other
``REQUEST_TIMEOUT`` seconds and refuses anything over the size bounds before
reading it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_uvarint, read_varint_prefixed_bytes_limited

from agentp2p.security.envelope import MAX_ENVELOPE_BYTES

__all__ = [
    "MAX_REQUEST_BYTES",
    "RECORD_PROTOCOL",
    "REQUEST_TIMEOUT",
    "RecordProtocolError",
    "request_record",
    "serve_record_request",
]

RECORD_PROTOCOL = "/agentp2p/record/1.0.0"
#: A peer ID is a multihash of at most a few dozen bytes (identity-hashed
#: Ed25519 keys are 38); 128 leaves room for other key types.
MAX_REQUEST_BYTES = 128
REQUEST_TIMEOUT = 5.0


class RecordProtocolError(Exception):
    """The exchange failed: dial, timeout, reset, malformed or oversized reply."""


def _frame(data: bytes) -> bytes:
    return encode_uvarint(len(data)) + data


async def serve_record_request(
    stream: Any,
    lookup: Callable[[ID | None], bytes | None],
    timeout: float = REQUEST_TIMEOUT,
) -> None:
    """Answer one request on ``stream``. ``lookup(None)`` is our own record.

    Raises on malformed requests; the node's handler guard resets the
    stream and counts the failure.
    """
    try:
        with trio.fail_after(timeout):
            raw = await read_varint_prefixed_bytes_limited(stream, MAX_REQUEST_BYTES)
            wanted = ID(raw) if raw else None
            envelope = lookup(wanted) or b""
            await stream.write(_frame(envelope))
    finally:
        with contextlib.suppress(Exception):
            await stream.close()


async def request_record(
    dialer: Any,
    peer: ID,
    about: ID | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> bytes | None:
    """Ask ``peer`` for the record of ``about`` (default: ``peer`` itself).

    Returns the envelope bytes, unverified (the caller opens them), or None
    if the peer has no record for ``about``. Raises
    :class:`RecordProtocolError` for any failure of the exchange.
    """
    request = b"" if about is None or about == peer else about.to_bytes()
    try:
        with trio.fail_after(timeout):
            stream = await dialer.open_stream(peer, [RECORD_PROTOCOL], timeout=timeout, lookup=False)
            try:
                await stream.write(_frame(request))
                data = await read_varint_prefixed_bytes_limited(stream, MAX_ENVELOPE_BYTES)
            finally:
                with contextlib.suppress(Exception):
                    await stream.close()
    except trio.TooSlowError:
        raise RecordProtocolError(f"record request to {peer} timed out") from None
    except Exception as exc:  # dial errors, resets, MessageTooLarge, ...
        raise RecordProtocolError(f"record request to {peer} failed: {exc!r}") from None
    return data or None
