"""The adapter's wire side: hand-rolled encoding, per-peer queues, frame merging.

Merging concatenates queued RPC encodings under one length prefix; a
protobuf parser reads the concatenation as the merge of the RPCs. These
tests pin that this is exact (same content, same order within each field),
that merged frames respect the receiver's limits (bytes and counts), and
that a queue's bounds and memory reservation are honoured.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agentp2p.network.framing import FrameReader
from agentp2p.network.resources import ResourceLimits, ResourceManager
from agentp2p.protocol.gossipsub.codec import DEFAULT_LIMITS, decode_rpc, encode_message, encode_rpc
from agentp2p.protocol.gossipsub.rpc import Control, Graft, IDontWant, IHave, IWant, Message, Prune, Rpc, SubOpts
from agentp2p.protocol.gossipsub.stream import MAX_MERGED_FRAME, RESERVE_CHUNK, OutQueue, RpcEncoder
from agentp2p.protocol.gossipsub.stream import encode_message as fast_encode_message

opt_bytes = st.none() | st.binary(max_size=80)
messages = st.builds(
    Message,
    topic=st.text(min_size=1, max_size=20),
    data=st.binary(max_size=300),
    from_=opt_bytes,
    seqno=opt_bytes,
    signature=opt_bytes,
    key=opt_bytes,
)


@given(messages)
@settings(max_examples=300, deadline=None)
def test_message_encoding_is_byte_identical_to_the_codec(msg: Message) -> None:
    assert fast_encode_message(msg) == encode_message(msg)


ids = st.lists(st.binary(min_size=1, max_size=20), max_size=5).map(tuple)
controls = st.builds(
    Control,
    ihave=st.lists(st.builds(IHave, st.text(min_size=1, max_size=8), ids), max_size=2).map(tuple),
    iwant=st.lists(st.builds(IWant, ids), max_size=2).map(tuple),
    graft=st.lists(st.builds(Graft, st.text(min_size=1, max_size=8)), max_size=2).map(tuple),
    prune=st.lists(st.builds(Prune, st.text(min_size=1, max_size=8), st.just(()), st.none() | st.integers(0, 100)),
                   max_size=2).map(tuple),
    idontwant=st.lists(st.builds(IDontWant, ids), max_size=2).map(tuple),
)
rpcs = st.builds(
    Rpc,
    st.lists(st.builds(SubOpts, st.booleans(), st.text(min_size=1, max_size=8)), max_size=3).map(tuple),
    st.lists(messages, max_size=3).map(tuple),
    controls,
)


def _frames(data: bytes) -> list[bytes]:
    return FrameReader(1 << 22).feed(data)


def _concat(rpcs_: list[Rpc]) -> Rpc:
    c = [r.control for r in rpcs_]
    return Rpc(
        tuple(s for r in rpcs_ for s in r.subscriptions),
        tuple(m for r in rpcs_ for m in r.publish),
        Control(
            tuple(x for k in c for x in k.ihave),
            tuple(x for k in c for x in k.iwant),
            tuple(x for k in c for x in k.graft),
            tuple(x for k in c for x in k.prune),
            tuple(x for k in c for x in k.idontwant),
        ),
    )


@given(st.lists(rpcs, min_size=1, max_size=6))
@settings(max_examples=200, deadline=None)
def test_merged_frame_decodes_to_the_concatenation_of_the_queued_rpcs(queued: list[Rpc]) -> None:
    q = OutQueue(1000, 1 << 24)
    enc = RpcEncoder()
    for r in queued:
        assert q.push(enc.encode(r), 0.0)
    data, frames = q.take(1 << 20)
    [frame] = _frames(data)
    assert frames == 1
    assert decode_rpc(frame) == decode_rpc(encode_rpc(_concat(queued)))
    # the codec's own encoding of the merged RPC says the same
    q.written(1.0, frames)
    assert q.bytes == 0 and len(q) == 0


def test_a_forwarded_message_is_encoded_once_per_batch() -> None:
    enc = RpcEncoder()
    m = Message("t", b"x" * 100, b"a", b"s")
    a = enc.encode(Rpc((), (m,)))
    b = enc.encode(Rpc((), (m,)))
    assert a[0] is b[0] and a[1:] == (1, 0, 0, 0)


def test_frames_respect_message_count_and_size_limits() -> None:
    q = OutQueue(100_000, 1 << 30)
    enc = RpcEncoder()
    small = [Rpc((), (Message("t", b"%d" % k, b"a", b"s%d" % k),)) for k in range(2500)]
    for r in small:
        assert q.push(enc.encode(r), 0.0)
    data, n = q.take(1 << 30)
    frames = _frames(data)
    assert n == len(frames) == 3  # 1000 + 1000 + 500 messages
    assert [len(decode_rpc(f).publish) for f in frames] == [1000, 1000, 500]
    q.written(0.0, n)

    big = [Rpc((), (Message("t", b"z" * 300_000, b"a", b"%d" % k),)) for k in range(7)]
    for r in big:
        assert q.push(enc.encode(r), 0.0)
    data, n = q.take(1 << 30)
    frames = _frames(data)
    assert all(len(f) <= MAX_MERGED_FRAME for f in frames) and sum(len(decode_rpc(f).publish) for f in frames) == 7
    assert all(len(decode_rpc(f, DEFAULT_LIMITS).publish) <= 3 for f in frames)


def test_a_single_rpc_bigger_than_the_merge_limit_goes_alone() -> None:
    q = OutQueue(10, 1 << 24)
    enc = RpcEncoder()
    huge = Rpc((), (Message("t", b"h" * (MAX_MERGED_FRAME + 10),),))
    q.push(enc.encode(Rpc((SubOpts(True, "t"),))), 0.0)
    q.push(enc.encode(huge), 0.0)
    data, n = q.take(1 << 30)
    frames = _frames(data)
    assert n == 2 and len(frames[1]) > MAX_MERGED_FRAME


def test_take_stops_at_the_write_budget_but_always_takes_one() -> None:
    q = OutQueue(100, 1 << 24)
    enc = RpcEncoder()
    for k in range(10):
        q.push(enc.encode(Rpc((), (Message("t", b"y" * 1000, b"a", b"%d" % k),))), 0.0)
    data, _ = q.take(3000)
    assert len(decode_rpc(_frames(data)[0]).publish) == 3
    assert len(q) == 10 and len(q.items) == 7  # in flight still counts
    q.written(0.0, 1)
    data, _ = q.take(1)
    assert len(decode_rpc(_frames(data)[0]).publish) == 1


def test_queue_bounds_and_memory_reservation() -> None:
    rm = ResourceManager(ResourceLimits(max_memory_per_peer=1 << 20))
    q = OutQueue(5, 8_000, rm.reservation("peer", "pubsub"), 0.0)
    enc = RpcEncoder()
    item = enc.encode(Rpc((), (Message("t", b"q" * 1000, b"a", b"1"),)))
    for _ in range(5):
        assert q.push(item, 0.0)
    assert not q.push(item, 0.0)  # 5 items: full by count
    # reserved in chunks, never past the queue's byte cap
    assert q.bytes == 5 * len(item[0]) <= rm.memory_of("peer") <= q.max_bytes
    q.take(1 << 20)
    assert rm.memory_of("peer") >= q.bytes > 0  # in flight stays reserved...
    q.written(1.0, 1)
    assert rm.memory_of("peer") == 0 == q.bytes  # ...until written: drained, all given back

    big = enc.encode(Rpc((), (Message("t", b"b" * 3000, b"a", b"2"),)))
    assert q.push(big, 0.0) and q.push(big, 0.0)
    assert not q.push(big, 0.0)  # past max_bytes
    assert q.fill() > 0.5
    assert q.clear() == 2 and rm.memory_of("peer") == 0
    q.push(big, 2.0)
    q.close()
    assert rm.memory_of("peer") == 0


def test_reservations_are_chunked_and_refusal_means_a_drop() -> None:
    rm = ResourceManager(ResourceLimits(max_memory_per_peer=1 << 24))
    inner = rm.reservation("peer", "pubsub")
    grows = 0

    class Counting:
        def grow(self, n: int) -> bool:
            nonlocal grows
            grows += 1
            return inner.grow(n)

        def shrink(self, n: int) -> None:
            inner.shrink(n)

        def close(self) -> None:
            inner.close()

    q = OutQueue(10_000, 1 << 22, Counting(), 0.0)
    enc = RpcEncoder()
    item = enc.encode(Rpc((), (Message("t", b"r" * 900, b"a", b"1"),)))
    for _ in range(1000):
        assert q.push(item, 0.0)
    assert grows <= 1000 * len(item[0]) // RESERVE_CHUNK + 1  # one reservation per chunk, not per RPC
    assert q.bytes <= rm.memory_of("peer") < q.bytes + RESERVE_CHUNK

    # The manager's per-peer limit stops the queue before its own cap: a drop.
    small = ResourceManager(ResourceLimits(max_memory_per_peer=RESERVE_CHUNK + 5000))
    q = OutQueue(10_000, 1 << 22, small.reservation("peer", "pubsub"), 0.0)
    pushed = 0
    while q.push(item, 0.0):
        pushed += 1
    assert pushed * len(item[0]) <= RESERVE_CHUNK + 5000 < (pushed + 1) * len(item[0])
    assert small.memory_of("peer") <= RESERVE_CHUNK + 5000


def test_stalled_for_counts_from_the_last_progress() -> None:
    q = OutQueue(10, 1 << 20, None, 0.0)
    assert q.stalled_for(100.0) == 0.0  # empty: never stalled
    q.push(RpcEncoder().encode(Rpc((SubOpts(True, "t"),))), 10.0)
    assert q.stalled_for(25.0) == 15.0
    q.take(1 << 20)
    assert q.stalled_for(30.0) == 20.0  # a write in progress is not progress
    q.written(31.0, 1)
    assert q.stalled_for(40.0) == 0.0
