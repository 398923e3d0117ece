"""Two session cores joined by a lossy, reordering, duplicating link in virtual time.

Test helper (not a test module). Everything random comes from one seeded
``random.Random``, so a failing schedule replays exactly from its seed.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agentp2p.messaging.events import (
    Accepted,
    Acked,
    Action,
    Connected,
    Consumed,
    Deliver,
    Disconnected,
    Failed,
    FrameReceived,
    Inspect,
    Inspected,
    Send,
    Sign,
    Signed,
    TimerFired,
    WindowOpen,
)
from agentp2p.messaging.session import Session, SessionConfig
from agentp2p.messaging.wire import decode_frame
from agentp2p.messaging.window import WindowFull
from agentp2p.pb.msg_pb2 import Envelope


@dataclass
class LinkProfile:
    loss: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.010
    jitter: float = 0.0  # uniform extra delay: > frame spacing means reordering


@dataclass
class Node:
    name: str
    session: Session
    delivered: list[Envelope] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    accepted: list[Envelope] = field(default_factory=list)
    to_send: deque[Envelope] = field(default_factory=deque)  # app backlog
    deadline: float | None = None
    window_open: int = 0
    timer_at: float | None = None
    consume_now: bool = True  # emit Consumed right after Deliver (non-auto sessions)
    hook: Callable[[Action], None] | None = None  # sees every action (durable-store tests)
    #: Answer the session's questions (sessions built with sign= / inspect=True).
    signer: Callable[[Envelope], bytes] | None = None
    inspector: Callable[[tuple[Envelope, ...], tuple[int, ...]], tuple[str | None, ...]] | None = None


class Sim:
    def __init__(
        self,
        rng: random.Random,
        a: Session,
        b: Session,
        link: LinkProfile,
        *,
        frame_bytes: int | None = None,
    ) -> None:
        self.rng = rng
        self.now = 0.0
        self.link = link
        self.frame_bytes = frame_bytes
        self.nodes = {"a": Node("a", a), "b": Node("b", b)}
        self._q: list[tuple[float, int, str, str, object]] = []
        self._n = itertools.count()
        self.generation = 0  # bumps on disconnect: frames in flight die
        self.connected = False
        self.frames_sent = 0
        self.frames_dropped = 0

    # ----------------------------------------------------------- scheduling
    def at(self, t: float, kind: str, node: str, data: object = None) -> None:
        heapq.heappush(self._q, (t, next(self._n), kind, node, data))

    def connect(self) -> None:
        self.connected = True
        for name in ("a", "b"):
            self._apply(name, self.nodes[name].session.handle(self.now, Connected()))

    def disconnect(self) -> None:
        self.connected = False
        self.generation += 1
        for name in ("a", "b"):
            self._apply(name, self.nodes[name].session.handle(self.now, Disconnected()))

    def queue_messages(self, name: str, envs: list[Envelope]) -> None:
        self.nodes[name].to_send.extend(envs)
        self._pump(name)

    # ------------------------------------------------------------- running
    def run(self, until: Callable[[], bool], max_time: float = 1e6, max_steps: int = 50_000_000) -> None:
        steps = 0
        while not until():
            if not self._q:
                raise AssertionError(f"simulation stalled at t={self.now:.3f}")
            t, _, kind, name, data = heapq.heappop(self._q)
            if t > max_time:
                raise AssertionError(f"simulation exceeded {max_time}s")
            self.now = max(self.now, t)
            node = self.nodes[name]
            if kind == "frame":
                gen, raw = data  # type: ignore[misc]
                if gen != self.generation:
                    continue
                self._apply(name, node.session.handle(self.now, FrameReceived(decode_frame(raw))))
            elif kind == "timer":
                if node.timer_at != t:
                    continue  # superseded
                node.timer_at = None
                self._apply(name, node.session.handle(self.now, TimerFired()))
                nt = node.session.next_timer()
                if nt is not None and nt <= self.now:
                    raise AssertionError(f"timer livelock on {name} at t={self.now}")
            elif kind == "call":
                data()  # type: ignore[operator]
            steps += 1
            if steps > max_steps:
                raise AssertionError("too many steps")

    # ------------------------------------------------------------ plumbing
    def _answer(self, node: Node, actions: list[Action]) -> list[Action]:
        """``actions`` with the session's answers to Sign / Inspect appended (as an adapter does)."""
        s = node.session
        for act in actions:  # grows while iterating
            if isinstance(act, Sign):
                assert node.signer is not None, f"{node.name} signs but has no signer"
                actions += s.handle(self.now, Signed(act.envelope.seq, node.signer(act.envelope)))
            elif isinstance(act, Inspect):
                assert node.inspector is not None, f"{node.name} inspects but has no inspector"
                actions += s.handle(self.now, Inspected(node.inspector(act.envelopes, act.sizes)))
        return actions

    def _apply(self, name: str, actions: list[Action]) -> None:
        node = self.nodes[name]
        s = node.session
        consumed: list[Consumed] = []
        for act in self._answer(node, actions):
            if node.hook is not None:
                node.hook(act)
            if isinstance(act, Deliver):
                node.delivered.append(act.envelope)
                if not s.config.auto_consume and node.consume_now:
                    consumed.append(Consumed(act.envelope.session_id, act.envelope.seq))
            elif isinstance(act, Acked):
                node.acked.append(act.envelope.id)
            elif isinstance(act, Failed):
                node.failed.append(act.envelope.id)
            elif isinstance(act, Accepted):
                node.accepted.append(act.envelope)
            elif isinstance(act, WindowOpen):
                node.window_open += 1
        for c in consumed:
            s.handle(self.now, c)  # yields at most Transmit: we flush below anyway
        self._pump(name)
        self._flush(name)

    def _pump(self, name: str) -> None:
        node = self.nodes[name]
        s = node.session
        sent = 0
        while node.to_send and s.can_send(len(node.to_send[0].payload)):
            env = node.to_send.popleft()
            try:
                acts = s.handle(self.now, Send(env, node.deadline))
            except WindowFull:  # pragma: no cover - can_send said yes
                node.to_send.appendleft(env)
                break
            for a in self._answer(node, acts):
                if node.hook is not None:
                    node.hook(a)
                if isinstance(a, Accepted):
                    node.accepted.append(a.envelope)
            sent += 1
        if sent:
            self._flush(name)

    def _flush(self, name: str) -> None:
        node = self.nodes[name]
        s = node.session
        peer = "b" if name == "a" else "a"
        while True:
            frame = s.transmit(self.now, self.frame_bytes)
            if frame is None:
                break
            self.frames_sent += 1
            if not self.connected:
                continue
            link = self.link
            if self.rng.random() < link.loss:
                self.frames_dropped += 1
                continue
            copies = 2 if self.rng.random() < link.duplicate else 1
            for _ in range(copies):
                delay = link.delay + self.rng.random() * link.jitter
                self.at(self.now + delay, "frame", peer, (self.generation, frame))
        t = s.next_timer()
        if t is not None and (node.timer_at is None or t != node.timer_at):
            node.timer_at = max(t, self.now)
            self.at(node.timer_at, "timer", name)


def make_envelopes(n: int, *, prefix: str = "m", size: int = 100) -> list[Envelope]:
    pad = b"x" * max(0, size - 12)
    return [
        Envelope(id=f"{prefix}{i}", sender=b"A", recipient=b"B", type="t", payload=b"%012d" % i + pad)
        for i in range(n)
    ]


def new_session(rng: random.Random, **cfg: object) -> Session:
    return Session(rng.randbytes(16), SessionConfig(**cfg))  # type: ignore[arg-type]
