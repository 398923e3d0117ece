"""The penalty box: a peer that keeps misbehaving is cut off for a while.

Every containment (a failed handler, a malformed frame, a forged message,
a resource-limit hit) reports an *offence* with a weight. Points decay
exponentially (``half_life``); a peer whose points reach ``threshold`` is
banned: the node disconnects it and refuses it, inbound and outbound, until
the ban expires. A peer banned again soon after gets a longer ban (doubling,
capped at ``ban_max``). Honest peers that trip a limit once in a while never
come near the threshold.

Sans-IO: the clock is injected; ``on_ban`` is how the node learns it must
disconnect someone.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def halved(value: float, elapsed: float, half_life: float) -> float:
    """``value`` after ``elapsed`` of exponential decay towards 0 (same unit as ``half_life``)."""
    if elapsed <= 0 or not value:
        return value
    return value * 0.5 ** (elapsed / half_life)


@dataclass
class PenaltyConfig:
    """The ``[penalties]`` table of the config file."""

    enabled: bool = True
    #: Offence points (decayed) at which a peer is banned.
    threshold: float = 20.0
    #: Seconds for a peer's offence points to halve.
    half_life: float = 60.0
    #: First ban; each ban within ``ban_memory`` of the last one doubles it.
    ban_initial: float = 30.0
    ban_max: float = 3600.0
    #: How long a ban is remembered for escalation.
    ban_memory: float = 3600.0
    #: Peers tracked at most (the least recently offending are forgotten).
    max_tracked: int = 10000

    def validate(self) -> None:
        from agentp2p.errors import ConfigError

        if self.threshold <= 0 or self.half_life <= 0 or self.ban_initial <= 0:
            raise ConfigError("penalties.threshold, half_life and ban_initial must be positive")
        if self.ban_max < self.ban_initial:
            raise ConfigError("penalties.ban_max must be >= penalties.ban_initial")
        if self.max_tracked < 1:
            raise ConfigError("penalties.max_tracked must be >= 1")


@dataclass
class _Record:
    points: float = 0.0
    updated: float = 0.0
    banned_until: float = 0.0
    last_ban: float = -math.inf
    last_ban_length: float = 0.0
    offences: int = 0
    last_reason: str = ""


@dataclass(frozen=True)
class BanInfo:
    """A peer that is refused right now, for how long and why."""

    peer: Any
    remaining: float
    reason: str
    offences: int


class PenaltyBox:
    def __init__(
        self,
        config: PenaltyConfig | None = None,
        on_ban: Callable[[Any, BanInfo], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or PenaltyConfig()
        self._on_ban = on_ban
        self._clock = clock
        self._peers: OrderedDict[Any, _Record] = OrderedDict()
        self.bans_total = 0
        self.offences_total = 0

    def set_ban_hook(self, on_ban: Callable[[Any, BanInfo], None] | None) -> None:
        self._on_ban = on_ban

    def _decayed(self, rec: _Record, now: float) -> float:
        return halved(rec.points, now - rec.updated, self.config.half_life)

    def _record(self, peer: Any) -> _Record:
        rec = self._peers.get(peer)
        if rec is None:
            rec = self._peers[peer] = _Record(updated=self._clock())
            while len(self._peers) > self.config.max_tracked:
                self._evict_one()
        self._peers.move_to_end(peer)
        return rec

    def _evict_one(self) -> None:
        # Least recently offending first, but never a peer that is banned now.
        now = self._clock()
        for peer, rec in self._peers.items():
            if rec.banned_until <= now:
                del self._peers[peer]
                return
        self._peers.popitem(last=False)

    def offence(self, peer: Any, reason: str, weight: float = 1.0) -> bool:
        """Count an offence; True if it got ``peer`` banned just now."""
        if not self.config.enabled or peer is None:
            return False
        self.offences_total += 1
        now = self._clock()
        rec = self._record(peer)
        rec.points = self._decayed(rec, now) + weight
        rec.updated = now
        rec.offences += 1
        rec.last_reason = reason
        if rec.banned_until > now or rec.points < self.config.threshold:
            return False
        self._ban(peer, rec, now, reason, None)
        return True

    def ban(self, peer: Any, reason: str, duration: float | None = None) -> BanInfo:
        """Ban ``peer`` now (an operator's decision, or a protocol's certainty)."""
        now = self._clock()
        rec = self._record(peer)
        rec.last_reason = reason
        return self._ban(peer, rec, now, reason, duration)

    def _ban(self, peer: Any, rec: _Record, now: float, reason: str, duration: float | None) -> BanInfo:
        cfg = self.config
        if duration is None:
            if now - rec.last_ban < cfg.ban_memory and rec.last_ban_length:
                duration = min(cfg.ban_max, rec.last_ban_length * 2)
            else:
                duration = cfg.ban_initial
        rec.banned_until = now + duration
        rec.last_ban = now
        rec.last_ban_length = duration
        rec.points = 0.0
        self.bans_total += 1
        info = BanInfo(peer, duration, reason, rec.offences)
        if self._on_ban is not None:
            self._on_ban(peer, info)
        return info

    def unban(self, peer: Any) -> None:
        rec = self._peers.get(peer)
        if rec is not None:
            rec.banned_until = 0.0
            rec.points = 0.0

    def is_banned(self, peer: Any) -> bool:
        rec = self._peers.get(peer)
        return rec is not None and rec.banned_until > self._clock()

    def points(self, peer: Any) -> float:
        rec = self._peers.get(peer)
        return 0.0 if rec is None else self._decayed(rec, self._clock())

    def banned(self) -> list[BanInfo]:
        now = self._clock()
        return [
            BanInfo(peer, rec.banned_until - now, rec.last_reason, rec.offences)
            for peer, rec in self._peers.items()
            if rec.banned_until > now
        ]

    def stats(self) -> dict[str, Any]:
        return {
            "offences": self.offences_total,
            "bans": self.bans_total,
            "banned_now": [
                {"peer": str(b.peer), "remaining_s": round(b.remaining, 1), "reason": b.reason, "offences": b.offences}
                for b in self.banned()
            ],
        }
