"""Gossipsub v1.1 peer scoring, sans-IO: the router tells it what happened, it answers scores.

Each node scores each peer from what it has seen that peer do (the spec's
"Peer Scoring"; score_params.py has the formula and the knobs). The router
core calls this class on every mesh change and message event, asks
``score(peer, now)`` when choosing mesh members / gossip targets / whom to
ignore, and calls ``refresh(now)`` each heartbeat. Nothing here does I/O or
reads a clock: every call carries ``now`` (seconds, float, never going back),
so tests run in virtual time.

How message events map to P2/P3/P4 (as in go-libp2p-pubsub, whose tracer
hooks these mirror): the first copy of a message opens a *delivery record*
(``validate_message``); copies from other peers while it is being validated
are noted on the record (``duplicate_message``). When validation ends:

* ``deliver_message`` (valid): the first forwarder earns P2 (and P3 if it is
  in our mesh for the topic); mesh peers that sent a copy during validation,
  or within ``mesh_message_deliveries_window`` after it, earn P3 too.
* ``reject_message``: depends on the reason (:data:`REJECT_REASONS`). A bad
  or missing signature, or our own message echoed back, is the forwarder's
  fault alone — the message id cannot be trusted, so the record is left
  alone. "invalid" (the validator said no) is everyone's who sent it: the
  forwarder and every peer that sent it while pending get P4, and so does
  anyone who sends it later. "ignored" and the throttling/blacklist reasons
  penalise nobody.

Where we differ from go, on purpose:

* P1 and the P3 activation are computed from ``now`` at ``score()`` rather
  than at the last refresh (we are handed the time anyway, so it is exact).
* P3 applies only while the peer is in the mesh; after a PRUNE its history
  lives on in the sticky P3b (go keeps charging P3 until the next GRAFT).
* A disconnected peer's score is retained only if it is negative (go: <= 0),
  as the issue asks; zero and positive scores are forgotten at once.
* Repeating an event (GRAFT while grafted, the same duplicate twice, a second
  deliver for one message) counts once.
* Bookkeeping is bounded: delivery records expire after ``seen_msg_ttl`` and
  are capped, the peers noted per record are capped, and so are tracked peers.

A retained peer's counters do not decay (it cannot wait out its penalty while
away), but its IP keeps counting for P6 until the retention ends, so sybils
cannot dodge the colocation penalty by cycling connections. Reconnecting
(``add_peer``) resumes from the retained counters.
"""

from __future__ import annotations

import ipaddress
import math
import sys
from collections import OrderedDict
from typing import Any

from .score_params import PeerScoreParams, PeerScoreThresholds, TopicScoreParams

__all__ = [
    "REJECT_REASONS",
    "PeerScore",
]

# Reject reasons (the router passes one to reject_message). snake_case forms
# of go-libp2p-pubsub's, so traces from both read alike.
#: The forwarder alone is at fault; the message id is not trusted (P4 forwarder).
_FORWARDER_FAULT = frozenset(
    {"missing_signature", "invalid_signature", "unexpected_signature", "unexpected_auth_info", "self_origin"}
)
#: Dropped before validation for reasons that say nothing about the message.
_NOBODY_UNTRACKED = frozenset({"blacklisted_peer", "blacklisted_source", "validation_queue_full"})
#: Validation ran but gave no verdict we may punish: record closed, no penalty.
_NOBODY_CLOSED = frozenset({"ignored", "validation_throttled"})
#: The validator said the message is bad: P4 for everyone who forwarded it.
_EVERYONE = frozenset({"invalid", "validation_failed"})
#: Every reason reject_message understands; any other string is a ValueError.
REJECT_REASONS = _FORWARDER_FAULT | _NOBODY_UNTRACKED | _NOBODY_CLOSED | _EVERYONE

# Delivery record states.
_PENDING, _VALID, _INVALID, _CLOSED = range(4)

#: Peers noted per delivery record (mesh peers plus a few gossipers are the
#: honest case; more copies than this earn nothing and cost nothing).
_MAX_RECORD_PEERS = 128
#: Counters stop growing here, so squares stay far from float overflow.
_MAX_COUNTER = 1e12
_MAX_FLOAT = sys.float_info.max


class _TopicStats:
    __slots__ = (
        "first_message_deliveries",
        "graft_time",
        "in_mesh",
        "invalid_message_deliveries",
        "mesh_failure_penalty",
        "mesh_message_deliveries",
    )

    def __init__(self) -> None:
        self.in_mesh = False
        self.graft_time = 0.0
        self.first_message_deliveries = 0.0  # P2 counter
        self.mesh_message_deliveries = 0.0  # P3 counter
        self.mesh_failure_penalty = 0.0  # P3b counter
        self.invalid_message_deliveries = 0.0  # P4 counter


class _PeerStats:
    __slots__ = ("app_score", "behaviour_penalty", "connected", "expire", "ips", "topics")

    def __init__(self) -> None:
        self.connected = True
        self.expire = 0.0  # when a retained (disconnected) record is forgotten
        self.topics: dict[str, _TopicStats] = {}  # only scored topics
        self.ips: tuple[str, ...] = ()  # P6 keys: the IP (and an IPv6 /64)
        self.behaviour_penalty = 0.0  # P7 counter
        self.app_score = 0.0  # P5


class _DeliveryRecord:
    __slots__ = ("first_seen", "peers", "status", "validated")

    def __init__(self, now: float) -> None:
        self.status = _PENDING
        self.first_seen = now
        self.validated = 0.0
        self.peers: set[bytes] = set()  # who sent a copy (first forwarder included)


class PeerScore:
    """Per-peer gossipsub v1.1 scores, fed by router events (sans-IO).

    ``PeerScore(params, thresholds=None, now=0.0)``: ``params`` and
    ``thresholds`` are validated here (ValueError); ``thresholds`` defaults to
    ``PeerScoreThresholds()`` and is only kept for the router to read as
    ``.thresholds`` — scoring itself does not use it. ``now`` starts the decay
    clock. Peers must be ``add_peer``-ed before events about them count.
    """

    def __init__(
        self,
        params: PeerScoreParams,
        thresholds: PeerScoreThresholds | None = None,
        now: float = 0.0,
    ) -> None:
        if thresholds is None:
            thresholds = PeerScoreThresholds()
        if not isinstance(params, PeerScoreParams):
            raise TypeError(f"params must be PeerScoreParams, got {type(params).__name__}")
        if not isinstance(thresholds, PeerScoreThresholds):
            # Most likely PeerScore(params, now): make the mistake loud.
            raise TypeError(f"thresholds must be PeerScoreThresholds or None, got {type(thresholds).__name__}")
        params.validate()
        thresholds.validate()
        self.params = params
        self.thresholds = thresholds
        self._whitelist = tuple(ipaddress.ip_network(c, strict=False) for c in params.ip_colocation_factor_whitelist)

        self._peers: dict[bytes, _PeerStats] = {}
        # Disconnected peers whose score we keep, oldest first: expiry is
        # removal time + a constant, so this order is also expiry order.
        self._retained: OrderedDict[bytes, None] = OrderedDict()
        self._ip_peers: dict[str, set[bytes]] = {}  # P6: IP key -> peers on it
        self._deliveries: OrderedDict[bytes, _DeliveryRecord] = OrderedDict()  # first-seen order

        self._last_decay = now
        self._now = now  # latest time we were told; scores() uses it
        self._counts = dict.fromkeys(
            (
                "decay_rounds",
                "first_deliveries",
                "mesh_deliveries",
                "invalid_deliveries",
                "mesh_failures",
                "behaviour_penalties",
                "peers_refused",
                "peers_evicted",
                "records_evicted",
            ),
            0,
        )

    # ------------------------------------------------------------ peers

    def add_peer(self, peer: bytes, now: float, ip: str | None = None) -> bool:
        """A peer connected (from ``ip``, if known). Returns whether it is tracked.

        A peer we retained resumes its old counters. Calling it again for a
        connected peer just updates its IP (we track the latest connection's
        IP only; ``None`` leaves the known one). When ``max_peers`` are tracked the oldest retained peer is
        forgotten to make room; if all are connected the newcomer is not
        tracked and scores 0 (neutral) until a slot frees up.
        """
        self._tick(now)
        pstats = self._peers.get(peer)
        if pstats is not None and not pstats.connected and now >= pstats.expire:
            self._forget(peer)  # retention ran out: start afresh
            pstats = None
        if pstats is None:
            if len(self._peers) >= self.params.max_peers and not self._evict_retained():
                self._counts["peers_refused"] += 1
                return False
            pstats = _PeerStats()
            self._peers[peer] = pstats
        elif not pstats.connected:
            pstats.connected = True
            self._retained.pop(peer, None)
        if ip is not None:  # None: address unknown, keep what we had
            self._set_ips(peer, pstats, self._ip_keys(ip))
        return True

    def remove_peer(self, peer: bytes, now: float) -> None:
        """A peer disconnected: keep its score for ``retain_score`` if negative, else forget it.

        When kept, as in go: its P2 reward is dropped (it is not delivering
        any more) and, for each mesh it was in with a delivery deficit, the
        P3b penalty is charged as if it had been pruned.
        """
        self._tick(now)
        pstats = self._peers.get(peer)
        if pstats is None or not pstats.connected:
            return
        if self.params.retain_score <= 0 or self._score(pstats, peer, now) >= 0:
            self._forget(peer)
            return
        for topic, tstats in pstats.topics.items():
            tstats.first_message_deliveries = 0.0
            if tstats.in_mesh:
                self._charge_mesh_failure(tstats, self.params.topics[topic], now)
                tstats.in_mesh = False
        pstats.connected = False
        pstats.expire = now + self.params.retain_score
        self._retained[peer] = None
        self._retained.move_to_end(peer)

    # ------------------------------------------------------------ mesh

    def graft(self, peer: bytes, topic: str, now: float) -> None:
        """``peer`` joined our mesh for ``topic``: P1 starts counting, P3 after activation."""
        self._tick(now)
        pstats = self._peers.get(peer)
        if pstats is None or not pstats.connected:
            return
        tstats = self._topic_stats(peer, topic)
        if tstats is None or tstats.in_mesh:
            return  # unscored topic, or already grafted (keep the original time)
        tstats.in_mesh = True
        tstats.graft_time = now

    def prune(self, peer: bytes, topic: str, now: float) -> None:
        """``peer`` left our mesh for ``topic``; an active delivery deficit becomes sticky P3b."""
        self._tick(now)
        tstats = self._topic_stats(peer, topic)
        if tstats is None or not tstats.in_mesh:
            return
        self._charge_mesh_failure(tstats, self.params.topics[topic], now)
        tstats.in_mesh = False

    # ------------------------------------------------------------ messages

    def validate_message(self, peer: bytes, msg_id: bytes, topic: str, now: float) -> None:
        """First copy of ``msg_id`` (from ``peer``), about to be validated: open its delivery record.

        The record's time is what the P3 window counts from, and copies that
        arrive while it is pending are noted on it.
        """
        self._tick(now)
        self._record(msg_id, now, peer)

    def deliver_message(self, peer: bytes, msg_id: bytes, topic: str, now: float) -> None:
        """``msg_id``, first received from ``peer``, passed validation.

        ``peer`` earns P2 (and P3 if it is in our ``topic`` mesh); every other
        mesh peer that sent a copy while it was pending earns P3.
        """
        self._tick(now)
        rec = self._record(msg_id, now, peer)
        if rec.status != _PENDING:
            return  # already settled: a repeated call must not pay twice
        rec.status = _VALID
        rec.validated = now
        self._mark_first_delivery(peer, topic)
        for other in rec.peers:
            if other != peer:
                self._mark_mesh_delivery(other, topic)

    def duplicate_message(self, peer: bytes, msg_id: bytes, topic: str, now: float) -> None:
        """``peer`` sent a copy of ``msg_id`` that we had already seen.

        Pending: noted, settled when validation ends. Valid: P3 if within the
        near-first window and ``peer`` is a mesh peer. Invalid: P4. Each peer
        counts once per message.
        """
        self._tick(now)
        rec = self._record(msg_id, now, None)
        if peer in rec.peers or rec.status == _CLOSED:
            return
        if len(rec.peers) >= _MAX_RECORD_PEERS:
            return
        rec.peers.add(peer)
        if rec.status == _VALID:
            if now - rec.validated <= self._topic_params_or_default(topic).mesh_message_deliveries_window:
                self._mark_mesh_delivery(peer, topic)
        elif rec.status == _INVALID:
            self._mark_invalid(peer, topic)

    def reject_message(self, peer: bytes, msg_id: bytes, topic: str, now: float, reason: str) -> None:
        """``msg_id``, first received from ``peer``, was rejected for ``reason`` (see module doc).

        Raises ValueError for a reason not in :data:`REJECT_REASONS`, so a
        typo in the router is caught by its tests rather than silently
        punishing (or sparing) peers.
        """
        self._tick(now)
        if reason in _FORWARDER_FAULT:
            self._mark_invalid(peer, topic)
            return
        if reason in _NOBODY_UNTRACKED:
            return
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}; expected one of {sorted(REJECT_REASONS)}")
        rec = self._record(msg_id, now, peer)
        if rec.status != _PENDING:
            return
        if reason in _NOBODY_CLOSED:
            rec.status = _CLOSED
            rec.peers = set()  # nothing more to settle: free it early
            return
        rec.status = _INVALID
        for p in rec.peers | {peer}:
            self._mark_invalid(p, topic)

    # ------------------------------------------------------------ other inputs

    def add_penalty(self, peer: bytes, count: int) -> None:
        """Add ``count`` to ``peer``'s P7 behaviour-penalty counter (router-detected misbehaviour)."""
        if count < 0:
            raise ValueError(f"penalty count must be >= 0, got {count!r}")
        pstats = self._peers.get(peer)
        if pstats is None or count == 0:
            return
        pstats.behaviour_penalty = min(_MAX_COUNTER, pstats.behaviour_penalty + float(count))
        self._counts["behaviour_penalties"] += int(count)

    def set_app_score(self, peer: bytes, value: float) -> bool:
        """Set ``peer``'s P5 (application-specific) value; the hook other services feed.

        Kept until the peer is forgotten (also while retained). Returns False,
        and stores nothing, for a peer that is not tracked: call it after
        ``add_peer``. Raises ValueError for NaN or infinity.
        """
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"app score must be finite, got {value!r}")
        pstats = self._peers.get(peer)
        if pstats is None:
            return False
        pstats.app_score = value
        return True

    # ------------------------------------------------------------ output

    def score(self, peer: bytes, now: float) -> float:
        """``peer``'s current score; 0.0 for a peer we do not track. Always finite."""
        pstats = self._peers.get(peer)
        if pstats is None:
            return 0.0
        if not pstats.connected and now >= pstats.expire:
            return 0.0  # retention over; refresh() will drop it
        return self._score(pstats, peer, now)

    def behaviour_penalty(self, peer: bytes) -> float:
        """``peer``'s P7 term now (<= 0): what its own misbehaviour (broken IWANT
        promises, GRAFTs in backoff) costs it, without P1-P6."""
        pstats = self._peers.get(peer)
        if pstats is None:
            return 0.0
        excess = pstats.behaviour_penalty - self.params.behaviour_penalty_threshold
        return self.params.behaviour_penalty_weight * excess * excess if excess > 0 else 0.0

    def scores(self) -> dict[bytes, float]:
        """Every tracked peer's score as of the latest ``now`` we were given (for introspection)."""
        now = self._now
        return {peer: self.score(peer, now) for peer in self._peers}

    def refresh(self, now: float) -> None:
        """Heartbeat upkeep: decay counters, forget expired retained peers and delivery records.

        Decay runs once per elapsed ``decay_interval``. Call it at least that
        often (each heartbeat): after a longer gap all the missed intervals
        are applied at once to the counters as they are *now* — exact for
        counters that were there all along, a little harsh on ones added
        during the gap. Retained peers do not decay. Cost: one pass over
        connected peers per call that decays, otherwise only what expired.
        """
        self._tick(now)
        params = self.params
        if now < self._last_decay:
            self._last_decay = now  # time went back: restart the decay clock
        rounds = int((now - self._last_decay) // params.decay_interval)
        if rounds > 0:
            self._last_decay += rounds * params.decay_interval
            self._decay(rounds)
            self._counts["decay_rounds"] += rounds

        while self._retained:
            peer = next(iter(self._retained))
            if now < self._peers[peer].expire:
                break
            self._forget(peer)

        ttl = params.seen_msg_ttl
        while self._deliveries:
            msg_id, rec = next(iter(self._deliveries.items()))
            if now - rec.first_seen < ttl:
                break
            del self._deliveries[msg_id]

    def stats(self) -> dict[str, Any]:
        """JSON-ready counters: what is tracked now and what has happened so far."""
        connected = len(self._peers) - len(self._retained)
        return {
            "peers": len(self._peers),
            "connected": connected,
            "retained": len(self._retained),
            "ips": len(self._ip_peers),
            "delivery_records": len(self._deliveries),
            "scored_topics": len(self.params.topics),
            **self._counts,
        }

    # ------------------------------------------------------------ internals

    def _tick(self, now: float) -> None:
        if now > self._now:
            self._now = now

    def _score(self, pstats: _PeerStats, peer: bytes, now: float) -> float:
        params = self.params
        total = 0.0
        for topic, t in pstats.topics.items():
            tp = params.topics[topic]
            s = 0.0
            if t.in_mesh:
                in_mesh = max(0.0, now - t.graft_time)
                p1 = min(in_mesh // tp.time_in_mesh_quantum, tp.time_in_mesh_cap)
                s = _add(s, tp.time_in_mesh_weight * p1)
                # P3 only once the peer has had time to deliver (activation).
                if (
                    in_mesh > tp.mesh_message_deliveries_activation
                    and t.mesh_message_deliveries < tp.mesh_message_deliveries_threshold
                ):
                    deficit = tp.mesh_message_deliveries_threshold - t.mesh_message_deliveries
                    s = _add(s, tp.mesh_message_deliveries_weight * deficit * deficit)
            s = _add(s, tp.first_message_deliveries_weight * t.first_message_deliveries)
            s = _add(s, tp.mesh_failure_penalty_weight * t.mesh_failure_penalty)
            s = _add(s, tp.invalid_message_deliveries_weight * t.invalid_message_deliveries**2)
            total = _add(total, s * tp.topic_weight)
        if params.topic_score_cap > 0 and total > params.topic_score_cap:
            total = params.topic_score_cap

        total = _add(total, params.app_specific_weight * pstats.app_score)
        if params.ip_colocation_factor_weight != 0:
            total = _add(total, params.ip_colocation_factor_weight * self._colocation(pstats))
        excess = pstats.behaviour_penalty - params.behaviour_penalty_threshold
        if excess > 0:
            total = _add(total, params.behaviour_penalty_weight * excess * excess)
        return total

    def _colocation(self, pstats: _PeerStats) -> float:
        """P6: for each of the peer's IP keys, the squared number of peers beyond the threshold."""
        threshold = self.params.ip_colocation_factor_threshold
        p6 = 0.0
        for key in pstats.ips:
            surplus = len(self._ip_peers.get(key, ())) - threshold
            if surplus > 0:
                p6 += float(surplus) * surplus
        return p6

    def _decay(self, rounds: int) -> None:
        """Apply ``rounds`` decay intervals to every connected peer's counters."""
        params = self.params
        zero = params.decay_to_zero
        factors = {
            topic: (
                tp.first_message_deliveries_decay**rounds,
                tp.mesh_message_deliveries_decay**rounds,
                tp.mesh_failure_penalty_decay**rounds,
                tp.invalid_message_deliveries_decay**rounds,
            )
            for topic, tp in params.topics.items()
        }
        behaviour = params.behaviour_penalty_decay**rounds
        for pstats in self._peers.values():
            if not pstats.connected:
                continue  # retained scores are frozen (see module doc)
            for topic, t in pstats.topics.items():
                if not (t.first_message_deliveries or t.mesh_message_deliveries
                        or t.mesh_failure_penalty or t.invalid_message_deliveries):
                    continue  # nothing to decay: most non-mesh peers, every idle second
                f2, f3, f3b, f4 = factors[topic]
                t.first_message_deliveries = _decayed(t.first_message_deliveries, f2, zero)
                t.mesh_message_deliveries = _decayed(t.mesh_message_deliveries, f3, zero)
                t.mesh_failure_penalty = _decayed(t.mesh_failure_penalty, f3b, zero)
                t.invalid_message_deliveries = _decayed(t.invalid_message_deliveries, f4, zero)
            if pstats.behaviour_penalty:
                pstats.behaviour_penalty = _decayed(pstats.behaviour_penalty, behaviour, zero)

    def _topic_stats(self, peer: bytes, topic: str) -> _TopicStats | None:
        """The peer's stats for a scored topic (created on first use); None if not applicable."""
        pstats = self._peers.get(peer)
        if pstats is None or topic not in self.params.topics:
            return None
        t = pstats.topics.get(topic)
        if t is None:
            t = pstats.topics[topic] = _TopicStats()
        return t

    def _topic_params_or_default(self, topic: str) -> TopicScoreParams:
        tp = self.params.topics.get(topic)
        return tp if tp is not None else _UNSCORED

    def _charge_mesh_failure(self, t: _TopicStats, tp: TopicScoreParams, now: float) -> None:
        """P3b: leaving the mesh with an active delivery deficit adds the squared deficit."""
        if tp.mesh_failure_penalty_weight == 0:
            return  # P3b off: nothing would read the counter
        if (
            now - t.graft_time > tp.mesh_message_deliveries_activation
            and t.mesh_message_deliveries < tp.mesh_message_deliveries_threshold
        ):
            deficit = tp.mesh_message_deliveries_threshold - t.mesh_message_deliveries
            t.mesh_failure_penalty = min(_MAX_COUNTER, t.mesh_failure_penalty + deficit * deficit)
            self._counts["mesh_failures"] += 1

    def _mark_first_delivery(self, peer: bytes, topic: str) -> None:
        t = self._topic_stats(peer, topic)
        if t is None:
            return
        tp = self.params.topics[topic]
        t.first_message_deliveries = min(t.first_message_deliveries + 1, tp.first_message_deliveries_cap)
        self._counts["first_deliveries"] += 1
        if t.in_mesh:
            t.mesh_message_deliveries = min(t.mesh_message_deliveries + 1, tp.mesh_message_deliveries_cap)
            self._counts["mesh_deliveries"] += 1

    def _mark_mesh_delivery(self, peer: bytes, topic: str) -> None:
        t = self._topic_stats(peer, topic)
        if t is None or not t.in_mesh:
            return
        cap = self.params.topics[topic].mesh_message_deliveries_cap
        t.mesh_message_deliveries = min(t.mesh_message_deliveries + 1, cap)
        self._counts["mesh_deliveries"] += 1

    def _mark_invalid(self, peer: bytes, topic: str) -> None:
        t = self._topic_stats(peer, topic)
        if t is None:
            return
        t.invalid_message_deliveries = min(_MAX_COUNTER, t.invalid_message_deliveries + 1)
        self._counts["invalid_deliveries"] += 1

    def _record(self, msg_id: bytes, now: float, first_from: bytes | None) -> _DeliveryRecord:
        """The delivery record of ``msg_id``, opened now if there is none (oldest evicted at the cap)."""
        rec = self._deliveries.get(msg_id)
        if rec is None:
            while len(self._deliveries) >= self.params.max_delivery_records:
                self._deliveries.popitem(last=False)
                self._counts["records_evicted"] += 1
            rec = self._deliveries[msg_id] = _DeliveryRecord(now)
        if first_from is not None and rec.status == _PENDING and len(rec.peers) < _MAX_RECORD_PEERS:
            # The first forwarder is on the record too, so its own later
            # copies are not mistaken for other peers' deliveries.
            rec.peers.add(first_from)
        return rec

    def _ip_keys(self, ip: str | None) -> tuple[str, ...]:
        """P6 keys for an address: the IP, plus its /64 for IPv6 (one host often has a whole /64).

        Unparseable addresses (a DNS name, garbage) and whitelisted ones are
        not counted.
        """
        if not ip:
            return ()
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return ()
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self._whitelist):
            return ()
        if isinstance(addr, ipaddress.IPv6Address):
            return (str(addr), str(ipaddress.IPv6Network((addr, 64), strict=False)))
        return (str(addr),)

    def _set_ips(self, peer: bytes, pstats: _PeerStats, keys: tuple[str, ...]) -> None:
        if keys == pstats.ips:
            return
        self._unset_ips(peer, pstats)
        pstats.ips = keys
        for key in keys:
            self._ip_peers.setdefault(key, set()).add(peer)

    def _unset_ips(self, peer: bytes, pstats: _PeerStats) -> None:
        for key in pstats.ips:
            peers = self._ip_peers.get(key)
            if peers is not None:
                peers.discard(peer)
                if not peers:
                    del self._ip_peers[key]
        pstats.ips = ()

    def _forget(self, peer: bytes) -> None:
        pstats = self._peers.pop(peer, None)
        if pstats is not None:
            self._unset_ips(peer, pstats)
        self._retained.pop(peer, None)

    def _evict_retained(self) -> bool:
        """Make room by forgetting the retained peer closest to expiry; False if none."""
        if not self._retained:
            return False
        self._forget(next(iter(self._retained)))
        self._counts["peers_evicted"] += 1
        return True


#: Stand-in for unscored topics where only the P3 window is read.
_UNSCORED = TopicScoreParams()


def _add(total: float, term: float) -> float:
    """``total + term`` clamped to the finite floats: extreme weights saturate instead of overflowing."""
    s = total + term
    if s > _MAX_FLOAT:
        return _MAX_FLOAT
    if s < -_MAX_FLOAT:
        return -_MAX_FLOAT
    return s


def _decayed(value: float, factor: float, zero: float) -> float:
    value *= factor
    return 0.0 if value < zero else value
