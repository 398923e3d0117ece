"""Gossipsub router parameters (the spec's overlay knobs plus our hard bounds).

Defaults are those of gossipsub-v1.1.md / go-libp2p-pubsub so that our mesh
behaves like everyone else's on a shared topic (a peer that GRAFTs during our
backoff is penalised, so backoffs in particular must agree). The ``max_*``
bounds are ours: every table the router keeps has one, so no peer (or crowd
of peers) can grow our memory without limit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SignPolicy(enum.Enum):
    """pubsub/README.md "Signature Policy": only the two strict (deterministic) modes."""

    #: Author-stamp and sign our messages; reject any without a valid signature.
    STRICT_SIGN = "strict_sign"
    #: No from/seqno/signature/key at all; reject messages that carry them.
    STRICT_NO_SIGN = "strict_no_sign"


@dataclass(frozen=True, slots=True)
class GossipSubParams:
    # -- overlay (gossipsub v1.0 / v1.1)
    #: Desired mesh degree, and the band the heartbeat keeps it in.
    d: int = 6
    d_lo: int = 5
    d_hi: int = 12
    #: Minimum number of peers IHAVE gossip goes to per topic per heartbeat.
    d_lazy: int = 6
    #: When pruning an oversubscribed mesh, keep this many best-scoring peers.
    d_score: int = 4
    #: Keep at least this many outbound-connection peers in each mesh.
    d_out: int = 2
    #: Mesh slots for the topic peers nearest to us in Kademlia's XOR space
    #: (SHA-256 of the peer IDs, as the DHT keys them). 0 (the spec's
    #: behaviour): a mesh is chosen at random. Otherwise the nearest are
    #: grafted first and whenever missing; a mesh below D gets random peers
    #: until D - d_near members are outside the near set (long links); of the
    #: members we grafted, a mesh above D keeps the near ones, the outbound
    #: quota and D - d_near others by score; members that grafted us stay, as
    #: the spec has them. Why: two peers near us in XOR space are near each other
    #: too, so their meshes overlap — clustering, the small-world half that
    #: random meshes lack. The cost, measured in docs/scale.md: longer paths,
    #: and an attacker with IDs ground near ours can hold the near slots
    #: while it scores >= 0.
    d_near: int = 0
    heartbeat_interval: float = 1.0
    #: First heartbeat this long after start (then every heartbeat_interval).
    heartbeat_initial_delay: float = 0.1
    #: Fanout state of a topic we publish to without subscribing dies after this.
    fanout_ttl: float = 60.0
    #: Message cache windows (heartbeats) kept, and how many are advertised in IHAVE.
    mcache_len: int = 5
    mcache_gossip: int = 3
    #: Message IDs are remembered (dedup) this long.
    seen_ttl: float = 120.0
    # -- v1.1 behaviour
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    #: A GRAFT this soon after our PRUNE costs the peer an extra P7 penalty.
    graft_flood_threshold: float = 10.0
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    #: Gossip to this fraction of eligible non-mesh peers (at least d_lazy).
    gossip_factor: float = 0.25
    #: A peer may fetch one message by IWANT at most this many times.
    gossip_retransmission: int = 3
    #: IDs we ask one peer for per heartbeat (and send in one IHAVE).
    max_ihave_length: int = 5000
    #: IHAVE RPCs we accept from one peer per heartbeat.
    max_ihave_messages: int = 10
    #: An IHAVE we answered with IWANT must deliver within this or the peer gets P7.
    iwant_followup: float = 3.0
    #: Peers to offer in a PRUNE's peer exchange.
    prune_peers: int = 16
    #: Our own messages go to every topic peer above the publish threshold.
    flood_publish: bool = True
    #: Offer peer exchange when we PRUNE (go's default is off; bootstrappers turn it on).
    do_px: bool = False
    sign_policy: SignPolicy = SignPolicy.STRICT_SIGN
    # -- v1.2 IDONTWANT
    #: Messages with at least this many payload bytes trigger IDONTWANT to the mesh.
    idontwant_message_threshold: int = 1000
    #: Heartbeats we honour a received IDONTWANT for.
    idontwant_ttl: int = 3
    #: IDONTWANT IDs we take from one peer per heartbeat, and kept over all peers.
    max_idontwant_ids: int = 1000
    max_idontwant_total: int = 100_000
    # -- our bounds
    max_peers: int = 5000
    #: Topics we are subscribed to plus topics we keep fanout for.
    max_topics: int = 1024
    #: Topics one peer may announce (further SUBSCRIBEs are ignored).
    max_topics_per_peer: int = 1024
    #: Distinct topics tracked across all peers' subscriptions.
    max_known_topics: int = 20_000
    max_seen: int = 200_000
    #: Messages the cache holds (IWANT answers come from here).
    max_mcache_messages: int = 10_000
    #: (message, peer) pairs remembered as "that peer has it", over the whole
    #: cache, so our IHAVE skips them (mcache.py). 0: none remembered (as the
    #: spec's pseudocode; IDONTWANT still counts).
    max_gossip_holders: int = 50_000
    max_backoffs: int = 100_000
    max_promises: int = 20_000
    #: Messages answered to one peer's IWANTs per heartbeat.
    max_iwant_replies: int = 500
    #: Messages awaiting a signature check or validation at once, and how long
    #: we wait for the adapter's answer before forgetting one.
    max_pending: int = 4096
    pending_timeout: float = 30.0
    #: (message id, signature) pairs that failed verification, remembered so a
    #: replayed forgery is rejected without another verification.
    max_bad_signatures: int = 4096

    def __post_init__(self) -> None:
        if not 0 <= self.d_lo <= self.d <= self.d_hi:
            raise ValueError("need 0 <= d_lo <= d <= d_hi")
        if self.d_out and not (self.d_out < self.d_lo and self.d_out <= self.d // 2):
            raise ValueError("d_out must be < d_lo and <= d/2 (or 0)")
        if self.d_near and not 0 < self.d_near < self.d:
            raise ValueError("need 0 <= d_near < d: a mesh keeps at least one long link")
        if not 0 <= self.d_score <= self.d or self.d_lazy < 0:
            raise ValueError("need 0 <= d_score <= d and d_lazy >= 0")
        if self.heartbeat_interval <= 0 or self.heartbeat_initial_delay < 0:
            raise ValueError("heartbeat_interval must be > 0")
        if not 1 <= self.mcache_gossip <= self.mcache_len:
            raise ValueError("need 1 <= mcache_gossip <= mcache_len")
        if not 0.0 <= self.gossip_factor <= 1.0:
            raise ValueError("gossip_factor must be in [0, 1]")
        durations = (self.fanout_ttl, self.seen_ttl, self.prune_backoff, self.unsubscribe_backoff,
                     self.graft_flood_threshold, self.iwant_followup, self.pending_timeout)
        if any(x <= 0 for x in durations):
            raise ValueError("durations must be > 0")
        if self.graft_flood_threshold > self.prune_backoff:
            raise ValueError("graft_flood_threshold must be <= prune_backoff")
        counts = (self.opportunistic_graft_ticks, self.gossip_retransmission, self.max_ihave_length,
                  self.max_ihave_messages, self.idontwant_ttl, self.max_idontwant_ids,
                  self.max_idontwant_total, self.max_peers, self.max_topics, self.max_topics_per_peer,
                  self.max_known_topics, self.max_seen, self.max_mcache_messages, self.max_backoffs,
                  self.max_promises, self.max_iwant_replies, self.max_pending, self.max_bad_signatures)
        if any(n < 1 for n in counts):
            raise ValueError("counts and bounds must be >= 1")
        if self.max_gossip_holders < 0:
            raise ValueError("max_gossip_holders must be >= 0")
        if self.opportunistic_graft_peers < 0 or self.prune_peers < 0 or self.idontwant_message_threshold < 0:
            raise ValueError("opportunistic_graft_peers, prune_peers, idontwant threshold must be >= 0")
