"""AutoNAT between real nodes on 127.0.0.1 (the NAT lab has the real NATs:
tests/reachability/test_autonat_nat.py).

On loopback every address is reachable, so these show the protocol and
its guards: a verdict from a real dial-back, the refusal of private askers
by default, dial-backs that prove the key, and a server that a hostile
asker cannot make dial at will.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import trio
from multiaddr import Multiaddr

from agentp2p.errors import DialError
from agentp2p.network.dialback import DialBackError, dial_back
from agentp2p.network.framing import length_prefixed, read_message
from agentp2p.node import Node
from agentp2p.protocol.autonat.codec import PROTOCOL_ID, Status, decode_response, encode_request
from agentp2p.protocol.autonat.config import AutoNATConfig
from agentp2p.testing import local_config, wait_until

LAB = AutoNATConfig(allow_private=True, confirmations=1, boot_delay=0.05)


def cfg(autonat: AutoNATConfig = LAB) -> object:
    return local_config(autonat=autonat, swim=False)


async def ask_raw(asker: Node, server: Node, payload: bytes) -> tuple[Status, str]:
    stream = await asker.dialer.open_stream(server.peer_id, [PROTOCOL_ID], lookup=False)
    try:
        await stream.write(payload)
        with trio.fail_after(10):
            resp = decode_response(await read_message(stream, 4096))
    finally:
        with contextlib.suppress(Exception):
            await stream.close()
    return resp.status, resp.text


@pytest.mark.trio
async def test_a_node_learns_it_is_reachable_from_a_real_dial_back() -> None:
    async with Node(cfg()) as a, Node(cfg()) as b:
        await a.connect(b.addrs[0])
        await wait_until(lambda: a.stats()["autonat"]["reachability"] == "public", 15, "A's verdict")
        st = a.stats()["autonat"]
        # The server reached A at A's own listen address, over a new connection.
        assert st["public_addrs"] == [a.addrs[0].split("/p2p/")[0]]
        assert b.stats()["autonat"]["server"]["ok"] >= 1
        assert a.is_connected(b.peer_id)  # the dial-back did not disturb the connection in use


@pytest.mark.trio
async def test_by_default_a_server_will_not_judge_a_private_asker() -> None:
    # 127.0.0.1 is private: a dial-back on a LAN says nothing about the internet.
    strict = AutoNATConfig(confirmations=1, boot_delay=0.05)
    async with Node(cfg(strict)) as a, Node(cfg(strict)) as b:
        await a.connect(b.addrs[0])
        await wait_until(lambda: a.stats()["autonat"]["client"]["refused"] >= 1, 15, "a refusal")
        assert a.stats()["autonat"]["reachability"] == "unknown"
        assert b.stats()["autonat"]["server"]["refused"] >= 1 and b.stats()["autonat"]["server"]["ok"] == 0


@pytest.mark.trio
async def test_dial_back_proves_who_answers() -> None:
    quiet = AutoNATConfig(client=False)
    async with Node(cfg(quiet)) as a, Node(cfg(quiet)) as b, Node(cfg(quiet)) as c:
        addr_b = Multiaddr(b.addrs[0].split("/p2p/")[0])
        await dial_back(a.host, b.peer_id, addr_b, 5)  # b is at its address
        with pytest.raises(DialBackError):
            await dial_back(a.host, c.peer_id, addr_b, 5)  # ... and c is not
        with trio.socket.socket() as s:  # a port nobody listens on
            await s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        with pytest.raises(DialBackError):
            await dial_back(a.host, b.peer_id, Multiaddr(f"/ip4/127.0.0.1/tcp/{closed}"), 5)
        assert a.stats()["connections"] == 0  # nothing kept on either side


@pytest.mark.trio
async def test_bad_requests_get_an_answer_and_cost_the_asker() -> None:
    quiet = AutoNATConfig(client=False, allow_private=True)
    async with Node(cfg(quiet)) as a, Node(cfg(quiet)) as b:
        await a.connect(b.addrs[0])
        status, _ = await ask_raw(a, b, length_prefixed(b"\x08\x01garbage"))
        assert status is Status.E_BAD_REQUEST
        # A request on behalf of another peer: the server would dial someone else.
        status, text = await ask_raw(a, b, length_prefixed(encode_request(b.peer_id.to_bytes(), [])))
        assert status is Status.E_BAD_REQUEST and "peer ID" in text
        assert b.stats()["autonat"]["server"]["bad_request"] == 2
        assert b.stats()["autonat"]["server"]["ok"] == 0


@pytest.mark.trio
async def test_one_asker_cannot_make_a_server_dial_at_will() -> None:
    quiet = AutoNATConfig(client=False, allow_private=True)
    async with Node(cfg(quiet)) as a, Node(cfg(quiet)) as b:
        await a.connect(b.addrs[0])
        request = length_prefixed(encode_request(a.peer_id.to_bytes(), [Multiaddr(a.addrs[0]).to_bytes()]))
        statuses = [(await ask_raw(a, b, request))[0] for _ in range(6)]
        # The per-peer bucket (burst 3) lets the first few through, then refuses.
        assert statuses[:3] == [Status.OK] * 3
        assert set(statuses[3:]) == {Status.E_DIAL_REFUSED}
        assert b.stats()["autonat"]["server"]["ok"] == 3


def served(node: Node) -> set[str]:
    return {str(p) for p in node.host.get_mux().get_protocols() if p}


@pytest.mark.trio
async def test_dht_auto_mode_follows_the_verdict_and_fixed_modes_do_not() -> None:
    from agentp2p.config import DHTConfig

    quiet = AutoNATConfig(client=False)
    async with Node(cfg(quiet)) as a, Node(local_config(autonat=quiet, swim=False, dht=DHTConfig(mode="server"))) as b:
        kad = "/agentp2p/kad/1.0.0"
        assert a.dht.mode == "auto (server)" and kad in served(a)
        a.dht.follow_reachability(private=True)
        assert a.dht.mode == "auto (client)" and kad not in served(a)
        # A client refuses what still arrives (a peer with a stale view of us).
        await b.connect(a.addrs[0])
        with pytest.raises(DialError, match="failed"):  # negotiation refused, not a timeout
            await b.dialer.open_stream(a.peer_id, [kad], lookup=False, timeout=10)
        a.dht.follow_reachability(private=False)
        assert a.dht.mode == "auto (server)" and kad in served(a)
        b.dht.follow_reachability(private=True)  # configured "server": stays one
        assert b.dht.mode == "server" and kad in served(b)


@pytest.mark.trio
async def test_py_libp2p_autonat_server_says_reachable_without_dialing_ours_dials() -> None:
    """Why AutoNAT is ours: py-libp2p 0.8.1's server "dials back" through
    ``host.connect``, which returns at once on the connection the request came
    on, so it answers OK for any address — a dead port included."""
    from libp2p.host.autonat import AutoNATService as LibraryAutoNAT

    from agentp2p.testing import LOOPBACK, library_host

    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        dead = Multiaddr(f"/ip4/127.0.0.1/tcp/{s.getsockname()[1]}")
    quiet = AutoNATConfig(client=False, allow_private=True)
    lib = library_host()
    async with lib.run([LOOPBACK]), Node(cfg(quiet)) as ours, Node(cfg(AutoNATConfig(client=False))) as asker:
        LibraryAutoNAT(lib, serve=True)  # registers /libp2p/autonat/1.0.0 on the library host
        request = length_prefixed(encode_request(asker.peer_id.to_bytes(), [dead.to_bytes()]))
        await asker.connect(ours.addrs[0])
        await asker.connect(f"{lib.get_addrs()[0]}")
        status_lib, _ = await ask_raw(asker, SimpleNamespace(peer_id=lib.get_id()), request)  # type: ignore[arg-type]
        status_ours, _ = await ask_raw(asker, ours, request)
        assert status_lib is Status.OK  # the library's answer: "reached you" at a dead port
        assert status_ours is Status.E_DIAL_ERROR  # ours dialed, and nobody answered
