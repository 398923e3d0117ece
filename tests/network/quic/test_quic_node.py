"""QUIC on real nodes: opt-in by a /quic-v1 listen address, lossless, guarded."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
import trio

from agentp2p.errors import ConfigError
from agentp2p.node import Node
from agentp2p.testing import DaemonProcess, local_config, wait_until

QUIC = "/ip4/127.0.0.1/udp/0/quic-v1"


def _quic_addr(node: Node) -> str:
    return next(a for a in node.addrs if "/quic-v1/" in a)


async def test_nodes_talk_over_quic() -> None:
    """A node listening on TCP and QUIC is reached over QUIC: ping, a direct
    message and its answer, and the connection is a QUIC one."""
    async with Node(local_config(listen=["/ip4/127.0.0.1/tcp/0", QUIC], swim=False)) as a, \
            Node(local_config(listen=[QUIC], swim=False)) as b:
        async def echo(msg):  # type: ignore[no-untyped-def]
            return b"echo:" + msg.payload

        a.set_handler("echo", echo)
        await b.connect(_quic_addr(a))
        conns = b.host.get_network().get_connections(a.peer_id)
        assert conns and type(conns[0].muxed_conn).__name__ == "QUICConnection"
        assert await b.ping(a.peer_id) > 0
        with trio.fail_after(30):
            assert await b.request(a.peer_id, b"over udp", type="echo") == b"echo:over udp"
        # a's side went through our inbound gate.
        assert a.host.get_network()._handle_inbound_connection.__self__.stats["accepted"] >= 1


async def test_streams_closed_early_do_not_stall_the_connection() -> None:
    """b reads 100 bytes of a 600 KiB answer and closes, four times (2.4 MiB
    left unread against a 1.5 MiB connection window): the connection still
    carries a request afterwards, and holds nothing for the closed streams.
    (Found by review: credit for bytes nobody would read leaked, and the
    connection stalled after three.)"""
    async with Node(local_config(listen=[QUIC], swim=False)) as a, Node(local_config(listen=[QUIC], swim=False)) as b:
        async def blast(stream) -> None:  # type: ignore[no-untyped-def]
            with trio.move_on_after(10), contextlib.suppress(Exception):
                await stream.write(b"z" * (600 * 1024))

        async def echo(msg):  # type: ignore[no-untyped-def]
            return b"echo:" + msg.payload

        a.set_stream_handler("/test/blast/1.0.0", blast)
        a.set_handler("echo", echo)
        await b.connect(_quic_addr(a))
        for _ in range(4):
            stream = await b.host.new_stream(a.peer_id, ["/test/blast/1.0.0"])
            assert await stream.read(100)
            await stream.close()
        with trio.fail_after(15):
            assert await b.request(a.peer_id, b"still there", type="echo") == b"echo:still there"
        (conn,) = b.host.get_network().get_connections(a.peer_id)
        await wait_until(lambda: conn.muxed_conn._quic._agentp2p_held == 0, what="no bytes held for closed streams")


async def test_daemon_listens_on_quic_with_lean_import(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The daemon stubs aioquic (lean import) unless a listen address asks
    for QUIC; with one it keeps it real and is reached over QUIC."""
    async with DaemonProcess(tmp_path, "--listen", QUIC) as d:
        quic = next(a for a in d.addrs if "/quic-v1/" in a)
        async with Node(local_config(listen=[QUIC], swim=False)) as b:
            await b.connect(quic)
            assert await b.ping(d.peer_id) > 0


def test_quic_packages_stay_stubbed_unless_asked_for() -> None:
    code = (
        "from agentp2p import _lean_import as L\n"
        "assert L.install(quic={quic})\n"
        "import libp2p\n"
        "print(L.is_stub('aioquic'))\n"
    )
    for quic, stub in ((False, "True"), (True, "False")):
        out = subprocess.run([sys.executable, "-c", code.format(quic=quic)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == stub


async def test_quic_refused_in_a_private_network(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "swarm.key"
    key.write_text("/key/swarm/psk/1.0.0/\n/base16/\n" + "ab" * 32 + "\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="QUIC cannot be used in a private network"):
        async with Node(local_config(listen=[QUIC], psk=str(key))):
            pass


async def test_library_udp_listeners_share_a_port_ours_do_not() -> None:
    from agentp2p.network import quic
    from agentp2p.network.quic.listener import create_exclusive_udp_socket

    quic.install()
    first = await quic.LIBRARY["create_socket"](None, "127.0.0.1", 0)
    port = first.getsockname()[1]
    second = await quic.LIBRARY["create_socket"](None, "127.0.0.1", port)  # the library: both bound
    with first, second:
        assert second.getsockname()[1] == port
    mine = await create_exclusive_udp_socket(None, "127.0.0.1", 0)
    with mine:
        with pytest.raises(Exception, match="address already in use"):
            await create_exclusive_udp_socket(None, "127.0.0.1", mine.getsockname()[1])


async def test_quic_port_in_use_is_an_error() -> None:
    """Like TCP (test_exclusive_listen.py): a UDP port held by another socket
    is not shared. py-libp2p's listener sets SO_REUSEPORT and would bind it."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(Exception, match="(?i)listen|address already in use"):
            async with Node(local_config(listen=[f"/ip4/127.0.0.1/udp/{port}/quic-v1"], swim=False)):
                pass


async def test_tcp_is_dialed_first_and_quic_when_tcp_fails() -> None:
    """py-libp2p's swarm ranks QUIC first; ours dials TCP (the faster stack
    here) when the peer has both, and QUIC when TCP does not answer."""
    from libp2p.peer.peerinfo import PeerInfo
    from libp2p.stream_muxer.yamux.yamux import Yamux
    from multiaddr import Multiaddr

    both = ["/ip4/127.0.0.1/tcp/0", QUIC]
    async with Node(local_config(listen=both, swim=False)) as a, Node(local_config(listen=both, swim=False)) as b:
        await b.host.connect(PeerInfo(a.peer_id, list(a.listen_addrs)))
        (conn,) = b.host.get_network().get_connections(a.peer_id)
        assert isinstance(conn.muxed_conn, Yamux)
        await b.disconnect(a.peer_id)
        await wait_until(lambda: not b.is_connected(a.peer_id), what="disconnected")

        with trio.socket.socket() as closed:  # a TCP port nothing listens on
            await closed.bind(("127.0.0.1", 0))
            dead = Multiaddr(f"/ip4/127.0.0.1/tcp/{closed.getsockname()[1]}")
            quic = next(m for m in a.listen_addrs if "quic-v1" in str(m))
            b.host.get_peerstore().clear_addrs(a.peer_id)
            await b.host.connect(PeerInfo(a.peer_id, [dead, quic]))
        (conn,) = b.host.get_network().get_connections(a.peer_id)
        assert type(conn.muxed_conn).__name__ == "QUICConnection"


def test_listen_addresses_accept_quic_and_refuse_other_udp() -> None:
    from agentp2p.errors import AddressError
    from agentp2p.network.addresses import parse_listen_addr

    assert str(parse_listen_addr("/ip4/0.0.0.0/udp/4001/quic-v1")) == "/ip4/0.0.0.0/udp/4001/quic-v1"
    for bad in ("/ip4/0.0.0.0/udp/4001", "/ip4/0.0.0.0/udp/4001/quic", "/ip4/0.0.0.0/udp/4001/quic-v1/webtransport"):
        with pytest.raises(AddressError, match="UDP is for QUIC only"):
            parse_listen_addr(bad)


async def test_buffered_bytes_are_reserved_and_a_peer_past_its_share_is_cut_off() -> None:
    """What QUIC streams hold for a reader is reserved from the resource
    manager (service "quic", the peer's share), as Yamux buffers are; past
    the peer's share the connection is closed, not the bytes dropped."""
    from agentp2p.network.resources import ResourceLimits

    limits = ResourceLimits(max_memory_per_peer=256 * 1024)
    async with Node(local_config(listen=[QUIC], swim=False, resources=limits)) as a, \
            Node(local_config(listen=[QUIC], swim=False)) as b:
        parked: list[object] = []
        got_first = trio.Event()

        async def hold_unread(stream) -> None:  # type: ignore[no-untyped-def]
            parked.append(stream)
            got_first.set()
            await trio.sleep_forever()

        a.set_stream_handler("/test/park/1.0.0", hold_unread)
        await b.connect(_quic_addr(a))
        stream = await b.host.new_stream(a.peer_id, ["/test/park/1.0.0"])
        await stream.write(b"x" * (100 * 1024))
        with trio.fail_after(10):
            await got_first.wait()
        await wait_until(lambda: a.resources.stats()["memory_by_service"].get("quic", 0) >= 100 * 1024,
                         what="100 KiB reserved under quic")
        with contextlib.suppress(Exception), trio.move_on_after(10):
            await stream.write(b"y" * (400 * 1024))  # past the 256 KiB share
        await wait_until(lambda: not a.is_connected(b.peer_id), what="the greedy peer cut off")
        with pytest.raises(Exception) as cut:  # what a held is readable, then an error: not a clean end
            while await parked[0].read():  # type: ignore[attr-defined]
                pass
        assert not isinstance(cut.value, EOFError)
        assert a.resources.stats()["hits"].get("memory_per_peer", 0) >= 1
        await wait_until(lambda: a.resources.stats()["memory_by_service"].get("quic", 0) == 0, what="all given back")


async def test_a_handler_on_a_tcp_first_connection_still_dials_quic() -> None:
    """TCP-first hides QUIC addresses from the dialing task only: the tasks
    that dial starts (the connection's stream handlers) inherit its context,
    and one of them must still reach a QUIC-only peer."""
    from libp2p.peer.peerinfo import PeerInfo

    both = ["/ip4/127.0.0.1/tcp/0", QUIC]
    async with Node(local_config(listen=both, swim=False)) as a, Node(local_config(listen=both, swim=False)) as b, \
            Node(local_config(listen=[QUIC], swim=False)) as c:
        reached = trio.Event()

        async def dial_c(stream) -> None:  # type: ignore[no-untyped-def]
            await b.host.connect(PeerInfo(c.peer_id, list(c.listen_addrs)))
            reached.set()
            await stream.close()

        b.set_stream_handler("/test/dial-c/1.0.0", dial_c)
        await b.host.connect(PeerInfo(a.peer_id, list(a.listen_addrs)))  # TCP first: b's dial
        # b's connect returns before a has set the connection up (b's muxer
        # proposal rides without waiting for a's answer).
        await wait_until(lambda: a.is_connected(b.peer_id), 10, "a to have b's connection")
        await a.host.new_stream(b.peer_id, ["/test/dial-c/1.0.0"])
        with trio.fail_after(10):
            await reached.wait()
        assert b.is_connected(c.peer_id)


async def test_a_tcp_address_that_never_answers_does_not_keep_quic_from_being_tried() -> None:
    """TCP-first is bounded (TCP_FIRST, 3 s): a TCP address whose listener
    never speaks would otherwise use up the whole dial before QUIC."""
    from libp2p.peer.peerinfo import PeerInfo
    from multiaddr import Multiaddr

    from agentp2p.network.quic.preference import TCP_FIRST

    async with Node(local_config(listen=[QUIC], swim=False)) as a, \
            Node(local_config(listen=["/ip4/127.0.0.1/tcp/0", QUIC], swim=False)) as b:
        with trio.socket.socket() as silent:  # accepts in the kernel, never answers
            await silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            dead = Multiaddr(f"/ip4/127.0.0.1/tcp/{silent.getsockname()[1]}")
            quic_addr = next(m for m in a.listen_addrs if "quic-v1" in str(m))
            t0 = trio.current_time()
            with trio.fail_after(TCP_FIRST + 7):
                await b.host.connect(PeerInfo(a.peer_id, [dead, quic_addr]))
            assert trio.current_time() - t0 >= TCP_FIRST * 0.9  # TCP had its turn
        (conn,) = b.host.get_network().get_connections(a.peer_id)
        assert type(conn.muxed_conn).__name__ == "QUICConnection"
