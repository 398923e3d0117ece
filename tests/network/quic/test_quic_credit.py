"""Flow-control credit: aioquic 1.7.2 as shipped against ours (network/quic/credit.py).

Two aioquic connections in memory (aioquic is sans-IO: datagrams are handed
across by hand, on a virtual clock). The client writes 8 MiB on one stream;
the server's application reads nothing. aioquic raises its windows as data
*arrives*, so everything crosses; with ours the sender stops at the windows
and goes on only as the reader releases bytes.
"""

from __future__ import annotations

import datetime

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamDataReceived
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentp2p.network.quic import CONNECTION_WINDOW, STREAM_WINDOW
from agentp2p.network.quic.credit import credited

MiB = 1 << 20
ADDR = ("127.0.0.1", 4433)


def _certificate() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    return cert, key


class _Pair:
    """``hold``: the server's streams buffer what arrives for a reader (our
    stream tells the connection so); False: the bytes are dropped on
    arrival, as py-libp2p does for a stream it does not know."""

    def __init__(self, cls: type[QuicConnection], hold: bool = True, drain: bool = True) -> None:
        self.hold = hold
        self.drain = drain
        cert, key = _certificate()
        windows = {"max_data": CONNECTION_WINDOW, "max_stream_data": STREAM_WINDOW}
        client_cfg = QuicConfiguration(is_client=True, alpn_protocols=["t"], verify_mode=0, **windows)
        server_cfg = QuicConfiguration(is_client=False, alpn_protocols=["t"], certificate=cert, private_key=key, **windows)
        self.now = 0.0
        self.client = cls(configuration=client_cfg)
        self.server = cls(configuration=server_cfg, original_destination_connection_id=self.client.original_destination_connection_id)
        self.received = 0
        self.client.connect(ADDR, now=self.now)
        self.pump()

    def pump(self, rounds: int = 20_000) -> None:
        """Move datagrams both ways until nothing moves (the server drains its
        events, as py-libp2p's connection does, but its reader reads nothing)."""
        for _ in range(rounds):
            self.now += 0.001
            moved = False
            for src, dst in ((self.client, self.server), (self.server, self.client)):
                for data, _ in src.datagrams_to_send(now=self.now):
                    dst.receive_datagram(data, ADDR, now=self.now)
                    moved = True
                timer = src.get_timer()
                if timer is not None and timer <= self.now:
                    src.handle_timer(now=self.now)
                    moved = True
            while self.drain and (event := self.server.next_event()) is not None:
                if isinstance(event, StreamDataReceived):
                    self.received += len(event.data)
                    if self.hold and hasattr(self.server, "hold"):
                        self.server.hold(len(event.data))
            while self.client.next_event() is not None:
                pass
            if not moved:
                return


@pytest.mark.parametrize("cls, bound", [(QuicConnection, None), (credited(QuicConnection), STREAM_WINDOW)])
def test_a_reader_that_reads_nothing_holds_the_sender_back_only_with_ours(cls: type[QuicConnection], bound: int | None) -> None:
    pair = _Pair(cls)
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(stream_id, b"x" * (8 * MiB))
    pair.pump()
    if bound is None:
        assert pair.received == 8 * MiB  # aioquic: all of it, to a reader that read none
    else:
        assert pair.received == bound  # ours: one stream window, and no more
        pair.server.release(stream_id, MiB // 2)  # the reader takes half a window
        pair.pump()
        assert pair.received == bound + MiB // 2


def test_connection_window_bounds_all_streams_together() -> None:
    pair = _Pair(credited(QuicConnection))
    streams = []
    for _ in range(3):
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_stream_data(sid, b"y" * (2 * MiB))
        streams.append(sid)
    pair.pump()
    assert pair.received == CONNECTION_WINDOW  # 3 streams could take 3 MiB; the connection allows 1.5
    pair.server.release(streams[0], STREAM_WINDOW)
    pair.pump()
    assert CONNECTION_WINDOW < pair.received <= CONNECTION_WINDOW + STREAM_WINDOW


def test_bytes_nobody_holds_are_credited_back_at_once() -> None:
    """Data dropped on arrival (a stream py-libp2p does not know, a reset's
    unsent tail) must not eat the connection's window: each stream still
    stops at its own window, the connection does not stall."""
    pair = _Pair(credited(QuicConnection), hold=False)
    for _ in range(3):
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_stream_data(sid, b"y" * (2 * MiB))
    pair.pump()
    assert pair.received == 3 * STREAM_WINDOW  # past the 1.5 MiB connection window


def test_events_py_libp2p_has_not_taken_yet_count_as_held() -> None:
    """py-libp2p's connection takes aioquic's events ten a turn; while its
    loop lags, delivered data waits in aioquic's queue and must not earn
    credit, or the queue grows without bound."""
    pair = _Pair(credited(QuicConnection), drain=False)
    for _ in range(3):
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_stream_data(sid, b"y" * (2 * MiB))
    pair.pump()
    queued = sum(len(e.data) for e in pair.server._events if isinstance(e, StreamDataReceived))
    assert queued == CONNECTION_WINDOW
