"""One-time login codes and browser sessions for the dashboard (sans-IO).

Why not the API token in the browser: a token in a URL ends up in the
browser's history, in logs and in screenshots, and a token typed into a page
lives in JavaScript's reach. Instead, whoever holds the token (the CLI, via
``POST /dashboard/login-code``) asks for a *login code*: random, short-lived
(:attr:`DashboardLimits.code_ttl`) and good for one use. The browser trades
it at ``POST /dashboard/login`` (the form ``GET /dashboard/login?code=...``
shows, so that a prefetch or a ``HEAD`` spends nothing) for a *session*: another random
value, set as an ``HttpOnly; SameSite=Strict`` cookie that scripts cannot
read and other sites cannot make the browser send.

Both are kept as SHA-256 digests, so the tables hold nothing a memory dump
could replay and a lookup never compares attacker-chosen strings with a
secret byte by byte. Both tables are bounded (the oldest entry makes room),
and everything lapses on its own: a code after ``code_ttl``, a session
``session_ttl`` after login, however active (no sliding renewal: a stolen
cookie is not good forever). Sessions live in the daemon's memory only, so
a restart logs every browser out — run ``agentp2p dashboard`` again.

Every method takes ``now`` (seconds, any monotonic clock): nothing here
reads a clock or does I/O.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["DashboardLimits", "Sessions"]

_SECRET_BYTES = 32


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class DashboardLimits:
    """How long codes and sessions last, and how many may exist at once."""

    code_ttl: float = 60.0  # long enough to click a link, short enough to be useless in scrollback
    max_codes: int = 16  # unredeemed codes; more pending than that is a script gone wrong
    #: An hour, then `agentp2p dashboard` again: a cookie taken from the
    #: browser is good for that long at most (sessions are not renewed).
    session_ttl: float = 3600.0
    max_sessions: int = 32  # browsers logged in at once; the oldest is logged out first


class Sessions:
    """Login codes waiting to be redeemed, and the sessions they opened."""

    def __init__(self, limits: DashboardLimits | None = None) -> None:
        self.limits = limits or DashboardLimits()
        # digest -> expiry, oldest first (insertion order = issue order)
        self._codes: OrderedDict[bytes, float] = OrderedDict()
        self._sessions: OrderedDict[bytes, float] = OrderedDict()
        self.codes_issued = 0
        self.logins = 0
        self.refused_codes = 0

    def issue_code(self, now: float) -> str:
        """A fresh one-time login code, valid for ``code_ttl`` seconds."""
        self._expire(now)
        code = secrets.token_urlsafe(_SECRET_BYTES)
        self._codes[_digest(code)] = now + self.limits.code_ttl
        while len(self._codes) > self.limits.max_codes:
            self._codes.popitem(last=False)
        self.codes_issued += 1
        return code

    def redeem(self, code: str, now: float) -> str | None:
        """Trade a valid code (which is spent) for a new session ID; None if
        the code is unknown, spent or expired."""
        self._expire(now)
        if self._codes.pop(_digest(code), None) is None:
            self.refused_codes += 1
            return None
        session = secrets.token_urlsafe(_SECRET_BYTES)
        self._sessions[_digest(session)] = now + self.limits.session_ttl
        while len(self._sessions) > self.limits.max_sessions:
            self._sessions.popitem(last=False)
        self.logins += 1
        return session

    def code_pending(self, code: str, now: float) -> bool:
        """Whether ``code`` could be redeemed now (it is not spent by asking)."""
        self._expire(now)
        return _digest(code) in self._codes

    def valid(self, session: str, now: float) -> bool:
        expires = self._sessions.get(_digest(session))
        if expires is None:
            return False
        if expires <= now:
            del self._sessions[_digest(session)]
            return False
        return True

    def end(self, session: str) -> bool:
        """Log a session out; True if it existed."""
        return self._sessions.pop(_digest(session), None) is not None

    def remaining(self, session: str, now: float) -> float:
        """Seconds left in a valid session (0 if it is not one)."""
        expires = self._sessions.get(_digest(session))
        return max(0.0, expires - now) if expires is not None else 0.0

    def _expire(self, now: float) -> None:
        for table in (self._codes, self._sessions):
            for key in [k for k, expires in table.items() if expires <= now]:
                del table[key]

    def stats(self) -> dict[str, int]:
        return {
            "pending_codes": len(self._codes),
            "sessions": len(self._sessions),
            "codes_issued": self.codes_issued,
            "logins": self.logins,
            "refused_codes": self.refused_codes,
        }
