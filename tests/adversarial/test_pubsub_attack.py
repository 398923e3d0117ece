"""Issue #10, findings 1, 4 (pub/sub) and 7: one gossipsub message must not
kill a node, bogus messages must not flood the log, and neither a slow local
subscriber nor a peer that does not read may make us hold unbounded memory."""

from __future__ import annotations

import contextlib
import logging

import pytest
import trio

from agentp2p.application.records.service import RecordService
from agentp2p.application.records.announce import ANNOUNCE_TOPIC
from agentp2p.config import PubSubConfig
from agentp2p.errors import PubSubError
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until
from tests.adversarial.benign import assert_serves
from tests.adversarial.pubsub_attacker import bogus_signature_message, killer_message, raw_meshsub


async def test_killer_message_is_contained_counted_and_the_victim_serves() -> None:
    async with Node(local_config(), services=[RecordService(name="victim", capabilities=["x"])]) as victim:
        async with victim.subscribe("t"):
            async with raw_meshsub(victim.peer_id, victim.listen_addrs) as attacker:
                await attacker.subscribe(ANNOUNCE_TOPIC)
                await attacker.subscribe("t")
                await attacker.publish(killer_message(ANNOUNCE_TOPIC, 1), killer_message("t", 2))
                await wait_until(lambda: victim.stats()["pubsub"]["invalid_signatures"] == 2,
                                 what="both messages counted")
                assert victim.penalties.points(attacker.peer_id) > 0
                assert victim.stats()["pubsub"]["delivered"] == 0
        await assert_serves(victim)


async def test_bogus_signature_flood_logs_little_and_bans_the_forwarder(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agentp2p")
    n = 300
    async with Node(local_config()) as victim, victim.subscribe("t"):
        async with raw_meshsub(victim.peer_id, victim.listen_addrs) as attacker:
            await attacker.subscribe("t")
            with trio.move_on_after(10), contextlib.suppress(Exception):  # the victim hangs up once it bans us
                for k in range(n):
                    await attacker.publish(bogus_signature_message("t", attacker.peer_id, k + 1))
            await wait_until(lambda: victim.is_banned(attacker.peer_id), what="the forwarder is banned")
            await wait_until(lambda: not victim.is_connected(attacker.peer_id), what="the forwarder is cut off")
            stats = victim.stats()["pubsub"]
            # Each forgery costs the forwarder score (P4, -100 x count^2): after
            # six it is graylisted and its RPCs are refused before any
            # signature check — each refusal counted and an offence too.
            assert stats["invalid_signatures"] >= 5 and stats["delivered"] == 0
            assert stats["invalid_signatures"] + stats["graylisted"] >= 20
            assert victim.pubsub.peer_scores().get(attacker.peer_id, 0.0) < -2500  # kept after it left
            peer = str(attacker.peer_id)
            about = [r for r in caplog.records if peer in r.getMessage() and r.levelno >= logging.INFO]
            rejections = [r for r in about if "pubsub" in r.name]
            # One throttled line for 300 rejections; the rest is connect/ban news.
            assert len(rejections) == 1, [r.getMessage() for r in rejections]
            assert len(about) <= 6, [r.getMessage() for r in about]
        await assert_serves(victim)


@pytest.mark.slow
async def test_subscriber_that_never_reads_holds_at_most_its_byte_cap() -> None:
    cap = 4 << 20
    cfg = local_config(pubsub=PubSubConfig(subscription_buffer_bytes=cap))
    async with Node(cfg) as victim, Node(local_config()) as sender:
        await sender.connect(victim.addrs[0])
        async with victim.subscribe("big") as sub:
            await wait_until(lambda: victim.peer_id in sender.topic_peers("big"), what="subscription")
            payload = b"\xab" * (256 << 10)
            for k in range(200):
                await sender.publish("big", payload[:-8] + k.to_bytes(8, "big"))
            # On a starved machine the sender may give up on a victim whose
            # reader stalled for 2 x publish_timeout and drop (counted) on its
            # side; those never reach the victim.
            lost_at_sender = lambda: sender.stats()["pubsub"]["dropped_outbound"]  # noqa: E731
            await wait_until(lambda: sub.pending() + sub.dropped + lost_at_sender() == 200, 60, "all 200 offered")
            offered = 200 - lost_at_sender()
            held = sum(len(m.data) for m in sub._buf)
            assert held <= cap and sub.buffered_bytes == held
            assert sub.dropped >= offered - cap // len(payload)
            assert victim.stats()["pubsub"]["dropped_inbound"] == sub.dropped
        await assert_serves(victim)


async def test_peer_that_never_reads_costs_at_most_its_queue_bytes() -> None:
    cap = 4 << 20
    cfg = local_config(pubsub=PubSubConfig(peer_queue_bytes=cap, publish_timeout=1.0))
    async with Node(cfg) as victim, victim.subscribe("big"):
        async with raw_meshsub(victim.peer_id, victim.listen_addrs, read=False) as sink:
            await sink.subscribe("big")
            await wait_until(lambda: victim.pubsub.peer_queue(sink.peer_id) is not None
                             and sink.peer_id in victim.topic_peers("big"), what="the sink's queue")
            queue = victim.pubsub.peer_queue(sink.peer_id)
            payload = b"\xcd" * (512 << 10)
            timeouts = 0
            for k in range(40):  # 20 MiB offered to a peer that reads nothing
                try:
                    await victim.publish("big", payload[:-8] + k.to_bytes(8, "big"))
                except PubSubError:
                    timeouts += 1
            assert queue.bytes <= cap
            assert victim.resources.memory_of(sink.peer_id) <= cap
            # Backpressure may give the peer a chance (a publish or two time
            # out), then stops waiting for it: its queue overflows, counted.
            assert timeouts <= 3
            assert victim.stats()["pubsub"]["dropped_outbound"] > 0
        await assert_serves(victim)
