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


def _patient(seen: dict[str, bytes], proposal: bytes, then: bytes = b""):  # type: ignore[no-untyped-def]
    """A listener that reads the dialer's header before saying anything
    (whatever came with it was sent without waiting for ours), then accepts
    ``proposal`` and sends ``then``."""

    async def listener(conn: _Conn) -> None:
        buf = bytearray()
        await _read_until(conn, buf, HEADER)
        seen["before_our_header"] = bytes(buf)
        await conn.write(HEADER)
        await _read_until(conn, buf, HEADER + proposal)
        await conn.write(proposal + then)
        await trio.sleep_forever()

    return listener


async def test_library_client_waits_for_the_header_ours_sends_the_proposal_with_it() -> None:
    proposal = encode_delim(PROTO.encode())
    seen: dict[str, bytes] = {}
    patient_listener = _patient(seen, proposal)
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


# -- 0-RTT streams (LazyStream through the dialer), on real nodes ---------------

ECHO = "/agentp2p/test-echo/1.0.0"


async def _echo(stream) -> None:  # type: ignore[no-untyped-def]
    data = await stream.read(1024)
    await stream.write(data.upper())
    await stream.close()


async def test_a_stream_to_an_identified_peer_carries_its_proposal_with_the_first_write() -> None:
    from agentp2p.network.identify import request_identify
    from agentp2p.network.multistream import LazyStream
    from agentp2p.node import Node
    from agentp2p.testing import local_config

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        a.set_stream_handler(ECHO, _echo)
        await b.connect(a.addrs[0])
        assert ECHO in await request_identify(b.dialer, b.host, a.peer_id, 5.0)
        assert b.host.get_peerstore().supports_protocols(a.peer_id, [ECHO])
        before = b.dialer.stats.lazy_streams
        stream = await b.dialer.open_stream(a.peer_id, [ECHO], lazy=True)
        assert isinstance(stream, LazyStream) and b.dialer.stats.lazy_streams == before + 1
        await stream.write(b"hello")
        assert await stream.read(1024) == b"HELLO"
        # Not asked for (the default): negotiated first, as before.
        plain = await b.dialer.open_stream(a.peer_id, [ECHO])
        assert not isinstance(plain, LazyStream)
        await plain.write(b"x")
        assert await plain.read(1024) == b"X"


async def test_an_optimistic_stream_to_a_peer_without_the_protocol_fails_on_its_first_read() -> None:
    from agentp2p.network.multistream import LazyNegotiationError, LazyStream
    from agentp2p.node import Node
    from agentp2p.testing import local_config

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        await b.connect(a.addrs[0])
        stream = await b.dialer.open_stream(a.peer_id, ["/agentp2p/nobody-serves/1.0.0"], optimistic=True)
        assert isinstance(stream, LazyStream)
        await stream.write(b"request")
        # "na", or the reset that may overtake it (the listener reads our
        # request as its next proposal): a refusal either way.
        with pytest.raises(LazyNegotiationError, match="nobody-serves"):
            with trio.fail_after(10):
                await stream.read(1024)
        # ... and stays refused: nothing after it is read as data.
        with pytest.raises(LazyNegotiationError, match="nobody-serves"):
            await stream.read(1024)
        # Without optimism the same call is refused at once, as before.
        from agentp2p.errors import DialError

        with pytest.raises(DialError):
            await b.dialer.open_stream(a.peer_id, ["/agentp2p/nobody-serves/1.0.0"])
        # The connection survived the refusal.
        assert await b.ping(a.peer_id) > 0


async def test_a_lazy_stream_whose_listener_speaks_first_sends_its_proposal_on_read() -> None:
    """Identify: the dialer only reads. The proposal must go out before the read waits."""
    from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL
    from libp2p.identity.identify.identify import parse_identify_response

    from agentp2p.network.identify import read_to_eof
    from agentp2p.network.multistream import LazyStream
    from agentp2p.node import Node
    from agentp2p.testing import local_config

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        await b.connect(a.addrs[0])
        stream = await b.dialer.open_stream(a.peer_id, [str(IDENTIFY_PROTOCOL)], optimistic=True)
        assert isinstance(stream, LazyStream)
        with trio.fail_after(10):
            msg = parse_identify_response(await read_to_eof(stream, 1 << 18))
        assert msg.public_key


# -- a connection's upgrade: the dialer does not wait at all --------------------


def _selector(protocol: TProtocol):  # type: ignore[no-untyped-def]
    from libp2p.protocol_muxer.generic_selector import GenericMultistreamSelector

    sel = GenericMultistreamSelector()
    sel.add_handler(protocol, "handler")
    return sel


async def _upgrade_against(listener, select, after: bytes) -> tuple[object, bytes]:  # type: ignore[no-untyped-def]
    """Dial ``listener``, run ``select(conn)``, write ``after`` as the next
    layer would, then read what the listener lets through."""
    outcome: list[object] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, lambda s: listener(_Conn(s)), 0, host="127.0.0.1"))
        stream = await trio.open_tcp_stream("127.0.0.1", listeners[0].socket.getsockname()[1])
        conn = _Conn(stream)
        try:
            with trio.fail_after(10):
                chosen = await select(conn)
                await conn.write(after)
                outcome.append((chosen, await conn.read(64)))
        except Exception as exc:  # noqa: BLE001 — raised below, outside the nursery's group
            outcome.append(exc)
        finally:
            await stream.aclose()
            nursery.cancel_scope.cancel()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]  # type: ignore[return-value]


async def test_upgrade_dialer_sends_header_proposal_and_next_layer_before_hearing_anything() -> None:
    proposal = encode_delim(b"/noise")
    first_message = b"noise-msg1"

    async def silent_until_everything(conn: _Conn) -> None:
        buf = bytearray()
        await _read_until(conn, buf, HEADER + proposal + first_message)
        await conn.write(HEADER + proposal + b"noise-msg2")
        await trio.sleep_forever()

    sel = _selector(TProtocol("/noise"))
    chosen, reply = await _upgrade_against(silent_until_everything, lambda c: multistream.select_upgrade(sel, c, True),
                                           first_message)
    assert chosen == ("/noise", "handler")
    # The first read of the next layer gets what follows the listener's acceptance.
    assert reply == b"noise-msg2"


async def test_library_upgrade_waits_for_the_listeners_header() -> None:
    seen: dict[str, bytes] = {}
    patient = _patient(seen, encode_delim(b"/noise"), then=b"noise-msg2")

    sel = _selector(TProtocol("/noise"))
    was = multistream.installed()
    multistream.uninstall()  # the library's selector calls the library's client
    try:
        chosen, reply = await _upgrade_against(patient, lambda c: sel.select(c, True), b"noise-msg1")
    finally:
        if was:
            multistream.install()
    assert chosen == ("/noise", "handler") and reply == b"noise-msg2"
    assert seen["before_our_header"] == HEADER


async def _refuses(conn: _Conn) -> None:
    await conn.write(HEADER + encode_delim(b"na"))
    await trio.sleep_forever()


async def _huge(conn: _Conn) -> None:
    # A length prefix of 1 GiB: refused from the prefix, nothing buffered.
    from libp2p.utils import encode_uvarint

    await conn.write(encode_uvarint(1 << 30))
    await trio.sleep_forever()


async def _silent(conn: _Conn) -> None:
    await trio.sleep_forever()


@pytest.mark.parametrize(("listener", "why"), [
    (_refuses, "not supported"),
    (_huge, "exceeds maximum allowed 1024"),  # multistream.MAX_MESSAGE
    (_silent, "no answer within 0.3s"),  # ACCEPT_TIMEOUT, shortened below
], ids=["refused", "oversized-answer", "silent"])
async def test_an_upgrade_not_accepted_fails_the_next_layers_first_read(
        listener, why: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from agentp2p.network.multistream import LazyNegotiationError

    monkeypatch.setattr(multistream, "ACCEPT_TIMEOUT", 0.3)
    sel = _selector(TProtocol("/noise"))
    with pytest.raises(LazyNegotiationError, match=why):
        await _upgrade_against(listener, lambda c: multistream.select_upgrade(sel, c, True), b"x")


async def test_listener_side_and_several_offers_negotiate_as_the_library_does() -> None:
    """Lazy only where there is nothing to choose: one offer, dialing side."""
    from libp2p.protocol_muxer.generic_selector import GenericMultistreamSelector

    sel = GenericMultistreamSelector()
    sel.add_handler(TProtocol("/noise"), "noise")
    sel.add_handler(TProtocol("/tls/1.0.0"), "tls")

    async def picks_tls(conn: _Conn) -> None:
        await Multiselect({TProtocol("/tls/1.0.0"): None}).negotiate(MultiselectCommunicator(conn), 10)
        await conn.write(b"tls-hello")
        await trio.sleep_forever()

    chosen, reply = await _upgrade_against(picks_tls, lambda c: multistream.select_upgrade(sel, c, True), b"")
    assert chosen == ("/tls/1.0.0", "tls") and reply == b"tls-hello"


async def test_every_answer_is_bounded_the_fallback_proposals_too() -> None:
    from libp2p.utils import encode_uvarint

    async def na_then_huge(conn: _Conn) -> None:
        await conn.write(HEADER + encode_delim(b"na"))
        buf = bytearray()
        await _read_until(conn, buf, HEADER + encode_delim(OTHER.encode()) + encode_delim(PROTO.encode()))
        await conn.write(encode_uvarint(1 << 30))  # a 1 GiB answer
        await trio.sleep_forever()

    with pytest.raises(MultiselectClientError, match="exceeds maximum allowed 1024"):
        await _ours([OTHER, PROTO], na_then_huge)


async def test_a_dht_message_that_expects_no_answer_still_learns_of_a_refusal() -> None:
    """ADD_PROVIDER expects no answer: on a fresh lazy stream the sender
    waits for the protocol's acceptance instead, so a peer that does not
    speak it fails the request rather than swallowing it."""
    from agentp2p.network.multistream import LazyNegotiationError
    from agentp2p.node import Node
    from agentp2p.protocol.kademlia.streams import PeerSender, SenderStats
    from agentp2p.testing import local_config

    async with Node(local_config(swim=False)) as a, Node(local_config(swim=False)) as b:
        await b.connect(a.addrs[0])

        async def open_unserved():  # type: ignore[no-untyped-def]
            return await b.dialer.open_stream(a.peer_id, ["/agentp2p/nobody-serves/1.0.0"], optimistic=True)

        sender = PeerSender(open_unserved, max_message_bytes=1 << 16, max_idle=30.0, stats=SenderStats())
        with trio.fail_after(10), pytest.raises(LazyNegotiationError):
            await sender.request(b"add-provider", expect_response=False)

        async def open_served():  # type: ignore[no-untyped-def]
            from agentp2p.protocol.kademlia.config import PROTOCOL_ID

            return await b.dialer.open_stream(a.peer_id, [PROTOCOL_ID], optimistic=True)

        served = PeerSender(open_served, max_message_bytes=1 << 16, max_idle=30.0, stats=SenderStats())
        with trio.fail_after(10):
            assert await served.request(b"\x08\x00", expect_response=False) is None
