"""Trust on real sockets: invalid messages and SWIM lies cost a peer its
trust until it is cut off; pins override; scores and pins survive a restart."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio

from agentp2p.errors import DialError, PeerRefused
from agentp2p.network.penalties import PenaltyConfig
from agentp2p.node import Node
from agentp2p.security.trust import TrustConfig
from agentp2p.testing import local_config, wait_until
from tests.messaging.test_msg_real_security import RawSender

# The penalty box off, so that what acts is trust (it is the slower, lasting layer).
QUIET_BOX = PenaltyConfig(enabled=False)
TRUST = TrustConfig(deprioritize_below=-4.0, disconnect_below=-12.0)


async def _tamper(raw: RawSender, seq: int) -> None:
    bad = raw.envelope(seq, b"pay 10")
    bad.payload = b"pay 99"
    await raw.data(bad)


async def test_a_peer_sending_invalid_messages_is_deprioritised_then_cut_off_and_refused() -> None:
    async with Node(local_config(penalties=QUIET_BOX, trust=TRUST)) as b, Node(local_config()) as mallory:
        await mallory.connect(b.addrs[0])
        raw = RawSender(mallory, b)
        await raw.open()
        await _tamper(raw, 1)
        await wait_until(lambda: b.trust_of(mallory.peer_id)["score"] == -5, what="first offence")
        level = b.trust_of(mallory.peer_id)
        assert level["level"] == "deprioritized" and level["reasons"] == {"msg:tampered": 1}
        assert b.is_connected(mallory.peer_id)  # deprioritised is not cut off
        await _tamper(raw, 2)
        await _tamper(raw, 3)
        await wait_until(lambda: not b.is_connected(mallory.peer_id), what="mallory cut off")
        info = b.trust_of(mallory.peer_id)
        assert info["level"] == "cut_off" and info["refused_for_s"] > 500 and info["cutoffs"] == 1
        with pytest.raises(PeerRefused, match="banned"):
            await b.connect(mallory.addrs[0])
        # Once mallory has seen the close (else its connect() finds the old connection "up"):
        await wait_until(lambda: not mallory.is_connected(b.peer_id), what="mallory sees the cut")
        with pytest.raises(DialError):
            await mallory.connect(b.addrs[0])
        assert b.stats()["trust"]["cutoffs"] == 1 and b.stats()["trust"]["levels"]["cut_off"] == 1
        assert b.trust_scores()[0]["peer_id"] == str(mallory.peer_id)


async def test_a_trusted_pin_spares_the_penalty_box_and_a_banned_pin_cuts_off() -> None:
    async with Node(local_config(trust=TRUST)) as b, Node(local_config()) as friend, Node(local_config()) as other:
        await friend.connect(b.addrs[0])
        await other.connect(b.addrs[0])
        await b.pin(friend.peer_id, "trusted")
        raw = RawSender(friend, b)
        await raw.open()
        for seq in range(1, 9):  # 40 points: banned twice over by the box, and far below trust's threshold
            await _tamper(raw, seq)
        await wait_until(lambda: b.messaging.stats()["rejected"]["tampered"] == 8, what="all eight rejected")
        assert b.is_connected(friend.peer_id) and not b.is_banned(friend.peer_id)
        assert b.trust_of(friend.peer_id)["level"] == "trusted"

        await b.pin(other.peer_id, "banned")
        await wait_until(lambda: not b.is_connected(other.peer_id), what="banned pin cuts off")
        await wait_until(lambda: not other.is_connected(b.peer_id), what="other sees the cut")
        with pytest.raises(DialError):
            await other.connect(b.addrs[0])
        await b.pin(other.peer_id, None)
        await other.connect(b.addrs[0])


async def test_scores_and_pins_survive_a_restart(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    async with Node(local_config()) as stranger, Node(local_config()) as enemy:
        async with Node(local_config(identity_path=key, trust=TRUST)) as first:
            first.offence(stranger.peer_id, "test:offence", 6.0)
            await first.pin(enemy.peer_id, "banned")
            before = first.trust_of(stranger.peer_id)["score"]
        assert (tmp_path / "node.key.trust.json").exists()
        async with Node(local_config(identity_path=key, trust=TRUST)) as second:
            after = second.trust_of(stranger.peer_id)
            assert after["score"] == pytest.approx(before, abs=0.01) and after["level"] == "deprioritized"
            assert after["reasons"] == {"test:offence": 1}
            assert second.trust_of(enemy.peer_id)["level"] == "banned"
            with pytest.raises(PeerRefused):
                await second.connect(enemy.addrs[0])
            with trio.fail_after(10), pytest.raises(DialError):
                await enemy.connect(second.addrs[0])


async def test_a_swim_liar_loses_trust_until_it_is_cut_off() -> None:
    """Forged 'left' rumours about a member (signatures that are not its own):
    each rejected update is an offence, and trust (the penalty box off here)
    cuts the liar off."""
    from agentp2p.protocol.swim import MemberUpdate, State
    from tests.adversarial.swim_attacker import attacker, honest_nodes, ping_with, random_signature

    async with honest_nodes(2, node_kw={"penalties": QUIET_BOX, "trust": TRUST}) as (victim, b):
        node = victim.node
        async with attacker([victim]) as att:
            liar = att.node.peer_id
            for _ in range(20):
                if node.trust_of(liar)["level"] == "cut_off":
                    break
                inc = (victim.swim.member(b.peer_id) or b.swim).incarnation
                before = node.trust_of(liar)["score"]
                with contextlib.suppress(Exception):  # cut off mid-way: the victim reset us
                    # "b left", with a signature that is not b's: forged (a fresh one each time).
                    lie = MemberUpdate(b.pid, State.LEFT, inc, (), b"", random_signature())
                    await att.send(node.peer_id, [ping_with(victim.pid, [lie])])
                await wait_until(lambda: node.trust_of(liar)["score"] < before
                                 or node.trust_of(liar)["level"] == "cut_off", what="the lie judged")
            info = node.trust_of(liar)
            assert info["level"] == "cut_off" and set(info["reasons"]) == {"swim:rejected"}
            assert node.penalties.stats()["bans"] == 0  # trust did it, not the box
            await wait_until(lambda: not node.is_connected(liar), what="liar disconnected")
            assert victim.swim.state_of(b.peer_id) == "alive"


async def test_a_flooding_forwarder_loses_trust_until_it_is_cut_off() -> None:
    """Hundreds of messages with bad signatures from one forwarder: every one an
    offence (then graylisted RPCs, each an offence too); trust cuts it off."""
    from tests.adversarial.pubsub_attacker import bogus_signature_message, raw_meshsub

    async with Node(local_config(penalties=QUIET_BOX, trust=TRUST)) as victim, victim.subscribe("t"):
        async with raw_meshsub(victim.peer_id, victim.listen_addrs) as attacker:
            await attacker.subscribe("t")
            with trio.move_on_after(10), contextlib.suppress(Exception):  # hung up on once cut off
                for k in range(300):
                    await attacker.publish(bogus_signature_message("t", attacker.peer_id, k + 1))
            await wait_until(lambda: victim.trust_of(attacker.peer_id)["level"] == "cut_off", what="cut off")
            await wait_until(lambda: not victim.is_connected(attacker.peer_id), what="disconnected")
            reasons = victim.trust_of(attacker.peer_id)["reasons"]
            assert any(r.startswith("pubsub:") for r in reasons), reasons
            assert victim.penalties.stats()["bans"] == 0 and victim.stats()["pubsub"]["delivered"] == 0


async def test_a_small_offence_keeps_the_mesh_place_a_deprioritised_peer_loses_it() -> None:
    """P5 is the trust score only below deprioritize_below: gossipsub prunes any
    negative score, and one small offence must not cost a peer its mesh place."""
    fast = TrustConfig(deprioritize_below=-4.0, disconnect_below=-12.0, upkeep_interval=0.1)
    async with Node(local_config(trust=fast)) as b, Node(local_config()) as a:
        async with b.subscribe("t"), a.subscribe("t"):
            await a.connect(b.addrs[0])
            await wait_until(lambda: a.peer_id in b.pubsub.mesh_peers("t"), what="a in b's mesh")
            b.offence(a.peer_id, "test:small", 1.0)
            ticks = b.pubsub.stats.heartbeats
            await wait_until(lambda: b.pubsub.stats.heartbeats >= ticks + 3, what="three heartbeats")
            assert a.peer_id in b.pubsub.mesh_peers("t") and b.pubsub.peer_score(a.peer_id) >= 0.0
            b.offence(a.peer_id, "test:more", 5.0)  # -6: deprioritised, not cut off
            await wait_until(lambda: b.pubsub.peer_score(a.peer_id) < 0, what="P5 applied")
            await wait_until(lambda: a.peer_id not in b.pubsub.mesh_peers("t"), what="pruned from b's mesh")
            assert b.is_connected(a.peer_id) and b.trust_of(a.peer_id)["level"] == "deprioritized"
