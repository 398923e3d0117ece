"""From answers to a verdict: are we reachable from the internet?

Each server that answered counts once, with its latest answer (so one
peer asked ten times is one voice, and a liar is outvoted). The verdict
looks at the newest ``2c - 1`` voices (``c`` = ``confirmations``) and
moves only when ``c`` of them agree: a majority of a short recent window,
so it follows a real change (a NAT appeared, a port was forwarded) after
``c`` new answers, and one odd answer never flips it. Until ``c`` agree it
stays where it was — "unknown" at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Answer", "MAX_VOICES", "Reachability", "Verdict"]

#: Voices kept at most (the oldest go first); the window needs only 2c - 1.
MAX_VOICES = 64


class Reachability(str, Enum):
    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True, slots=True)
class Answer:
    reachable: bool
    at: float
    addr: str | None = None  # the address the server reached us at (reachable only)


class Verdict:
    """Voices in, :class:`Reachability` out (sans-IO: the caller passes time)."""

    def __init__(self, confirmations: int, ttl: float) -> None:
        self.confirmations = confirmations
        self.ttl = ttl
        self.status = Reachability.UNKNOWN
        self._voices: dict[object, Answer] = {}

    def add(self, peer: object, answer: Answer) -> None:
        self._voices.pop(peer, None)  # re-inserted: dicts keep insertion order = time order
        self._voices[peer] = answer
        while len(self._voices) > MAX_VOICES:
            del self._voices[next(iter(self._voices))]

    def forget_all(self) -> None:
        """Our addresses changed: what peers said of the old ones no longer holds."""
        self._voices.clear()

    def window(self, now: float) -> list[Answer]:
        """The voices that count now, oldest first."""
        for peer in [p for p, a in self._voices.items() if now - a.at > self.ttl]:
            del self._voices[peer]
        return list(self._voices.values())[-(2 * self.confirmations - 1):]

    def decide(self, now: float) -> Reachability:
        """Re-evaluate (and remember) the status."""
        window = self.window(now)
        yes = sum(1 for a in window if a.reachable)
        no = len(window) - yes
        if yes >= self.confirmations:
            self.status = Reachability.PUBLIC
        elif no >= self.confirmations:
            self.status = Reachability.PRIVATE
        return self.status

    def confirmed_addrs(self, now: float) -> list[str]:
        """Addresses servers reached us at, newest voice first, no repeats."""
        out: list[str] = []
        for a in reversed(self.window(now)):
            if a.reachable and a.addr and a.addr not in out:
                out.append(a.addr)
        return out

    def __len__(self) -> int:
        return len(self._voices)
