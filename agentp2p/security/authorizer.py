"""The one place services ask "may this peer do that here?".

Holds the node's current :class:`~agentp2p.security.policy.Policy` (replaced
at run time through the control API), the
:class:`~agentp2p.security.membership.MembershipBook`, and a way to fetch a
peer's certificates (set by :mod:`agentp2p.protocol.membership`). Services
use two calls:

* :meth:`Authorizer.check` — synchronous, for hot paths (each pub/sub
  message, each direct message): decides from what is known now;
* :meth:`Authorizer.pending` / :meth:`Authorizer.resolve` — before a
  decision that depends on a peer's groups, a service that can wait (its read
  loop, an async validator) awaits the peer's certificates, fetched at most
  once at a time per peer and remembered (:mod:`.membership` for how long).
  A peer whose certificates cannot be fetched within ``fetch_timeout`` is in
  no group until the next try.

Every refusal is counted by action (``stats()["denied"]``). Listeners learn
of policy changes (pub/sub re-checks existing subscriptions).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.peer.id import ID

from agentp2p.security.membership import MembershipBook
from agentp2p.security.policy import Decision, Policy

__all__ = ["Authorizer"]

log = logging.getLogger("agentp2p.security.authorizer")

Fetch = Callable[[ID], Awaitable[list[bytes]]]
#: Peers remembered as refused by a connect rule.
MAX_REFUSED = 10_000
#: Peers dialed at once only to ask for their certificates (publishers
#: across the mesh); more are not waited for: a flood of made-up authors
#: costs a few dials, never a queue.
MAX_DIALS = 8


def _wall_ms() -> int:
    return int(time.time() * 1000)


class Authorizer:
    def __init__(
        self,
        me: ID,
        policy: Policy | None = None,
        *,
        book: MembershipBook | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
        fetch_timeout: float = 5.0,
    ) -> None:
        self.me = me
        self._me_text = me.to_base58()
        self._policy = policy if policy is not None else Policy()
        self.book = book if book is not None else MembershipBook(me)
        self.clock_ms = clock_ms
        self.fetch_timeout = fetch_timeout
        #: Fetches a peer's presented certificates; None: no one has groups.
        self.fetch: Fetch | None = None
        #: Whether we have a connection to a peer (set with ``fetch``); None: assume so.
        self.is_connected: Callable[[ID], bool] | None = None
        self._dials = trio.Semaphore(MAX_DIALS)
        self._inflight: dict[ID, trio.Event] = {}
        self._listeners: list[Callable[[Policy], None]] = []
        self._learned: list[Callable[[ID], None]] = []
        self.denied: Counter[str] = Counter()
        #: Peers cut off by a connect rule: refused until (ms) without asking again.
        self._refused_until: OrderedDict[ID, int] = OrderedDict()
        self.counters: Counter[str] = Counter()

    # ------------------------------------------------------------ the policy
    @property
    def policy(self) -> Policy:
        return self._policy

    def set_policy(self, policy: Policy) -> None:
        """Replace the policy; takes effect for every decision from now on."""
        self._policy = policy
        self.counters["policy_changes"] += 1
        for listener in list(self._listeners):
            listener(policy)

    def on_change(self, listener: Callable[[Policy], None]) -> None:
        self._listeners.append(listener)

    def on_learned(self, listener: Callable[[ID], None]) -> None:
        """Call ``listener(peer)`` after a peer's certificates were fetched and checked."""
        self._learned.append(listener)

    def governs(self, action: str) -> bool:
        return self._policy.governs(action)

    # ------------------------------------------------------------ deciding
    def decide(self, peer: ID, action: str, resource: str) -> Decision:
        policy = self._policy
        if not policy:
            return Decision(True, None)
        groups = self.book.groups_of(peer, policy, self.clock_ms()) if policy.groups else frozenset()
        text = self._me_text if peer == self.me else peer.to_base58()
        return policy.decide(action, resource, text, groups)

    def check(self, peer: ID, action: str, resource: str) -> bool:
        """May ``peer`` do ``action`` on ``resource``, from what we know now? (counted if not)"""
        policy = self._policy
        if not policy.governs(action):
            return True
        if self.decide(peer, action, resource).allowed:
            return True
        self.denied[action] += 1
        return False

    def pending(self, peer: ID, action: str) -> bool:
        """Would a decision on ``action`` by ``peer`` wait for its certificates?"""
        return (
            self.fetch is not None
            and self._policy.uses_groups(action)
            and not self.book.known(peer, self.clock_ms())
        )

    async def resolve(self, peer: ID, *, dial: bool = False) -> None:
        """Fetch ``peer``'s certificates unless fresh ones are known (one fetch at a time per peer).

        Over the connection we have; ``dial``: also a peer we are not connected
        to (a publisher across the mesh), at most ``MAX_DIALS`` at once —
        beyond that, or without ``dial``, the peer is left unknown for now
        (in no group: the decision fails closed), never queued.
        """
        if self.fetch is None or self.book.known(peer, self.clock_ms()):
            return
        running = self._inflight.get(peer)
        if running is not None:
            with trio.move_on_after(self.fetch_timeout):
                await running.wait()
            return
        slot = None
        if self.is_connected is not None and not self.is_connected(peer):
            if not dial:
                self.counters["not_connected"] += 1
                return
            slot = self._dials
            try:
                slot.acquire_nowait()
            except trio.WouldBlock:
                self.counters["fetch_busy"] += 1
                return
        done = self._inflight[peer] = trio.Event()
        try:
            presented: list[bytes] | None = None
            with trio.move_on_after(self.fetch_timeout) as scope:
                try:
                    presented = await self.fetch(peer)
                except (trio.Cancelled, KeyboardInterrupt):
                    raise
                except Exception as exc:  # noqa: BLE001 — unreachable, no protocol, garbage: no groups
                    self.counters["fetch_failed"] += 1
                    log.debug("membership: no certificates from %s: %s", peer, exc)
            if scope.cancelled_caught:
                self.counters["fetch_timeouts"] += 1
            now = self.clock_ms()
            if presented is None:
                self.book.failed(peer, now)
            else:
                self.counters["fetched"] += 1
                refused = self.book.learn(peer, presented, now)
                if refused:
                    self.counters["certificates_refused"] += len(refused)
                    log.info("membership: refused %d certificate(s) from %s: %s", len(refused), peer, refused[0])
                for listener in list(self._learned):
                    listener(peer)
        finally:
            del self._inflight[peer]
            done.set()
            if slot is not None:
                slot.release()

    async def authorize(self, peer: ID, action: str, resource: str) -> bool:
        """:meth:`check`, after fetching ``peer``'s certificates if the decision needs them."""
        if self.pending(peer, action):
            await self.resolve(peer)
        return self.check(peer, action, resource)

    # ------------------------------------------------------------ connections
    def refuses_connection(self, peer: ID) -> bool:
        """Refuse a connection with ``peer`` now? (the gates' synchronous question)

        Yes while it is in its back-off after a refusal, or when the policy
        refuses it from what is known. A peer whose groups would decide and
        are not known yet is admitted: its certificates travel over that
        connection, and :class:`~agentp2p.security.gater.ConnectionGater`
        cuts it off if they do not prove enough.
        """
        if peer == self.me or not self._policy.governs("connect"):
            return False
        until = self._refused_until.get(peer)
        if until is not None:
            if self.clock_ms() < until:
                self.counters["connections_refused"] += 1
                return True
            del self._refused_until[peer]
        decision = self._policy.decide_by_id("connect", "*", peer.to_base58())
        if decision is None:  # its groups decide
            if self.pending(peer, "connect"):
                return False
            decision = self.decide(peer, "connect", "*")
        if decision.allowed:
            return False
        self.counters["connections_refused"] += 1
        return True

    def refuse_for(self, peer: ID, seconds: float) -> None:
        """Refuse connections with ``peer`` for ``seconds`` (bounded map, oldest forgotten)."""
        self._refused_until[peer] = self.clock_ms() + int(seconds * 1000)
        self._refused_until.move_to_end(peer)
        while len(self._refused_until) > MAX_REFUSED:
            self._refused_until.popitem(last=False)

    # ------------------------------------------------------------ reporting
    def stats(self) -> dict[str, Any]:
        return {
            "rules": len(self._policy.rules),
            "groups": len(self._policy.groups),
            "default": self._policy.default,
            "denied": dict(self.denied),
            "denied_total": sum(self.denied.values()),
            "peers_with_certificates": len(self.book),
            "peers_refused_now": len(self._refused_until),
            "own_certificates": len(self.book.own(self.clock_ms())),
            **dict(self.counters),
        }
