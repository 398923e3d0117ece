"""No input makes the core raise, and its bounds hold whatever arrives."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentp2p.protocol.kademlia import (
    CancelQuery,
    FindProviders,
    GetValue,
    KademliaConfig,
    Message,
    MessageType,
    NamespacedValidator,
    Peer,
    PeerConnected,
    PeerDisconnected,
    Provide,
    PutValue,
    Record,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    SendRequest,
    StartLookup,
    Tick,
    encode_message,
)

from .kadhelpers import Driver, IdealNetwork, SeqValidator, closest_to, core_knowing, pid

PEERS = [pid(i) for i in range(40)]
_peer = st.builds(Peer, st.sampled_from(PEERS) | st.binary(min_size=1, max_size=40),
                  st.lists(st.binary(max_size=20), max_size=3).map(tuple))
_msg = st.builds(
    Message,
    st.sampled_from(list(MessageType)),
    st.sampled_from([b"/v/a", b"k", b""]) | st.binary(max_size=40),
    st.none() | st.builds(Record, st.sampled_from([b"/v/a", b"k"]), st.sampled_from([b"1:x", b"9:y", b"bad"])),
    st.lists(_peer, max_size=30).map(tuple),
    st.lists(_peer, max_size=5).map(tuple),
)
_payload = _msg | _msg.map(encode_message) | st.binary(max_size=200)

_event = st.one_of(
    st.builds(RequestReceived, st.sampled_from(PEERS), st.integers(0, 5), _payload),
    st.builds(ResponseReceived, st.integers(0, 60), st.none() | _payload),
    st.builds(RequestFailed, st.integers(0, 60)),
    st.builds(PeerConnected, st.sampled_from(PEERS), st.just((b"/x",)), st.booleans()),
    st.builds(PeerDisconnected, st.sampled_from(PEERS)),
    st.builds(StartLookup, st.integers(0, 3), st.binary(max_size=8)),
    st.builds(GetValue, st.integers(0, 3), st.just(b"/v/a"), st.integers(0, 5)),
    st.builds(PutValue, st.integers(0, 3), st.just(b"/v/a"), st.sampled_from([b"1:x", b"2:x", b"bad"]),
              st.integers(0, 5)),
    st.builds(Provide, st.integers(0, 3), st.binary(max_size=8)),
    st.builds(FindProviders, st.integers(0, 3), st.binary(max_size=8), st.integers(-1, 5)),
    st.builds(CancelQuery, st.integers(0, 3)),
    st.just(Tick()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 50), _event), max_size=60))
# Found by Hypothesis: a provide whose look-up times out still writes, after its deadline.
@example([(0.0, Provide(0, b"")), (0.0, ResponseReceived(1, Message(MessageType.FIND_NODE, b"/v/a")))])
def test_core_survives_any_event_sequence(events: list) -> None:  # type: ignore[type-arg]
    cfg = KademliaConfig(max_pending_requests=40, max_queries=3, max_candidates=30)
    core = core_knowing(PEERS[:25], config=cfg, validator=NamespacedValidator({"v": SeqValidator()}))
    now = 0.0
    for dt, ev in events:
        now += dt
        core.handle(now, ev)
        assert core.pending_count() <= cfg.max_pending_requests + 256  # + one liveness ping per bucket
        assert core.query_count() <= cfg.max_queries
    end = now + 1e6  # everything old times out; refresh/republish start new lookups, which end in turn
    for t in range(0, 600, 7):
        core.handle(end + t, Tick())
        # A look-up ends by its deadline; the writes after it one request timeout later.
        for q in core._queries.values():
            if q.writing:
                assert end + t - q.writing_since <= cfg.request_timeout
            else:
                assert end + t - q.started <= cfg.lookup_timeout
        assert all(p.timeout_at > end + t for p in core._pending.values())


def test_disjoint_paths_find_the_true_closest() -> None:
    net = IdealNetwork(400)
    cfg = KademliaConfig(disjoint_paths=3, refresh_interval=1e9)
    d = Driver(core_knowing(net.peers[:60], config=cfg), net)
    d.feed(StartLookup("q", b"t"))
    res = d.run_until_finished("q")
    assert [p.id for p in res.result.peers] == closest_to(b"t", net.peers)
    lookups = [a for a in d.sent if isinstance(a, SendRequest)]
    assert len({a.peer for a in lookups}) == len(lookups)  # no peer asked twice (paths are disjoint)
    assert d.max_outstanding <= cfg.alpha * cfg.disjoint_paths
