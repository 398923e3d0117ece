"""Authorization policies on real sockets: each rule kind allowed and denied,
with the caller's error; groups proven by certificates fetched from the
peer; policy changes in force at once."""

from __future__ import annotations

import contextlib
import time

import pytest
import trio

from agentp2p.errors import DialError, Forbidden, PeerRefused
from agentp2p.messaging.errors import MessageForbidden
from agentp2p.network.identity import Identity
from agentp2p.node import Node
from agentp2p.protocol.dht import DHTError
from agentp2p.security.certificates import issue
from agentp2p.testing import local_config, wait_until

DAY_MS = 24 * 3600 * 1000


def _cert(issuer: Identity, group: str, subject: Node, *, start_ms: int | None = None, ttl_ms: int = DAY_MS) -> bytes:
    start = int(time.time() * 1000) if start_ms is None else start_ms
    return issue(issuer.private_key, group, subject.peer_id, not_before_ms=start, not_after_ms=start + ttl_ms)


async def _echo(msg) -> bytes:  # type: ignore[no-untyped-def]
    return b"echo:" + msg.payload


async def test_send_and_call_rules_refuse_with_a_clear_error_and_deliver_the_rest() -> None:
    async with Node(local_config()) as a, Node(local_config()) as other:
        policy = {
            "rules": [
                {"action": "send", "resource": "secret.*", "peers": [str(other.peer_id)], "effect": "allow"},
                {"action": "send", "resource": "secret.*", "peers": ["*"], "effect": "deny"},
                {"action": "call", "resource": "translate", "peers": [str(a.peer_id)], "effect": "deny"},
            ]
        }
        async with Node(local_config(policy=policy)) as b:
            b.set_handler("translate", _echo)
            b.set_handler("summarize", _echo)
            await a.connect(b.addrs[0])
            await other.connect(b.addrs[0])

            with pytest.raises(MessageForbidden, match="does not allow type 'secret.plans'"):
                await a.send(b.peer_id, b"x", type="secret.plans", timeout=10)
            # Not a timeout: the refusal comes back with the next ACK.
            with pytest.raises(Forbidden, match="request 'translate'"):
                await a.request(b.peer_id, b"x", type="translate", timeout=10)
            # A plain message of the type reaches the same handler: a call too.
            with pytest.raises(MessageForbidden, match="type 'translate'"):
                await a.send(b.peer_id, b"x", type="translate", timeout=10)
            # What the rules do not refuse goes through, on the same session.
            assert await a.request(b.peer_id, b"hi", type="summarize", timeout=10) == b"echo:hi"
            assert await other.request(b.peer_id, b"t", type="translate", timeout=10) == b"echo:t"
            got = []

            async def read() -> None:
                while len(got) < 2:
                    got.append(await b.receive())

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read)
                    await a.send(b.peer_id, b"public", type="note", timeout=10)
                    await other.send(b.peer_id, b"for your eyes", type="secret.plans", timeout=10)
            assert sorted((m.type, m.payload) for m in got) == [("note", b"public"), ("secret.plans", b"for your eyes")]
            stats = b.stats()
            assert stats["policy"]["denied"] == {"send": 1, "call": 2}
            assert a.stats()["messaging"]["refused_forbidden"] == 3


async def test_a_policy_change_applies_to_the_next_message_without_a_restart() -> None:
    async with Node(local_config()) as a, Node(local_config()) as b:
        await a.connect(b.addrs[0])
        got: list[bytes] = []

        async def read() -> None:
            async for msg in b.incoming():
                got.append(msg.payload)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await a.send(b.peer_id, b"1", type="chat", timeout=10)
            b.set_policy({"rules": [{"action": "send", "resource": "chat", "peers": [str(a.peer_id)], "effect": "deny"}]})
            with pytest.raises(MessageForbidden):
                await a.send(b.peer_id, b"2", type="chat", timeout=10)
            b.set_policy({})
            await a.send(b.peer_id, b"3", type="chat", timeout=10)
            nursery.cancel_scope.cancel()
        assert got == [b"1", b"3"]


async def test_groups_are_proven_by_certificates_the_issuer_signed_for_that_peer() -> None:
    issuer, impostor = Identity.generate(), Identity.generate()
    async with Node(local_config()) as member, Node(local_config()) as outsider, Node(local_config()) as forger, \
            Node(local_config()) as thief:
        member.add_certificate(_cert(issuer, "ops", member))
        # Signed by someone else than the group's issuer.
        forger.add_certificate(_cert(impostor, "ops", forger))
        # The member's certificate, presented by another peer: the thief cannot
        # even load it as its own, and a copy served anyway would name the member.
        with pytest.raises(ValueError, match="not for this node"):
            thief.add_certificate(_cert(issuer, "ops", member))
        policy = {
            "groups": {"ops": str(issuer.peer_id)},
            "rules": [
                {"action": "call", "resource": "deploy", "peers": ["group:ops"], "effect": "allow"},
                {"action": "call", "resource": "deploy", "peers": ["*"], "effect": "deny"},
            ],
        }
        async with Node(local_config(policy=policy)) as b:
            b.set_handler("deploy", _echo)
            for n in (member, outsider, forger, thief):
                await n.connect(b.addrs[0])
            assert await member.request(b.peer_id, b"go", type="deploy", timeout=10) == b"echo:go"
            for n in (outsider, forger, thief):
                with pytest.raises(MessageForbidden):
                    await n.request(b.peer_id, b"go", type="deploy", timeout=10)
            seen = await b.peer_groups(member.peer_id)
            assert seen["groups"] == ["ops"] and seen["certificates"][0]["issuer"] == str(issuer.peer_id)
            assert (await b.peer_groups(forger.peer_id))["groups"] == []
            assert b.stats()["policy"]["fetched"] >= 4


async def test_an_expired_certificate_proves_nothing() -> None:
    issuer = Identity.generate()
    async with Node(local_config()) as member:
        long_ago = int(time.time() * 1000) - 10 * DAY_MS
        with pytest.raises(ValueError, match="expired"):
            member.add_certificate(_cert(issuer, "ops", member, start_ms=long_ago))


async def test_publish_and_subscribe_rules() -> None:
    issuer = Identity.generate()
    policy = {
        "groups": {"ops": str(issuer.peer_id)},
        "rules": [
            {"action": "publish", "resource": "alerts", "peers": ["group:ops"], "effect": "allow"},
            {"action": "publish", "resource": "alerts", "peers": ["*"], "effect": "deny"},
            {"action": "subscribe", "resource": "alerts", "peers": ["group:ops"], "effect": "allow"},
            {"action": "subscribe", "resource": "alerts", "peers": ["*"], "effect": "deny"},
        ],
    }
    async with Node(local_config(policy=policy)) as op, Node(local_config(policy=policy)) as hub, \
            Node(local_config(policy=policy)) as outsider:
        op.add_certificate(_cert(issuer, "ops", op))
        hub.add_certificate(_cert(issuer, "ops", hub))
        # The outsider's own policy already says no: the caller hears it.
        with pytest.raises(Forbidden, match="publish on topic 'alerts'"):
            await outsider.publish("alerts", b"x")
        async with op.subscribe("alerts") as op_sub, hub.subscribe("alerts") as hub_sub:
            await op.connect(hub.addrs[0])
            await outsider.connect(hub.addrs[0])
            # Each side admits the other's subscription only once it has fetched
            # the other's certificate: the publisher must see the hub, not only
            # the reverse, or its message goes to nobody.
            await wait_until(lambda: op.peer_id in hub.topic_peers("alerts"), what="op subscribed at hub")
            await wait_until(lambda: hub.peer_id in op.topic_peers("alerts"), what="hub subscribed at op")
            await op.publish("alerts", b"fire")
            with trio.fail_after(10):
                assert (await hub_sub.receive()).data == b"fire"
            # A node whose policy lets anyone publish still cannot get a
            # message past the hub, whose policy does not.
            outsider.set_policy({})
            await wait_until(lambda: hub.peer_id in outsider.topic_peers("alerts"), what="outsider sees hub's topic")
            await outsider.publish("alerts", b"spoof")
            async with outsider.subscribe("alerts"):
                await wait_until(lambda: hub.stats()["pubsub"]["policy_denied_subscriptions"] >= 1,
                                 what="outsider's subscription refused")
                assert outsider.peer_id not in hub.topic_peers("alerts")
            await op.publish("alerts", b"second")
            with trio.fail_after(10):
                assert (await hub_sub.receive()).data == b"second"  # the spoof never arrived before it
            await wait_until(lambda: hub.stats()["pubsub"]["policy_denied_messages"] >= 1,
                             what="outsider's message ignored")
            assert op_sub is not None


async def test_connect_rules_refuse_by_id_at_the_gate_and_by_group_once_the_certificates_are_in() -> None:
    issuer = Identity.generate()
    async with Node(local_config()) as member, Node(local_config()) as stranger, Node(local_config()) as friend, \
            Node(local_config()) as foe:
        member.add_certificate(_cert(issuer, "ops", member))
        policy = {
            "groups": {"ops": str(issuer.peer_id)},
            "rules": [
                {"action": "connect", "peers": [str(foe.peer_id)], "effect": "deny"},
                {"action": "connect", "peers": ["group:ops", str(friend.peer_id)], "effect": "allow"},
                {"action": "connect", "peers": ["*"], "effect": "deny"},
            ],
        }
        async with Node(local_config(policy=policy)) as gate:
            # Named by ID: decided at the gate, before any certificate.
            with pytest.raises(PeerRefused, match="policy"):
                await gate.connect(foe.addrs[0])
            with pytest.raises(DialError):
                await foe.connect(gate.addrs[0])
            assert not gate.is_connected(foe.peer_id)
            await friend.connect(gate.addrs[0])
            await member.connect(gate.addrs[0])
            # Groups decide for the stranger: admitted, asked, cut off, refused for the back-off.
            with contextlib.suppress(DialError):
                await stranger.connect(gate.addrs[0])
            await wait_until(lambda: gate.stats()["policy"]["cut_off"] == 1 and not gate.is_connected(stranger.peer_id),
                             what="stranger cut off")
            with pytest.raises(PeerRefused, match="policy"):
                await gate.connect(stranger.addrs[0])
            assert gate.is_connected(member.peer_id) and gate.is_connected(friend.peer_id)
            # A change re-checks who is connected: the friend is now refused, the member stays.
            gate.set_policy({"rules": [{"action": "connect", "peers": [str(friend.peer_id)], "effect": "deny"}]})
            await wait_until(lambda: not gate.is_connected(friend.peer_id), what="friend cut off after the change")
            assert gate.is_connected(member.peer_id) and gate.stats()["policy"]["cut_off"] == 2


async def test_a_refused_subscription_is_admitted_once_the_policy_allows_it() -> None:
    """Peers say SUBSCRIBE once: a refused one is remembered and re-checked when
    the policy changes (or the peer's certificates come in)."""
    async with Node(local_config()) as reader:
        closed = {"rules": [{"action": "subscribe", "resource": "news", "peers": [str(reader.peer_id)],
                             "effect": "deny"}]}
        async with Node(local_config(policy=closed)) as hub, hub.subscribe("news"), reader.subscribe("news") as sub:
            await reader.connect(hub.addrs[0])
            await wait_until(lambda: hub.stats()["pubsub"]["policy_denied_subscriptions"] >= 1, what="refused")
            assert reader.peer_id not in hub.topic_peers("news")
            hub.set_policy({})
            await wait_until(lambda: reader.peer_id in hub.topic_peers("news"), what="admitted after the change")
            await hub.publish("news", b"now you may")
            with trio.fail_after(10):
                assert (await sub.receive()).data == b"now you may"


async def test_store_rules_refuse_dht_writes_from_whom_they_name() -> None:
    async with Node(local_config()) as writer, Node(local_config()) as other:
        policy = {"rules": [{"action": "store", "resource": "*", "peers": [str(writer.peer_id)], "effect": "deny"}]}
        async with Node(local_config(policy=policy)) as b:
            await writer.connect(b.addrs[0])
            await wait_until(lambda: writer.dht.routing_table_size >= 1, what="b in the writer's table")
            with pytest.raises(DHTError):  # peers exist, none stored it: said, not silent
                await writer.dht_put("greeting", b"hi")
            await other.connect(b.addrs[0])
            await wait_until(lambda: other.dht.routing_table_size >= 1, what="b in the other's table")
            assert await other.dht_put("greeting", b"hello") >= 1
            await writer.provide("svc/echo")  # ADD_PROVIDER has no answer: refused quietly
            await wait_until(lambda: b.dht.service.stats.refused_policy >= 2, what="put and provide refused")
            assert b.stats()["policy"]["denied"]["store"] >= 2
            assert await b.dht_get("greeting") == b"hello"


async def test_a_closed_policy_still_runs_the_nodes_own_machinery() -> None:
    """default = "deny" is about what peers may do; the node's own protocol
    topics (agent record announcements) stay open unless a rule names them."""
    async with Node(local_config(policy={"default": "deny"})) as node:
        assert "/agentp2p/records/1.0.0" in node.pubsub.topics()
        with pytest.raises(Forbidden):
            await node.publish("news", b"x")
