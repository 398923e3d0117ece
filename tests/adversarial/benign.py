"""What every adversarial test checks after (or during) an attack: the victim
still serves an honest peer.

``assert_serves(victim)`` brings up a fresh benign node on 127.0.0.1 and
checks, each with a deadline: it can connect, ping, complete a pub/sub round
trip in both directions, and have a direct message acknowledged. ``rss_mb``
reads a process's resident memory for the stated bounds.
"""

from __future__ import annotations

import os
import secrets

import trio

from libp2p.peer.id import ID

from agentp2p.node import Message, Node, Subscription
from agentp2p.testing import local_config, wait_until


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of ``pid`` (default: this process) in MB, from /proc."""
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _next_from(sub: Subscription, sender: ID) -> Message:
    """The next message on ``sub`` from ``sender`` (a node also sees its own publishes)."""
    while True:
        msg = await sub.receive()
        if msg.sender == sender:
            return msg


async def assert_serves(victim: Node, timeout: float = 20.0) -> None:
    """A new honest peer can connect, ping, pub/sub both ways and message ``victim``."""
    topic = f"benign/{secrets.token_hex(4)}"
    with trio.fail_after(timeout):
        async with Node(local_config()) as honest:
            await honest.connect(victim.addrs[0])
            await honest.ping(victim.peer_id)
            async with victim.subscribe(topic) as at_victim, honest.subscribe(topic) as at_honest:
                await wait_until(lambda: victim.peer_id in honest.topic_peers(topic), timeout, "victim's subscription")
                await wait_until(lambda: honest.peer_id in victim.topic_peers(topic), timeout, "honest's subscription")
                await honest.publish(topic, b"to victim")
                got = await _next_from(at_victim, honest.peer_id)
                assert got.data == b"to victim"
                await victim.publish(topic, b"to honest")
                got = await _next_from(at_honest, victim.peer_id)
                assert got.data == b"to honest"

            async def consume() -> None:
                msg = await victim.receive()
                assert msg.payload == b"direct" and msg.sender == honest.peer_id

            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                await honest.send(victim.peer_id, b"direct", timeout=timeout)
