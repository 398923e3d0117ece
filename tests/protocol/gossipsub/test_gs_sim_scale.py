"""The gossipsub simulator (agentp2p/simulation/gossipsub.py) at small scale:
a clean 200-node network delivers everything with meshes in bounds, runs are
exactly reproducible (also across hash seeds), the byte counts are the
codec's, and against message-dropping Sybils scoring does not deliver less
than no scoring (and, with P3 on, takes the Sybils out of the meshes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dataclasses import replace

import pytest

from agentp2p.protocol.gossipsub.codec import encode_rpc
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import (
    Control,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Message,
    PeerInfo,
    Prune,
    Rpc,
    SubOpts,
)
from agentp2p.simulation.gossipsub import GossipSimConfig, GossipSimulation, run_scenario
from agentp2p.simulation.gossipsub_metrics import rpc_size, varint_len

_TIMING = ("build_s", "wall_s")


def figures(r: dict) -> dict:
    """The run's figures without its wall times (NaN made comparable)."""
    return {k: (None if v != v else v) for k, v in r.items() if k not in _TIMING}


CLEAN200 = GossipSimConfig(n=200, seed=3, warmup=4.0, duration=4.0, drain=2.0)


@pytest.fixture(scope="module")
def clean200() -> dict:
    return run_scenario(CLEAN200)


def test_200_nodes_no_loss_deliver_everything_with_meshes_in_bounds(clean200: dict) -> None:
    r = clean200
    p = GossipSubParams()
    assert r["messages"] >= 4
    assert r["ratio"] == 1.0 and r["fully_delivered"] == 1.0 and r["late"] == 0
    assert p.d_lo <= r["mesh_min"] and r["mesh_max"] <= p.d_hi and r["mesh_in_bounds"] == 1.0
    # latency: a few hops of 10-200 ms links, no heartbeat waits
    assert 0.01 < r["p50"] <= r["p99"] < 1.0
    assert r["dup_per_delivery"] > 0 and r["ctl_Bps"] > 0 and r["data_Bps"] > 0
    assert r["lost_rpcs"] == 0


def test_same_seed_same_figures(clean200: dict) -> None:
    assert figures(run_scenario(CLEAN200)) == figures(clean200)
    small = GossipSimConfig(n=40, dial=5, seed=3, warmup=2.0, duration=3.0, drain=2.0)
    assert figures(run_scenario(replace(small, seed=4))) != figures(run_scenario(small))


_CHILD = """
import json, sys
from agentp2p.simulation.gossipsub import GossipSimConfig, run_scenario
r = run_scenario(GossipSimConfig(n=50, dial=6, seed=5, warmup=2.0, duration=3.0, drain=2.0, loss=0.05,
                                 scoring="default"))
r.pop("build_s"); r.pop("wall_s")
print(json.dumps(r, sort_keys=True))
"""


def test_same_figures_whatever_the_hash_seed() -> None:
    """Set iteration order of bytes differs per process (PYTHONHASHSEED): the
    figures must not."""
    outs = []
    for hs in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hs)
        done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outs.append(json.loads(done.stdout))
    assert outs[0] == outs[1]


def test_full_wire_mode_gives_the_same_figures() -> None:
    """Handing RPC objects over (the default) is only a shortcut for encode + decode."""
    base = dict(n=60, dial=6, seed=2, warmup=3.0, duration=3.0, drain=2.0)
    fast = run_scenario(GossipSimConfig(**base))
    full = run_scenario(GossipSimConfig(**base, wire="full"))
    assert figures(fast) == figures(full)


def _sample_rpcs() -> list[Rpc]:
    big = b"\x01" * 300  # lengths >= 128 need two varint bytes
    m1 = Message("t", b"", b"\x00" * 38, b"\x00" * 8, b"\x5a" * 64)
    m2 = Message("topic-ü", big, None, None, None, b"k" * 36)
    return [
        Rpc(),
        Rpc(subscriptions=(SubOpts(True, "a"), SubOpts(False, ""))),
        Rpc(publish=(m1, m2, m1)),
        Rpc(control=Control(ihave=(IHave("t", (b"x" * 46,) * 3), IHave("", ())))),
        Rpc(control=Control(iwant=(IWant(()), IWant((big, b"y"))))),
        Rpc(control=Control(graft=(Graft("t"), Graft("u")))),
        Rpc(control=Control(prune=(Prune("t"), Prune("t", (PeerInfo(b"p" * 38), PeerInfo(b"q", big)), 60),
                                   Prune("u", (), 300_000)))),
        Rpc(control=Control(idontwant=(IDontWant((b"z" * 46,)),))),
        Rpc((SubOpts(True, "t"),), (m2,) * 5, Control(ihave=(IHave("t", (big,) * 3),), graft=(Graft("t"),))),
    ]


def test_rpc_size_is_the_codecs() -> None:
    for rpc in _sample_rpcs():
        raw = encode_rpc(rpc)
        total, data = rpc_size(rpc)
        assert total == len(raw) + varint_len(len(raw)), rpc
        only_msgs = encode_rpc(Rpc(publish=rpc.publish))
        assert data == len(only_msgs), rpc


def test_rpc_size_matches_on_simulated_traffic() -> None:
    seen: list[Rpc] = []

    class Recording(GossipSimulation):
        def _send(self, i: int, peer: bytes, rpc: Rpc) -> None:
            if len(seen) < 3000:
                seen.append(rpc)
            super()._send(i, peer, rpc)

    cfg = GossipSimConfig(n=40, dial=5, seed=1, warmup=2.0, duration=3.0, drain=2.0, sybils=0.1, sybil_mode="ihave")
    sim = Recording(cfg)
    sim.run_until(cfg.warmup)
    sim.start_window()
    sim.run_until(cfg.warmup + cfg.duration + cfg.drain)
    kinds = {"subs": 0, "msgs": 0, "ihave": 0, "iwant": 0, "graft": 0}
    for rpc in seen:
        raw = encode_rpc(rpc)
        assert rpc_size(rpc)[0] == len(raw) + varint_len(len(raw))
        kinds["subs"] += bool(rpc.subscriptions)
        kinds["msgs"] += bool(rpc.publish)
        kinds["ihave"] += bool(rpc.control.ihave)
        kinds["iwant"] += bool(rpc.control.iwant)
        kinds["graft"] += bool(rpc.control.graft)
    assert all(kinds.values()), kinds


def test_sybils_that_drop_everything_scoring_delivers_no_less() -> None:
    """20 % Sybils that mesh greedily and never forward. Scoring never costs
    delivery; with P3 on it also evicts them from the meshes."""
    base = dict(n=100, dial=8, seed=1, warmup=17.0, duration=5.0, drain=3.0, sybils=0.2, sybil_mode="drop")
    off = run_scenario(GossipSimConfig(**base, scoring="off"))
    default = run_scenario(GossipSimConfig(**base, scoring="default"))
    p3 = run_scenario(GossipSimConfig(**base, scoring="p3"))
    assert off["sybil_mesh_share"] > 0.2  # the greedy Sybils do get in
    assert default["ratio"] >= off["ratio"] and p3["ratio"] >= off["ratio"]
    assert p3["ratio"] == 1.0
    assert p3["sybil_mesh_share"] < off["sybil_mesh_share"] / 4
    # (Latency is not asserted: at 100 nodes the Sybils' effect on it is
    # within the noise; docs/pubsub.md has the 1,000-node figures.)


def test_spamming_sybils_are_cut_off_by_default_scoring() -> None:
    base = dict(n=80, dial=8, seed=2, warmup=5.0, duration=4.0, drain=3.0, sybils=0.1, sybil_mode="spam")
    off = run_scenario(GossipSimConfig(**base, scoring="off"))
    on = run_scenario(GossipSimConfig(**base, scoring="default"))
    assert on["ratio"] >= off["ratio"]
    assert off["forged_verified_ps"] > 5 * max(on["forged_verified_ps"], 0.01)
    assert on["sybil_mesh_share"] == 0.0 < off["sybil_mesh_share"]


def test_churn_rejoined_nodes_get_messages_again() -> None:
    cfg = GossipSimConfig(n=120, dial=8, seed=4, warmup=5.0, duration=12.0, drain=4.0, churn=0.1,
                          churn_down=(3.0, 5.0))
    sim = GossipSimulation(cfg)
    sim.run_until(cfg.warmup)
    sim.start_window()
    sim.run_until(cfg.warmup + cfg.duration + cfg.drain)
    r = sim.summary()
    assert r["ratio"] >= 0.99
    back = [i for i, spans in sim.down.items() if spans[-1][1] < cfg.warmup + cfg.duration - 2]
    assert back
    topic = sim.topics[0]
    for i in back:
        assert sim.up[i] and len(sim.cores[i].mesh(topic)) >= 1
