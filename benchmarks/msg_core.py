"""Throughput of the messaging session core alone (no network, no crypto).

Two Session objects in one process, frames handed across in memory (parsed
from bytes, as on a real stream), the sender kept saturated, the receiver
consuming every message. Reports acknowledged messages per second, so we
know the core is far from being the bottleneck of the 10k msg/s target.

    .venv/bin/python benchmarks/msg_core.py [--messages N] [--size B] [--sign]

``--sign`` adds Ed25519 signing and verification (the real per-message cost).
"""

from __future__ import annotations

import argparse
import time

from agentp2p.messaging.events import (
    Acked, Connected, Consumed, Deliver, FrameReceived, Inspect, Inspected, Send, Sign, Signed, TimerFired,
)
from agentp2p.messaging.session import Session, SessionConfig
from agentp2p.messaging.wire import FrameReader, decode_frame, length_prefixed
from agentp2p.pb.msg_pb2 import Envelope


def run(n: int, size: int, sign: bool) -> dict[str, float]:
    signature = verdict = None
    sender_id = recipient_id = b"peer"
    if sign:
        from libp2p.crypto.ed25519 import create_new_key_pair
        from libp2p.peer.id import ID

        from agentp2p.security.signing import sign_envelope, verify_envelope

        ka, kb = create_new_key_pair(), create_new_key_pair()
        sender_id, recipient_id = ID.from_pubkey(ka.public_key).to_bytes(), ID.from_pubkey(kb.public_key).to_bytes()

        def signature(env: Envelope) -> bytes:
            sign_envelope(env, ka.private_key)
            return env.signature

        def verdict(env: Envelope) -> str | None:
            verify_envelope(env, authenticated_peer=sender_id, local_peer=recipient_id)
            return None

    cfg = SessionConfig(window_messages=4096, receive_window=4096)
    a = Session(b"A" * 16, cfg, sign=sign)
    b = Session(b"B" * 16, cfg, inspect=sign)

    def answered(s: Session, actions: list) -> list:
        """``actions`` plus the session's answers to Sign / Inspect (the adapter's job)."""
        out = []
        for act in actions:
            out.append(act)
            if isinstance(act, Sign) and signature is not None:
                out += answered(s, s.handle(now, Signed(act.envelope.seq, signature(act.envelope))))
            elif isinstance(act, Inspect) and verdict is not None:
                out += answered(s, s.handle(now, Inspected(tuple(verdict(e) for e in act.envelopes))))
        return out
    reader_a, reader_b = FrameReader(), FrameReader()
    now = 0.0

    def carry(src: Session, reader: FrameReader, dst: Session) -> list:
        out = []
        while (f := src.transmit(now)) is not None:
            for raw in reader.feed(length_prefixed(f)):
                out += answered(dst, dst.handle(now, FrameReceived(decode_frame(raw))))
        return out

    for s in (a, b):
        s.handle(now, Connected())
    carry(a, reader_b, b)
    carry(b, reader_a, a)
    payload = b"x" * size
    sent = acked = delivered = frames = 0
    t0 = time.perf_counter()
    while acked < n:
        while sent < n and a.can_send(size):
            answered(a, a.handle(now, Send(Envelope(id=str(sent), sender=sender_id, recipient=recipient_id, type="t",
                                                   payload=payload))))
            sent += 1
        frames += a.stats.frames_out
        for act in carry(a, reader_b, b):
            if isinstance(act, Deliver):
                delivered += 1
                b.handle(now, Consumed(act.envelope.session_id, act.envelope.seq))
        for act in carry(b, reader_a, a):
            if isinstance(act, Acked):
                acked += 1
        now += 0.001  # virtual millisecond per round: lets delayed ACKs go out
        t = b.next_timer()
        if t is not None and t <= now:
            b.handle(now, TimerFired())
    elapsed = time.perf_counter() - t0
    assert delivered == n
    return {
        "messages": n,
        "seconds": elapsed,
        "msgs_per_s": n / elapsed,
        "frames_a_to_b": a.stats.frames_out,
        "msgs_per_frame": n / max(1, a.stats.frames_out),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--sign", action="store_true")
    ns = p.parse_args()
    r = run(ns.messages, ns.size, ns.sign)
    print(
        f"core{' +sign/verify' if ns.sign else ''}: {r['messages']} x {ns.size} B acknowledged in "
        f"{r['seconds']:.2f} s = {r['msgs_per_s']:,.0f} msg/s "
        f"({r['frames_a_to_b']} frames, {r['msgs_per_frame']:.0f} msgs/frame)"
    )


if __name__ == "__main__":
    main()
