"""A simulated datagram network: latency, loss and partitions, all seeded.

Each message independently suffers ``loss`` and, if delivered, a latency of
``base + Exp(mean=jitter)`` — a LAN-ish shape with a long-ish tail. Nodes in
different partition groups cannot reach each other. A "slow" node adds its
extra delay to everything it sends and receives (a CPU-starved or overloaded
member: the case Lifeguard's local health awareness is for).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class NetworkModel:
    base_latency: float = 0.002
    jitter_mean: float = 0.003
    loss: float = 0.0
    #: node index -> partition group (absent = group 0)
    groups: dict[int, int] = field(default_factory=dict)
    #: node index -> extra one-way delay on everything it sends or receives
    slow: dict[int, float] = field(default_factory=dict)

    def delay(self, rng: random.Random, src: int, dst: int) -> float | None:
        """Delivery delay for one message, or None if it is lost."""
        if self.loss and rng.random() < self.loss:
            return None
        groups = self.groups
        if groups and groups.get(src, 0) != groups.get(dst, 0):
            return None
        d = self.base_latency + rng.expovariate(1.0 / self.jitter_mean) if self.jitter_mean else self.base_latency
        slow = self.slow
        if slow:
            d += slow.get(src, 0.0) + slow.get(dst, 0.0)
        return d
