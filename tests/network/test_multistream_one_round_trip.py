"""multistream-select in one round trip (agentp2p/network/multistream.py).

py-libp2p 0.8.1's client waits for the listener's header before it sends its
proposal; ours sends both in one write. Shown on a raw TCP listener that
watches what arrives, then checked against py-libp2p's own listener (the one
every agentp2p node runs) for every answer it can give.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException
from libp2p.protocol_muxer.exceptions import MultiselectClientError
from libp2p.protocol_muxer.multiselect import Multiselect
from libp2p.protocol_muxer.multiselect_client import MultiselectClient
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
from libp2p.utils import encode_delim

from agentp2p.network import multistream

HEADER = encode_delim(b"/multistream/1.0.0")
PROTO = TProtocol("/agentp2p/test/1.0.0")
OTHER = TProtocol("/agentp2p/other/1.0.0")


class _Conn:
    """A trio socket stream as py-libp2p's ReadWriteCloser (its errors as IOException, as RawConnection's)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream

    async def read(self, n: int | None = None) -> bytes:
        try:
            return await self.stream.receive_some(n or 65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise IOException(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise IOException(str(exc)) from exc

    async def close(self) -> None:
        await self.stream.aclose()


async def _negotiate(client_select, server) -> object:  # type: ignore[no-untyped-def]
    """Run ``server(conn)`` on a 127.0.0.1 listener and ``client_select(communicator)`` against it."""
    outcome: list[object] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, lambda s: server(_Conn(s)), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            with trio.fail_after(10):
                outcome.append(await client_select(MultiselectCommunicator(_Conn(stream))))
        except MultiselectClientError as exc:
            outcome.append(exc)  # raised below, outside the nursery's exception group
        finally:
            await stream.aclose()
            nursery.cancel_scope.cancel()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


async def _read_until(conn: _Conn, buf: bytearray, want: bytes) -> None:
    while not buf.startswith(want):
        chunk = await conn.read()
        if not chunk:
            raise AssertionError(f"closed after {bytes(buf)!r}")
        buf += chunk


async def test_library_client_waits_for_the_header_ours_sends_the_proposal_with_it() -> None:
    proposal = encode_delim(PROTO.encode())
    seen: dict[str, bytes] = {}

    async def patient_listener(conn: _Conn) -> None:
        # Read the client's header before saying anything: whatever came with
        # it was sent without waiting for ours.
        buf = bytearray()
        await _read_until(conn, buf, HEADER)
        seen["before_our_header"] = bytes(buf)
        await conn.write(HEADER)
        await _read_until(conn, buf, HEADER + proposal)
        await conn.write(proposal)
        await trio.sleep_forever()

    got = await _negotiate(lambda c: multistream.LIBRARY_SELECT_ONE_OF(MultiselectClient(), [PROTO], c), patient_listener)
    assert got == PROTO
    # The library's client cannot have sent its proposal: it was waiting for our header.
    assert seen["before_our_header"] == HEADER

    async def silent_listener(conn: _Conn) -> None:
        # Says nothing until the proposal is in: a client that waits for the
        # listener's header first would never get an answer.
        buf = bytearray()
        await _read_until(conn, buf, HEADER + proposal)
        seen["ours"] = bytes(buf)
        await conn.write(HEADER + proposal)
        await trio.sleep_forever()

    got = await _negotiate(lambda c: multistream.select_one_of(MultiselectClient(), [PROTO], c), silent_listener)
    assert got == PROTO
    assert seen["ours"] == HEADER + proposal


def _library_listener(*protocols: TProtocol):  # type: ignore[no-untyped-def]
    async def handler(stream: object) -> None:
        pass

    async def serve(conn: _Conn) -> None:
        selector = Multiselect({p: handler for p in protocols})
        try:
            await selector.negotiate(MultiselectCommunicator(conn), 10)
        except Exception:  # noqa: BLE001 — a refused negotiation ends the listener's side
            await conn.close()
            return
        await trio.sleep_forever()

    return serve


async def _ours(protocols: list[TProtocol], listener) -> object:  # type: ignore[no-untyped-def]
    return await _negotiate(lambda c: multistream.select_one_of(MultiselectClient(), protocols, c), listener)


async def test_first_protocol_accepted_by_py_libp2p_listener() -> None:
    assert await _ours([PROTO, OTHER], _library_listener(PROTO, OTHER)) == PROTO


async def test_first_refused_then_the_next_one_is_tried() -> None:
    assert await _ours([OTHER, PROTO], _library_listener(PROTO)) == PROTO


async def test_none_supported_is_the_library_error() -> None:
    with pytest.raises(MultiselectClientError, match="not supported"):
        await _ours([OTHER, TProtocol("/agentp2p/third/1.0.0")], _library_listener(PROTO))


async def test_wrong_header_is_an_error() -> None:
    async def wrong(conn: _Conn) -> None:
        await conn.write(encode_delim(b"/multistream/2.0.0"))
        await trio.sleep_forever()

    with pytest.raises(MultiselectClientError, match="mismatch"):
        await _ours([PROTO], wrong)


async def test_listener_closing_is_an_error_not_a_hang() -> None:
    async def closes(conn: _Conn) -> None:
        await conn.write(HEADER)
        await conn.close()

    with pytest.raises(MultiselectClientError, match="read failed"):
        await _ours([PROTO], closes)


async def test_silent_listener_times_out_with_the_library_error() -> None:
    async def silent(conn: _Conn) -> None:
        await trio.sleep_forever()

    with pytest.raises(MultiselectClientError, match="timed out"):
        await _negotiate(lambda c: multistream.select_one_of(MultiselectClient(), [PROTO], c, 0.2), silent)


def test_build_host_installs_it() -> None:
    from multiaddr import Multiaddr

    from agentp2p.network.host import build_host
    from agentp2p.network.identity import Identity

    multistream.uninstall()
    try:
        assert not multistream.installed()
        build_host(Identity.generate(), [Multiaddr("/ip4/127.0.0.1/tcp/0")])
        assert multistream.installed()
    finally:
        multistream.install()
