"""The connection manager's decision: which idle connections to close, on given times."""

from __future__ import annotations

import pytest

from agentp2p.config import NodeConfig
from agentp2p.errors import ConfigError
from agentp2p.network.connection_manager import ConnectionManager, ConnectionsConfig


def manager(high: int = 4, low: int = 2, grace: float = 10.0, idle: float = 5.0) -> ConnectionManager:
    return ConnectionManager(ConnectionsConfig(high_water=high, low_water=low, grace=grace, idle=idle), 300)


def test_nothing_is_closed_at_or_below_high_water() -> None:
    cm = manager()
    for p in "abcd":
        cm.connected(p, 0.0)
    assert cm.to_trim(100.0, "abcd") == []
    assert cm.trimmed == 0


def test_above_high_water_the_idle_longest_go_down_to_low_water() -> None:
    cm = manager()
    for k, p in enumerate("abcdef"):
        cm.connected(p, 0.0)
        cm.used(p, float(k))  # a idle longest, f most recently used
    assert cm.to_trim(100.0, "abcdef") == ["a", "b", "c", "d"]
    assert cm.trimmed == 4 and cm.rounds == 1


def test_young_busy_and_protected_connections_stay_even_if_that_leaves_more_than_low_water() -> None:
    cm = manager(high=3, low=1)
    cm.connected("old", 0.0)
    cm.connected("young", 95.0)  # within its 10 s grace
    cm.connected("busy", 0.0)
    cm.used("busy", 97.0)  # a stream opened 3 s ago
    cm.connected("mesh", 0.0)
    cm.connected("idle", 0.0)
    cm.add_protector(lambda: ["mesh"])
    assert cm.to_trim(100.0, ["old", "young", "busy", "mesh", "idle"]) == ["old", "idle"]


def test_protection_covers_at_most_half_of_low_water() -> None:
    cm = manager(high=6, low=4)
    cm.add_protector(lambda: ["p1", "p2", "p3", "p4"])
    assert cm.protected() == {"p1", "p2"}
    for p in ["p1", "p2", "p3", "p4", "a", "b", "c"]:
        cm.connected(p, 0.0)
    assert cm.to_trim(100.0, ["p1", "p2", "p3", "p4", "a", "b", "c"]) == ["p3", "p4", "a"]


def test_a_peer_first_seen_by_a_round_gets_its_grace_period() -> None:
    cm = manager(high=2, low=1)
    cm.connected("a", 0.0)
    # "b" and "c" connected without an event reaching the manager.
    assert cm.to_trim(100.0, ["a", "b", "c"]) == ["a"]
    assert cm.to_trim(105.0, ["b", "c"]) == []  # at high water
    assert cm.to_trim(111.0, ["b", "c", "d"]) == ["b", "c"]  # b, c past their grace; d within it


def test_young_and_busy_connections_go_too_when_the_node_would_stay_above_high_water() -> None:
    """A stream of fresh dials (SWIM probes) or a peer opening a stream every
    few seconds must not keep the node full: the least recently used of
    them go, down to high water (not low water)."""
    cm = manager(high=3, low=2, grace=30.0, idle=10.0)
    for k in range(8):
        cm.connected(f"y{k}", 90.0 + k)  # all within their grace
    cm.used("y0", 99.5)  # busy, and used last
    assert cm.to_trim(100.0, [f"y{k}" for k in range(8)]) == ["y1", "y2", "y3", "y4", "y5"]


def test_a_peer_that_reconnects_gets_a_fresh_grace_period() -> None:
    cm = manager(high=2, low=1)
    cm.connected("a", 0.0)
    cm.connected("a", 99.0)  # redialed before its close was reported
    cm.connected("b", 0.0)
    cm.connected("c", 0.0)
    assert cm.to_trim(100.0, ["a", "b", "c"]) == ["b", "c"]


def test_protection_is_shared_round_robin_between_protectors() -> None:
    cm = manager(high=10, low=8)  # at most 4 protected
    cm.add_protector(lambda: ["m1", "m2", "m3", "m4", "m5"])
    cm.add_protector(lambda: ["busy1", "busy2"])
    assert cm.protected() == {"m1", "busy1", "m2", "busy2"}


def test_names_of_peers_not_connected_take_no_share_of_protection() -> None:
    """SWIM names the members it will probe next, some of them still being
    dialed: those names must not use up the cap the mesh needs."""
    cm = manager(high=10, low=8)  # at most 4 protected
    cm.add_protector(lambda: ["m1", "m2", "m3", "m4", "m5"])
    cm.add_protector(lambda: ["dialing1", "dialing2", "next"])
    connected = {"m1", "m2", "m3", "m4", "m5", "next"}
    assert cm.protected() == {"m1", "dialing1", "m2", "dialing2"}  # without the connected set: by name
    assert cm.protected(connected) == {"m1", "m2", "m3", "next"}
    for p in sorted(connected) + [f"idle{k}" for k in range(6)]:
        cm.connected(p, 0.0)
    trimmed = cm.to_trim(100.0, sorted(connected) + [f"idle{k}" for k in range(6)])
    assert not {"m1", "m2", "m3", "next"} & set(trimmed) and len(trimmed) == 12 - 8


def test_a_refused_connection_brings_a_round_forward_at_most_once_per_pressure_interval() -> None:
    """A node refusing newcomers for lack of room trims at once instead of
    at its next interval (a join storm: docs/scale.md), but a flood of
    refusals asks for no more than one round per pressure_interval."""
    cm = ConnectionManager(ConnectionsConfig(high_water=4, low_water=2, pressure_interval=1.0), 300)
    assert cm.pressed(10.0)
    assert not cm.pressed(10.5) and not cm.pressed(10.99)
    assert cm.pressed(11.0) and not cm.pressed(11.2)
    assert cm.pressure_rounds == 2 and cm.stats()["pressure_rounds"] == 2
    off = ConnectionManager(ConnectionsConfig(pressure_interval=0.0), 300)
    assert not off.pressed(10.0)
    disabled = ConnectionManager(ConnectionsConfig(enabled=False), 300)
    assert not disabled.pressed(10.0)


def test_a_round_on_refusal_closes_young_connections_but_spares_established_ones_in_use() -> None:
    """Whoever makes the node refuse connections (a peer opening them at will)
    must not get its established connections in use cycled faster than every
    interval. Two established connections in use and two young ones, high
    water 2: an interval's round closes the least recently used (the
    established pair); a round on refusal, the young ones."""
    def four() -> ConnectionManager:
        cm = manager(high=2, low=1, grace=10.0, idle=5.0)
        for p in ("a", "b"):
            cm.connected(p, 0.0)
            cm.used(p, 19.0)
        for p in ("c", "d"):
            cm.connected(p, 19.5)
        return cm

    assert sorted(four().to_trim(20.0, ["a", "b", "c", "d"])) == ["a", "b"]
    assert sorted(four().to_trim(20.0, ["a", "b", "c", "d"], pressed=True)) == ["c", "d"]
    guarded = four()
    guarded.add_protector(lambda: ["c"])
    assert guarded.to_trim(20.0, ["a", "b", "c", "d"], pressed=True) == ["d"]  # protection holds; above high water
    ConnectionsConfig(pressure_interval=0.1).validate()


def test_a_round_on_refusal_spares_the_nodes_own_fresh_dials() -> None:
    """The refusal came from someone dialing in; a connection the node itself
    just dialed carries a request about to go out. Four young connections,
    high water 2: a round on refusal closes the inbound pair (and one whose
    side is not known), never the node's own dials; an interval's round, at
    the same moment, closes the least recently used, the node's dials here."""
    def young() -> ConnectionManager:
        cm = manager(high=2, low=1, grace=10.0, idle=5.0)
        cm.connected("out1", 19.0, inbound=False)
        cm.connected("out2", 19.1, inbound=False)
        cm.connected("in1", 19.2, inbound=True)
        cm.connected("in2", 19.3, inbound=True)
        return cm

    peers = ["in1", "in2", "out1", "out2"]
    assert sorted(young().to_trim(20.0, peers, pressed=True)) == ["in1", "in2"]
    assert sorted(young().to_trim(20.0, peers)) == ["out1", "out2"]  # least recently used first
    outbound_only = manager(high=2, low=1, grace=10.0, idle=5.0)
    for k, p in enumerate(["o1", "o2", "o3", "o4"]):
        outbound_only.connected(p, 19.0 + k / 10, inbound=False)
    assert outbound_only.to_trim(20.0, ["o1", "o2", "o3", "o4"], pressed=True) == []
    assert sorted(outbound_only.to_trim(20.0, ["o1", "o2", "o3", "o4"])) == ["o1", "o2"]
    unknown = manager(high=2, low=1, grace=10.0, idle=5.0)
    unknown.connected("u", 19.0)
    for p in ("o1", "o2"):
        unknown.connected(p, 19.5, inbound=False)
    assert unknown.to_trim(20.0, ["u", "o1", "o2"], pressed=True) == ["u"]
    # Once past its grace and idle, the node's own dial is an idle connection like any other.
    old = manager(high=2, low=1, grace=10.0, idle=5.0)
    for p in ("o1", "o2", "o3"):
        old.connected(p, 0.0, inbound=False)
    assert len(old.to_trim(20.0, ["o1", "o2", "o3"], pressed=True)) == 2


def test_forgets_peers_no_longer_connected() -> None:
    cm = manager()
    for p in "abcdef":
        cm.connected(p, 0.0)
    cm.to_trim(1.0, "ab")
    assert set(cm._peers) == {"a", "b"}
    cm.disconnected("a")
    assert set(cm._peers) == {"b"}


def test_below_three_connections_there_is_no_room_and_the_manager_stays_off() -> None:
    NodeConfig(max_connections=2).validate()  # accepted, as before the manager existed
    cm = ConnectionManager(ConnectionsConfig(), 2)
    assert not cm.active
    for p in range(5):
        cm.connected(p, 0.0)
    assert cm.to_trim(1e6, range(5)) == []


def test_off_closes_nothing() -> None:
    cm = ConnectionManager(ConnectionsConfig(enabled=False), 300)
    for p in range(500):
        cm.connected(p, 0.0)
    assert cm.to_trim(1e6, range(500)) == []


def test_the_water_marks_follow_max_connections_unless_set() -> None:
    assert ConnectionsConfig().marks(256) == (135, 163)  # the node's defaults: min(300, 256 inbound)
    assert ConnectionsConfig().marks(300) == (160, 192)  # go-libp2p's defaults
    assert ConnectionsConfig().marks(50) == (26, 32)
    assert ConnectionsConfig().marks(4) == (1, 2)
    assert ConnectionsConfig(high_water=20, low_water=5).marks(300) == (5, 20)


@pytest.mark.parametrize("bad, why", [
    (dict(connections=ConnectionsConfig(high_water=300)), "must be below max_connections"),
    (dict(connections=ConnectionsConfig(high_water=260)), "must be below max_connections"),  # inbound 256
    (dict(connections=ConnectionsConfig(high_water=10, low_water=10)), "low_water < high_water"),
    (dict(connections=ConnectionsConfig(interval=0)), "interval > 0"),
    (dict(connections=ConnectionsConfig(pressure_interval=-1)), "pressure_interval must be 0"),
    (dict(connections=ConnectionsConfig(pressure_interval=0.001)), "at least 0.1 s"),
    (dict(connections=ConnectionsConfig(low_water=170)), "must be below high_water \\(163"),
])
def test_the_config_refuses_water_marks_that_could_lock_newcomers_out(bad: dict, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        NodeConfig(**bad).validate()


def test_the_config_file_sets_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from agentp2p.config import build_config

    f = tmp_path / "c.toml"
    f.write_text("[connections]\nhigh_water = 40\nlow_water = 30\ngrace = 5\n")
    cfg = build_config(f, environ={"AGENTP2P_CONNECTIONS__IDLE": "2"})
    c = cfg.connections
    assert (c.high_water, c.low_water, c.grace, c.idle) == (40, 30, 5, 2)
    f.write_text("[connections]\nhigh_water = 400\n")
    with pytest.raises(ConfigError, match="must be below max_connections"):
        build_config(f, environ={})


def test_a_connections_side_comes_from_its_muxer_or_secure_channel() -> None:
    """``is_inbound``: py-libp2p's Yamux keeps the side in ``is_initiator_value``,
    its QUIC connection in ``is_initiator``, the Noise channel under a muxer
    in ``is_initiator``; a connection that says nothing is None (a round on
    refusal treats it as inbound). The real-socket side: test_connection_trimming."""
    from types import SimpleNamespace as NS

    from agentp2p.network.events import is_inbound

    assert is_inbound(NS(muxed_conn=NS(is_initiator_value=True))) is False
    assert is_inbound(NS(muxed_conn=NS(is_initiator_value=False, is_initiator=True))) is True
    assert is_inbound(NS(muxed_conn=NS(is_initiator=False))) is True  # QUIC
    assert is_inbound(NS(muxed_conn=NS(secured_conn=NS(is_initiator=True)))) is False
    assert is_inbound(NS(muxed_conn=NS(is_initiator=None))) is None
    assert is_inbound(NS(muxed_conn=NS())) is None
