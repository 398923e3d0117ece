"""The node's top-level API reaches the built-in services."""

from __future__ import annotations

import trio

from agentp2p.node import Node
from agentp2p.testing import local_config, network, wait_until


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
    from agentp2p.messaging.config import MessagingConfig

    cfg = local_config(messaging=MessagingConfig(store=tmp_path / "a.db"))
    async with Node(cfg) as a:
        assert a.messaging is a.services["messaging"]
    assert (tmp_path / "a.db").exists()


async def test_find_agents_through_node_and_plain_nodes_store_records() -> None:
    from agentp2p.application.records.service import RecordService
    from agentp2p.errors import NotRunningError

    async with Node(local_config()) as plain:
        cfg = local_config(bootstrap=[plain.addrs[0]])
        async with Node(cfg, services=[RecordService("translator", capabilities=["translate"])]) as agent:
            async with Node(local_config(bootstrap=[plain.addrs[0]]), services=[RecordService("seeker")]) as seeker:
                with trio.fail_after(30):
                    while True:
                        found = await seeker.find_agents("translate")
                        if found:
                            break
                        await trio.sleep(0.1)
                assert found[0].record.peer_id == agent.peer_id
                record = await seeker.get_record(agent.peer_id)
                assert record is not None and record.name == "translator"
            # a node without its own record still validates and stores others'
            assert "agentrec" in plain.dht.validators.by_namespace
            # ... and finds agents like any other (issue #11: it answered
            # NotRunningError, the API 503, unless it published a record)
            assert not plain.services["records"].publishes  # type: ignore[attr-defined]
            with trio.fail_after(30):
                while not (found := await plain.find_agents("translate")):
                    await trio.sleep(0.1)
            assert [a.record.peer_id for a in found] == [agent.peer_id]
            assert (await plain.get_record(agent.peer_id)).name == "translator"  # type: ignore[union-attr]


async def test_swim_runs_by_default_and_members_converge() -> None:
    from agentp2p.protocol.swim.config import SwimConfig

    fast = dict(swim=SwimConfig(probe_interval=0.3, probe_timeout=0.15, suspicion_mult=4))
    async with network(3, **fast) as nodes:
        a = nodes[0]
        async with a.member_events() as events:
            await wait_until(
                lambda: all(
                    {m.peer_id for m in n.members() if m.state == "alive"} >= {x.peer_id for x in nodes if x is not n}
                    for n in nodes
                ),
                timeout=30,
                what="every node to see the others alive",
            )
            assert a.services["swim"].config.probe_interval == 0.3
        assert "swim" in a.stats()


async def test_swim_can_be_turned_off() -> None:
    from agentp2p.errors import NotRunningError
    import pytest

    async with Node(local_config(swim=False)) as n:
        assert "swim" not in n.services
        with pytest.raises(NotRunningError, match="SWIM"):
            n.members()
