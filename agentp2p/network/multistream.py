"""multistream-select without waiting: a new connection's first request in 3 round trips, not 9.

py-libp2p 0.8.1's client (``MultiselectClient.select_one_of``) writes the
``/multistream/1.0.0`` header, waits for the listener's, then writes its
proposal and waits again: two round trips wherever it negotiates. It
negotiates three times before a new connection carries its first request —
the security protocol, the muxer, the stream's protocol — so a first
request to a new peer took 9 round trips (TCP 1, security 2, Noise 1,
muxer 2, stream 2, the request 1), most of a cold DHT lookup's time
(docs/dht.md, "Connection set-up"). None of the waits is needed:

* :func:`select_one_of` — header and first proposal in one write, then the
  listener's header and answer are read: one round trip (go-multistream's
  ``SelectProtoOrFail`` does the same). Only after an ``na`` are the other
  proposals tried, one at a time.
* :func:`select_upgrade` — a connection's dialer offers one security
  protocol and one muxer, so it proposes and goes straight on; the
  listener's answers are read in front of the next layer's first read
  (Noise's second message, the first Yamux frames), and a refusal, an
  oversized answer or silence fails that read. :func:`wait_accepted` waits
  for the muxer's answer (``Dialer.connect`` does: a refusal right after
  the handshake is then a dial error).
* :class:`LazyStream` — a stream whose proposal rides with its first write
  and whose acceptance is read in front of its first read (the DHT's
  streams: ``Dialer.open_stream(optimistic=True)``).

Listeners need nothing new: py-libp2p's and go-multistream's read exactly
one message at a time, so what follows a proposal is left for the next
layer. Every answer is read with a bound (:data:`MAX_MESSAGE`).
:func:`install` puts the first two on py-libp2p's classes, process-wide
(``build_host`` installs them); :func:`uninstall` restores the library's,
for the benchmark's before/after (benchmarks/round_trips.py) and the tests
that show the library's waits. Errors are the library's
(``MultiselectClientError``) or stream errors (:class:`LazyNegotiationError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException, MessageTooLarge
from libp2p.protocol_muxer import multiselect_client as _client
from libp2p.protocol_muxer.generic_selector import GenericMultistreamSelector
from libp2p.protocol_muxer.exceptions import (
    MultiselectClientError,
    MultiselectCommunicatorError,
)
from libp2p.network.stream.exceptions import StreamError
from libp2p.utils import encode_delim, read_varint_prefixed_bytes_limited

__all__ = ["ACCEPT_TIMEOUT", "HEADER", "LIBRARY_SELECT", "LIBRARY_SELECT_ONE_OF", "LazyNegotiationError", "LazyStream",
           "MAX_MESSAGE", "Negotiation", "install", "installed", "negotiation", "select_one_of", "select_upgrade",
           "uninstall", "wait_accepted"]

HEADER = "/multistream/1.0.0"
_NA = "na"
_TIMEOUT = 30
#: How long a listener has to answer the security or muxer protocol we
#: proposed without waiting (what py-libp2p's upgrade allowed: its
#: negotiation and outbound upgrade timeouts are 10-30 s).
ACCEPT_TIMEOUT = 10.0
#: Largest multistream-select message we read (a protocol ID and its newline;
#: go-multistream refuses more than 1 KiB too). The library's reader had no bound.
MAX_MESSAGE = 1024

#: py-libp2p's own methods, kept for :func:`uninstall` and for the tests that show their waits.
LIBRARY_SELECT_ONE_OF = _client.MultiselectClient.select_one_of
LIBRARY_SELECT = GenericMultistreamSelector.select


async def _read_message(reader: Any) -> str:
    """One multistream-select message, at most :data:`MAX_MESSAGE` bytes (ValueError otherwise)."""
    try:
        data = await read_varint_prefixed_bytes_limited(reader, MAX_MESSAGE)
    except MessageTooLarge as exc:  # an IOException, but the peer's bytes, not the connection
        raise ValueError(str(exc)) from None
    except (IOException, MultiselectCommunicatorError):
        raise
    except Exception as exc:  # noqa: BLE001 — a bad varint, an oversized length: the peer's bytes
        raise ValueError(str(exc)) from None
    if not data.endswith(b"\n"):
        raise ValueError(f"message not delimited by a newline: {data[:64]!r}")
    return data[:-1].decode(errors="replace")


async def _refusal(reader: Any, protocol: str) -> str | None:
    """Read the listener's header and its answer to our proposal of
    ``protocol``: None if it accepted, else why not. A dead connection
    raises (the reader's own errors)."""
    try:
        header = await _read_message(reader)
        answer = await _read_message(reader)
    except ValueError as exc:
        return f"unreadable negotiation ({exc})"
    if header != HEADER:
        return f"multistream header {header!r}"
    if answer != protocol:
        return "not supported (na)" if answer == _NA else f"answered {answer!r}"
    return None


async def _read(communicator: Any, what: str) -> str:
    reader = getattr(communicator, "read_writer", None)
    try:
        return await _read_message(reader) if reader is not None else str(await communicator.read())
    except (IOException, MultiselectCommunicatorError, ValueError) as exc:
        raise MultiselectClientError(f"{what} read failed: {exc}") from exc


async def select_one_of(
    self: Any, protocols: Sequence[TProtocol], communicator: Any, negotiate_timeout: int = _TIMEOUT
) -> TProtocol:
    """``MultiselectClient.select_one_of`` in one round trip when the first protocol is accepted."""
    writer = getattr(communicator, "read_writer", None)
    if not protocols or writer is None:
        return await LIBRARY_SELECT_ONE_OF(self, protocols, communicator, negotiate_timeout)
    first = protocols[0]
    first_str = "" if first is None else str(first)
    with trio.move_on_after(negotiate_timeout):
        try:
            await writer.write(encode_delim(HEADER.encode()) + encode_delim(first_str.encode()))
        except (IOException, AssertionError, ValueError) as exc:  # what the library's communicator maps
            raise MultiselectClientError(f"handshake write failed: {exc}") from exc
        header = await _read(communicator, "handshake")
        if header != HEADER:
            raise MultiselectClientError(f"multiselect protocol ID mismatch: expected {HEADER}, got {header!r}")
        answer = await _read(communicator, f"protocol {first_str!r}")
        if answer == HEADER:
            # A listener that restarted the handshake (the library tolerates one).
            answer = await _read(communicator, f"protocol {first_str!r}")
        if answer == first_str:
            return first
        if answer != _NA:
            raise MultiselectClientError(f"unrecognized response: {answer!r}, expected {first_str!r} or 'na'")
        last = str(first)
        for protocol in protocols[1:]:  # one at a time, each answer bounded like the first
            proposal = "" if protocol is None else str(protocol)
            try:
                await writer.write(encode_delim(proposal.encode()))
            except (IOException, AssertionError, ValueError) as exc:
                raise MultiselectClientError(f"protocol write failed: {exc}, protocol={protocol}") from exc
            answer = await _read(communicator, f"protocol {proposal!r}")
            if answer == proposal:
                return protocol
            if answer != _NA:
                raise MultiselectClientError(f"unrecognized response: {answer!r}, expected {proposal!r} or 'na'")
            last = proposal
        raise MultiselectClientError(
            f"protocols not supported: tried {[str(p) for p in protocols]}. Last error: protocol not supported: {last}"
        )
    raise MultiselectClientError(f"response timed out after {negotiate_timeout}s, protocols tried: {list(protocols)}")


def install() -> None:
    """Negotiate in one round trip (streams) or none (a connection's
    security and muxer) in every py-libp2p host of this process (idempotent)."""
    _client.MultiselectClient.select_one_of = select_one_of  # type: ignore[method-assign]
    GenericMultistreamSelector.select = select_upgrade  # type: ignore[method-assign]


def uninstall() -> None:
    """Back to py-libp2p's two round trips each (benchmarks and tests only)."""
    _client.MultiselectClient.select_one_of = LIBRARY_SELECT_ONE_OF  # type: ignore[method-assign]
    GenericMultistreamSelector.select = LIBRARY_SELECT  # type: ignore[method-assign]


def installed() -> bool:
    return (_client.MultiselectClient.select_one_of is select_one_of
            and GenericMultistreamSelector.select is select_upgrade)


# -- a connection's security and muxer: no round trip of their own -------------


async def select_upgrade(self: Any, conn: Any, is_initiator: bool, negotiate_timeout: int = _TIMEOUT) -> Any:
    """``GenericMultistreamSelector.select`` for a connection's upgrade, lazily on the dialing side.

    The dialer offers one security protocol (Noise) and one muxer (Yamux),
    so there is nothing to choose: it writes the header and its proposal and
    goes straight on — the Noise handshake's first message, or the muxer's
    first frames, follow in the same flight. The listener's header and its
    acceptance are read in front of the first bytes the next layer reads
    (:func:`_confirm_on_first_read`); a refusal fails that read, and with it
    the handshake or the connection. go-multistream's listener reads exactly
    one message at a time, as py-libp2p's does, so what follows the proposal
    is left for the next layer. A connection costs TCP, Noise's round trip,
    and nothing else before it carries a request. The listening side, and a
    dialer offering several protocols, negotiate as the library does.
    """
    if not is_initiator or len(self.handlers) != 1:
        return await LIBRARY_SELECT(self, conn, is_initiator, negotiate_timeout)
    protocol, handler = next(iter(self.handlers.items()))
    try:
        await conn.write(encode_delim(HEADER.encode()) + encode_delim(str(protocol).encode()))
    except (IOException, AssertionError, ValueError) as exc:
        raise MultiselectClientError(f"proposal write failed: {exc}") from exc
    _confirm_on_first_read(conn, str(protocol))
    return protocol, handler


class _ReadOnly:
    """A read function as the reader the library's varint helpers expect."""

    __slots__ = ("read",)

    def __init__(self, read: Any) -> None:
        self.read = read


class Negotiation:
    """Whether the listener has accepted a lazily proposed protocol yet.

    Attached to the connection as ``agentp2p_negotiation`` (the secured
    connection, for the muxer): what :func:`wait_accepted` waits on.
    """

    __slots__ = ("protocol", "done", "error")

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.done = trio.Event()
        self.error: str | None = None

    def finish(self, error: str | None) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


def _confirm_on_first_read(conn: Any, protocol: str) -> None:
    """Make ``conn``'s first read consume and check the listener's header and
    acceptance of ``protocol`` before it returns the bytes that follow them."""
    original = conn.read
    reader = _ReadOnly(original)
    state = Negotiation(protocol)
    conn.agentp2p_negotiation = state

    async def confirming_read(n: int | None = None) -> bytes:
        if state.done.is_set():
            if state.error is None:  # a caller that kept this function
                return await original(n)  # type: ignore[no-any-return]
            # Refused or cut off mid-answer: the stream is not in step any more.
            raise LazyNegotiationError(f"protocol {protocol}: {state.error}")
        try:
            # The library bounded the upgrade's negotiation; this read is ours
            # now: a listener that says nothing after Noise must not leave a
            # connection half open for good.
            with trio.fail_after(ACCEPT_TIMEOUT):
                why = await _refusal(reader, protocol)
        except trio.TooSlowError:
            why = f"no answer within {ACCEPT_TIMEOUT:g}s"
        except BaseException as exc:
            state.finish(f"the connection ended before the peer accepted {protocol} ({type(exc).__name__})")
            raise
        if why is not None:
            state.finish(why)
            raise LazyNegotiationError(f"protocol {protocol}: {why}")
        state.finish(None)
        if conn.__dict__.get("read") is confirming_read:
            conn.read = original
        return await original(n)  # type: ignore[no-any-return]

    conn.read = confirming_read


def negotiation(muxed_conn: Any) -> Negotiation | None:
    """The lazy muxer negotiation of ``muxed_conn``; None if its muxer was
    negotiated the library's way (a listener, QUIC, a test's plain host)."""
    return getattr(getattr(muxed_conn, "secured_conn", None), "agentp2p_negotiation", None)


async def wait_accepted(muxed_conn: Any) -> str | None:
    """Wait until the listener has accepted the muxer we proposed on
    ``muxed_conn`` without waiting; None when it did (or nothing was proposed
    lazily), else why not. The muxer's read loop makes the first read, so a
    connection that ends first — the peer refused us after the handshake,
    or it was closed here — ends the wait too. The caller bounds the time."""
    state = negotiation(muxed_conn)
    if state is None:
        return None
    await state.done.wait()
    return state.error  # type: ignore[no-any-return]


# -- 0-RTT: the proposal rides with the first write ----------------------------


class LazyNegotiationError(StreamError):
    """The listener refused the protocol a :class:`LazyStream` proposed (or
    answered garbage); raised by its first read. A StreamError, so every
    reader that handles a dead stream handles this too."""


class LazyStream:
    """A stream whose protocol is proposed with its first write and confirmed by its first read.

    go-libp2p opens a stream this way when identify already said the peer
    speaks the protocol: nothing waits for the listener, so a request on a
    new stream costs one round trip instead of two (header and proposal go
    out in front of the request; the listener's header and acceptance come
    back in front of the answer). :meth:`~agentp2p.network.dialer.Dialer.open_stream`
    does the same under the same condition. If the listener refuses after
    all (it dropped the protocol since identify), the first read raises
    :class:`LazyNegotiationError` and the stream is reset; whatever was
    written is lost with it, as it would be on a stream the peer reset.

    Everything else (close, reset, ``muxed_conn``, ``get_protocol`` ...) is
    the underlying stream's.
    """

    def __init__(self, stream: Any, protocol: str) -> None:
        self._stream = stream
        self._protocol = protocol
        self._proposal: bytes | None = encode_delim(HEADER.encode()) + encode_delim(protocol.encode())
        self._confirmed = False
        self._failure: str | None = None
        self._send_lock = trio.Lock()
        self._confirm_lock = trio.Lock()

    @property
    def stream(self) -> Any:
        """The underlying stream."""
        return self._stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def write(self, data: bytes) -> None:
        if self._proposal is not None:
            async with self._send_lock:
                if self._proposal is not None:
                    proposal, self._proposal = self._proposal, None
                    await self._stream.write(proposal + bytes(data))
                    return
        if data:
            await self._stream.write(data)

    async def read(self, n: int | None = None) -> bytes:
        if not self._confirmed:
            await self._confirm()
        return await self._stream.read(n)  # type: ignore[no-any-return]

    async def accepted(self) -> None:
        """Wait for the listener to accept the protocol (sending the proposal
        if nothing was written yet); :class:`LazyNegotiationError` if it
        refuses. For a writer that expects no answer, which would otherwise
        never learn of a refusal."""
        if not self._confirmed:
            await self._confirm()

    async def _confirm(self) -> None:
        async with self._confirm_lock:
            if self._confirmed:
                return
            if self._failure is not None:  # refused before: the stream is not in step any more
                raise LazyNegotiationError(self._failure)
            if self._proposal is not None:  # read before any write: the listener must hear us first
                await self.write(b"")
            try:
                why = await _refusal(self._stream, self._protocol)
            except IOException as exc:
                # py-libp2p's listener, having said "na", reads what followed
                # our proposal as its next proposal and resets the stream: the
                # reset may overtake the "na".
                why = f"the stream ended before the peer accepted it ({type(exc).__name__})"
            except BaseException:  # cancelled mid-answer: what is left of it is unreadable
                self._failure = f"protocol {self._protocol}: negotiation interrupted"
                raise
            if why is not None:
                await self._refused(why)
            self._confirmed = True

    async def _refused(self, why: str) -> None:
        self._failure = f"protocol {self._protocol}: {why}"
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await self._stream.reset()
            except Exception:  # noqa: BLE001 — already dead
                pass
        raise LazyNegotiationError(self._failure)
