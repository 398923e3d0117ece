"""Run N SwimCore instances in one process on virtual time.

The same core the real node runs; the simulator only replaces the adapter:
``Send`` actions become delivery events on a heap (delayed, lost or blocked by
``NetworkModel``), and each core's ``next_deadline()`` becomes a wake-up event.
With a ``StallModel``, members that share a process stop together: what
falls due for them in a stall waits for its end (a starved event loop).
Calls scheduled with ``at`` (crash, leave, discover) are not held.
Everything random comes from one seed, and ties on the heap break by insertion
order, so a run is exactly reproducible.

Members start "warm" (everyone knows everyone, as after convergence) through a
shared read-only RosterBase, which is what makes 10,000 members fit in memory:
each core stores only how its view differs from the initial one.

By default messages are handed over as objects and only *sized*
(``wire.encoded_size``, exactly what the protobuf encoder would produce);
``wire="full"`` also encodes/decodes every frame.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from agentp2p.protocol.swim import (
    LeaveComplete,
    MemberEvent,
    Received,
    RosterBase,
    Send,
    SwimConfig,
    SwimCore,
    Tick,
    encode,
)
from agentp2p.protocol.swim.wire import encoded_size
from agentp2p.protocol.swim import Leave as _Leave

from .network import NetworkModel
from .stalls import StallModel

_WAKE, _DELIVER, _CALL = 0, 1, 2
_TICK = Tick()

EventHook = Callable[[float, int, MemberEvent], None]


def peer_id(i: int) -> bytes:
    """A 38-byte ID shaped like a libp2p Ed25519 peer ID (identity multihash)."""
    return b"\x00\x24\x08\x01\x12\x20" + i.to_bytes(32, "big")


def sim_signer(peer: bytes) -> Callable[[bytes], bytes]:
    """INSECURE stand-in for a member's Ed25519 key (simulator and core tests
    only): a hash keyed by the peer ID, which anyone could compute. The
    simulator has no adversary; it needs signed self-updates to flow as they
    do between real nodes, at a fraction of the cost of Ed25519."""
    key = peer[-64:]
    return lambda data: hashlib.blake2b(data, key=key, digest_size=64).digest()


def sim_verify(peer: bytes, data: bytes, signature: bytes) -> bool:
    """Checks :func:`sim_signer` signatures."""
    return hmac.compare_digest(hashlib.blake2b(data, key=peer[-64:], digest_size=64).digest(), signature)


def addr(i: int) -> bytes:
    """Binary multiaddr /ip4/10.x.y.z/tcp/4001."""
    return b"\x04" + (0x0A000000 + i).to_bytes(4, "big") + b"\x06\x0f\xa1"


@dataclass
class Traffic:
    messages: int = 0
    bytes: int = 0
    lost: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    bytes_by_kind: dict[str, int] = field(default_factory=dict)


class SwimSimulation:
    def __init__(
        self,
        n: int,
        *,
        seed: int,
        config: SwimConfig | None = None,
        network: NetworkModel | None = None,
        warm: bool = True,
        wire: str = "size",
        on_event: EventHook | None = None,
        stalls: StallModel | None = None,
    ) -> None:
        if wire not in ("none", "size", "full"):
            raise ValueError("wire must be none, size or full")
        self.n = n
        self.config = config or SwimConfig()
        self.network = network or NetworkModel()
        self.wire = wire
        self.on_event = on_event
        self.stalls = stalls
        self.now = 0.0
        self.rng = random.Random(seed)
        self.ids = [peer_id(i) for i in range(n)]
        self.index = {p: i for i, p in enumerate(self.ids)}
        base = RosterBase((self.ids[i], (addr(i),)) for i in range(n)) if warm else None
        self.cores = [
            SwimCore(
                self.ids[i], (addr(i),), rng=random.Random(seed * 1_000_003 + i), now=0.0,
                config=self.config, base=base, sign=sim_signer(self.ids[i]), verify=sim_verify,
            )
            for i in range(n)
        ]
        self.crashed = [False] * n
        self.left = [False] * n
        self.traffic = Traffic()
        self._heap: list[tuple] = []
        self._count = 0
        self._wake_at: list[float | None] = [None] * n
        for i in range(n):
            self._reschedule(i)

    # ------------------------------------------------------------ control

    def at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at virtual time ``when`` (crash, partition, heal, ...)."""
        self._count += 1
        heapq.heappush(self._heap, (when, self._count, _CALL, fn, None))

    def crash(self, i: int) -> None:
        """Node i stops dead: no more timers, incoming messages vanish."""
        self.crashed[i] = True
        self._wake_at[i] = None

    def leave(self, i: int) -> None:
        self._handle(i, _Leave())

    def discover(self, i: int, j: int) -> None:
        """Node i's adapter learned of node j (e.g. bootstrap)."""
        from agentp2p.protocol.swim import MemberDiscovered

        self._handle(i, MemberDiscovered(self.ids[j], (addr(j),)))

    def live_nodes(self) -> list[int]:
        return [i for i in range(self.n) if not self.crashed[i] and not self.left[i]]

    # ------------------------------------------------------------ running

    def run_until(self, t_end: float) -> None:
        heap = self._heap
        cores = self.cores
        crashed = self.crashed
        wake_at = self._wake_at
        stalls = self.stalls
        while heap and heap[0][0] <= t_end:
            when, _, kind, a, payload = heapq.heappop(heap)
            self.now = when
            if stalls is not None and kind != _CALL and not crashed[a]:
                end = stalls.blocked_until(a, when)
                if end is not None:
                    # Its loop is stopped: the event waits for the stall's end.
                    if kind == _WAKE:
                        if wake_at[a] != when:
                            continue
                        wake_at[a] = end
                    self._count += 1
                    heapq.heappush(heap, (end, self._count, kind, a, payload))
                    continue
            if kind == _WAKE:
                if crashed[a] or wake_at[a] != when:
                    continue
                wake_at[a] = None
                actions = cores[a].handle(when, _TICK)
            elif kind == _DELIVER:
                if crashed[a]:
                    continue
                actions = cores[a].handle(when, Received(payload[0], payload[1]))
            else:
                a()
                continue
            if actions:
                self._process(a, actions)
            self._reschedule(a)
        self.now = t_end

    def _handle(self, i: int, event: object) -> None:
        if self.crashed[i]:
            return
        actions = self.cores[i].handle(self.now, event)  # type: ignore[arg-type]
        self._process(i, actions)
        self._reschedule(i)

    def _reschedule(self, i: int) -> None:
        if self.crashed[i]:
            return
        dl = self.cores[i].next_deadline()
        if dl is not None and dl != self._wake_at[i]:
            if dl < self.now:
                dl = self.now
            self._wake_at[i] = dl
            self._count += 1
            heapq.heappush(self._heap, (dl, self._count, _WAKE, i, None))

    def _process(self, src: int, actions: list) -> None:
        traffic = self.traffic
        net = self.network
        rng = self.rng
        for act in actions:
            if type(act) is Send:
                msg = act.message
                traffic.messages += 1
                kind = type(msg.body).__name__
                traffic.by_kind[kind] = traffic.by_kind.get(kind, 0) + 1
                payload: object = msg
                if self.wire == "full":
                    payload = frame = encode(msg)
                    size = len(frame)
                elif self.wire == "size":
                    size = encoded_size(msg)
                else:
                    size = 0
                if size:
                    traffic.bytes += size
                    traffic.bytes_by_kind[kind] = traffic.bytes_by_kind.get(kind, 0) + size
                dst = self.index.get(act.to)
                if dst is None:
                    continue
                d = net.delay(rng, src, dst)
                if d is None:
                    traffic.lost += 1
                    continue
                self._count += 1
                heapq.heappush(self._heap, (self.now + d, self._count, _DELIVER, dst, (self.ids[src], payload)))
            elif type(act) is MemberEvent:
                if self.on_event is not None:
                    self.on_event(self.now, src, act)
            elif type(act) is LeaveComplete:
                self.left[src] = True
                self.crashed[src] = True  # silent from now on
