"""The gossipsub router: ``GossipSubCore.handle(now, event) -> list[Action]``.

Theory of operation
-------------------
For each topic we subscribe to we keep a *mesh* of about D peers and send
every message we accept to all of them (full messages, eager push). To every
other topic peer we only *gossip* the IDs of recent messages (IHAVE) once per
heartbeat; they fetch what they miss with IWANT. Mesh links are symmetric:
GRAFT adds one, PRUNE removes it (and both sides back off from re-grafting
for the PRUNE's backoff). The heartbeat keeps each mesh between D_lo and D_hi,
keeps D_out outbound peers in it, drops negative-scored peers, expires fanout
(the peers we publish to on topics we have not joined) and emits gossip.

A received message goes through, in order (pubsub/README.md, v1.1):
 1. the topic must be one of ours; the signature policy's fields must be
    present (StrictSign) or absent (StrictNoSign); it must not claim to be
    ours (we never receive our own messages from honest peers);
 2. the seen cache: a copy of a known ID is a duplicate (scored, dropped);
 3. VerifySignature (once per unique message; the adapter answers);
 4. IDONTWANT to our v1.2 mesh peers for large messages, so they do not
    send us the copy we already have; the IWANT promise for it is kept;
 5. Validate, if the topic has an app validator (the adapter answers);
 6. accepted: cached for IWANT, delivered locally, forwarded to the mesh
    minus the peer(s) it came from, its author, and those that said IDONTWANT.
A forged copy (bad signature) is forgotten from the seen cache so the genuine
one can still get through, and the (id, signature) pair is remembered so a
replay is rejected without another verification.

Our own messages are flood-published (v1.1) to every topic peer scoring at
least the publish threshold, so an eclipsed mesh cannot silence us.
Direct peers (v1.1 explicit peering) sit outside the mesh and get every
message on topics they share with us.

Scoring (score.py) is consulted through a narrow seam (scorer.py); without it
every score is 0 and every threshold 0, so nothing is penalised.

Timers: the only timer is the heartbeat. ``next_deadline()`` says when it is
due; call ``handle(now, Tick())`` then. Every handle() first runs a due heartbeat.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import mesh as meshsel
from .backoff import Backoff
from .codec import DEFAULT_LIMITS, CodecError, Limits, decode_rpc, default_msg_id, seqno_bytes, signing_payload
from .dontwant import DontWant
from .events import (
    Action,
    Deliver,
    Input,
    PeerConnected,
    PeerDisconnected,
    PeerExchange,
    Publish,
    Published,
    RpcReceived,
    SendRpc,
    SetAppScore,
    SignatureChecked,
    Subscribe,
    Tick,
    Unsubscribe,
    Validate,
    ValidationResult,
    Verdict,
    VerifySignature,
)
from .gossip import GossipLimits, Promises, gossip_targets, ihave_ids
from .mcache import MessageCache
from .outbox import Outbox, message_size
from .params import GossipSubParams, SignPolicy
from .peers import PROTOCOL_IDS, PeerTable, Proto
from .pending import SIGNATURE, VALIDATION, Pending, PendingMessage
from .rpc import Control, Graft, IHave, Message, MsgId, PeerId, PeerInfo, Prune, Rpc, SubOpts
from .scorer import NullScorer, Scorer, Thresholds
from .seen import SeenCache

#: Backoffs are kept (and honoured by us) this many heartbeats past expiry.
_BACKOFF_SLACK_HEARTBEATS = 2
#: Expired backoffs are swept every this many heartbeats (go does the same).
_BACKOFF_SWEEP_TICKS = 15
#: A PRUNE's backoff is believed up to this many seconds (a day).
_MAX_PRUNE_BACKOFF = 86_400


@dataclass(slots=True)
class GossipSubStats:
    """Counters of what was dropped, refused or done (never raised)."""

    malformed: int = 0  # undecodable / over-limit RPCs
    unknown_peer: int = 0  # RPC from a peer that never connected
    unknown_protocol: int = 0  # PeerConnected with a protocol we do not speak
    peers_refused: int = 0  # peer table full
    graylisted: int = 0  # RPCs ignored: sender below the graylist threshold
    subscriptions_refused: int = 0  # topic bounds hit
    not_subscribed: int = 0  # messages on topics we are not in
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> messages
    pending_full: int = 0  # messages refused: too many awaiting verdicts
    pending_timeout: int = 0  # verdicts the adapter never gave
    unsolicited: int = 0  # SignatureChecked / ValidationResult for nothing pending
    delivered: int = 0  # messages accepted from the network
    published: int = 0
    forwarded: int = 0  # message copies sent (forward + publish + IWANT answers)
    ihave_ignored: int = 0  # IHAVE RPCs over the per-heartbeat limits / below gossip threshold
    ihave_skipped: int = 0  # gossip candidates passed over: known to have every ID (holders, IDONTWANT)
    iwant_ignored: int = 0  # IWANTs refused: retransmission / per-heartbeat limit / gossip threshold
    graft_refused: int = 0  # GRAFTs answered with PRUNE
    near_trimmed: int = 0  # our own far picks pruned to make room for near peers (d_near)
    backoff_violations: int = 0  # GRAFTs inside our backoff (penalised)
    broken_promises: int = 0  # IWANTs not followed up in time (penalised)
    px_accepted: int = 0
    px_ignored: int = 0  # PX from a peer below accept_px_threshold

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


class GossipSubCore:
    """One node's gossipsub v1.1/v1.2 router state. Pure: no I/O, no clock."""

    def __init__(
        self,
        local_peer: PeerId,
        *,
        rng: random.Random,
        now: float,
        params: GossipSubParams | None = None,
        scorer: Scorer | None = None,
        thresholds: Thresholds | None = None,
        sign: Callable[[bytes], bytes] | None = None,
        sign_key: bytes | None = None,
        msg_id_fn: Callable[[Message], MsgId] = default_msg_id,
        seqno_start: int | None = None,
        limits: Limits = DEFAULT_LIMITS,
        direct_peers: Iterable[PeerId] = (),
    ) -> None:
        """``scorer`` is a score.PeerScore (None: scoring off); its
        ``.thresholds`` are used unless ``thresholds`` is given. ``sign(payload)``
        signs our messages with our identity key (required by StrictSign);
        ``sign_key`` is our public key for the ``key`` field when the peer ID
        does not inline it (None for Ed25519). ``seqno_start``: our first seqno;
        pass something that grows across restarts (e.g. time in ns), or peers
        that still remember our earlier messages drop the new ones as seen.
        ``direct_peers``: v1.1 explicit peering agreements — these peers get
        every message on our topics, are never in a mesh, never graylisted,
        and a GRAFT from one is refused. (Keeping them connected is the
        adapter's job.)"""
        p = self.params = params or GossipSubParams()
        if p.sign_policy is SignPolicy.STRICT_SIGN and sign is None:
            raise ValueError("StrictSign needs a sign function")
        if p.sign_policy is SignPolicy.STRICT_NO_SIGN and msg_id_fn is default_msg_id:
            raise ValueError("StrictNoSign messages have no from/seqno: give a content-based msg_id_fn")
        self.local_peer = local_peer
        self.stats = GossipSubStats()
        self._rng = rng
        self._now = now
        self._sign = sign
        self._sign_key = sign_key
        self._msg_id = msg_id_fn
        self._limits = limits
        self._direct = frozenset(direct_peers)
        self._seqno = rng.getrandbits(62) if seqno_start is None else seqno_start
        self._score: Scorer = scorer if scorer is not None else NullScorer()
        if thresholds is None:
            t = getattr(scorer, "thresholds", None)
            thresholds = Thresholds.of(t) if t is not None else Thresholds()
        self.thresholds = thresholds
        self._peers = PeerTable(p.max_peers, p.max_topics_per_peer, p.max_known_topics)
        self._subs: dict[str, bool] = {}  # topic -> has app validator
        self._mesh: dict[str, set[PeerId]] = {}
        #: d_near only: per topic, the mesh members *we* grafted (not those
        #: that grafted us): only these are ours to trim (see _trim_to_near).
        self._ours: dict[str, set[PeerId]] = {}
        self._fanout: dict[str, set[PeerId]] = {}
        self._lastpub: dict[str, float] = {}
        self._backoff = Backoff(p.max_backoffs, _BACKOFF_SLACK_HEARTBEATS * p.heartbeat_interval)
        self._seen = SeenCache(p.seen_ttl, p.max_seen)
        self._mcache = MessageCache(p.mcache_len, p.mcache_gossip, p.max_mcache_messages, p.max_gossip_holders)
        self._dontwant = DontWant(p.idontwant_ttl, p.max_idontwant_ids, p.max_idontwant_total)
        self._gossip = GossipLimits(p.max_ihave_messages, p.max_ihave_length, p.max_iwant_replies)
        self._promises = Promises(p.iwant_followup, p.max_promises)
        self._pending = Pending(p.max_pending, p.pending_timeout)
        self._bad_sigs: OrderedDict[tuple[MsgId, bytes], None] = OrderedDict()
        self._out = Outbox(limits.max_rpc_bytes)
        self._ticks = 0
        self._next_heartbeat = now + p.heartbeat_initial_delay
        self._scores: dict[PeerId, float] | None = None  # per-heartbeat score cache

    # ------------------------------------------------------------------ API

    def next_deadline(self) -> float:
        """When ``handle(now, Tick())`` should next be called (the heartbeat)."""
        return self._next_heartbeat

    def handle(self, now: float, event: Input) -> list[Action]:
        out: list[Action] = []
        if now > self._now:
            self._now = now
        if self._now >= self._next_heartbeat:
            self._heartbeat(out)
        if isinstance(event, RpcReceived):
            self._on_rpc(event.peer, event.rpc, out)
        elif isinstance(event, Tick):
            pass
        elif isinstance(event, SignatureChecked):
            self._on_signature(event.msg_id, event.ok, out)
        elif isinstance(event, ValidationResult):
            self._on_verdict(event.msg_id, event.verdict, out)
        elif isinstance(event, Publish):
            self._publish(event.topic, event.data, out)
        elif isinstance(event, PeerConnected):
            self._on_connected(event)
        elif isinstance(event, PeerDisconnected):
            self._on_disconnected(event.peer)
        elif isinstance(event, Subscribe):
            self._join(event.topic, event.validate)
        elif isinstance(event, Unsubscribe):
            self._leave(event.topic)
        elif isinstance(event, SetAppScore):
            self._score.set_app_score(event.peer, event.value)
        else:
            raise TypeError(f"not a gossipsub input: {event!r}")
        self._flush(out)
        return out

    def subscriptions(self) -> list[str]:
        return list(self._subs)

    def mesh(self, topic: str) -> frozenset[PeerId]:
        return frozenset(self._mesh.get(topic, ()))

    def fanout(self, topic: str) -> frozenset[PeerId]:
        return frozenset(self._fanout.get(topic, ()))

    def peers(self, topic: str | None = None) -> frozenset[PeerId]:
        """Connected pubsub peers (in ``topic``, if given)."""
        return frozenset(self._peers if topic is None else self._peers.in_topic(topic))

    def in_backoff(self, topic: str, peer: PeerId) -> bool:
        return self._backoff.active(topic, peer, self._now)

    def score(self, peer: PeerId) -> float:
        return self._peer_score(peer)

    def sizes(self) -> dict[str, int]:
        """How full each bounded table is (for metrics and the bounds tests)."""
        return {
            "peers": len(self._peers),
            "topics": len(self._subs) + len(self._fanout),
            "seen": len(self._seen),
            "mcache": len(self._mcache),
            "mcache_holders": self._mcache.holders,
            "backoff": len(self._backoff),
            "promises": len(self._promises),
            "pending": len(self._pending),
            "idontwant": len(self._dontwant),
            "bad_signatures": len(self._bad_sigs),
        }

    def score_stats(self) -> dict[str, Any]:
        return self._score.stats()

    # ------------------------------------------------------------ peers

    def _on_connected(self, ev: PeerConnected) -> None:
        proto = PROTOCOL_IDS.get(ev.protocol)
        if proto is None or ev.peer == self.local_peer:
            self.stats.unknown_protocol += 1
            return
        known = ev.peer in self._peers
        if not self._peers.add(ev.peer, proto, ev.outbound, ev.ip):
            self.stats.peers_refused += 1
            return
        self._score.add_peer(ev.peer, self._now, ev.ip)
        if not known and self._subs:
            # The hello: our subscriptions, so the peer can mesh with us.
            self._out.to(ev.peer).subs.extend(SubOpts(True, t) for t in self._subs)

    def _on_disconnected(self, peer: PeerId) -> None:
        if self._peers.remove(peer) is None:
            return
        for peers in self._mesh.values():
            peers.discard(peer)
        for peers in self._fanout.values():
            peers.discard(peer)
        self._dontwant.forget(peer)
        self._mcache.forget_holder(peer)
        self._out.drop(peer)
        self._score.remove_peer(peer, self._now)

    def _peer_score(self, peer: PeerId) -> float:
        cache = self._scores
        if cache is None:
            return self._score.score(peer, self._now)
        s = cache.get(peer)
        if s is None:
            s = cache[peer] = self._score.score(peer, self._now)
        return s

    def _mesh_candidates(self, topic: str, exclude: set[PeerId], min_score: float = 0.0,
                         outbound_only: bool = False) -> list[PeerId]:
        """Topic peers we may GRAFT: mesh-capable, not excluded, not backing off, score >= min."""
        out = []
        for p in self._peers.in_topic(topic):
            st = self._peers.get(p)
            if st is None or not st.proto.mesh or p in exclude or p in self._direct:
                continue
            if outbound_only and not st.outbound:
                continue
            if self._backoff.active(topic, p, self._now) or self._peer_score(p) < min_score:
                continue
            out.append(p)
        return out

    def _near(self, topic: str, mesh: set[PeerId]) -> set[PeerId]:
        """The ``d_near`` nearest (XOR) of the mesh and the peers we may graft; empty when off."""
        if not self.params.d_near:
            return set()
        return set(meshsel.nearest([*mesh, *self._mesh_candidates(topic, mesh)], self.params.d_near, self.local_peer))

    # ------------------------------------------------------------ topics

    def _join(self, topic: str, validate: bool) -> None:
        if topic in self._subs:
            self._subs[topic] = validate
            return
        if len(self._subs) >= self.params.max_topics:
            raise ValueError(f"subscribed to {len(self._subs)} topics already (max_topics)")
        self._subs[topic] = validate
        for peer in self._peers:
            self._out.to(peer).subs.append(SubOpts(True, topic))
        # Start the mesh from the fanout (peers we already push to), topped up to D.
        mesh = {p for p in self._fanout.pop(topic, set())
                if self._peer_score(p) >= 0 and not self._backoff.active(topic, p, self._now)}
        self._lastpub.pop(topic, None)
        need = self.params.d - len(mesh)
        mesh.update(meshsel.nearest(self._near(topic, mesh) - mesh, need, self.local_peer))
        mesh.update(meshsel.pick(self._mesh_candidates(topic, mesh), self.params.d - len(mesh), self._rng))
        self._mesh[topic] = set()
        for p in sorted(mesh):
            self._graft(topic, p)

    def _leave(self, topic: str) -> None:
        if self._subs.pop(topic, None) is None:
            return
        self._ours.pop(topic, None)
        for peer in self._peers:
            self._out.to(peer).subs.append(SubOpts(False, topic))
        for p in sorted(self._mesh.pop(topic, set())):
            self._score.prune(p, topic, self._now)
            self._out.to(p).prune.append(self._make_prune(p, topic, px=self.params.do_px, unsubscribe=True))
            self._backoff.add(topic, p, self._now + self.params.unsubscribe_backoff)

    def _graft(self, topic: str, peer: PeerId) -> None:
        """Add ``peer`` to our mesh and tell it so."""
        self._mesh[topic].add(peer)
        if self.params.d_near:
            self._ours.setdefault(topic, set()).add(peer)
        self._score.graft(peer, topic, self._now)
        self._out.to(peer).graft.append(Graft(topic))

    def _prune(self, topic: str, peer: PeerId, *, px: bool) -> None:
        """Remove ``peer`` from our mesh, back off from it, and tell it so."""
        self._mesh[topic].discard(peer)
        if self.params.d_near:
            self._ours.get(topic, set()).discard(peer)
        self._score.prune(peer, topic, self._now)
        self._backoff.add(topic, peer, self._now + self.params.prune_backoff)
        self._out.to(peer).prune.append(self._make_prune(peer, topic, px=px, unsubscribe=False))

    def _make_prune(self, peer: PeerId, topic: str, *, px: bool, unsubscribe: bool) -> Prune:
        proto = self._peers.proto(peer)
        if proto is None or not proto.px:
            return Prune(topic)  # v1.0 cannot parse PX or backoff
        p = self.params
        backoff = int(p.unsubscribe_backoff if unsubscribe else p.prune_backoff)
        if not px or p.prune_peers == 0:
            return Prune(topic, (), backoff)
        candidates = [x for x in self._peers.in_topic(topic)
                      if x != peer and self._peers.get(x).proto.mesh and self._peer_score(x) >= 0]  # type: ignore[union-attr]
        offered = meshsel.pick(candidates, p.prune_peers, self._rng)
        return Prune(topic, tuple(PeerInfo(x) for x in offered), backoff)

    # ------------------------------------------------------------ incoming RPC

    def _on_rpc(self, peer: PeerId, raw: bytes | Rpc, out: list[Action]) -> None:
        st = self._peers.get(peer)
        if st is None:
            self.stats.unknown_peer += 1
            return
        if self._peer_score(peer) < self.thresholds.graylist and peer not in self._direct:
            self.stats.graylisted += 1  # checked first: a graylisted peer costs no parsing
            return
        if isinstance(raw, Rpc):
            rpc = raw
        else:
            try:
                rpc = decode_rpc(raw, self._limits)
            except CodecError:
                self.stats.malformed += 1
                return
        for sub in rpc.subscriptions:
            self._on_subopts(peer, sub)
        for msg in rpc.publish:
            self._on_message(peer, msg, out)
        ctl = rpc.control
        if ctl and st.proto.mesh:
            if ctl.ihave:
                self._on_ihave(peer, ctl.ihave)
            if ctl.iwant:
                self._on_iwant(peer, ctl)
            if ctl.graft:
                self._on_graft(peer, ctl.graft)
            if ctl.prune:
                self._on_prune(peer, ctl.prune, out)
            if ctl.idontwant:
                for entry in ctl.idontwant:
                    self._dontwant.add(peer, entry.ids)

    def _on_subopts(self, peer: PeerId, sub: SubOpts) -> None:
        if sub.subscribe:
            if not self._peers.subscribe(peer, sub.topic):
                self.stats.subscriptions_refused += 1
            return
        self._peers.unsubscribe(peer, sub.topic)
        mesh = self._mesh.get(sub.topic)
        if mesh is not None and peer in mesh:
            mesh.discard(peer)
            self._score.prune(peer, sub.topic, self._now)
        fanout = self._fanout.get(sub.topic)
        if fanout is not None:
            fanout.discard(peer)

    # ------------------------------------------------------------ messages

    def _reject(self, peer: PeerId, msg_id: MsgId, topic: str, reason: str) -> None:
        self.stats.reject(reason)
        self._score.reject_message(peer, msg_id, topic, self._now, reason)

    def _policy_violation(self, msg: Message) -> str | None:
        if self.params.sign_policy is SignPolicy.STRICT_SIGN:
            if msg.signature is None or msg.from_ is None or msg.seqno is None:
                return "missing_signature"
            return None
        if msg.signature is not None or msg.key is not None:
            return "unexpected_signature"
        if msg.from_ is not None or msg.seqno is not None:
            return "unexpected_auth_info"
        return None

    def _on_message(self, peer: PeerId, msg: Message, out: list[Action]) -> None:
        topic = msg.topic
        if topic not in self._subs:
            self.stats.not_subscribed += 1
            return
        msg_id = self._msg_id(msg)
        reason = self._policy_violation(msg)
        if reason is None and msg.from_ == self.local_peer:
            reason = "self_origin"
        if reason is None and msg.signature is not None and (msg_id, msg.signature) in self._bad_sigs:
            reason = "invalid_signature"  # a replayed forgery: no second verification
        if reason is not None:
            self._reject(peer, msg_id, topic, reason)
            return
        if not self._seen.add(msg_id, self._now):
            self.stats.duplicates += 1
            self._mcache.mark(msg_id, peer)  # (one still pending: its senders are marked when accepted)
            self._score.duplicate_message(peer, msg_id, topic, self._now)
            pending = self._pending.get(msg_id)
            if pending is not None:
                pending.note_sender(peer)
            return
        if self._pending.full():
            self.stats.pending_full += 1
            self._seen.discard(msg_id)  # let a later copy in
            self._reject(peer, msg_id, topic, "validation_queue_full")
            return
        self._score.validate_message(peer, msg_id, topic, self._now)
        if self.params.sign_policy is SignPolicy.STRICT_SIGN:
            self._pending.add(msg_id, msg, peer, SIGNATURE, self._now)
            out.append(VerifySignature(msg_id, msg, signing_payload(msg)))
        else:
            self._after_signature(self._pending.add(msg_id, msg, peer, VALIDATION, self._now), out)

    def _on_signature(self, msg_id: MsgId, ok: bool, out: list[Action]) -> None:
        entry = self._pending.get(msg_id)
        if entry is None or entry.stage != SIGNATURE:
            self.stats.unsolicited += 1
            return
        if ok:
            self._after_signature(entry, out)
            return
        self._pending.pop(msg_id)
        self._seen.discard(msg_id)  # a forgery must not shadow the genuine message
        sig = entry.message.signature or b""
        self._bad_sigs[(msg_id, sig)] = None
        if len(self._bad_sigs) > self.params.max_bad_signatures:
            self._bad_sigs.popitem(last=False)
        self._reject(entry.from_peer, msg_id, entry.message.topic, "invalid_signature")

    def _after_signature(self, entry: PendingMessage, out: list[Action]) -> None:
        msg, msg_id = entry.message, entry.msg_id
        self._promises.fulfil(msg_id)
        if msg.size >= self.params.idontwant_message_threshold:
            for p in sorted(self._mesh.get(msg.topic, ())):
                proto = self._peers.proto(p)
                if p != entry.from_peer and p != msg.from_ and proto is not None and proto.idontwant:
                    self._out.to(p).idontwant.append(msg_id)
        if self._subs.get(msg.topic):
            entry.stage = VALIDATION
            out.append(Validate(msg_id, msg.topic, msg, entry.from_peer))
        else:
            self._accept(entry, out)

    def _on_verdict(self, msg_id: MsgId, verdict: Verdict, out: list[Action]) -> None:
        entry = self._pending.get(msg_id)
        if entry is None or entry.stage != VALIDATION:
            self.stats.unsolicited += 1
            return
        if verdict is Verdict.ACCEPT:
            self._accept(entry, out)
            return
        self._pending.pop(msg_id)
        reason = "invalid" if verdict is Verdict.REJECT else "ignored"
        self._reject(entry.from_peer, msg_id, entry.message.topic, reason)

    def _accept(self, entry: PendingMessage, out: list[Action]) -> None:
        self._pending.pop(entry.msg_id)
        msg, msg_id, topic = entry.message, entry.msg_id, entry.message.topic
        self._score.deliver_message(entry.from_peer, msg_id, topic, self._now)
        self.stats.delivered += 1
        self._mcache.put(msg_id, msg)
        for p in (entry.from_peer, *entry.senders):
            if p in self._peers:  # (one gone meanwhile was forgotten as a holder already)
                self._mcache.mark(msg_id, p)
        if topic not in self._subs:
            return  # we left the topic while it was being validated
        out.append(Deliver(topic, msg_id, msg, entry.from_peer))
        skip = entry.senders | {entry.from_peer}
        targets = set(self._mesh.get(topic, ())) | self._floodsub_peers(topic) | self._direct_in(topic)
        for p in sorted(targets):
            if p in skip or p == msg.from_ or self._dontwant.unwanted(p, msg_id):
                continue
            self._out.to(p).msgs.append(msg)
            self.stats.forwarded += 1

    def _direct_in(self, topic: str) -> set[PeerId]:
        return {p for p in self._direct if p in self._peers.in_topic(topic)} if self._direct else set()

    def _floodsub_peers(self, topic: str) -> set[PeerId]:
        return {p for p in self._peers.in_topic(topic)
                if self._peers.proto(p) is Proto.FLOODSUB and self._peer_score(p) >= self.thresholds.publish}

    # ------------------------------------------------------------ publish

    def _publish(self, topic: str, data: bytes, out: list[Action]) -> None:
        p = self.params
        if p.sign_policy is SignPolicy.STRICT_SIGN:
            self._seqno += 1
            msg = Message(topic, data, self.local_peer, seqno_bytes(self._seqno), None, self._sign_key)
            assert self._sign is not None
            msg = Message(topic, data, msg.from_, msg.seqno, self._sign(signing_payload(msg)), self._sign_key)
        else:
            msg = Message(topic, data)
        if message_size(msg) + 64 > self._limits.max_rpc_bytes:
            raise ValueError("message too large for one RPC")
        msg_id = self._msg_id(msg)
        if not self._seen.add(msg_id, self._now):
            out.append(Published(topic, msg_id, 0))  # content-addressed duplicate
            return
        if topic not in self._subs and topic not in self._fanout and \
                len(self._subs) + len(self._fanout) >= p.max_topics:
            self._expire_oldest_fanout()
        self.stats.published += 1
        self._mcache.put(msg_id, msg)
        if p.flood_publish:
            targets = {x for x in self._peers.in_topic(topic)
                       if x in self._direct or self._peer_score(x) >= self.thresholds.publish}
        else:
            targets = self._floodsub_peers(topic) | self._direct_in(topic)
            if topic in self._mesh:
                targets |= self._mesh[topic]
            else:
                targets |= self._fanout_peers(topic)
        for x in sorted(targets):
            self._out.to(x).msgs.append(msg)
            # Each target gets it now (a flood publish: every topic peer), so
            # no IHAVE of ours about it after. (One whose queue was full hears
            # of it from the others.)
            self._mcache.mark(msg_id, x)
        self.stats.forwarded += len(targets)
        if topic in self._subs:
            out.append(Deliver(topic, msg_id, msg, self.local_peer))
        out.append(Published(topic, msg_id, len(targets)))

    def _fanout_peers(self, topic: str) -> set[PeerId]:
        peers = self._fanout.get(topic)
        if not peers:
            cands = [x for x in self._peers.in_topic(topic) if x not in self._direct
                     and self._peers.proto(x).mesh and self._peer_score(x) >= self.thresholds.publish]  # type: ignore[union-attr]
            peers = set(meshsel.pick(cands, self.params.d, self._rng))
            if peers:
                self._fanout[topic] = peers
        self._lastpub[topic] = self._now
        return peers

    def _expire_oldest_fanout(self) -> None:
        if self._lastpub:
            oldest = min(self._lastpub, key=self._lastpub.__getitem__)
            self._lastpub.pop(oldest)
            self._fanout.pop(oldest, None)

    # ------------------------------------------------------------ control

    def _on_ihave(self, peer: PeerId, ihaves: tuple[IHave, ...]) -> None:
        if self._peer_score(peer) < self.thresholds.gossip:
            self.stats.ihave_ignored += 1
            return
        room = self._gossip.take_ihave(peer)
        if room <= 0:
            self.stats.ihave_ignored += 1
            return
        wanted: dict[MsgId, None] = {}
        cap = self.params.max_ihave_length
        for ih in ihaves:
            if ih.topic not in self._mesh:
                continue
            for msg_id in ih.ids[:cap]:
                if msg_id not in self._seen:
                    wanted[msg_id] = None
                else:
                    self._mcache.mark(msg_id, peer)  # it has it: no IHAVE of ours about it
        if not wanted:
            return
        ids = list(wanted)
        if len(ids) > room:
            ids = self._rng.sample(ids, room)
        self._gossip.asked(peer, len(ids))
        self._promises.add(peer, ids, self._now, self._rng)
        self._out.to(peer).iwant.extend(ids)

    def _on_iwant(self, peer: PeerId, ctl: Control) -> None:
        if self._peer_score(peer) < self.thresholds.gossip:
            self.stats.iwant_ignored += 1
            return
        seen: set[MsgId] = set()
        po = self._out.to(peer)
        for entry in ctl.iwant:
            for msg_id in entry.ids:
                if msg_id in seen or msg_id not in self._mcache or self._dontwant.unwanted(peer, msg_id):
                    continue
                seen.add(msg_id)
                got = self._mcache.fetch(msg_id, peer)
                if got is None:
                    continue
                msg, count = got
                # Only to a peer in the topic: we advertise a topic's IDs to no
                # one else, and a peer whose subscription our policy refused
                # must not fetch the topic by guessing IDs (author + seqno).
                if peer not in self._peers.in_topic(msg.topic):
                    self.stats.iwant_ignored += 1
                    continue
                if count > self.params.gossip_retransmission or self._gossip.take_replies(peer, 1) == 0:
                    self.stats.iwant_ignored += 1
                    continue
                po.msgs.append(msg)
                self._mcache.mark(msg_id, peer)
                self.stats.forwarded += 1

    def _on_graft(self, peer: PeerId, grafts: tuple[Graft, ...]) -> None:
        p = self.params
        now = self._now
        px = p.do_px
        refuse: list[str] = []
        score = self._peer_score(peer)
        for g in grafts:
            topic = g.topic
            mesh = self._mesh.get(topic)
            if mesh is None:
                px = False  # unknown topic: ignore (spam hardening), leak no peers
                continue
            if peer in mesh:
                if p.d_near:
                    self._ours.get(topic, set()).discard(peer)  # our GRAFTs crossed: it chose us too
                continue
            if peer in self._direct:
                px = False  # a non-reciprocal peering config, most likely: refuse, no PX
                refuse.append(topic)
                continue
            until = self._backoff.expiry(topic, peer)
            if until is not None and now < until:
                # GRAFT during our backoff: P7 penalty, doubled if it came
                # within graft_flood_threshold of the PRUNE.
                self.stats.backoff_violations += 1
                penalty = 2 if now < until + p.graft_flood_threshold - p.prune_backoff else 1
                self._score.add_penalty(peer, penalty)
                self._backoff.add(topic, peer, now + p.prune_backoff)
                px = False
                refuse.append(topic)
                continue
            if score < 0:
                px = False
                self._backoff.add(topic, peer, now + p.prune_backoff)
                refuse.append(topic)
                continue
            if len(mesh) >= p.d_hi and not self._peers.is_outbound(peer):
                self._backoff.add(topic, peer, now + p.prune_backoff)
                refuse.append(topic)
                continue
            mesh.add(peer)
            if p.d_near:
                self._ours.get(topic, set()).discard(peer)  # it chose us: not ours to trim
            self._score.graft(peer, topic, now)
        if refuse:
            self.stats.graft_refused += len(refuse)
            po = self._out.to(peer)
            po.prune.extend(self._make_prune(peer, t, px=px, unsubscribe=False) for t in refuse)

    def _on_prune(self, peer: PeerId, prunes: tuple[Prune, ...], out: list[Action]) -> None:
        score = self._peer_score(peer)
        for pr in prunes:
            mesh = self._mesh.get(pr.topic)
            if mesh is None:
                continue
            if peer in mesh:
                mesh.discard(peer)
                self._score.prune(peer, pr.topic, self._now)
            backoff = self.params.prune_backoff if not pr.backoff else min(pr.backoff, _MAX_PRUNE_BACKOFF)
            self._backoff.add(pr.topic, peer, self._now + backoff)
            if not pr.peers:
                continue
            if score < self.thresholds.accept_px:
                self.stats.px_ignored += 1
                continue
            fresh = [i for i in pr.peers if i.peer_id not in self._peers and i.peer_id != self.local_peer]
            if len(fresh) > self.params.prune_peers:
                fresh = self._rng.sample(fresh, self.params.prune_peers)
            if fresh:
                self.stats.px_accepted += 1
                out.append(PeerExchange(peer, pr.topic, tuple(fresh)))

    # ------------------------------------------------------------ heartbeat

    def _heartbeat(self, out: list[Action]) -> None:
        p = self.params
        now = self._now
        self._ticks += 1
        self._next_heartbeat += p.heartbeat_interval
        if self._next_heartbeat <= now:  # we were not called for a long while
            self._next_heartbeat = now + p.heartbeat_interval
        if self._ticks % _BACKOFF_SWEEP_TICKS == 0:
            self._backoff.clear_expired(now)
        self._gossip.reset()
        self._dontwant.heartbeat()
        self._seen.expire(now)
        for entry in self._pending.expired(now):
            self.stats.pending_timeout += 1
            self._reject(entry.from_peer, entry.msg_id, entry.message.topic, "ignored")
        for peer, count in self._promises.broken(now).items():
            self.stats.broken_promises += count
            self._score.add_penalty(peer, count)
        self._score.refresh(now)
        self._scores = {}
        try:
            gossip = self._mcache.gossip_ids()
            for topic in sorted(self._mesh):
                self._maintain_mesh(topic)
                self._emit_gossip(topic, self._mesh[topic], gossip)
            self._maintain_fanout(gossip)
        finally:
            self._scores = None
        self._mcache.shift()

    def _maintain_mesh(self, topic: str) -> None:
        p = self.params
        mesh = self._mesh[topic]
        score = self._peer_score
        for peer in sorted(x for x in mesh if score(x) < 0):
            self._prune(topic, peer, px=False)
        near = self._near(topic, mesh)
        fresh: set[PeerId] = set()  # near peers grafted this heartbeat (not answered yet)
        if p.d_near:
            self._ours.setdefault(topic, set()).intersection_update(mesh)  # members that left are not ours
        if near - mesh:
            # The nearest come first when filling, and are grafted while the
            # mesh has room below D_hi (and counted, and the mesh trimmed back
            # to D, from the next heartbeat): a mesh formed before they
            # connected moves towards them.
            room = (p.d if len(mesh) < p.d_lo else p.d_hi) - len(mesh)
            for peer in meshsel.nearest(near - mesh, room, self.local_peer):
                self._graft(topic, peer)
                fresh.add(peer)
        if len(mesh) < p.d_lo:
            for peer in meshsel.pick(self._mesh_candidates(topic, mesh), p.d - len(mesh), self._rng):
                self._graft(topic, peer)
        if near and len(mesh - near) < p.d - p.d_near and len(mesh) < p.d:
            # Long links: D - d_near members outside the near set (ours or
            # theirs). The near grafts alone can lift a mesh past D_lo with
            # none, and an all-near mesh can split into clusters.
            want = min(p.d - p.d_near - len(mesh - near), p.d - len(mesh))
            cands = [x for x in self._mesh_candidates(topic, mesh) if x not in near]
            # Outbound ones first while the quota is short: else the quota's
            # own graft below would push the mesh over D and the trim would
            # prune the peer just picked.
            need_out = max(0, p.d_out - sum(1 for x in mesh if self._peers.is_outbound(x)))
            picks = meshsel.pick([x for x in cands if self._peers.is_outbound(x)], min(want, need_out), self._rng)
            picks += meshsel.pick([x for x in cands if x not in picks], want - len(picks), self._rng)
            for peer in picks:
                self._graft(topic, peer)
        if len(mesh) > p.d_hi:
            keep = set(meshsel.survivors(mesh, d=p.d, d_score=p.d_score, d_out=p.d_out, score=score,
                                         outbound=self._peers.is_outbound, rng=self._rng, near=near))
            for peer in sorted(mesh - keep):
                self._prune(topic, peer, px=p.do_px)
        if len(mesh) >= p.d_lo:
            have_out = sum(1 for x in mesh if self._peers.is_outbound(x))
            if have_out < p.d_out:
                cands = self._mesh_candidates(topic, mesh, outbound_only=True)
                for peer in meshsel.pick(cands, p.d_out - have_out, self._rng):
                    self._graft(topic, peer)
        if near and len(mesh - fresh) > p.d:
            self._trim_to_near(topic, mesh, near, fresh)
        if self._ticks % p.opportunistic_graft_ticks == 0 and len(mesh) > 1:
            median = meshsel.median_score(mesh, score)
            if median < self.thresholds.opportunistic_graft:
                cands = [x for x in self._mesh_candidates(topic, mesh) if score(x) > median]
                for peer in meshsel.pick(cands, p.opportunistic_graft_peers, self._rng):
                    self._graft(topic, peer)

    def _trim_to_near(self, topic: str, mesh: set[PeerId], near: set[PeerId], fresh: set[PeerId]) -> None:
        """d_near: of the members *we* grafted, a mesh above D keeps the near
        ones and D - d_near others, and prunes the rest.

        Why ours only: the first fill is random, and without a trim it stays
        with the near peers on top, up to D_hi (docs/scale.md). Members that grafted us are left alone, as the
        spec's D..D_hi slack leaves them: a newcomer, or a peer that counts
        us among *its* nearest when we do not count it among ours, keeps its
        place (pruning those made meshes churn forever and left newcomers
        below D_lo). The D - d_near others stay as long links (an all-near
        mesh can split into clusters with no link between them). Outbound
        picks are kept as far as the outbound quota needs, even past
        D - d_near; then the best scores. Near peers grafted this heartbeat
        (``fresh``) do not count yet, nor towards the outbound quota: one that
        refuses (a popular peer at its D_hi) would otherwise have cost us a
        long link, every time its backoff ran out. A refusal slower than a
        heartbeat still does."""
        p = self.params
        mine = sorted((self._ours.get(topic, set()) & mesh) - near)
        keep_n = p.d - p.d_near
        if len(mine) <= keep_n:
            return
        self._rng.shuffle(mine)  # ties broken at random
        mine.sort(key=self._peer_score, reverse=True)
        have_out = sum(1 for x in mesh - fresh if self._peers.is_outbound(x) and x not in mine)
        # The outbound quota is kept even past D - d_near (near peers are often outbound and count).
        outbound = [x for x in mine if self._peers.is_outbound(x)][:max(0, p.d_out - have_out)]
        keep = outbound + [x for x in mine if x not in outbound][:max(0, keep_n - len(outbound))]
        for peer in reversed(mine):  # the lowest scores first
            if peer not in keep and len(mesh - fresh) > p.d:
                self.stats.near_trimmed += 1
                self._prune(topic, peer, px=p.do_px)  # also forgets it as ours

    def _maintain_fanout(self, gossip: dict[str, list[MsgId]]) -> None:
        p = self.params
        for topic in [t for t, last in self._lastpub.items() if last + p.fanout_ttl < self._now]:
            del self._lastpub[topic]
            self._fanout.pop(topic, None)
        for topic in sorted(self._fanout):
            peers = self._fanout[topic]
            members = self._peers.in_topic(topic)
            for x in [x for x in peers if x not in members or self._peer_score(x) < self.thresholds.publish]:
                peers.discard(x)
            if len(peers) < p.d:
                cands = [x for x in members if x not in peers and x not in self._direct
                         and self._peers.proto(x).mesh  # type: ignore[union-attr]
                         and self._peer_score(x) >= self.thresholds.publish]
                peers.update(meshsel.pick(cands, p.d - len(peers), self._rng))
            self._emit_gossip(topic, peers, gossip)

    def _emit_gossip(self, topic: str, exclude: set[PeerId], gossip: dict[str, list[MsgId]]) -> None:
        ids = gossip.get(topic)
        if not ids:
            return
        p = self.params
        cands = sorted(x for x in self._peers.in_topic(topic)
                       if x not in exclude and x not in self._direct and self._peers.proto(x).mesh  # type: ignore[union-attr]
                       and self._peer_score(x) >= self.thresholds.gossip)
        mcache, dontwant = self._mcache, self._dontwant
        known = bool(mcache.holders or len(dontwant))

        def new_to(peer: PeerId, i: MsgId) -> bool:
            return not mcache.held_by(i, peer) and not dontwant.unwanted(peer, i)

        if known:
            # Targets are picked among the peers with something new in it: one
            # known to have every ID (it sent, fetched or advertised them, or
            # said IDONTWANT) would get a frame that can do nothing. The scan
            # stops at the first new ID, so what it costs is bounded by what
            # is remembered (max_gossip_holders).
            wanting = [x for x in cands if any(new_to(x, i) for i in ids)]
            self.stats.ihave_skipped += len(cands) - len(wanting)
            cands = wanting
        for peer in gossip_targets(cands, p.d_lazy, p.gossip_factor, self._rng):
            offer = [i for i in ids if new_to(peer, i)] if known else ids
            self._out.to(peer).ihave.append(IHave(topic, tuple(ihave_ids(offer, p.max_ihave_length, self._rng))))

    # ------------------------------------------------------------ output

    def _flush(self, out: list[Action]) -> None:
        control_ok = {peer: st.proto.mesh for peer in self._out.addressed() if (st := self._peers.get(peer))}
        for peer, rpc in self._out.flush(control_ok):
            if peer in control_ok:
                out.append(SendRpc(peer, rpc))
