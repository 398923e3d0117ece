"""SWIM on real sockets against a peer that sends garbage and lies.

The attacker is a plain node (no SWIM service) that opens raw
/agentp2p/swim/1.0.0 streams to every member and writes broken frames and
forged membership updates. Nothing may crash, and a live member the attacker
calls dead must end up alive everywhere.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
from libp2p.custom_types import TProtocol

from agentp2p.node import Node
from agentp2p.protocol.swim import MAX_INCARNATION, Ack, Message, MemberUpdate, Ping, State, encode
from agentp2p.protocol.swim.transport import length_prefixed
from agentp2p.protocol.swim.wire import PROTOCOL_ID
from agentp2p.testing import local_config

from tests.protocol.swim.swimreal import describe, failures_since, states, swim_network, wait_until

pytestmark = pytest.mark.slow  # real time, well over 10 s (see tests/conftest.py)


async def _raw(attacker: Node, peer) -> object:  # type: ignore[no-untyped-def]
    return await attacker.host.new_stream(peer, [TProtocol(PROTOCOL_ID)])


async def test_garbage_and_lies_never_crash_and_cannot_keep_a_live_member_dead() -> None:
    async with swim_network(6) as members:
        settled = trio.current_time()
        live = {m.peer_id for m in members}
        victim = members[2]
        v = victim.peer_id.to_bytes()
        async with Node(local_config(bootstrap=[members[0].node.addrs[0]])) as attacker:
            for m in members:
                await attacker.connect(m.node.addrs[0])

            # 1. Framing attacks: a length prefix over the limit, an endless varint.
            for m, junk in ((members[0], b"\xff\xff\xff\x7f"), (members[1], b"\xff" * 16)):
                s = await _raw(attacker, m.peer_id)
                with contextlib.suppress(Exception):
                    await s.write(junk)
            await wait_until(lambda: members[0].swim.stats()["transport"]["bad_streams"] >= 1
                             and members[1].swim.stats()["transport"]["bad_streams"] >= 1, 10, "broken framing detected")

            # 2. Frames that are not SWIM messages, and lies, on one stream per member.
            streams = [await _raw(attacker, m.peer_id) for m in members]
            undecodable = [b"\x00", b"\x0a\x05hello", encode(Message(1, 0, Ack()))[:1] + b"\xff" * 10]

            def lies(target: bytes) -> bytes:
                inc = victim.swim.incarnation
                forged = (
                    MemberUpdate(v, State.DEAD, inc, (), v),  # "the victim is dead"
                    MemberUpdate(v, State.LEFT, inc),  # "the victim left"
                    MemberUpdate(v, State.SUSPECT, inc + 5000, (), v),  # an impossible jump
                    MemberUpdate(target, State.DEAD, 0),  # "you are dead" (to the receiver)
                    MemberUpdate(b"\x00\x24" + b"\x01" * 36, State.ALIVE, MAX_INCARNATION),  # a stranger, max incarnation
                )
                return b"".join(
                    [length_prefixed(f) for f in undecodable]
                    + [length_prefixed(encode(Message(7, 2**40, Ping(target), forged)))]
                )

            attack_end = trio.current_time() + 3
            while trio.current_time() < attack_end:
                for m, s in zip(members, streams):
                    with contextlib.suppress(Exception):
                        await s.write(lies(m.peer_id.to_bytes()))
                await trio.sleep(0.1)

            # The victim refuted, and once the liar stops it is alive everywhere.
            await wait_until(lambda: states(members, victim.peer_id) == ["alive"] * 5, 10, "victim alive everywhere")
            assert victim.swim.incarnation >= 1
            everyone_else = [m for m in members if m is not victim]
            await wait_until(
                lambda: all(states(members, m.peer_id) == ["alive"] * 5 for m in everyone_else), 10, "all alive everywhere"
            )

        for m in members:
            st = m.swim.stats()
            assert st["core_errors"] == 0
            assert st["core"]["malformed"] > 0, describe(members)
            assert m.node.handler_failures.by_protocol.get(PROTOCOL_ID, 0) == 0
        assert sum(m.swim.stats()["core"]["implausible"] + m.swim.stats()["core"]["ahead"] for m in members) > 0
        # The network kept working throughout: no honest member was declared
        # failed except the victim (by the lie, then refuted) and receivers
        # told "you are dead" (refuted).
        print(
            f"\nadversarial: victim incarnation {victim.swim.incarnation}; malformed "
            f"{[m.swim.stats()['core']['malformed'] for m in members]}; implausible "
            f"{[m.swim.stats()['core']['implausible'] for m in members]}; "
            f"false verdicts (all refuted) {len(failures_since(members, settled, live))}"
        )
