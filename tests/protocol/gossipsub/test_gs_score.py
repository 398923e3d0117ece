"""Gossipsub v1.1 peer scoring (sans-IO), in virtual time.

Each score component is checked for direction and shape (linear, squared,
capped, activated late, decaying) with parameters chosen so the arithmetic is
exact: one component switched on at a time, weights of 1 or -1.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentp2p.protocol.gossipsub.score import REJECT_REASONS, PeerScore
from agentp2p.protocol.gossipsub.score_params import (
    PeerScoreParams,
    PeerScoreThresholds,
    TopicScoreParams,
    default_score_params,
    score_parameter_decay,
)

T = "agents/tasks"
A, B, C, D = b"peer-a", b"peer-b", b"peer-c", b"peer-d"


def topic(**kw) -> TopicScoreParams:
    """A topic with every component off (weight 0) unless switched on in ``kw``."""
    base = dict(
        topic_weight=1.0,
        time_in_mesh_weight=0.0,
        time_in_mesh_quantum=1.0,
        time_in_mesh_cap=10.0,
        first_message_deliveries_weight=0.0,
        first_message_deliveries_decay=0.5,
        first_message_deliveries_cap=100.0,
        mesh_message_deliveries_weight=0.0,
        mesh_message_deliveries_decay=0.5,
        mesh_message_deliveries_threshold=4.0,
        mesh_message_deliveries_cap=10.0,
        mesh_message_deliveries_activation=5.0,
        mesh_message_deliveries_window=0.01,
        mesh_failure_penalty_weight=0.0,
        mesh_failure_penalty_decay=0.5,
        invalid_message_deliveries_weight=0.0,
        invalid_message_deliveries_decay=0.5,
    )
    base.update(kw)
    return TopicScoreParams(**base)


def params(topics=None, **kw) -> PeerScoreParams:
    """Global components off unless switched on; one topic T by default."""
    base = dict(
        topics={T: topic()} if topics is None else topics,
        topic_score_cap=0.0,
        app_specific_weight=1.0,
        ip_colocation_factor_weight=0.0,
        ip_colocation_factor_threshold=1,
        ip_colocation_factor_whitelist=(),
        behaviour_penalty_weight=0.0,
        behaviour_penalty_threshold=0.0,
        behaviour_penalty_decay=0.5,
        decay_interval=1.0,
        decay_to_zero=0.01,
        retain_score=100.0,
    )
    base.update(kw)
    return PeerScoreParams(**base)


def scorer(p: PeerScoreParams, *peers: bytes, now: float = 0.0) -> PeerScore:
    ps = PeerScore(p, now=now)
    for peer in peers:
        assert ps.add_peer(peer, now, None)
    return ps


def heartbeats(ps: PeerScore, start: float, end: float) -> None:
    """refresh() once a second over (start, end], as the router's heartbeat does."""
    t = start
    while t + 1.0 <= end:
        t += 1.0
        ps.refresh(t)


def first_delivery(ps: PeerScore, peer: bytes, msg_id: bytes, now: float, t: str = T) -> None:
    ps.validate_message(peer, msg_id, t, now)
    ps.deliver_message(peer, msg_id, t, now)


# ------------------------------------------------------------ P1 time in mesh


def test_p1_grows_per_whole_quantum_in_mesh_up_to_the_cap_and_stops_at_prune() -> None:
    ps = scorer(params({T: topic(time_in_mesh_weight=1.0, time_in_mesh_quantum=2.0, time_in_mesh_cap=3.0)}), A)
    assert ps.score(A, 0.0) == 0.0
    ps.graft(A, T, 0.0)
    assert ps.score(A, 1.9) == 0.0  # not a whole quantum yet
    assert ps.score(A, 2.0) == 1.0
    assert ps.score(A, 5.0) == 2.0
    assert ps.score(A, 100.0) == 3.0  # capped
    ps.graft(A, T, 50.0)  # already grafted: the original time stands
    assert ps.score(A, 100.0) == 3.0
    ps.prune(A, T, 100.0)
    assert ps.score(A, 101.0) == 0.0  # P1 only while in the mesh


# ------------------------------------------------------------ P2 first deliveries


def test_p2_rewards_only_the_first_deliverer_linearly_and_capped() -> None:
    ps = scorer(params({T: topic(first_message_deliveries_weight=2.0, first_message_deliveries_cap=3.0)}), A, B)
    first_delivery(ps, A, b"m1", 0.0)
    ps.duplicate_message(B, b"m1", T, 0.0)
    assert ps.score(A, 0.0) == 2.0
    assert ps.score(B, 0.0) == 0.0  # a copy is not a first delivery
    first_delivery(ps, A, b"m2", 0.0)
    assert ps.score(A, 0.0) == 4.0
    ps.deliver_message(A, b"m2", T, 0.0)  # repeated trace: paid once
    assert ps.score(A, 0.0) == 4.0
    for i in range(10):
        first_delivery(ps, A, b"x%d" % i, 0.0)
    assert ps.score(A, 0.0) == 6.0  # cap 3 x weight 2


def test_unscored_topics_and_untracked_peers_do_not_count() -> None:
    ps = scorer(params({T: topic(first_message_deliveries_weight=1.0, invalid_message_deliveries_weight=-1.0)}), A)
    first_delivery(ps, A, b"m1", 0.0, t="other")
    ps.reject_message(A, b"m2", "other", 0.0, "invalid")
    assert ps.score(A, 0.0) == 0.0
    first_delivery(ps, B, b"m3", 0.0)  # B never added
    assert ps.score(B, 0.0) == 0.0 and B not in ps.scores()


# ------------------------------------------------------------ P3 mesh deliveries


def p3_params(**kw) -> PeerScoreParams:
    return params({T: topic(mesh_message_deliveries_weight=-1.0, **kw)})


def test_p3_deficit_is_squared_and_only_after_activation() -> None:
    ps = scorer(p3_params(), A)  # threshold 4, activation 5 s
    ps.graft(A, T, 0.0)
    assert ps.score(A, 5.0) == 0.0  # activation not passed yet
    assert ps.score(A, 5.5) == -16.0  # deficit 4, squared
    first_delivery(ps, A, b"m1", 6.0)
    assert ps.score(A, 6.0) == -9.0
    first_delivery(ps, A, b"m2", 6.0)
    assert ps.score(A, 6.0) == -4.0
    for i in range(5):
        first_delivery(ps, A, b"x%d" % i, 6.0)
    assert ps.score(A, 6.0) == 0.0  # at/above threshold: no penalty


def test_p3_counts_near_first_copies_from_mesh_peers_only() -> None:
    ps = scorer(p3_params(mesh_message_deliveries_window=0.01), A, B, C, D)
    for peer in (A, B, C):
        ps.graft(peer, T, 0.0)
    ps.validate_message(A, b"m", T, 10.0)
    ps.duplicate_message(B, b"m", T, 10.2)  # while validating: counts
    ps.duplicate_message(D, b"m", T, 10.2)  # not in the mesh: no P3 credit
    ps.deliver_message(A, b"m", T, 10.5)
    ps.duplicate_message(C, b"m", T, 10.505)  # within the window: counts
    assert ps.score(A, 11.0) == -9.0
    assert ps.score(B, 11.0) == -9.0
    assert ps.score(C, 11.0) == -9.0
    ps.validate_message(A, b"n", T, 20.0)
    ps.deliver_message(A, b"n", T, 20.0)
    ps.duplicate_message(B, b"n", T, 20.5)  # an echo after the window: no credit
    ps.duplicate_message(B, b"n", T, 20.0)  # and a peer counts once per message anyway
    assert ps.score(B, 21.0) == -9.0
    assert ps.score(A, 21.0) == -4.0
    ps.graft(D, T, 21.0)
    assert ps.score(D, 25.0) == 0.0  # just grafted: not activated yet
    assert ps.score(D, 26.5) == -16.0  # the copy of "m" it sent before the graft earned nothing


# ------------------------------------------------------------ P3b mesh failure penalty


def test_p3b_prune_with_active_deficit_is_sticky_and_decays() -> None:
    p3b = dict(mesh_failure_penalty_weight=-2.0, mesh_failure_penalty_decay=0.5)
    p = params({T: topic(mesh_message_deliveries_weight=-1.0, **p3b)})
    ps = scorer(p, A, B, C)
    for peer in (A, B, C):
        ps.graft(peer, T, 0.0)
    ps.prune(A, T, 3.0)  # before activation: no failure
    assert ps.score(A, 3.0) == 0.0
    heartbeats(ps, 0.0, 6.0)
    first_delivery(ps, B, b"m1", 6.0)  # deficit 3 for B, 4 for C
    for i in range(4):
        first_delivery(ps, C, b"c%d" % i, 6.0)  # C meets the threshold
    ps.prune(B, T, 6.0)
    ps.prune(C, T, 6.0)
    assert ps.score(B, 6.0) == -2.0 * 9  # P3 gone with the mesh; P3b = deficit^2 stays
    assert ps.score(C, 6.0) == 0.0
    ps.prune(B, T, 6.0)  # pruning again charges nothing
    assert ps.score(B, 6.0) == -18.0
    ps.refresh(7.0)
    assert ps.score(B, 7.0) == -9.0  # decays


# ------------------------------------------------------------ P4 invalid messages


def test_p4_is_squared() -> None:
    ps = scorer(params({T: topic(invalid_message_deliveries_weight=-1.0)}), A)
    expected = [-1.0, -4.0, -9.0, -16.0]
    for i, want in enumerate(expected):
        ps.reject_message(A, b"bad%d" % i, T, 0.0, "invalid")
        assert ps.score(A, 0.0) == want


def test_reject_reasons_decide_who_is_penalised() -> None:
    ps = scorer(params({T: topic(invalid_message_deliveries_weight=-1.0)}), A, B, C)

    # A signature failure is the forwarder's alone (the id cannot be trusted).
    ps.validate_message(A, b"sig", T, 0.0)
    ps.duplicate_message(B, b"sig", T, 0.0)
    ps.reject_message(A, b"sig", T, 0.0, "invalid_signature")
    assert (ps.score(A, 0.0), ps.score(B, 0.0)) == (-1.0, 0.0)

    # "invalid": the forwarder, those who sent it while pending, and later senders.
    ps.validate_message(B, b"bad", T, 1.0)
    ps.duplicate_message(A, b"bad", T, 1.0)
    ps.reject_message(B, b"bad", T, 1.0, "invalid")
    ps.duplicate_message(C, b"bad", T, 2.0)
    ps.duplicate_message(C, b"bad", T, 3.0)  # once per peer and message
    assert ps.score(A, 3.0) == -4.0  # 2 invalid, squared
    assert ps.score(B, 3.0) == -1.0
    assert ps.score(C, 3.0) == -1.0

    # "ignored" and blacklist reasons penalise nobody, not even later copies.
    before = ps.scores()
    ps.validate_message(C, b"ign", T, 4.0)
    ps.duplicate_message(A, b"ign", T, 4.0)
    ps.reject_message(C, b"ign", T, 4.0, "ignored")
    ps.duplicate_message(B, b"ign", T, 4.0)
    ps.reject_message(C, b"bl", T, 4.0, "blacklisted_source")
    assert ps.scores() == before

    with pytest.raises(ValueError, match="unknown reject reason"):
        ps.reject_message(C, b"x", T, 4.0, "bogus")
    assert {"invalid", "ignored", "invalid_signature", "missing_signature", "self_origin"} <= REJECT_REASONS


# ------------------------------------------------------------ P5 application-specific


def test_p5_app_score_is_weighted_and_may_be_negative() -> None:
    ps = scorer(params(app_specific_weight=2.0), A)
    assert ps.set_app_score(A, 3.0)
    assert ps.score(A, 0.0) == 6.0
    ps.set_app_score(A, -5.0)
    assert ps.score(A, 0.0) == -10.0
    assert not ps.set_app_score(B, 1.0)  # untracked peer: nothing stored
    with pytest.raises(ValueError):
        ps.set_app_score(A, math.nan)


# ------------------------------------------------------------ P6 IP colocation


def test_p6_squared_surplus_over_threshold() -> None:
    ps = PeerScore(params(ip_colocation_factor_weight=-1.0, ip_colocation_factor_threshold=2), now=0.0)
    ps.add_peer(A, 0.0, "192.0.2.1")
    ps.add_peer(B, 0.0, "192.0.2.1")
    assert ps.score(A, 0.0) == 0.0  # at the threshold
    ps.add_peer(C, 0.0, "192.0.2.1")
    assert ps.score(A, 0.0) == ps.score(C, 0.0) == -1.0
    ps.add_peer(D, 0.0, "::ffff:192.0.2.1")  # IPv4-mapped: the same address
    assert ps.score(A, 0.0) == -4.0  # surplus 2, squared
    ps.add_peer(D, 0.0, "198.51.100.7")  # moved: no longer colocated
    assert ps.score(A, 0.0) == -1.0 and ps.score(D, 0.0) == 0.0
    ps.remove_peer(C, 1.0)  # retained (negative): its IP still counts
    assert ps.score(A, 1.0) == -1.0
    ps.refresh(200.0)  # retention over
    assert ps.score(A, 200.0) == 0.0


def test_p6_ipv6_counts_the_slash64_and_whitelist_exempts() -> None:
    ps = PeerScore(
        params(
            ip_colocation_factor_weight=-1.0,
            ip_colocation_factor_threshold=1,
            ip_colocation_factor_whitelist=("10.0.0.0/8",),
        ),
        now=0.0,
    )
    ps.add_peer(A, 0.0, "2001:db8::1")
    ps.add_peer(B, 0.0, "2001:db8::2")  # same /64, different address
    assert ps.score(A, 0.0) == -1.0
    ps.add_peer(C, 0.0, "10.1.2.3")
    ps.add_peer(D, 0.0, "10.1.2.3")
    assert ps.score(C, 0.0) == ps.score(D, 0.0) == 0.0  # whitelisted
    ps.add_peer(C, 0.0, "not-an-ip")  # unparseable: not counted
    assert ps.score(C, 0.0) == 0.0


def test_p6_default_whitelist_is_loopback() -> None:
    p = default_score_params([T])
    ps = PeerScore(p, now=0.0)
    for i in range(30):
        ps.add_peer(b"local%d" % i, 0.0, "127.0.0.1")
    assert ps.score(b"local0", 0.0) == 0.0
    for i in range(30):
        ps.add_peer(b"nat%d" % i, 0.0, "203.0.113.9")
    assert ps.score(b"nat0", 0.0) < PeerScoreThresholds().graylist_threshold  # 30 on one public IP


# ------------------------------------------------------------ P7 behaviour penalty


def test_p7_squared_excess_over_threshold_and_decays() -> None:
    ps = scorer(params(behaviour_penalty_weight=-1.0, behaviour_penalty_threshold=2.0, behaviour_penalty_decay=0.5), A)
    ps.add_penalty(A, 2)
    assert ps.score(A, 0.0) == 0.0  # at the threshold
    ps.add_penalty(A, 2)
    assert ps.score(A, 0.0) == -4.0  # excess 2, squared
    ps.add_penalty(A, 4)
    assert ps.score(A, 0.0) == -36.0
    ps.refresh(1.0)  # counter 8 -> 4
    assert ps.score(A, 1.0) == -4.0
    with pytest.raises(ValueError):
        ps.add_penalty(A, -1)


# ------------------------------------------------------------ topic weight and cap


def test_topic_weights_mix_topics_and_the_cap_limits_only_the_positive_topic_sum() -> None:
    u = "agents/chat"
    p2 = dict(first_message_deliveries_weight=1.0, invalid_message_deliveries_weight=-1.0)
    p = params({T: topic(topic_weight=2.0, **p2), u: topic(topic_weight=0.5, **p2)}, topic_score_cap=5.0)
    ps = scorer(p, A, B)
    first_delivery(ps, A, b"m1", 0.0)
    first_delivery(ps, A, b"m2", 0.0, t=u)
    assert ps.score(A, 0.0) == 2.5
    first_delivery(ps, A, b"m3", 0.0)
    first_delivery(ps, A, b"m4", 0.0)
    assert ps.score(A, 0.0) == 5.0  # 6.5 capped
    ps.set_app_score(A, 1.0)
    assert ps.score(A, 0.0) == 6.0  # P5 is outside the cap
    ps.reject_message(B, b"bad", T, 0.0, "invalid")
    ps.reject_message(B, b"bad2", T, 0.0, "invalid")
    ps.reject_message(B, b"bad3", T, 0.0, "invalid")
    assert ps.score(B, 0.0) == -18.0  # negatives are not capped: 2 x 3^2


# ------------------------------------------------------------ decay


def test_counters_decay_each_interval_and_snap_to_zero() -> None:
    p = params({T: topic(first_message_deliveries_weight=1.0, first_message_deliveries_decay=0.5)}, decay_to_zero=0.2)
    ps = scorer(p, A, B)
    first_delivery(ps, A, b"m1", 0.0)
    ps.refresh(0.5)  # less than an interval: nothing yet
    assert ps.score(A, 0.5) == 1.0
    ps.refresh(1.0)
    assert ps.score(A, 1.0) == 0.5
    ps.refresh(2.0)
    assert ps.score(A, 2.0) == 0.25
    ps.refresh(3.0)  # 0.125 < decay_to_zero
    assert ps.score(A, 3.0) == 0.0
    assert ps.stats()["decay_rounds"] == 3


def test_a_long_gap_decays_as_much_as_the_same_intervals_one_by_one() -> None:
    p = params({T: topic(first_message_deliveries_weight=1.0, first_message_deliveries_decay=0.9)})
    stepwise, at_once = scorer(p, A), scorer(p, A)
    for ps in (stepwise, at_once):
        for i in range(8):
            first_delivery(ps, A, b"m%d" % i, 0.0)
    for t in range(1, 11):
        stepwise.refresh(float(t))
    at_once.refresh(10.0)
    assert stepwise.score(A, 10.0) == pytest.approx(at_once.score(A, 10.0)) == pytest.approx(8 * 0.9**10)


def test_score_parameter_decay_reaches_decay_to_zero_after_decay_time() -> None:
    f = score_parameter_decay(600)
    assert f ** 600 == pytest.approx(0.01)
    f = score_parameter_decay(60, decay_interval=2.0, decay_to_zero=0.1)
    assert f ** 30 == pytest.approx(0.1)
    with pytest.raises(ValueError):
        score_parameter_decay(0.5)  # shorter than one interval
    with pytest.raises(ValueError):
        score_parameter_decay(60, decay_to_zero=1.0)


# ------------------------------------------------------------ retain_score


def test_negative_score_is_retained_after_disconnect_and_resumes_on_reconnect() -> None:
    p = params({T: topic(invalid_message_deliveries_weight=-1.0, invalid_message_deliveries_decay=0.5)})
    ps = scorer(p, A)
    ps.reject_message(A, b"bad", T, 0.0, "invalid")
    ps.reject_message(A, b"bad2", T, 0.0, "invalid")
    ps.remove_peer(A, 1.0)
    assert ps.score(A, 1.0) == -4.0
    heartbeats(ps, 1.0, 60.0)  # retained scores do not decay
    assert ps.score(A, 60.0) == -4.0
    assert ps.stats()["retained"] == 1
    ps.add_peer(A, 60.5, None)  # reconnecting does not wash it
    assert ps.score(A, 60.5) == -4.0
    ps.refresh(61.0)  # connected again: decays again
    assert ps.score(A, 61.0) == -1.0
    ps.remove_peer(A, 62.0)
    assert ps.score(A, 161.9) == -1.0
    assert ps.score(A, 162.0) == 0.0  # retain_score (100 s) is over
    ps.refresh(162.0)
    assert ps.stats()["peers"] == 0


def test_non_negative_scores_are_forgotten_at_disconnect() -> None:
    ps = scorer(params({T: topic(first_message_deliveries_weight=1.0)}), A, B)
    first_delivery(ps, A, b"m", 0.0)
    ps.remove_peer(A, 1.0)
    ps.remove_peer(B, 1.0)
    assert ps.stats()["peers"] == 0
    assert ps.score(A, 1.0) == 0.0


def test_disconnect_from_mesh_with_deficit_charges_p3b_when_retained() -> None:
    p = params({T: topic(mesh_message_deliveries_weight=-1.0, mesh_failure_penalty_weight=-1.0)})
    ps = scorer(p, A)
    ps.graft(A, T, 0.0)
    ps.remove_peer(A, 10.0)  # -16 (P3) at disconnect -> retained with P3b 16
    assert ps.score(A, 10.0) == -16.0
    ps.add_peer(A, 11.0, None)
    assert ps.score(A, 20.0) == -16.0  # no longer in the mesh: only P3b


# ------------------------------------------------------------ bounds


def test_delivery_records_expire_and_are_capped() -> None:
    p = params({T: topic(invalid_message_deliveries_weight=-1.0)}, seen_msg_ttl=10.0, max_delivery_records=3)
    ps = scorer(p, A, B)
    for i in range(5):
        ps.validate_message(A, b"m%d" % i, T, 0.0)
    assert ps.stats()["delivery_records"] == 3
    assert ps.stats()["records_evicted"] == 2
    ps.refresh(10.0)
    assert ps.stats()["delivery_records"] == 0
    # An evicted record cannot be settled against its pending senders.
    ps.validate_message(A, b"x", T, 11.0)
    ps.duplicate_message(B, b"x", T, 11.0)
    for i in range(3):
        ps.validate_message(A, b"y%d" % i, T, 11.0)
    ps.reject_message(A, b"x", T, 11.0, "invalid")
    assert ps.score(B, 11.0) == 0.0 and ps.score(A, 11.0) == -1.0


def test_tracked_peers_are_capped_dropping_retained_ones_first() -> None:
    p = params({T: topic(invalid_message_deliveries_weight=-1.0)}, max_peers=2)
    ps = scorer(p, A, B)
    ps.reject_message(A, b"bad", T, 0.0, "invalid")
    ps.remove_peer(A, 1.0)  # retained
    assert ps.add_peer(C, 2.0, "192.0.2.1")  # evicts A
    assert ps.score(A, 2.0) == 0.0
    assert not ps.add_peer(D, 2.0, "192.0.2.2")  # all connected: D goes untracked
    s = ps.stats()
    assert (s["peers"], s["peers_evicted"], s["peers_refused"], s["ips"]) == (2, 1, 1, 1)


def test_stats_and_scores_are_json_ready_snapshots() -> None:
    ps = scorer(params({T: topic(first_message_deliveries_weight=1.0)}), A, B)
    first_delivery(ps, A, b"m", 3.0)
    json.dumps(ps.stats())
    assert ps.scores() == {A: 1.0, B: 0.0}


# ------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"gossip_threshold": 0.0}, "gossip_threshold must be < 0"),
        ({"gossip_threshold": -10.0, "publish_threshold": -5.0}, "publish_threshold must be <= gossip_threshold"),
        ({"publish_threshold": -1000.0, "graylist_threshold": -999.0}, "graylist_threshold must be <= publish"),
        ({"accept_px_threshold": -1.0}, "accept_px_threshold must be >= 0"),
        ({"opportunistic_graft_threshold": -0.1}, "opportunistic_graft_threshold must be >= 0"),
        ({"gossip_threshold": math.nan}, "gossip_threshold"),
    ],
)
def test_threshold_validation_errors(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        PeerScoreThresholds(**kw).validate()


def test_thresholds_may_be_equal_where_the_spec_allows() -> None:
    PeerScoreThresholds(-10.0, -10.0, -10.0, 0.0, 0.0).validate()


@pytest.mark.parametrize(
    ("tkw", "gkw", "match"),
    [
        ({"topic_weight": -1.0}, {}, "topic_weight"),
        ({"time_in_mesh_weight": -1.0}, {}, "time_in_mesh_weight"),
        ({"time_in_mesh_quantum": 0.0}, {}, "time_in_mesh_quantum"),
        ({"first_message_deliveries_weight": 1.0, "first_message_deliveries_decay": 1.0}, {}, "first_message_deliv"),
        ({"mesh_message_deliveries_weight": 1.0}, {}, "mesh_message_deliveries_weight must be <= 0"),
        ({"mesh_message_deliveries_weight": -1.0, "mesh_message_deliveries_cap": 3.0}, {}, "cap must be >= mesh"),
        ({"mesh_message_deliveries_weight": -1.0, "mesh_message_deliveries_activation": 0.5}, {}, "activation"),
        ({"mesh_failure_penalty_weight": 0.1}, {}, "mesh_failure_penalty_weight"),
        ({"invalid_message_deliveries_decay": 0.0}, {}, "invalid_message_deliveries_decay"),
        ({"time_in_mesh_cap": math.inf}, {}, "time_in_mesh_cap must be a finite number"),
        ({}, {"topic_score_cap": -1.0}, "topic_score_cap"),
        ({}, {"ip_colocation_factor_weight": 1.0}, "ip_colocation_factor_weight"),
        ({}, {"ip_colocation_factor_threshold": 0}, "ip_colocation_factor_threshold"),
        ({}, {"ip_colocation_factor_whitelist": ("10.0.0.0/33",)}, "whitelist"),
        ({}, {"behaviour_penalty_weight": -1.0, "behaviour_penalty_decay": 1.5}, "behaviour_penalty_decay"),
        ({}, {"decay_interval": 0.5}, "decay_interval must be >= 1"),
        ({}, {"decay_to_zero": 0.0}, "decay_to_zero"),
        ({}, {"retain_score": -1.0}, "retain_score"),
    ],
)
def test_params_validation_errors(tkw, gkw, match) -> None:
    with pytest.raises(ValueError, match=match):
        params({T: topic(**tkw)}, **gkw).validate()


def test_topic_errors_name_the_topic_and_the_scorer_validates() -> None:
    bad = params({T: topic(topic_weight=-1.0)})
    with pytest.raises(ValueError, match=f"topic '{T}'"):
        PeerScore(bad, now=0.0)
    with pytest.raises(ValueError):
        PeerScore(params(), PeerScoreThresholds(gossip_threshold=1.0), now=0.0)
    with pytest.raises(TypeError):
        PeerScore(params(), 0.0)  # type: ignore[arg-type]  # PeerScore(params, now) by mistake


def test_defaults_are_valid_and_consistent() -> None:
    p = default_score_params({T: 1.0, "agents/chat": 0.25})
    assert p.topics["agents/chat"].topic_weight == 0.25
    PeerScoreThresholds().validate()
    # A mild incident is tolerated, a repeated one is not (see score_params.py).
    ps = PeerScore(p, now=0.0)
    ps.add_peer(A, 0.0, "192.0.2.1")
    th = ps.thresholds
    ps.reject_message(A, b"b1", T, 0.0, "invalid")
    assert th.gossip_threshold < ps.score(A, 0.0) < 0
    for i in range(2, 7):
        ps.reject_message(A, b"b%d" % i, T, 0.0, "invalid")
    assert ps.score(A, 0.0) < th.graylist_threshold


# ------------------------------------------------------------ property: always finite

PEERS = [A, B, C, D]
IPS = [None, "192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2", "bogus"]
TOPICS = [T, "agents/chat", "unscored"]
MSGS = [b"m%d" % i for i in range(6)]

big = st.floats(min_value=0, max_value=1e300, allow_nan=False)
decay = st.floats(min_value=1e-9, max_value=1 - 1e-9)


@st.composite
def topic_params(draw) -> TopicScoreParams:
    threshold = draw(st.floats(min_value=1e-6, max_value=1e150))
    return TopicScoreParams(
        topic_weight=draw(big),
        time_in_mesh_weight=draw(big),
        time_in_mesh_quantum=draw(st.floats(min_value=1e-300, max_value=1e6)),
        time_in_mesh_cap=draw(st.floats(min_value=1e-6, max_value=1e300)),
        first_message_deliveries_weight=draw(big),
        first_message_deliveries_decay=draw(decay),
        first_message_deliveries_cap=draw(st.floats(min_value=1e-6, max_value=1e300)),
        mesh_message_deliveries_weight=-draw(big),
        mesh_message_deliveries_decay=draw(decay),
        mesh_message_deliveries_threshold=threshold,
        mesh_message_deliveries_cap=threshold * draw(st.floats(min_value=1, max_value=10)),
        mesh_message_deliveries_activation=draw(st.floats(min_value=1, max_value=100)),
        mesh_message_deliveries_window=draw(st.floats(min_value=0, max_value=10)),
        mesh_failure_penalty_weight=-draw(big),
        mesh_failure_penalty_decay=draw(decay),
        invalid_message_deliveries_weight=-draw(big),
        invalid_message_deliveries_decay=draw(decay),
    )


@st.composite
def score_params(draw) -> PeerScoreParams:
    return PeerScoreParams(
        topics={T: draw(topic_params()), "agents/chat": draw(topic_params())},
        topic_score_cap=draw(big),
        app_specific_weight=draw(big),
        ip_colocation_factor_weight=-draw(big),
        ip_colocation_factor_threshold=draw(st.integers(1, 3)),
        ip_colocation_factor_whitelist=draw(st.sampled_from([(), ("192.0.2.0/24",)])),
        behaviour_penalty_weight=-draw(big),
        behaviour_penalty_threshold=draw(st.floats(min_value=0, max_value=10)),
        behaviour_penalty_decay=draw(decay),
        decay_interval=draw(st.floats(min_value=1, max_value=10)),
        decay_to_zero=draw(st.floats(min_value=1e-9, max_value=0.5)),
        retain_score=draw(st.floats(min_value=0, max_value=100)),
        max_peers=draw(st.integers(1, 5)),
        max_delivery_records=draw(st.integers(1, 8)),
        seen_msg_ttl=draw(st.floats(min_value=0.1, max_value=50)),
    )


peer = st.sampled_from(PEERS)
msg = st.sampled_from(MSGS)
tpc = st.sampled_from(TOPICS)
ops = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=30),  # time step
        st.one_of(
            st.tuples(st.just("add_peer"), peer, st.sampled_from(IPS)),
            st.tuples(st.just("remove_peer"), peer),
            st.tuples(st.just("graft"), peer, tpc),
            st.tuples(st.just("prune"), peer, tpc),
            st.tuples(st.just("validate_message"), peer, msg, tpc),
            st.tuples(st.just("deliver_message"), peer, msg, tpc),
            st.tuples(st.just("duplicate_message"), peer, msg, tpc),
            st.tuples(st.just("reject_message"), peer, msg, tpc, st.sampled_from(sorted(REJECT_REASONS))),
            st.tuples(st.just("add_penalty"), peer, st.integers(0, 10**9)),
            st.tuples(st.just("set_app_score"), peer, st.floats(min_value=-1e300, max_value=1e300)),
            st.tuples(st.just("refresh"),),
        ),
    ),
    max_size=60,
)


@given(score_params(), ops)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_score_is_always_finite(p: PeerScoreParams, events) -> None:
    ps = PeerScore(p, now=0.0)
    now = 0.0
    for dt, (name, *args) in events:
        now += dt
        if name in ("add_penalty", "set_app_score"):
            getattr(ps, name)(*args)
        elif name == "reject_message":
            peer_, msg_id, t, reason = args
            ps.reject_message(peer_, msg_id, t, now, reason)
        elif name == "add_peer":
            ps.add_peer(args[0], now, args[1])
        elif name == "refresh":
            ps.refresh(now)
        elif name in ("remove_peer",):
            ps.remove_peer(args[0], now)
        elif name in ("graft", "prune"):
            getattr(ps, name)(args[0], args[1], now)
        else:
            getattr(ps, name)(args[0], args[1], args[2], now)
        for p_ in PEERS:
            assert math.isfinite(ps.score(p_, now))
        assert ps.stats()["peers"] <= p.max_peers
        assert ps.stats()["delivery_records"] <= p.max_delivery_records
    assert all(math.isfinite(v) for v in ps.scores().values())
