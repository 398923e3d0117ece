"""The node's top-level API reaches the built-in services."""

from __future__ import annotations

import trio

from agentp2p.node import Node
from agentp2p.testing import local_config, network


async def test_send_receive_and_request_through_node() -> None:
    async with network(2) as (a, b):
        async def echo(msg):  # type: ignore[no-untyped-def]
            return b"echo:" + msg.payload

        b.set_handler("echo", echo)
        received = []

        async def consume() -> None:
            # send() returns once b's application has taken the message, so
            # the receiver must be consuming while we send.
            for _ in range(2):
                received.append(await b.receive())

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                msg_id = await a.send(b.peer_id, b"hi", type="note")
                sealed_id = await a.send(str(b.peer_id), b"secret", seal=True)
            first, second = received
            assert (first.id, first.sender, first.type, first.payload) == (msg_id, a.peer_id, "note", b"hi")
            assert second.id == sealed_id and second.sealed and second.payload == b"secret"
            assert await a.request(b.peer_id, b"x", type="echo") == b"echo:x"
        assert a.stats()["messaging"]["sent"] >= 2


async def test_messaging_store_survives_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = local_config(messaging_store=tmp_path / "a.db")
    async with Node(cfg) as a:
        assert a.messaging is a.services["messaging"]
    assert (tmp_path / "a.db").exists()
