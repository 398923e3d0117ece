"""Stream framing: varint length prefixes, coalesced Data frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentp2p.messaging.wire import FrameError, FrameReader, decode_frame, encode_data, length_prefixed
from agentp2p.pb.msg_pb2 import Ack, Envelope, SeqRange


def test_encode_data_is_plain_protobuf() -> None:
    envs = [Envelope(id=f"m{i}", seq=i + 1, payload=b"x" * i) for i in range(3)]
    ack = Ack(session_id=b"s", cumulative=4, selective=[SeqRange(start=6, end=9)])
    frame = decode_frame(encode_data(b"S" * 16, 2, [e.SerializeToString() for e in envs], ack.SerializeToString()))
    assert frame.data.session_id == b"S" * 16 and frame.data.low_seq == 2
    assert list(frame.data.messages) == envs and frame.data.ack == ack


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20), st.integers(1, 50))
def test_reader_reassembles_frames_split_anywhere(frames: list[bytes], chunk: int) -> None:
    stream = b"".join(length_prefixed(f) for f in frames)
    reader = FrameReader()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out += reader.feed(stream[i : i + chunk])
    assert out == frames and reader.buffered == 0


def test_reader_refuses_oversized_frame_before_buffering_it() -> None:
    reader = FrameReader(max_frame_bytes=100)
    with pytest.raises(FrameError):
        reader.feed(length_prefixed(b"x" * 101)[:3])


def test_reader_refuses_endless_varint() -> None:
    with pytest.raises(FrameError):
        FrameReader().feed(b"\xff" * 6)


@pytest.mark.parametrize("junk", [b"\xff\xff", b"", b"\x12\x05ab"])
def test_decode_frame_rejects_junk(junk: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(junk)
