"""Log lines about peers, at most once per key per interval.

A hostile peer that sends a million bad messages must not make us write a
million log lines (one INFO line per rejected message produced 170 MB of log
in 30 s). Every rejection and limit hit is *counted* where it happens; the
log only tells an operator that it is happening, and how often since the
last line: ``... (1234 more since last report)``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class OncePerInterval:
    """Say yes to a ``key`` at most once per ``interval`` seconds.

    The table of keys is bounded (least recently allowed forgotten first), so
    a peer that rotates identities cannot grow it. Each key also counts the
    times it was refused since it was last allowed.
    """

    def __init__(self, interval: float, max_keys: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._max_keys = max_keys
        self._clock = clock
        # key -> [time last allowed, refusals since]
        self._keys: OrderedDict[Hashable, list[float]] = OrderedDict()
        self.refused = 0

    @property
    def tracked(self) -> int:
        """Keys remembered now (at most ``max_keys``)."""
        return len(self._keys)

    def allow(self, key: Hashable) -> tuple[bool, int]:
        """(allowed now?, refusals of ``key`` since it was last allowed)."""
        now = self._clock()
        entry = self._keys.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            self.refused += 1
            return False, int(entry[1])
        skipped = int(entry[1]) if entry is not None else 0
        self._keys[key] = [now, 0]
        self._keys.move_to_end(key)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
        return True, skipped


class ThrottledLog:
    """Emit ``logger.log(level, msg)`` at most once per ``key`` per ``interval`` seconds.

    The key is usually ``(peer, reason)``. The table of keys is bounded
    (least recently logged evicted first), so a peer that rotates identities
    cannot grow it either.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._gate = OncePerInterval(interval, max_keys, clock)

    @property
    def interval(self) -> float:
        return self._gate.interval

    @property
    def suppressed(self) -> int:
        return self._gate.refused

    @property
    def tracked(self) -> int:
        """Keys remembered now (at most ``max_keys``)."""
        return self._gate.tracked

    def log(self, level: int, key: Hashable, msg: str, *args: Any) -> bool:
        """Log unless ``key`` was logged less than ``interval`` ago; True if logged."""
        logged, skipped = self._gate.allow(key)
        if not logged:
            return False
        if skipped:
            msg += " (%d more since last report)"
            args = (*args, skipped)
        self._log.log(level, msg, *args)
        return True

    def warning(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def info(self, key: Hashable, msg: str, *args: Any) -> bool:
        return self.log(logging.INFO, key, msg, *args)
