"""SWIM tuning knobs.

Defaults follow hashicorp/memberlist's LAN profile (itself tuned from the SWIM
and Lifeguard papers) with a 1 s protocol period, which is ~30x faster than
the original agentp2p design's 30 s heartbeat / 90 s timeout. See docs/swim.md
for the trade-off: the period sets failure-detection latency and bandwidth
(bandwidth is constant in cluster size N; detection latency grows only with
log N through the suspicion timeout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .wire import MAX_FRAME_BYTES


@dataclass(frozen=True, slots=True)
class SwimConfig:
    """``[swim]`` in the node's config (``AGENTP2P_SWIM__*``); ``swim = false`` turns it off."""

    #: Run SWIM on the node at all (on by default; ``--swim`` forces it on).
    enabled: bool = True
    #: Protocol period T: each member probes one other member per period.
    probe_interval: float = 1.0
    #: How long to wait for the direct Ack before asking k helpers. Must be
    #: well below probe_interval: the rest of the period is the indirect window.
    probe_timeout: float = 0.5
    #: Probe targets are drawn this many periods ahead, and the adapter is
    #: told to connect to each (ConnectAhead): over libp2p a probe to a member
    #: whose connection was closed (the connection manager trims idle ones)
    #: would otherwise pay a dial (several round trips) inside probe_timeout,
    #: fail, and send k indirect probes. 0: draw each target when it is due.
    connect_ahead: int = 2
    #: A connection our next probes need (upcoming), closed in order (by
    #: either end), is asked for again at once (ConnectAhead; at most once per
    #: member per 8 periods): the member's connection manager closes it as
    #: idle, not knowing our probe is coming, and the probe would dial inside
    #: probe_timeout. False: the node before 2026-12-05, to measure it.
    redial_upcoming: bool = True
    #: A probe whose target closed its connection to us in order before
    #: answering (its GO_AWAY came first: its process ran the close) waits
    #: one more period before it becomes a suspicion. The target was alive a
    #: moment ago; our fallback Ping (one more if the close came after the
    #: timeout) goes over a new connection, whose dial can outlast the
    #: period (~1 s in the traced cases at 1,000 simulated nodes). No grace
    #: for a lost connection (no GO_AWAY: maybe a crash) nor for our own
    #: close. Off by default: in simulations it cut the idle false
    #: suspicions (1,000 nodes, 900 s: 6 to 0 and 7 to 4); earlier runs
    #: with it saw more crash pairs unseen (those traced: admission) and,
    #: at 10,000 nodes, seed 1, 3 live nodes declared failed after a crash
    #: (traced: one newcomer's ordinary failed probe) against 0 without on
    #: the same code; one run each, so more seeds first (docs/swim.md,
    #: "A target that closes mid-probe").
    close_grace: bool = False
    #: Probe (connected.py), in randomized round-robin, only the members we
    #: hold a connection to, while at least this many are connected (fewer:
    #: the whole roster). 0 = off: the whole roster always, each probe to a
    #: member we hold no connection to paying a dial (0.76 a second per node
    #: in a 500-node simulation, ~15 ms of CPU each). Every connection has two ends,
    #: so each member is still probed by all its neighbours (about one probe
    #: a period in all, as in SWIM). What changes: a member is probed by its
    #: neighbours, not by everyone, hence roster_probe_every. The default
    #: since 2026-12-05 (docs/swim.md, "Probing over the connections we hold").
    probe_connected_min: int = 8
    #: While probing over connections (probe_connected_min), every this many
    #: periods the probe goes to the whole roster's round-robin instead, drawn
    #: connect_ahead periods early so its dial is made by then. Who watches a
    #: member is then not only whom it is connected to, which a peer filling
    #: its connection slots would choose: random members still probe it, at
    #: one probe in this many of theirs, and it probes them (Sybil members
    #: in the roster thin these probes out in proportion). Costs at most a
    #: dial per this many periods. A turn the ring or a ConnectionLost hint
    #: puts off goes before the ring from then on: at most 2 periods late.
    #: 0 = off.
    roster_probe_every: int = 8
    #: Every this many periods, the probe goes to our successor on a ring of
    #: the live members ordered by a hash of their peer IDs (ring.py), not to
    #: the round-robin's draw. Each member is then probed by its predecessor
    #: at that pace whatever the draws, so a silent crash is found within
    #: about that many periods (the round-robin alone: 1 crash in 100 waits
    #: ~5). Same number of probes; the round-robin gets the other periods.
    #: Kept while probing over connections: the successor's connection is
    #: kept at both ends, so its turns dial once. 0 = off.
    ring_probe_every: int = 2
    #: k: helpers asked to probe indirectly when the direct probe fails.
    #: Drawn among the live members whose connections we have held longest
    #: (the first max(probe_connected_min, 4k)); if fewer than k are there,
    #: the rest among all live members (SwimCore._helpers says why; with
    #: probe_connected_min 0 no connections are tracked: always all).
    indirect_checks: int = 3
    #: Suspicion timeout = suspicion_mult * log10(N) * probe_interval (minimum,
    #: reached after enough independent confirmations). memberlist uses 4; with
    #: gossip (below) a refutation reaches everyone in about a second instead
    #: of ~log N periods, so 1.5 still leaves a suspect two to three times
    #: what it needs to refute (docs/swim.md: no false "failed" in the
    #: simulator at up to 10 % message loss, 1,000 members), and a silent
    #: crash is seen by all in < 8 s at 1,000 members, < 10 s at 10,000.
    suspicion_mult: float = 1.5
    #: ... but never less than this many periods, whatever N: the time a
    #: member that stalls (a collection, a blocking call in its event loop)
    #: or sits behind a slow link has to hear of its suspicion and refute,
    #: which does not shrink with N; log10 N adds the dissemination time
    #: above it. With 1.5, it decides up to 100 members (3 s at T = 1 s).
    suspicion_min_periods: float = 3.0
    #: ... and it starts at suspicion_max_timeout_mult times that minimum.
    suspicion_max_timeout_mult: int = 6
    #: Lifeguard's K: independent confirmations that bring the timeout down to
    #: its minimum (memberlist ties it to suspicion_mult - 2; kept apart here so
    #: the minimum can shrink without losing the long wait for a lone accuser).
    suspicion_confirmations: int = 2
    #: lambda: each update is piggybacked retransmit_mult * ceil(log10(N+1)) times.
    retransmit_mult: int = 4
    #: Gossip (memberlist's GossipInterval / GossipNodes): while updates are
    #: queued, every gossip_interval seconds send them to gossip_nodes members
    #: picked among those we heard from in the last gossip_recent_periods
    #: periods (connected already: a gossip frame never dials). Piggybacked on
    #: probes alone, news needs ~log N periods to reach everyone; this way,
    #: about a second. Costs nothing while nothing is queued. 0 = off.
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_recent_periods: int = 10
    #: Lifeguard local health: timeouts are scaled by up to this factor.
    awareness_max_multiplier: int = 8
    #: A node in poor health (awareness score s > 0) also sheds its own
    #: load, so that a starved network cannot feed its own storm
    #: (docs/swim.md, "A starved node slows down"):
    #: gossip every (s + 1) x gossip_interval, but at the base interval
    #: while our own alive (a refutation) is queued ...
    awareness_slows_gossip: bool = True
    #: ... and a suspicion it holds waits at least (s + 1) x the minimum,
    #: at most the maximum (suspicion_max_timeout_mult x the minimum), set
    #: when the suspicion starts (a healing window can still raise it to its
    #: own longer minimum): a starved prober is slow to convict.
    awareness_slows_verdicts: bool = True
    #: A failed probe whose helpers all stayed silent (not one Nack) says
    #: more about us than about the target: helpers Nack when they cannot
    #: reach it either, so silence from all of them means our frames, or
    #: theirs, did not get through in time -- we are starved or cut off.
    #: Lifeguard raises awareness then and suspects anyway (memberlist).
    #: Ours (False): awareness rises at the period's end all the same; a
    #: prober healthy until then waits one more period for late Nacks (a
    #: crashed target's come then); and if none, it accuses no one -- unless
    #: the connection to the target was lost just before or during the
    #: probe (maybe a crash), or we spared this target before, have not
    #: heard from it since, and were healthy until this probe or were at
    #: that spare and are no worse now (core.py _spare). True:
    #: memberlist's behaviour. (A 50-node real network
    #: sharing its 2 cores with one busy process: nearly all false
    #: suspicions had silent helpers and fed a storm that held a merge for
    #: 41-82 s; docs/swim.md, "Silent helpers".)
    suspect_when_helpers_silent: bool = False
    #: Upper bound on one encoded frame we build (piggyback stops before it).
    max_frame_bytes: int = 1400
    #: Hard cap on updates piggybacked on one frame (and accepted from one frame).
    max_updates_per_frame: int = 32
    #: Bound on the dissemination queue; the most-retransmitted entries go first.
    max_broadcast_queue: int = 4096
    #: Bound on members we track (alive+suspect+dead/left tombstones).
    max_members: int = 100_000
    #: Bound on indirect probes we run on behalf of others at once.
    max_pending_indirect: int = 64
    #: Dead members are kept (and occasionally pinged, to heal partitions) this long.
    dead_retention: float = 120.0
    #: Left members are kept this long so stale "alive" gossip cannot resurrect them.
    left_retention: float = 120.0
    #: Every this many periods, ping one random dead member ("gossip to the
    #: dead"): how membership views merge again after a partition heals.
    reconnect_every: int = 4
    #: Discovered-but-unconfirmed peers are pinged up to this many times.
    join_attempts: int = 3
    #: Alone though connected (no live member, connections held: the
    #: connected order's, so with ``probe_connected_min``): the connected
    #: peers we hold nothing about are pinged as joiners again, first
    #: ``rejoin_alone_after`` periods in (0: never), then after twice the
    #: wait each time, up to ``rejoin_alone_max`` (a wait is spent only by
    #: a round that asked someone). Nothing else proposes a
    #: peer whose connection is not new: in a 100-node devnet on 2 cores,
    #: newcomers whose join pings to their two busy bootstrap peers all ran
    #: out (every stream open timing out) stayed alone for as long as those
    #: connections lasted (docs/swim.md, "Alone though connected").
    rejoin_alone_after: int = 8
    rejoin_alone_max: int = 128
    #: After Leave(), keep answering (and spreading our "left") this many periods.
    leave_periods: int = 2
    #: A member's own *unsigned* word (its frame header) may raise its
    #: incarnation by at most this much per update; rumours may not raise it at
    #: all unless signed by the member (signed updates may jump any distance).
    max_incarnation_jump: int = 1024
    #: Admission (admission.py): strangers heard of through gossip wait here,
    #: bounded, until they answer a ping of ours.
    max_candidates: int = 256
    #: ... of which one gossiper may have proposed at most this many.
    max_candidates_per_gossiper: int = 16
    #: Candidates pinged per protocol period (random picks).
    candidate_pings_per_period: int = 4
    #: Pings a candidate gets before it is dropped ...
    candidate_attempts: int = 2
    #: ... and then it is not re-proposed for this long (seconds); a member
    #: back from the dead lifts every back-off, at most once per sixth of it.
    candidate_backoff: float = 60.0
    #: ... unless this many distinct gossipers propose it meanwhile: then it
    #: is tried again at once (0: never; 1 is refused, as it would end every
    #: back-off; admission.py says why).
    candidate_vouchers: int = 3
    #: Signature checks (signature.py) we run for one frame at most; the rest of
    #: its signed updates count as unsigned. Each distinct update is verified once.
    max_verifications_per_frame: int = 8
    #: A rumour we cannot believe (unsigned newer alive, accusation ahead of
    #: what the member announced) makes us ping the member to hear it first-hand:
    #: at most this many such pings per period (and one per member), and only
    #: over a connection already open (a check never dials: SwimCore._check).
    max_checks_per_period: int = 8
    #: Push/pull anti-entropy (pushpull.py): every this many seconds, scaled
    #: with N as in memberlist (x ceil(log2 N - 5) + 1 above 32 members: 90 s
    #: at 100, 180 s at 1,000, 300 s at 10,000), compare bucket digests of our
    #: view with one random member's and swap the entries that differ. Also on
    #: join and when a member we held dead/left speaks to us again. A digest
    #: exchange between agreeing views costs ~0.1-1 KiB. 0 = never initiate
    #: (we still answer others).
    push_pull_interval: float = 30.0
    #: Views merging (a rejoin; an exchange that changed at least
    #: push_pull_burst_changes members of our view, or named that many
    #: members we never heard of; that many membership
    #: events, and at least N/64, within one period) open a merge window of
    #: 3 burst intervals + retransmit_limit periods, extended by each new
    #: sign: meanwhile we push/pull every push_pull_burst_interval. We also
    #: serve each peer at most once per half this interval. Members back from
    #: dead or left (one in its own word, the first frame from one we hold
    #: dead, or that many, not scaled, in an exchange or a period) make it a
    #: healing window, in which new suspicions wait twice the minimum.
    push_pull_burst_interval: float = 1.0
    push_pull_burst_changes: int = 8
    #: Entries we send per direction per exchange (the rest: next exchange).
    push_pull_max_entries: int = 1024
    #: Bytes of entries per push/pull frame; more entries go in more frames.
    push_pull_frame_bytes: int = 8192
    #: Exchanges we answer per protocol period (others are told "busy").
    push_pull_serves_per_period: int = 2
    #: An exchange not finished after this long is abandoned (a partner that
    #: never answered is not asked again for candidate_backoff).
    push_pull_timeout: float = 5.0
    #: Signature checks one push/pull frame may cost us.
    push_pull_verifications_per_frame: int = 128

    def __post_init__(self) -> None:
        if not 0 < self.probe_timeout < self.probe_interval:
            raise ValueError("need 0 < probe_timeout < probe_interval")
        if not 0 <= self.connect_ahead <= 8:
            raise ValueError("connect_ahead must be within 0..8 periods")
        if not 0 <= self.ring_probe_every <= 16 or self.ring_probe_every == 1:
            raise ValueError("ring_probe_every must be 0 (off) or 2..16 periods")
        if self.probe_connected_min < 0:
            raise ValueError("probe_connected_min must be >= 0 (0 = off)")
        if self.rejoin_alone_after < 0 or self.rejoin_alone_max < 0:
            raise ValueError("rejoin_alone_after and rejoin_alone_max must be >= 0 (rejoin_alone_after 0 = off)")
        if not 0 <= self.roster_probe_every <= 64 or self.roster_probe_every == 1:
            raise ValueError("roster_probe_every must be 0 (off) or 2..64 periods")
        if self.indirect_checks < 0 or self.suspicion_mult < 1:
            raise ValueError("indirect_checks >= 0 and suspicion_mult >= 1")
        if self.suspicion_min_periods < 0:
            raise ValueError("suspicion_min_periods must be >= 0")
        if self.suspicion_confirmations < 0:
            raise ValueError("suspicion_confirmations must be >= 0")
        if self.suspicion_max_timeout_mult < 1 or self.retransmit_mult < 1:
            raise ValueError("multipliers must be >= 1")
        if self.gossip_interval < 0 or self.gossip_nodes < 0 or self.gossip_recent_periods < 1:
            raise ValueError("gossip_interval and gossip_nodes must be >= 0, gossip_recent_periods >= 1")
        if self.awareness_max_multiplier < 1:
            raise ValueError("awareness_max_multiplier must be >= 1")
        if self.max_incarnation_jump < 1 or self.candidate_attempts < 1:
            raise ValueError("max_incarnation_jump and candidate_attempts must be >= 1")
        if self.max_candidates < 0 or self.max_candidates_per_gossiper < 0 or self.candidate_pings_per_period < 0:
            raise ValueError("candidate bounds must be >= 0")
        if self.candidate_vouchers < 0 or self.candidate_vouchers == 1:
            # One voucher would be any single proposer: no back-off at all.
            raise ValueError("candidate_vouchers must be 0 (off) or >= 2")
        if self.push_pull_interval < 0 or self.push_pull_burst_interval <= 0 or self.push_pull_timeout <= 0:
            raise ValueError("push/pull intervals must be >= 0, burst interval and timeout > 0")
        if self.push_pull_max_entries < 1 or self.push_pull_serves_per_period < 0:
            raise ValueError("push_pull_max_entries >= 1, push_pull_serves_per_period >= 0")
        # Room for the header and piggybacked updates within the transport's frame bound.
        if not 1024 <= self.push_pull_frame_bytes <= MAX_FRAME_BYTES - 16 * 1024:
            raise ValueError(f"push_pull_frame_bytes must be within 1024..{MAX_FRAME_BYTES - 16 * 1024}")

    def retransmit_limit(self, n: int) -> int:
        """lambda * log N: enough retransmits that an update reaches everyone w.h.p."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def push_pull_interval_for(self, n: int) -> float:
        """memberlist's pushPullScale: the interval grows with log N above 32
        members, so the cluster-wide rate of exchanges grows slower than N."""
        if n <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (math.ceil(math.log2(n) - 5) + 1)

    def suspicion_min(self, n: int) -> float:
        scaled = self.suspicion_mult * max(1.0, math.log10(max(1, n)))
        return max(scaled, self.suspicion_min_periods) * self.probe_interval

    def suspicion_max(self, n: int) -> float:
        return self.suspicion_max_timeout_mult * self.suspicion_min(n)
