"""Inputs to and outputs from the sans-IO Kademlia core.

Inputs (``KademliaCore.handle(now, event)``):
  Tick              time passed; runs whatever is due (see next_deadline()).
  PeerConnected     a connection to ``peer`` is up; ``is_server``: it speaks our
                    DHT protocol in server mode (identify), so it may enter the table.
  PeerDisconnected  it is gone (it stays in the table: Kademlia keeps peers
                    that were alive; a failing request is what evicts them).
  LocalAddrs        our own listen addresses (sent in ADD_PROVIDER).
  RequestReceived   an inbound request, answered by exactly one SendResponse or
                    CloseRequest carrying the same ``request_id``.
  ResponseReceived  the answer to our SendRequest/PingPeer ``request_id``
                    (``message`` None: a request that expects no answer was written).
  RequestFailed     that request failed (dial, stream, decode, timeout).
  StartLookup, FindPeer, GetValue, PutValue, Provide, FindProviders: start a
                    query; it ends with one QueryFinished of the same ``query_id``.
  StopProviding     stop republishing a key (its records expire by themselves).
  CancelQuery       end a read query now: its QueryFinished comes at once, with
                    what it has (the caller has enough, or gave up). PutValue
                    and Provide go on: their records still get written.
  Bootstrap         a self-lookup now, then a lookup in every bucket (a join);
                    reported as a StartLookup when given a ``query_id``.

Outputs (the returned list, in order):
  AddAddresses      remember addresses of ``peer`` (learned from the DHT)
                    before a request to it: the adapter dials with them.
  SendRequest       open a stream to ``peer``, send ``message``, read one answer
                    (unless ``expect_response`` is False); report ResponseReceived
                    or RequestFailed. The core times it out at ``timeout_at`` itself.
  PingPeer          is ``peer`` alive? (a kad PING or libp2p ping); report as above.
  CancelRequest     the core no longer needs that answer (timed out, query done).
  SendResponse      answer an inbound request.
  CloseRequest      close an inbound request without an answer: ``error`` None
                    for ADD_PROVIDER (it has none), else why it was refused.
  RoutingUpdated    ``peer`` entered (``added``) or left the routing table.
  ProvidersProgress providers a FindProviders query has just learned, each once,
                    before its QueryFinished (which lists them all): a caller
                    can use the first while the lookup goes on.
  QueryFinished     a query's result (and its cost, QueryStats).
  ArmTimer          the next deadline changed: call handle(at, Tick()) then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

from .codec import Message, Peer

QueryId = Hashable
RequestId = Hashable

# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer: bytes
    addrs: tuple[bytes, ...] = ()
    is_server: bool = False


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer: bytes


@dataclass(frozen=True, slots=True)
class LocalAddrs:
    addrs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    #: Authenticated by the transport.
    peer: bytes
    #: The adapter's handle for the stream; echoed in SendResponse/CloseRequest.
    request_id: RequestId
    #: Raw bytes (decoded and bounded by the core) or an already decoded Message.
    message: bytes | Message


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    request_id: RequestId
    message: bytes | Message | None


@dataclass(frozen=True, slots=True)
class RequestFailed:
    request_id: RequestId
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StartLookup:
    """The k closest peers to ``key`` (FIND_NODE) -> ClosestPeers."""

    query_id: QueryId
    key: bytes


@dataclass(frozen=True, slots=True)
class FindPeer:
    """``peer``'s addresses -> PeerFound."""

    query_id: QueryId
    peer: bytes


@dataclass(frozen=True, slots=True)
class GetValue:
    """The best valid value under ``key`` once ``quorum`` peers (ours counts)
    gave one -> ValueFound."""

    query_id: QueryId
    key: bytes
    quorum: int = 1


@dataclass(frozen=True, slots=True)
class PutValue:
    """Store locally, then PUT_VALUE to the ``replication`` closest -> ValuePut."""

    query_id: QueryId
    key: bytes
    value: bytes
    quorum: int = 1


@dataclass(frozen=True, slots=True)
class Provide:
    """Announce us as a provider of ``key`` (and republish it) -> Provided."""

    query_id: QueryId
    key: bytes


@dataclass(frozen=True, slots=True)
class StopProviding:
    key: bytes


@dataclass(frozen=True, slots=True)
class FindProviders:
    """Up to ``count`` providers of ``key`` -> ProvidersFound."""

    query_id: QueryId
    key: bytes
    count: int = 20


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """A self-lookup, and when it ends one lookup per bucket down to one
    past the deepest filled (a join). With ``query_id`` the self-lookup
    ends like a StartLookup (QueryFinished, ClosestPeers); without, it is
    the core's own and reports nothing. A CancelQuery of it ends the
    self-lookup and asks no bucket (the caller gave up: a node stopping)."""

    query_id: QueryId | None = None


@dataclass(frozen=True, slots=True)
class CancelQuery:
    """End read query ``query_id`` now; writes, unknown or finished IDs are ignored."""

    query_id: QueryId


Input = (Tick | PeerConnected | PeerDisconnected | LocalAddrs | RequestReceived | ResponseReceived
         | RequestFailed | StartLookup | FindPeer | GetValue | PutValue | Provide | StopProviding
         | FindProviders | Bootstrap | CancelQuery)

# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class QueryStats:
    requests: int = 0  # requests sent (lookup and put/provide phases)
    responses: int = 0
    failures: int = 0  # failed or timed out
    hops: int = 0  # the longest chain of referrals that the result needed
    duration: float = 0.0
    timed_out: bool = False  # the lookup deadline ended it
    slow: int = 0  # lookup requests that gave up their α slot (KademliaConfig.slow_after)


@dataclass(frozen=True, slots=True)
class ClosestPeers:
    peers: tuple[Peer, ...]


@dataclass(frozen=True, slots=True)
class PeerFound:
    peer: Peer | None  # None: not found


@dataclass(frozen=True, slots=True)
class ValueFound:
    value: bytes | None  # None: no valid value anywhere we asked
    count: int  # valid answers (ours included)
    quorum_met: bool
    corrected: int  # peers sent the best value because theirs was outdated


@dataclass(frozen=True, slots=True)
class ValuePut:
    stored: int  # peers that acknowledged (not counting us)
    quorum_met: bool


@dataclass(frozen=True, slots=True)
class Provided:
    announced: int  # peers the ADD_PROVIDER was written to


@dataclass(frozen=True, slots=True)
class ProvidersFound:
    providers: tuple[Peer, ...]


@dataclass(frozen=True, slots=True)
class QueryError:
    reason: str  # e.g. "too many queries", "invalid record", "client mode"


Result = ClosestPeers | PeerFound | ValueFound | ValuePut | Provided | ProvidersFound | QueryError

# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class AddAddresses:
    peer: bytes
    addrs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SendRequest:
    peer: bytes
    request_id: RequestId
    message: Message
    timeout_at: float
    expect_response: bool = True


@dataclass(frozen=True, slots=True)
class PingPeer:
    peer: bytes
    request_id: RequestId
    timeout_at: float


@dataclass(frozen=True, slots=True)
class CancelRequest:
    request_id: RequestId


@dataclass(frozen=True, slots=True)
class SendResponse:
    peer: bytes
    request_id: RequestId
    message: Message


@dataclass(frozen=True, slots=True)
class CloseRequest:
    peer: bytes
    request_id: RequestId
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingUpdated:
    peer: bytes
    added: bool


@dataclass(frozen=True, slots=True)
class ProvidersProgress:
    query_id: QueryId
    providers: tuple[Peer, ...]


@dataclass(frozen=True, slots=True)
class QueryFinished:
    query_id: QueryId
    result: Result
    stats: QueryStats


@dataclass(frozen=True, slots=True)
class ArmTimer:
    at: float


Action = (AddAddresses | SendRequest | PingPeer | CancelRequest | SendResponse | CloseRequest
          | RoutingUpdated | ProvidersProgress | QueryFinished | ArmTimer)
