"""Private networks (agentp2p/network/pnet.py) on real sockets, 127.0.0.1.

Same key: connections, ping and pub/sub work as usual. Another key, no key,
a plain node, a silent or babbling socket: no connection, a clear error for
the dialer, bounded by the handshake deadline, and both nodes carry on.
The wire format is checked byte by byte against the spec (24-byte nonce,
then XSalsa20 of everything), and the cipher against NaCl's known answer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from nacl.secret import SecretBox

from agentp2p.errors import ConfigError, DialError
from agentp2p.network.host import build_host
from agentp2p.network.identity import Identity
from agentp2p.network.inbound import inbound_gate
from agentp2p.network.pnet import MULTISTREAM_HEADER, NONCE_SIZE, PnetConn, XSalsa20
from agentp2p.network.psk import write_psk_file
from agentp2p.network.resources import ResourceLimits
from agentp2p.node import Node
from agentp2p.testing import LOOPBACK, local_config, wait_until

# -- the cipher ----------------------------------------------------------------

# NaCl's test vector (tests/stream3.c, crypto_stream_xsalsa20): the first 32
# bytes of the keystream for this key and nonce.
NACL_KEY = bytes.fromhex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
NACL_NONCE = bytes.fromhex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
NACL_STREAM = bytes.fromhex("eea6a7251c1e72916d11c2cb214d3c252539121d8e234e652d651fa4c8cff880")


def test_xsalsa20_known_answer() -> None:
    assert XSalsa20(NACL_KEY, NACL_NONCE).xor(bytes(32)) == NACL_STREAM


def test_xsalsa20_is_one_stream_across_chunks() -> None:
    data = os.urandom(5000)
    whole = XSalsa20(NACL_KEY, NACL_NONCE).xor(data)
    cipher, out, pos = XSalsa20(NACL_KEY, NACL_NONCE), [], 0
    for n in (1, 0, 5, 58, 64, 65, 63, 2, 128, 1000, 3614):
        out.append(cipher.xor(data[pos : pos + n]))
        pos += n
    assert pos == len(data) and b"".join(out) == whole
    assert XSalsa20(NACL_KEY, NACL_NONCE).xor(whole) == data


def test_xsalsa20_matches_pynacl_secretbox_keystream() -> None:
    """An independent path: NaCl's secretbox XORs the message with the
    XSalsa20 keystream from byte 32 on (the first 32 bytes key Poly1305)."""
    msg = os.urandom(777)
    boxed = SecretBox(NACL_KEY).encrypt(msg, NACL_NONCE).ciphertext[16:]  # minus the tag
    cipher = XSalsa20(NACL_KEY, NACL_NONCE)
    cipher.xor(bytes(32))
    assert cipher.xor(msg) == boxed


def test_xsalsa20_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        XSalsa20(NACL_KEY[:31], NACL_NONCE)
    with pytest.raises(ValueError):
        XSalsa20(NACL_KEY, NACL_NONCE[:8])  # Salsa20's nonce, as py-libp2p's own pnet uses


# -- helpers ---------------------------------------------------------------------


def _key(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.key"
    write_psk_file(path)
    return path


def _cfg(psk: Path | None, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("swim", False)
    return local_config(psk=psk, dial_timeout=8.0, **kwargs)


def _pnet_conn(node: Node, peer) -> PnetConn | None:  # type: ignore[no-untyped-def]
    conn = node.host.get_network().get_connections(peer)[0]
    noise = conn.muxed_conn.secured_conn.conn
    raw = noise.read_writer.read_write_closer
    return raw if isinstance(raw, PnetConn) else None


async def _refused(dialer: Node, target: Node) -> str:
    with trio.fail_after(15):
        with pytest.raises(DialError) as info:
            await dialer.connect(target.addrs[0])
    assert not dialer.is_connected(target.peer_id)
    assert not target.is_connected(dialer.peer_id)
    return str(info.value)


@contextlib.asynccontextmanager
async def _listener(handler) -> AsyncIterator[int]:  # type: ignore[no-untyped-def]
    """A raw TCP listener on 127.0.0.1; ``handler(stream)`` per connection. Yields the port."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def _tcp_addr(node: Node) -> tuple[str, int]:
    addr = node.listen_addrs[0]
    return "127.0.0.1", int(addr.value_for_protocol("tcp"))


# -- same key ----------------------------------------------------------------------


async def test_same_key_connects_pings_and_pubsub(tmp_path: Path) -> None:
    key = _key(tmp_path, "net")
    async with Node(_cfg(key)) as a, Node(_cfg(key)) as b:
        assert await a.connect(b.addrs[0]) == b.peer_id
        await wait_until(lambda: b.is_connected(a.peer_id), what="b to see a")
        # Both ends of the connection run through the protector.
        assert _pnet_conn(a, b.peer_id) is not None and _pnet_conn(b, a.peer_id) is not None
        # The remote address still shows through it (the API's peer list uses it).
        conn = a.host.get_network().get_connections(b.peer_id)[0]
        assert [str(m) for m in conn.get_transport_addresses()] == [str(b.listen_addrs[0])]
        assert 0 < await a.ping(b.peer_id) < 5
        assert 0 < await b.ping(a.peer_id) < 5

        async with b.subscribe("pnet") as sub:
            await wait_until(lambda: b.peer_id in a.topic_peers("pnet"), what="a to learn b's subscription")
            for i in range(20):
                await a.publish("pnet", b"m%d" % i)
            with trio.fail_after(10):
                got = [(await sub.receive()).data for _ in range(20)]
        assert sorted(got) == sorted(b"m%d" % i for i in range(20))


async def test_same_key_bulk_transfer_keeps_keystreams_in_step(tmp_path: Path) -> None:
    """Large messages both ways at once, and pings between them: each
    direction's keystream stays aligned with the bytes on the wire (a slip
    would break Noise at once)."""
    key = _key(tmp_path, "net")
    async with Node(_cfg(key)) as a, Node(_cfg(key)) as b:
        await a.connect(b.addrs[0])
        async with a.subscribe("bulk") as sub_a, b.subscribe("bulk") as sub_b:
            await wait_until(
                lambda: b.peer_id in a.topic_peers("bulk") and a.peer_id in b.topic_peers("bulk"),
                what="subscriptions",
            )
            blobs = [os.urandom(100_000 + i) for i in range(5)]
            async with trio.open_nursery() as nursery:
                for blob in blobs:
                    nursery.start_soon(a.publish, "bulk", b"a" + blob)
                    nursery.start_soon(b.publish, "bulk", b"b" + blob)
            for _ in range(3):
                assert 0 < await a.ping(b.peer_id) < 5
                assert 0 < await b.ping(a.peer_id) < 5
            # Each subscriber gets the other's messages and its own node's.
            expected = {b"a" + blob for blob in blobs} | {b"b" + blob for blob in blobs}
            with trio.fail_after(15):
                got_b = {(await sub_b.receive()).data for _ in expected}
                got_a = {(await sub_a.receive()).data for _ in expected}
        assert got_a == got_b == expected


# -- cannot connect ------------------------------------------------------------------


async def test_wrong_key_cannot_connect_either_way(tmp_path: Path) -> None:
    one, other = _key(tmp_path, "one"), _key(tmp_path, "other")
    async with Node(_cfg(one)) as a, Node(_cfg(other)) as b, Node(_cfg(other)) as c:
        # The listener sends nothing to a peer that has not proved the key,
        # so the dialer learns only that: another key, or none.
        for dialer, target in ((a, b), (b, a)):
            err = await _refused(dialer, target)
            assert "private network handshake failed" in err and "(it uses another key, or none)" in err
        # Nobody crashed: b still takes a peer with its key, a is still up.
        await b.connect(c.addrs[0])
        await wait_until(lambda: c.is_connected(b.peer_id), 10, "c to have b's connection")
        assert 0 < await c.ping(b.peer_id) < 5
        gate = inbound_gate(b.host)
        assert gate is not None and gate.stats["failed"] >= 1 and gate.pending == 0


class _ClosedAfterHeader:
    """A raw connection whose peer sent libp2p's multistream header and then reset.

    Writes from the ``fail_from``-th on fail; reads give the header.
    """

    def __init__(self, fail_from: int = 1) -> None:
        self.unread = MULTISTREAM_HEADER + b"\x1d/noise\n"
        self.is_initiator = True
        self.fail_from, self.writes, self.closed = fail_from, 0, False

    async def write(self, data: bytes) -> None:
        from libp2p.io.exceptions import IOException

        self.writes += 1
        if self.writes >= self.fail_from:
            raise IOException("connection reset by peer")

    async def close(self) -> None:
        self.closed = True

    def get_remote_address(self) -> tuple[str, int]:
        return ("127.0.0.1", 4001)

    async def read(self, n: int | None = None) -> bytes:
        size = len(self.unread) if n is None else n
        chunk, self.unread = self.unread[:size], self.unread[size:]
        return chunk


async def test_a_write_failure_is_explained_by_what_the_peer_sent() -> None:
    # CI caught the race: a plain listener sends its header and closes on our
    # nonce; when our next write fails before anyone has read, the reason
    # must still be "plain libp2p", not "another key, or none".
    conn = PnetConn(_ClosedAfterHeader(), os.urandom(32))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="another key, or none"):
        await conn.write(b"x")
    assert conn.failure is not None and "another key, or none" in conn.failure
    await conn.explain(1.0)
    assert conn.failure == "the peer is not in a private network (it speaks plain libp2p)"
    # A reason learnt from reading is final: explaining again changes nothing.
    await conn.explain(1.0)
    assert conn.failure == "the peer is not in a private network (it speaks plain libp2p)"


async def test_the_dialer_reports_a_plain_peer_when_its_second_write_fails() -> None:
    # What CI saw, end to end through install_pnet: the proposal goes out,
    # Noise's first message fails, nothing has been read yet.
    from types import SimpleNamespace

    from agentp2p.network.pnet import PrivateNetworkFailure, install_pnet

    async def upgrade(conn, is_initiator, peer_id=None):  # type: ignore[no-untyped-def]
        await conn.write(b"/multistream/1.0.0 proposal")
        await conn.write(b"noise message 1")

    async def dial_peer(*args):  # type: ignore[no-untyped-def]
        raise AssertionError("not dialed here")

    network = SimpleNamespace(upgrader=SimpleNamespace(upgrade_security=upgrade), dial_peer=dial_peer)
    install_pnet(SimpleNamespace(get_network=lambda: network), os.urandom(32), timeout=5)
    raw = _ClosedAfterHeader(fail_from=2)
    with trio.fail_after(5), pytest.raises(PrivateNetworkFailure) as info:
        await network.upgrader.upgrade_security(raw, True, None)
    assert info.value.reason.endswith("the peer is not in a private network (it speaks plain libp2p)")
    assert raw.writes == 2 and raw.closed


@pytest.mark.parametrize("pnet_dials", [True, False], ids=["pnet-dials-plain", "plain-dials-pnet"])
async def test_pnet_and_plain_nodes_cannot_connect(tmp_path: Path, pnet_dials: bool) -> None:
    key = _key(tmp_path, "net")
    async with Node(_cfg(key)) as pnet, Node(_cfg(None)) as plain:
        if pnet_dials:
            err = await _refused(pnet, plain)
            assert "the peer is not in a private network (it speaks plain libp2p)" in err
        else:
            # The dialer has no key; it is told the peer looks like a private network.
            err = await _refused(plain, pnet)
            assert "it may be in a private network (see --psk)" in err
        async with Node(_cfg(key)) as friend:
            await friend.connect(pnet.addrs[0])
            assert 0 < await friend.ping(pnet.peer_id) < 5


async def test_key_file_copies_are_the_same_network(tmp_path: Path) -> None:
    """Two files holding one key in different encodings: one network."""
    from agentp2p.network.psk import encode_psk, generate_psk

    key = generate_psk()
    hex_file, b64_file = tmp_path / "hex.key", tmp_path / "b64.key"
    for path, enc in ((hex_file, "base16"), (b64_file, "base64")):
        path.write_bytes(encode_psk(key, enc))
        path.chmod(0o600)
    async with Node(_cfg(hex_file)) as a, Node(_cfg(b64_file)) as b:
        await a.connect(b.addrs[0])
        assert 0 < await a.ping(b.peer_id) < 5


async def test_daemon_with_psk_flag(tmp_path: Path) -> None:
    """``agentp2p daemon --psk FILE`` as a user runs it: it logs the key's
    fingerprint (never the key), takes a node with the key, refuses one without."""
    from agentp2p.network.psk import fingerprint, read_psk_file
    from agentp2p.testing import DaemonProcess

    key = _key(tmp_path, "net")
    async with DaemonProcess(tmp_path / "d", "--psk", str(key), api="off") as d:
        text = d.log_text()
        assert fingerprint(read_psk_file(key)) in text and read_psk_file(key).hex() not in text
        async with Node(_cfg(key)) as friend, Node(_cfg(None)) as stranger:
            await friend.connect(d.addrs[0])
            assert 0 < await friend.ping(d.peer_id) < 5
            with pytest.raises(DialError, match="it may be in a private network"):
                await stranger.connect(d.addrs[0])


# -- wire format and hostile sockets -----------------------------------------------------


async def test_wire_format_is_nonce_then_xsalsa20(tmp_path: Path) -> None:
    """What a pnet dialer sends: 24 bytes of nonce, then multistream-select's
    header under XSalsa20(key, nonce) — and nothing readable in clear."""
    key_file = _key(tmp_path, "net")
    from agentp2p.network.psk import read_psk_file

    key = read_psk_file(key_file)
    captured: list[bytes] = []
    got_enough = trio.Event()

    async def capture(stream: trio.SocketStream) -> None:
        buf = b""
        with trio.move_on_after(10):
            while len(buf) < NONCE_SIZE + len(MULTISTREAM_HEADER):
                chunk = await stream.receive_some()
                if not chunk:
                    break
                buf += chunk
        if not captured:
            captured.append(buf)
            got_enough.set()
        await stream.aclose()

    async with _listener(capture) as port, Node(_cfg(key_file)) as node:
        fake = Identity.generate().peer_id
        with pytest.raises(DialError):
            await node.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{fake}")
        with trio.fail_after(5):
            await got_enough.wait()
    wire = captured[0]
    nonce, body = wire[:NONCE_SIZE], wire[NONCE_SIZE:]
    assert b"multistream" not in wire
    assert XSalsa20(key, nonce).xor(body)[: len(MULTISTREAM_HEADER)] == MULTISTREAM_HEADER


async def test_pnet_dial_to_a_silent_socket_is_bounded(tmp_path: Path) -> None:
    """A listener that accepts and says nothing: the dial fails within the
    private network's first-bytes deadline, saying so, instead of hanging."""

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep(30)

    key = _key(tmp_path, "net")
    cfg = _cfg(key, resources=ResourceLimits(handshake_timeout=0.5))
    async with _listener(silent) as port, Node(cfg) as node:
        fake = Identity.generate().peer_id
        start = trio.current_time()
        # (py-libp2p tries an address several times, each bounded by 0.5 s.)
        with pytest.raises(DialError, match="no answer from the peer within 0.5s"):
            await node.connect(f"/ip4/127.0.0.1/tcp/{port}/p2p/{fake}")
        assert trio.current_time() - start < 7.5  # below the 8 s dial deadline


@pytest.mark.parametrize("what", ["silent", "garbage", "plain-header"])
async def test_hostile_inbound_sockets_are_closed_without_harm(tmp_path: Path, what: str) -> None:
    """A socket that says nothing, random bytes, or plain libp2p's header to a
    pnet node is closed (within the handshake deadline for the silent one)
    without a byte in answer, and the node goes on serving its network."""
    key = _key(tmp_path, "net")
    cfg = _cfg(key, resources=ResourceLimits(handshake_timeout=1.0))
    async with Node(cfg) as node:
        host, port = _tcp_addr(node)
        stream = await trio.open_tcp_stream(host, port)
        if what == "garbage":
            await stream.send_all(os.urandom(200))
        elif what == "plain-header":
            await stream.send_all(MULTISTREAM_HEADER)
        received = b""
        with trio.fail_after(6):
            while chunk := await _receive_or_reset(stream):
                received += chunk
        await stream.aclose()
        assert received == b""  # not even a nonce: nothing to fingerprint
        gate = inbound_gate(node.host)
        assert gate is not None
        await wait_until(lambda: gate.pending == 0, what="the pending handshake to go")
        async with Node(_cfg(key)) as friend:
            await friend.connect(node.addrs[0])
            assert 0 < await friend.ping(node.peer_id) < 5


async def _receive_or_reset(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.receive_some()
    except trio.BrokenResourceError:  # connection reset: closed all the same
        return b""


def test_force_pnet_refuses_a_host_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBP2P_FORCE_PNET", "1")
    with pytest.raises(ConfigError, match="LIBP2P_FORCE_PNET=1"):
        build_host(Identity.generate(), [LOOPBACK])
    build_host(Identity.generate(), [LOOPBACK], psk=os.urandom(32))


def test_library_pnet_is_left_off(tmp_path: Path) -> None:
    """py-libp2p's own ``psk=`` (Salsa20, 8-byte nonce) is not the spec: never set."""
    host = build_host(Identity.generate(), [LOOPBACK], psk=os.urandom(32))
    assert host.get_network().psk is None

