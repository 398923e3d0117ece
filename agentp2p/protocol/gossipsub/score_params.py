"""Gossipsub v1.1 peer-scoring parameters, their validity rules and our defaults.

The score function (libp2p/specs pubsub/gossipsub/gossipsub-v1.1.md, "Peer
Scoring") is

    Score(p) = TopicCap(Σ tᵢ·(w₁P₁ + w₂P₂ + w₃P₃ + w₃bP₃b + w₄P₄))
               + w₅P₅ + w₆P₆ + w₇P₇

and score.py computes it. This module only holds the knobs. Field names are
the spec's (and go-libp2p-pubsub's) in snake_case, so tuning advice written for
other implementations applies as is. Durations are seconds (float).

The validity rules are the spec's "Constraints" columns, tightened where
go-libp2p-pubsub is (decays strictly inside (0, 1), activation >= 1 s, ...):
a parameter set that validates here is one go would accept too, and every
number must be finite so a score can never become NaN.

Defaults are tuned for an agent network, whose topics carry few messages (a
handful a minute, not the blocks-per-second of a blockchain): see
:func:`default_score_params`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

__all__ = [
    "PeerScoreParams",
    "PeerScoreThresholds",
    "TopicScoreParams",
    "default_score_params",
    "score_parameter_decay",
]

#: Decay interval and zero threshold the spec's examples and go assume.
DEFAULT_DECAY_INTERVAL = 1.0
DEFAULT_DECAY_TO_ZERO = 0.01


def score_parameter_decay(
    decay_time: float,
    decay_interval: float = DEFAULT_DECAY_INTERVAL,
    decay_to_zero: float = DEFAULT_DECAY_TO_ZERO,
) -> float:
    """The per-interval decay factor that takes a counter of 1 to ``decay_to_zero`` in ``decay_time``.

    A counter multiplied by ``f`` every ``decay_interval`` is ``f**n`` after ``n``
    intervals; solving ``f**(decay_time/decay_interval) == decay_to_zero`` gives
    ``f``. So ``score_parameter_decay(600)`` forgets a single event in ten minutes
    (bigger counters take longer: ``log(c)/log(1/f)`` intervals more).
    """
    _require(_finite(decay_interval) and decay_interval > 0, "decay_interval must be a positive number")
    _require(
        _finite(decay_time) and decay_time >= decay_interval,
        f"decay_time must be a number >= decay_interval ({decay_interval} s), got {decay_time!r}",
    )
    _require(_finite(decay_to_zero) and 0 < decay_to_zero < 1, "decay_to_zero must be in (0, 1)")
    ticks = decay_time / decay_interval
    return decay_to_zero ** (1.0 / ticks)


@dataclass(frozen=True, slots=True)
class TopicScoreParams:
    """How behaviour in one topic feeds the score (P1–P4).

    The defaults suit a low-rate topic: a small reward for staying in the mesh
    (P1) and for being first with messages (P2), a heavy squared penalty for
    invalid messages (P4), and P3/P3b (mesh delivery rate) *off*: with a few
    messages a minute an honest mesh peer often has nothing to deliver, and the
    deficit penalty would prune good peers. Turn P3 on (negative weight, a
    threshold below the expected deliveries per decay window) only for topics
    whose message rate you know.
    """

    #: tᵢ: how much this topic counts in the total; 0 disables the topic.
    topic_weight: float = 1.0

    # P1: time in mesh = whole quanta since GRAFT, capped. Small and positive:
    # it only keeps long-standing mesh peers from being pruned for newcomers.
    time_in_mesh_weight: float = 1.0 / 3600
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 3600.0  # one point after an hour in the mesh

    # P2: first message deliveries, a decaying counter capped at increment.
    first_message_deliveries_weight: float = 1.0
    first_message_deliveries_decay: float = field(default_factory=lambda: score_parameter_decay(600))
    first_message_deliveries_cap: float = 10.0

    # P3: mesh message delivery deficit, squared; applies only after the peer
    # has been in the mesh for `activation`. Off by default (see class doc).
    mesh_message_deliveries_weight: float = 0.0
    mesh_message_deliveries_decay: float = field(default_factory=lambda: score_parameter_decay(600))
    mesh_message_deliveries_threshold: float = 1.0
    mesh_message_deliveries_cap: float = 10.0
    mesh_message_deliveries_activation: float = 60.0
    #: A duplicate this soon after validation still counts as a mesh delivery
    #: ("near-first"); small, so a peer cannot earn P3 by echoing our forward.
    mesh_message_deliveries_window: float = 0.005

    # P3b: sticky penalty — at PRUNE, the squared deficit is added here.
    mesh_failure_penalty_weight: float = 0.0
    mesh_failure_penalty_decay: float = field(default_factory=lambda: score_parameter_decay(600))

    # P4: invalid messages, squared. -100: one invalid message is a mild
    # -100, three cross the default gossip threshold (-900 < -500), six the
    # graylist (-3600 < -2500). Forgotten over an hour.
    invalid_message_deliveries_weight: float = -100.0
    invalid_message_deliveries_decay: float = field(default_factory=lambda: score_parameter_decay(3600))

    def validate(self) -> None:
        """Raise ValueError naming the first field that breaks the spec's/go's rules."""
        # Every knob finite, even those of disabled parameters (go skips them):
        # 0 * inf would be NaN, and the score must stay a number.
        _all_finite(self)
        _require(self.topic_weight >= 0, "topic_weight must be >= 0")

        # P1
        _weight(self.time_in_mesh_weight, "time_in_mesh_weight", positive=True)
        _require(
            _finite(self.time_in_mesh_quantum) and self.time_in_mesh_quantum > 0,
            "time_in_mesh_quantum must be > 0 seconds",
        )
        if self.time_in_mesh_weight != 0:
            _require(_finite(self.time_in_mesh_cap) and self.time_in_mesh_cap > 0, "time_in_mesh_cap must be > 0")

        # P2
        _weight(self.first_message_deliveries_weight, "first_message_deliveries_weight", positive=True)
        if self.first_message_deliveries_weight != 0:
            _decay(self.first_message_deliveries_decay, "first_message_deliveries_decay")
            _require(
                _finite(self.first_message_deliveries_cap) and self.first_message_deliveries_cap > 0,
                "first_message_deliveries_cap must be > 0",
            )

        # P3
        _weight(self.mesh_message_deliveries_weight, "mesh_message_deliveries_weight", positive=False)
        if self.mesh_message_deliveries_weight != 0:
            _decay(self.mesh_message_deliveries_decay, "mesh_message_deliveries_decay")
            _require(
                _finite(self.mesh_message_deliveries_threshold) and self.mesh_message_deliveries_threshold > 0,
                "mesh_message_deliveries_threshold must be > 0",
            )
            # The spec's rule (go does not check it): below the threshold the
            # cap would make the deficit permanent.
            _require(
                _finite(self.mesh_message_deliveries_cap)
                and self.mesh_message_deliveries_cap >= self.mesh_message_deliveries_threshold,
                "mesh_message_deliveries_cap must be >= mesh_message_deliveries_threshold",
            )
            _require(
                _finite(self.mesh_message_deliveries_activation) and self.mesh_message_deliveries_activation >= 1,
                "mesh_message_deliveries_activation must be >= 1 second",
            )
        _require(
            _finite(self.mesh_message_deliveries_window) and self.mesh_message_deliveries_window >= 0,
            "mesh_message_deliveries_window must be >= 0 seconds",
        )

        # P3b
        _weight(self.mesh_failure_penalty_weight, "mesh_failure_penalty_weight", positive=False)
        if self.mesh_failure_penalty_weight != 0:
            _decay(self.mesh_failure_penalty_decay, "mesh_failure_penalty_decay")

        # P4: go checks the decay even with weight 0; so do we.
        _weight(self.invalid_message_deliveries_weight, "invalid_message_deliveries_weight", positive=False)
        _decay(self.invalid_message_deliveries_decay, "invalid_message_deliveries_decay")


@dataclass(frozen=True, slots=True)
class PeerScoreParams:
    """The global score knobs (P5–P7, topic cap, decay, retention) and the per-topic ones.

    Also the bounds of score.py's bookkeeping (``seen_msg_ttl``,
    ``max_delivery_records``, ``max_peers``), which are not in the spec but
    keep a flood of message ids or peers from growing memory without limit.
    """

    #: Topic id -> its parameters. Topics not listed do not count in the score.
    topics: dict[str, TopicScoreParams] = field(default_factory=dict)
    #: Cap on the (positive) sum of topic contributions; 0 = no cap. Keeps a
    #: peer from banking so much goodwill that it can misbehave for long.
    topic_score_cap: float = 10.0

    #: w₅; P₅ is whatever other services feed through PeerScore.set_app_score.
    app_specific_weight: float = 1.0

    #: w₆ (<= 0) and the number of peers one IP may hold unpenalised. Agents
    #: often share a host or a NAT, hence a generous threshold and a mild
    #: weight: 11 peers on one IP get -10 each, 26 reach the graylist.
    ip_colocation_factor_weight: float = -10.0
    ip_colocation_factor_threshold: int = 10
    #: CIDRs never counted for P6. Loopback by default: many local agents on
    #: one machine are a development set-up, not a sybil attack. Pass () to
    #: count loopback too.
    ip_colocation_factor_whitelist: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    #: w₇ (<= 0): the router reports misbehaviour (GRAFT during backoff,
    #: broken IWANT promises) through PeerScore.add_penalty; the counter above
    #: the threshold is squared. 16 penalties in quick succession -> -1000.
    behaviour_penalty_weight: float = -10.0
    behaviour_penalty_threshold: float = 6.0
    behaviour_penalty_decay: float = field(default_factory=lambda: score_parameter_decay(600))

    #: Counters decay every decay_interval seconds; below decay_to_zero they are 0.
    decay_interval: float = DEFAULT_DECAY_INTERVAL
    decay_to_zero: float = DEFAULT_DECAY_TO_ZERO
    #: A disconnected peer's negative score is kept this long, so it cannot
    #: wash it by reconnecting. 0 = forget at once.
    retain_score: float = 3600.0

    #: Delivery records (per message id, for P2/P3/P4 attribution) live this
    #: long — as long as the router's seen-cache, so a late duplicate is still
    #: matched to its record.
    seen_msg_ttl: float = 120.0
    #: ... and at most this many exist (oldest dropped first).
    max_delivery_records: int = 50_000
    #: Peers (connected + retained) tracked at most; retained ones are dropped
    #: first, then new peers go untracked (score 0).
    max_peers: int = 10_000

    def validate(self) -> None:
        """Raise ValueError naming the first field that breaks the spec's/go's rules."""
        for topic, tparams in self.topics.items():
            _require(isinstance(topic, str) and topic != "", f"topic ids must be non-empty strings, got {topic!r}")
            if not isinstance(tparams, TopicScoreParams):
                raise ValueError(f"topic {topic!r}: expected TopicScoreParams, got {type(tparams).__name__}")
            try:
                tparams.validate()
            except ValueError as exc:
                raise ValueError(f"invalid score parameters for topic {topic!r}: {exc}") from None
        _all_finite(self)

        _require(
            _finite(self.topic_score_cap) and self.topic_score_cap >= 0,
            "topic_score_cap must be >= 0 (0 for no cap)",
        )
        _require(
            _finite(self.app_specific_weight) and self.app_specific_weight >= 0,
            "app_specific_weight must be >= 0 (the app score itself may be negative)",
        )

        _weight(self.ip_colocation_factor_weight, "ip_colocation_factor_weight", positive=False)
        _require(
            isinstance(self.ip_colocation_factor_threshold, int) and self.ip_colocation_factor_threshold >= 1,
            "ip_colocation_factor_threshold must be an integer >= 1",
        )
        for cidr in self.ip_colocation_factor_whitelist:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except (TypeError, ValueError):
                raise ValueError(f"ip_colocation_factor_whitelist: {cidr!r} is not an IP network") from None

        _weight(self.behaviour_penalty_weight, "behaviour_penalty_weight", positive=False)
        if self.behaviour_penalty_weight != 0:
            _decay(self.behaviour_penalty_decay, "behaviour_penalty_decay")
        _require(
            _finite(self.behaviour_penalty_threshold) and self.behaviour_penalty_threshold >= 0,
            "behaviour_penalty_threshold must be >= 0",
        )

        _require(
            _finite(self.decay_interval) and self.decay_interval >= 1,
            "decay_interval must be >= 1 second",
        )
        _require(_finite(self.decay_to_zero) and 0 < self.decay_to_zero < 1, "decay_to_zero must be in (0, 1)")
        _require(_finite(self.retain_score) and self.retain_score >= 0, "retain_score must be >= 0 seconds")

        _require(_finite(self.seen_msg_ttl) and self.seen_msg_ttl > 0, "seen_msg_ttl must be > 0 seconds")
        _require(
            isinstance(self.max_delivery_records, int) and self.max_delivery_records >= 1,
            "max_delivery_records must be an integer >= 1",
        )
        _require(isinstance(self.max_peers, int) and self.max_peers >= 1, "max_peers must be an integer >= 1")


@dataclass(frozen=True, slots=True)
class PeerScoreThresholds:
    """Where the score starts to cost a peer something (spec, "Score Thresholds").

    Below 0 a peer leaves our meshes; then, lower and lower, it gets no gossip,
    none of our own publications, and finally all its RPCs are ignored. The
    defaults are go/Lotus's magnitudes and line up with the weights above.
    """

    #: No IHAVE/IWANT to or from peers below this (< 0).
    gossip_threshold: float = -500.0
    #: Our own publications skip peers below this (<= gossip_threshold).
    publish_threshold: float = -1000.0
    #: Every RPC of a peer below this is ignored (<= publish_threshold).
    graylist_threshold: float = -2500.0
    #: PX is accepted only from peers above this (>= 0); high, so only peers
    #: the application vouches for (bootstrappers, via P5) qualify.
    accept_px_threshold: float = 1000.0
    #: A mesh whose median score is below this gets opportunistic grafts (>= 0).
    opportunistic_graft_threshold: float = 2.0

    def validate(self) -> None:
        """Raise ValueError if the thresholds are out of order or of the wrong sign."""
        _require(
            _finite(self.gossip_threshold) and self.gossip_threshold < 0,
            f"gossip_threshold must be < 0, got {self.gossip_threshold!r}",
        )
        _require(
            _finite(self.publish_threshold) and self.publish_threshold <= self.gossip_threshold,
            f"publish_threshold must be <= gossip_threshold ({self.gossip_threshold}), got {self.publish_threshold!r}",
        )
        _require(
            _finite(self.graylist_threshold) and self.graylist_threshold <= self.publish_threshold,
            f"graylist_threshold must be <= publish_threshold ({self.publish_threshold}),"
            f" got {self.graylist_threshold!r}",
        )
        _require(
            _finite(self.accept_px_threshold) and self.accept_px_threshold >= 0,
            f"accept_px_threshold must be >= 0, got {self.accept_px_threshold!r}",
        )
        _require(
            _finite(self.opportunistic_graft_threshold) and self.opportunistic_graft_threshold >= 0,
            f"opportunistic_graft_threshold must be >= 0, got {self.opportunistic_graft_threshold!r}",
        )


def default_score_params(topics: Iterable[str] | Mapping[str, float] = ()) -> PeerScoreParams:
    """Our network's score parameters, scoring the given topics.

    ``topics`` is a list of topic ids (each weighs 1.0) or a mapping topic ->
    topic weight (e.g. a control topic that matters more than a chat topic).
    Every topic gets :class:`TopicScoreParams`' low-rate defaults; the global
    knobs are :class:`PeerScoreParams`' defaults. Pair with
    ``PeerScoreThresholds()``.
    """
    if isinstance(topics, Mapping):
        weights = dict(topics)
    else:
        weights = dict.fromkeys(topics, 1.0)
    params = PeerScoreParams(topics={t: TopicScoreParams(topic_weight=w) for t, w in weights.items()})
    params.validate()
    return params


# ---------------------------------------------------------------- helpers


def _finite(x: object) -> bool:
    """A real, finite number (bools are not numbers here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _all_finite(obj: object) -> None:
    """Every float field of a params dataclass is a finite number."""
    for f in fields(obj):  # type: ignore[arg-type]
        if f.type in ("float", float):
            value = getattr(obj, f.name)
            _require(_finite(value), f"{f.name} must be a finite number, got {value!r}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _weight(w: object, name: str, *, positive: bool) -> None:
    """Weights have a fixed sign (or are 0 to disable the parameter)."""
    if positive:
        _require(_finite(w) and w >= 0, f"{name} must be >= 0 (0 disables it), got {w!r}")
    else:
        _require(_finite(w) and w <= 0, f"{name} must be <= 0 (0 disables it), got {w!r}")


def _decay(d: object, name: str) -> None:
    """A decay factor multiplies the counter each interval: strictly inside (0, 1)."""
    _require(_finite(d) and 0 < d < 1, f"{name} must be in (0, 1), got {d!r}")
