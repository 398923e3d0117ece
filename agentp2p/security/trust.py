"""Trust: one score per peer, fed by every service, that acts and that lasts.

The penalty box (:mod:`agentp2p.network.penalties`) is the acute defence: a
burst of offences within a minute or so bans a peer for a while, and is
forgotten. Trust is the chronic one: the same offences (every service
reports misbehaviour through the node's ``offence`` hook: malformed or
forged input, SWIM lies, DHT quota hits, resource-limit hits...), plus the
gossipsub router's own opinion (its score, sampled), lower a score that
decays back towards 0 slowly (``half_life``, an hour by default) and is
saved across restarts, so a peer that misbehaves a little, often, ends up
where a peer that misbehaves a lot at once does:

* below ``deprioritize_below`` its traffic is deprioritised (its gossipsub
  application score, P5, is its trust score, so meshes prefer others) and
  it is ranked last by ``find_agents``;
* below ``disconnect_below`` it is disconnected and refused for
  ``cutoff_initial`` seconds, doubling for a peer cut off again within a
  day (up to ``cutoff_max``); it comes back deprioritised.

An operator can *pin* a peer: ``trusted`` (never deprioritised or cut off,
by trust or by the penalty box) or ``banned`` (refused until unpinned, and
unlike the deny list's run-time entries, across restarts).

Sans-IO: the wall clock is injected (scores decay across downtime too);
:meth:`TrustBook.record` returns whether the peer must be cut off now, and
the node does it.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentp2p.network.penalties import halved

__all__ = ["LEVELS", "Pin", "TrustBook", "TrustBookFull", "TrustConfig", "write_private_file"]

#: What a peer's trust makes of it, best first.
LEVELS = ("trusted", "normal", "deprioritized", "cut_off", "banned")

DAY_MS = 24 * 3600 * 1000
#: Reasons remembered per peer (the most frequent are kept).
MAX_REASONS = 8
FILE_VERSION = 1


#: Least recently touched records considered for eviction when the book is full.
EVICTION_WINDOW = 64
#: A trust file larger than this is not read (10,000 peers take ~2 MB).
MAX_FILE_BYTES = 32 * 1024 * 1024


class TrustBookFull(ValueError):
    """The book is full of records it must keep (pinned, cut off): none can be added."""


def write_private_file(path: Path, data: bytes) -> None:
    """``data`` to ``path``, mode 0600, atomically and durably (fsync, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover keeps its old mode through O_TRUNC
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Pin(enum.StrEnum):
    TRUSTED = "trusted"
    BANNED = "banned"


@dataclass
class TrustConfig:
    """The ``[trust]`` table of the config file."""

    enabled: bool = True
    #: Seconds for a score to get halfway back to 0.
    half_life: float = 3600.0
    #: Below this, deprioritised (gossipsub P5, last in find_agents).
    deprioritize_below: float = -10.0
    #: Below this, cut off and refused for a while.
    disconnect_below: float = -40.0
    cutoff_initial: float = 600.0
    cutoff_max: float = 86400.0
    #: Trust lost per offence point (the weight services report).
    offence_scale: float = 1.0
    #: Highest score good behaviour can earn.
    max_score: float = 10.0
    #: Peers remembered (pinned and cut-off ones last to go).
    max_tracked: int = 10000
    #: Seconds between upkeep rounds: the gossipsub router's P7 in, P5 out.
    upkeep_interval: float = 10.0

    def validate(self) -> None:
        from agentp2p.errors import ConfigError

        if (self.half_life <= 0 or self.cutoff_initial <= 0 or self.max_tracked < 1 or self.offence_scale < 0
                or self.upkeep_interval <= 0):
            raise ConfigError("trust.half_life, cutoff_initial, max_tracked and upkeep_interval must be positive")
        if not self.disconnect_below < self.deprioritize_below <= 0:
            raise ConfigError("trust thresholds must satisfy disconnect_below < deprioritize_below <= 0")
        if self.cutoff_max < self.cutoff_initial or self.max_score < 0:
            raise ConfigError("trust.cutoff_max must be >= cutoff_initial, max_score >= 0")


@dataclass
class _Peer:
    score: float = 0.0
    updated_ms: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    pin: Pin | None = None
    cut_until_ms: int = 0
    last_cut_ms: int = 0
    last_cut_s: float = 0.0
    cuts: int = 0


def _wall_ms() -> int:
    return int(time.time() * 1000)


class TrustBook:
    def __init__(self, config: TrustConfig | None = None, *, clock_ms: Callable[[], int] = _wall_ms) -> None:
        self.config = config or TrustConfig()
        self.clock_ms = clock_ms
        self._peers: OrderedDict[str, _Peer] = OrderedDict()
        self.cutoffs_total = 0
        self.events_total = 0
        self.untracked = 0  # offences of peers the full book could not take in

    # ------------------------------------------------------------ scoring
    def _decayed(self, p: _Peer, now: int) -> float:
        return halved(p.score, (now - p.updated_ms) / 1000, self.config.half_life)

    def _entry(self, key: str) -> _Peer | None:
        """``key``'s record, made if need be; None when the book is full of
        records it must keep (the newcomer is then not tracked)."""
        p = self._peers.get(key)
        if p is None:
            if len(self._peers) >= self.config.max_tracked and not self._evict_one():
                self.untracked += 1
                return None
            p = self._peers[key] = _Peer(updated_ms=self.clock_ms())
        self._peers.move_to_end(key)
        return p

    def _evict_one(self) -> bool:
        """Forget, among the ``EVICTION_WINDOW`` least recently touched records,
        the one nearest 0 — never a pinned one, one cut off now or within a day
        (its escalation), so that new identities cannot push out what we hold
        against an old one. False if none of them may go."""
        now = self.clock_ms()
        best: str | None = None
        best_score = math.inf
        for i, (key, p) in enumerate(self._peers.items()):
            if i >= EVICTION_WINDOW:
                break
            if p.pin is not None or p.cut_until_ms > now or (p.last_cut_ms and now - p.last_cut_ms < DAY_MS):
                continue
            score = abs(self._decayed(p, now))
            if score < best_score:
                best, best_score = key, score
        if best is None:
            return False
        del self._peers[best]
        return True

    def record(self, peer: Any, reason: str, delta: float) -> bool:
        """Add ``delta`` (negative: misbehaviour) to ``peer``'s score for ``reason``.

        True if this takes it below ``disconnect_below`` now: the caller cuts it
        off (it is refused from now on, see :meth:`refuses`).
        """
        cfg = self.config
        if not cfg.enabled or not delta:
            return False
        key = str(peer)
        p = self._entry(key)
        if p is None or (p.pin is Pin.TRUSTED and delta < 0):
            return False
        self.events_total += 1
        now = self.clock_ms()
        p.score = min(cfg.max_score, self._decayed(p, now) + delta)
        p.updated_ms = now
        if delta < 0:
            p.reasons[reason] = p.reasons.get(reason, 0) + 1
            if len(p.reasons) > MAX_REASONS:
                del p.reasons[min(p.reasons, key=p.reasons.__getitem__)]
        if p.score >= cfg.disconnect_below or p.cut_until_ms > now or p.pin is not None:
            return False
        length = cfg.cutoff_initial
        if p.last_cut_s and now - p.last_cut_ms < DAY_MS:
            length = min(cfg.cutoff_max, p.last_cut_s * 2)
        p.cut_until_ms = now + int(length * 1000)
        p.last_cut_ms, p.last_cut_s = now, length
        p.cuts += 1
        # Back deprioritised, not at the edge of another cut-off.
        p.score = (cfg.disconnect_below + cfg.deprioritize_below) / 2
        self.cutoffs_total += 1
        return True

    def score(self, peer: Any) -> float:
        p = self._peers.get(str(peer))
        return 0.0 if p is None else self._decayed(p, self.clock_ms())

    def pinned(self, peer: Any) -> Pin | None:
        p = self._peers.get(str(peer))
        return None if p is None else p.pin

    def deprioritized(self, peer: Any) -> bool:
        p = self._peers.get(str(peer))
        if p is None or p.pin is Pin.TRUSTED:
            return False
        return p.pin is Pin.BANNED or self._decayed(p, self.clock_ms()) < self.config.deprioritize_below

    def refuses(self, peer: Any) -> bool:
        """Refuse ``peer`` now? (pinned banned, or within a cut-off)"""
        p = self._peers.get(str(peer))
        if p is None or p.pin is Pin.TRUSTED:
            return False
        if p.pin is Pin.BANNED:
            return True
        now = self.clock_ms()
        if p.cut_until_ms - now > self.config.cutoff_max * 1000:
            p.cut_until_ms = now + int(self.config.cutoff_max * 1000)  # the clock went back
        return p.cut_until_ms > now

    # ------------------------------------------------------------ operators
    def pin(self, peer: Any, pin: Pin | str | None) -> None:
        """Pin ``peer`` as trusted or banned, or unpin it (None); lifts a cut-off when trusted or unpinned."""
        value = Pin(pin) if pin is not None else None
        p = self._entry(str(peer))
        if p is None:
            raise TrustBookFull(f"the trust book holds {self.config.max_tracked} records it must keep; "
                                "unpin some peers first")
        p.pin = value
        if value is not Pin.BANNED:
            p.cut_until_ms = 0

    def describe(self, peer: Any) -> dict[str, Any]:
        """Score, level, pin, why (reasons by count) and any cut-off, for people."""
        key = str(peer)
        p = self._peers.get(key)
        now = self.clock_ms()
        if p is None:
            return {"peer_id": key, "score": 0.0, "level": "normal", "pin": None, "reasons": {},
                    "refused_for_s": 0.0, "cutoffs": 0}
        score = self._decayed(p, now)
        return {
            "peer_id": key,
            "score": round(score, 2),
            "level": self._level(p, score, now),
            "pin": p.pin.value if p.pin else None,
            "reasons": dict(sorted(p.reasons.items(), key=lambda kv: -kv[1])),
            "refused_for_s": round(max(0, p.cut_until_ms - now) / 1000, 1),
            "cutoffs": p.cuts,
        }

    def _level(self, p: _Peer, score: float, now: int) -> str:
        if p.pin is Pin.TRUSTED:
            return "trusted"
        if p.pin is Pin.BANNED:
            return "banned"
        if p.cut_until_ms > now:
            return "cut_off"
        return "deprioritized" if score < self.config.deprioritize_below else "normal"

    def peers(self) -> list[dict[str, Any]]:
        """Every tracked peer whose score is not ~0, or that is pinned or cut off; lowest first."""
        out = [self.describe(k) for k in self._peers]
        out = [d for d in out if abs(d["score"]) >= 0.01 or d["pin"] or d["refused_for_s"]]
        return sorted(out, key=lambda d: (d["score"], d["peer_id"]))

    def stats(self) -> dict[str, Any]:
        now = self.clock_ms()
        levels: dict[str, int] = {}
        for p in self._peers.values():
            level = self._level(p, self._decayed(p, now), now)
            levels[level] = levels.get(level, 0) + 1
        return {"tracked": len(self._peers), "events": self.events_total, "cutoffs": self.cutoffs_total,
                "untracked": self.untracked, "levels": levels}

    # ------------------------------------------------------------ persistence
    def dump(self) -> bytes:
        """What is worth keeping, as the file's bytes (cheap: call it on the event loop)."""
        now = self.clock_ms()
        peers = {}
        for key, p in self._peers.items():
            score = self._decayed(p, now)
            if abs(score) < 0.01 and p.pin is None and p.cut_until_ms <= now and not p.last_cut_ms:
                continue
            peers[key] = {"score": score, "updated_ms": now, "reasons": p.reasons,
                          "pin": p.pin.value if p.pin else None, "cut_until_ms": p.cut_until_ms,
                          "last_cut_ms": p.last_cut_ms, "last_cut_s": p.last_cut_s, "cuts": p.cuts}
        return json.dumps({"version": FILE_VERSION, "saved_ms": now, "peers": peers}).encode()

    def save(self, path: Path) -> None:
        """Write the book to ``path`` (mode 0600, atomically)."""
        write_private_file(path, self.dump())

    def load(self, path: Path) -> int:
        """Read a file :meth:`save` wrote; returns the peers loaded. A missing file
        is a first start; an unreadable one is ignored (ValueError says why) rather
        than keeping the node down over its opinions."""
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise ValueError(f"trust file {path} unreadable ({exc.strerror}); starting from nothing") from None
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"trust file {path} is over {MAX_FILE_BYTES} bytes; starting from nothing")
        try:
            doc = json.loads(raw)
        except Exception as exc:  # noqa: BLE001 — ValueError, RecursionError...: a file we cannot use
            raise ValueError(f"trust file {path} unreadable ({exc.__class__.__name__}); starting from nothing") \
                from None
        if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION or not isinstance(doc.get("peers"), dict):
            raise ValueError(f"trust file {path} is not a version {FILE_VERSION} trust file; starting from nothing")
        loaded = 0
        now = self.clock_ms()
        longest = int(self.config.cutoff_max * 1000)
        for key, raw in list(doc["peers"].items())[: self.config.max_tracked]:
            try:
                reasons = {str(r): int(n) for r, n in dict(raw.get("reasons", {})).items()}
                p = _Peer(
                    score=max(-1e6, min(self.config.max_score, float(raw["score"]))),
                    updated_ms=int(raw["updated_ms"]),
                    reasons=dict(list(reasons.items())[:MAX_REASONS]),
                    pin=Pin(raw["pin"]) if raw.get("pin") else None,
                    cut_until_ms=int(raw.get("cut_until_ms", 0)),
                    last_cut_ms=int(raw.get("last_cut_ms", 0)),
                    last_cut_s=float(raw.get("last_cut_s", 0.0)),
                    cuts=int(raw.get("cuts", 0)),
                )
            except Exception:  # noqa: BLE001 — one bad entry (wrong types, huge numbers) is skipped
                continue
            if not math.isfinite(p.score):
                continue
            p.updated_ms = min(p.updated_ms, now)  # a clock that went back must not freeze decay
            p.cut_until_ms = min(p.cut_until_ms, now + longest)
            self._peers[str(key)] = p
            loaded += 1
        return loaded
