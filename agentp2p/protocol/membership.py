"""``/agentp2p/membership/1.0.0``: ask a peer for its group membership certificates.

Wire (proto/membership.proto): the asking side opens a stream and reads; the
member writes ``uvarint(len) || MembershipPresentation`` and closes. Nothing
is sent by the asker, so there is nothing to parse on the serving side, and
serving costs one write of bytes we hold. The asker refuses a presentation
over :data:`MAX_PRESENTATION_BYTES` before reading it and checks every
certificate (:class:`~agentp2p.security.membership.MembershipBook`): the
answer of a lying peer can only fail to prove a membership.
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_uvarint, read_varint_prefixed_bytes_limited

from agentp2p.security.authorizer import Authorizer
from agentp2p.security.certificates import MAX_CERTIFICATE_BYTES, MAX_CERTIFICATES, decode_presentation, \
    encode_presentation

__all__ = ["MAX_PRESENTATION_BYTES", "MEMBERSHIP_PROTOCOL", "Membership"]

MEMBERSHIP_PROTOCOL = "/agentp2p/membership/1.0.0"
#: Every certificate at its maximum plus protobuf framing.
MAX_PRESENTATION_BYTES = MAX_CERTIFICATES * (MAX_CERTIFICATE_BYTES + 4)
TIMEOUT = 5.0


class Membership:
    """Serves our certificates and fetches peers' for the :class:`Authorizer`."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer
        self.dialer: Any = None
        self.served = 0

    def attach(self, ctx: Any) -> None:
        self.dialer = ctx.dialer
        ctx.set_stream_handler(MEMBERSHIP_PROTOCOL, self._serve)
        self.authorizer.fetch = self.fetch
        self.authorizer.is_connected = ctx.dialer.is_connected

    async def _serve(self, stream: Any) -> None:
        auth = self.authorizer
        body = encode_presentation([c.raw for c in auth.book.own(auth.clock_ms())])
        try:
            with trio.fail_after(TIMEOUT):
                await stream.write(encode_uvarint(len(body)) + body)
            self.served += 1
        finally:
            with contextlib.suppress(Exception):
                await stream.close()

    async def fetch(self, peer: ID) -> list[bytes]:
        """``peer``'s presented certificates, unchecked (the book checks them)."""
        with trio.fail_after(TIMEOUT):
            stream = await self.dialer.open_stream(peer, [MEMBERSHIP_PROTOCOL], timeout=TIMEOUT)
            try:
                data = await read_varint_prefixed_bytes_limited(stream, MAX_PRESENTATION_BYTES)
            finally:
                with contextlib.suppress(Exception):
                    await stream.close()
        return decode_presentation(data)
