"""One running query: a lookup plus what its kind collects along the way.

Every query is a :class:`~.lookup.Lookup` toward ``kad_key(key)``; the kind
decides the request type, what an answer contributes, and when to stop
early (kad-dht/README.md "Value routing", "Content routing"):

  FIND_NODE      the k closest peers; ends with the lookup.
  FIND_PEER      ends as soon as any answer names the peer (with addresses).
  GET_VALUE      collects valid values; ends at ``quorum`` answers (ours
                 counts); peers that sent a worse value than the best are
                 listed in ``outdated`` for a corrective PUT_VALUE.
  GET_PROVIDERS  collects distinct providers; ends at ``count``.
  PUT_VALUE / ADD_PROVIDER  a FIND_NODE lookup, then a *write phase*: the
                 record/announcement goes to the ``replication`` closest.
The query holds no I/O and no clock; the core feeds it.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .codec import Message, MessageType, Peer
from .events import (
    ClosestPeers,
    PeerFound,
    Provided,
    ProvidersFound,
    QueryId,
    QueryStats,
    Result,
    ValueFound,
    ValuePut,
)
from .lookup import Candidate, Lookup

#: Most providers one FindProviders collects, whatever ``count`` says.
MAX_PROVIDERS_RESULT = 1000


class Kind(enum.Enum):
    FIND_NODE = "find_node"
    FIND_PEER = "find_peer"
    GET_VALUE = "get_value"
    PUT_VALUE = "put_value"
    GET_PROVIDERS = "get_providers"
    ADD_PROVIDER = "add_provider"


_LOOKUP_TYPE = {
    Kind.FIND_NODE: MessageType.FIND_NODE,
    Kind.FIND_PEER: MessageType.FIND_NODE,
    Kind.GET_VALUE: MessageType.GET_VALUE,
    Kind.PUT_VALUE: MessageType.FIND_NODE,
    Kind.GET_PROVIDERS: MessageType.GET_PROVIDERS,
    Kind.ADD_PROVIDER: MessageType.FIND_NODE,
}


@dataclass(slots=True)
class Query:
    qid: QueryId
    kind: Kind
    key: bytes  # raw (unhashed) key; the lookup holds the hashed target
    lookup: Lookup
    started: float
    deadline: float
    internal: bool = False  # refresh / republish: no QueryFinished
    quorum: int = 1  # GET_VALUE/PUT_VALUE quorum; GET_PROVIDERS count
    value: bytes | None = None  # PUT_VALUE's value; GET_VALUE's best so far
    value_count: int = 0
    best_peers: list[bytes | None] = field(default_factory=list)  # None: us
    outdated: list[bytes] = field(default_factory=list)
    providers: OrderedDict[bytes, tuple[bytes, ...]] = field(default_factory=OrderedDict)
    found: Peer | None = None
    hops: int = 0
    writing: bool = False
    #: When the write phase began (its requests end one request timeout later).
    writing_since: float = 0.0
    timed_out: bool = False
    writes_pending: int = 0
    written: int = 0
    write_requests: int = 0
    write_failures: int = 0

    @property
    def lookup_type(self) -> MessageType:
        return _LOOKUP_TYPE[self.kind]

    def lookup_message(self) -> Message:
        return Message(self.lookup_type, key=self.key)

    # -------------------------------------------------------- answers

    def on_answer(
        self,
        cand: Candidate,
        msg: Message,
        valid: Callable[[bytes, bytes], bool],
        select: Callable[[bytes, Sequence[bytes]], int],
    ) -> bool:
        """``cand`` answered ``msg`` (already fed to the lookup). True when
        the query has what it needs and can stop before the lookup ends."""
        if self.kind is Kind.GET_VALUE and msg.record is not None:
            r = msg.record
            if r.key == self.key and valid(self.key, r.value):
                self.add_value(cand.peer, r.value, select)
                self.hops = max(self.hops, cand.hop)
            return self.value_count >= self.quorum
        if self.kind is Kind.GET_PROVIDERS:
            for p in msg.provider_peers:
                if len(self.providers) >= self.quorum:
                    break
                if p.id not in self.providers:
                    self.providers[p.id] = p.addrs
                    self.hops = max(self.hops, cand.hop)
            return len(self.providers) >= self.quorum
        if self.kind is Kind.FIND_PEER:
            target = self.key
            for p in msg.closer_peers:
                if p.id == target and (p.addrs or cand.peer == target):
                    self.found = Peer(p.id, p.addrs)
                    self.hops = cand.hop
                    return True
            if cand.peer == target:  # it answered us itself
                self.found = Peer(target, cand.addrs)
                self.hops = cand.hop
                return True
        return False

    def add_value(self, peer: bytes | None, value: bytes, select: Callable[[bytes, Sequence[bytes]], int]) -> None:
        self.value_count += 1
        if self.value is None or value == self.value:
            self.value = value
            self.best_peers.append(peer)
            return
        if select(self.key, [self.value, value]) == 1:
            self.outdated.extend(p for p in self.best_peers if p is not None)
            self.value, self.best_peers = value, [peer]
        elif peer is not None:
            self.outdated.append(peer)

    # -------------------------------------------------------- results

    def stats(self, now: float, timed_out: bool) -> QueryStats:
        lk = self.lookup
        hops = self.hops
        if self.kind in (Kind.FIND_NODE, Kind.PUT_VALUE, Kind.ADD_PROVIDER) or not hops:
            hops = max((c.hop for c in lk.closest()), default=0)
        return QueryStats(
            requests=lk.requests + self.write_requests,
            responses=lk.responses + self.written,
            failures=lk.failures + self.write_failures,
            hops=hops,
            duration=now - self.started,
            timed_out=timed_out,
            slow=lk.slow,
        )

    def result(self) -> Result:
        k = self.kind
        if k is Kind.FIND_NODE:
            return ClosestPeers(tuple(Peer(c.peer, c.addrs) for c in self.lookup.closest()))
        if k is Kind.FIND_PEER:
            return PeerFound(self.found)
        if k is Kind.GET_VALUE:
            return ValueFound(self.value, self.value_count, self.value_count >= self.quorum, len(self.outdated))
        if k is Kind.GET_PROVIDERS:
            return ProvidersFound(tuple(Peer(p, a) for p, a in self.providers.items()))
        if k is Kind.PUT_VALUE:
            return ValuePut(self.written, self.written >= self.quorum)
        return Provided(self.written)
