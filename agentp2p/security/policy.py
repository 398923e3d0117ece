"""Authorization policy: who may do what on this node. Pure data and one decision.

A policy is an ordered list of rules, like a firewall's. Each rule names an
*action*, a *resource* pattern, the *peers* it applies to and an *effect*::

    [policy]
    default = "allow"                      # when no rule matches

    [policy.groups]                        # group name -> its issuer's peer ID
    ops = "12D3KooW..."

    [[policy.rules]]
    action = "publish"                     # connect | publish | subscribe | send | call | store | *
    resource = "alerts.*"                  # a topic, message type or capability; glob
    peers = ["group:ops", "12D3KooW..."]   # peer IDs, group:NAME, or *
    effect = "allow"                       # allow | deny

    [[policy.rules]]
    action = "publish"
    resource = "alerts.*"
    peers = ["*"]
    effect = "deny"

The first rule that matches the action, the resource and the peer decides;
if none does, ``default`` does — except that the node's own protocol topics
(``/agentp2p/...``, e.g. agent record announcements) are then allowed. The actions are what a *remote* peer asks of
this node: ``connect`` (a connection at all, either way; its resource is
always ``*``), ``publish`` (a message authored by the peer, on a topic),
``subscribe`` (the peer joining a topic through us: it is sent nothing of the
topic), ``send`` (a direct message of a type), ``call`` (a request, whose
type is the capability called) and ``store`` (a DHT write: resource
``value`` for PUT_VALUE, ``provider`` for ADD_PROVIDER). The node also checks its own publishes and
subscriptions against its policy, with itself as the peer, so that a network
sharing one policy fails at the caller instead of silently at every receiver.

A peer's groups come from the membership certificates it presents
(:mod:`agentp2p.security.certificates`), accepted only when signed by the
issuer named here. Nothing here does I/O, reads a clock or knows a peer's
certificates: :class:`~agentp2p.security.authorizer.Authorizer` does.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from libp2p.peer.id import ID

from agentp2p.errors import ConfigError
from agentp2p.network.addresses import parse_peer_id
from agentp2p.security.certificates import CertificateError, check_group_name

__all__ = ["ACTIONS", "Decision", "Policy", "PolicyError", "Rule"]

ACTIONS = ("connect", "publish", "subscribe", "send", "call", "store")
EFFECTS = ("allow", "deny")
#: Topics of agentp2p's own protocols: open unless a rule names them.
SYSTEM_TOPIC_PREFIX = "/agentp2p/"
MAX_RULES = 256
MAX_GROUPS = 64
MAX_PEERS_PER_RULE = 1024
MAX_RESOURCE_LEN = 256
#: Decisions remembered between policy changes (cleared when full).
_CACHE_SIZE = 4096


class PolicyError(ConfigError):
    """A policy document that cannot be used; the message names the part."""


@dataclass(frozen=True)
class Rule:
    action: str  # one of ACTIONS, or "*"
    resource: str  # fnmatch glob over the topic / message type / capability
    peers: tuple[str, ...]  # base58 peer IDs, "group:NAME", or "*"
    effect: str  # "allow" | "deny"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "resource": self.resource, "peers": list(self.peers), "effect": self.effect}

    def applies_to(self, action: str, resource: str) -> bool:
        return (self.action == "*" or self.action == action) and (
            self.resource == "*" or fnmatch.fnmatchcase(resource, self.resource)
        )

    def names(self, peer: str, groups: Iterable[str]) -> bool:
        peers = self.peers
        if "*" in peers or peer in peers:
            return True
        return any(f"group:{g}" in peers for g in groups)

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(p[6:] for p in self.peers if p.startswith("group:"))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Index of the deciding rule, or None when the default decided.
    rule: int | None

    def why(self) -> str:
        return "the default" if self.rule is None else f"rule {self.rule}"


class Policy:
    """An immutable, checked policy; :meth:`decide` is the one question it answers."""

    def __init__(self, *, default: str = "allow", groups: Mapping[str, ID] | None = None,
                 rules: Iterable[Rule] = ()) -> None:
        self.default = default
        self.groups: dict[str, ID] = dict(groups or {})
        self.rules: tuple[Rule, ...] = tuple(rules)
        self._cache: dict[tuple[str, str, str, frozenset[str]], Decision] = {}
        self._group_rules = {a: any(r.groups for r in self.rules if r.action in ("*", a)) for a in ACTIONS}
        self._governed = {a: default == "deny" or any(r.action in ("*", a) for r in self.rules) for a in ACTIONS}

    # ------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> Policy:
        """Check a policy document (the ``[policy]`` table, or the API's JSON)."""
        if not doc:
            return cls()
        if not isinstance(doc, Mapping):
            raise PolicyError("policy must be a table")
        unknown = set(doc) - {"default", "groups", "rules"}
        if unknown:
            raise PolicyError(f"policy: unknown key {sorted(unknown)[0]!r} (known: default, groups, rules)")
        default = doc.get("default", "allow")
        if default not in EFFECTS:
            raise PolicyError(f"policy.default must be 'allow' or 'deny', not {default!r}")
        raw_groups = doc.get("groups", {})
        if not isinstance(raw_groups, Mapping):
            raise PolicyError("policy.groups must be a table of group name = issuer peer ID")
        if len(raw_groups) > MAX_GROUPS:
            raise PolicyError(f"policy.groups: at most {MAX_GROUPS} groups")
        groups: dict[str, ID] = {}
        for name, issuer in raw_groups.items():
            try:
                check_group_name(name)
                groups[name] = parse_peer_id(issuer)
            except (CertificateError, ValueError) as exc:
                raise PolicyError(f"policy.groups.{name}: {exc}") from None
        raw_rules = doc.get("rules", [])
        if not isinstance(raw_rules, list):
            raise PolicyError("policy.rules must be a list of tables")
        if len(raw_rules) > MAX_RULES:
            raise PolicyError(f"policy.rules: at most {MAX_RULES} rules")
        rules = [_rule(i, r, groups) for i, r in enumerate(raw_rules)]
        return cls(default=default, groups=groups, rules=rules)

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default,
            "groups": {name: str(issuer) for name, issuer in self.groups.items()},
            "rules": [r.to_dict() for r in self.rules],
        }

    # ------------------------------------------------------------ deciding
    def decide(self, action: str, resource: str, peer: str, groups: frozenset[str] = frozenset()) -> Decision:
        """May ``peer`` (base58), member of ``groups``, do ``action`` on ``resource``?"""
        key = (action, resource, peer, groups)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        decision = self._default(action, resource)
        for i, rule in enumerate(self.rules):
            if rule.applies_to(action, resource) and rule.names(peer, groups):
                decision = Decision(rule.effect == "allow", i)
                break
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = decision
        return decision

    def decide_by_id(self, action: str, resource: str, peer: str) -> Decision | None:
        """The decision if ``peer``'s groups cannot change it, else None: the first
        rule naming the peer (or ``*``) decides unless a rule before it names a group."""
        for i, rule in enumerate(self.rules):
            if not rule.applies_to(action, resource):
                continue
            if "*" in rule.peers or peer in rule.peers:
                return Decision(rule.effect == "allow", i)
            if rule.groups:
                return None
        return self._default(action, resource)

    def _default(self, action: str, resource: str) -> Decision:
        """What decides when no rule does: ``default``, except for the node's own
        protocol topics (agent record announcements...), which a ``default =
        "deny"`` written for application topics must not silently break."""
        if action in ("publish", "subscribe") and resource.startswith(SYSTEM_TOPIC_PREFIX):
            return Decision(True, None)
        return Decision(self.default == "allow", None)

    def governs(self, action: str) -> bool:
        """Could any peer be refused ``action``? (else its checks are skipped)"""
        return self._governed.get(action, False)

    def uses_groups(self, action: str | None = None) -> bool:
        """Does any rule (for ``action``) name a group? Then peers' certificates matter."""
        if action is None:
            return any(self._group_rules.values())
        return self._group_rules.get(action, False)

    def __bool__(self) -> bool:
        return bool(self.rules) or self.default != "allow"


def _rule(i: int, raw: Any, groups: Mapping[str, ID]) -> Rule:
    where = f"policy.rules[{i}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be a table")
    unknown = set(raw) - {"action", "resource", "peers", "effect"}
    if unknown:
        raise PolicyError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: action, resource, peers, effect)")
    action = raw.get("action")
    if action != "*" and action not in ACTIONS:
        raise PolicyError(f"{where}.action must be one of {', '.join(ACTIONS)} or *, not {action!r}")
    resource = raw.get("resource", "*")
    if not isinstance(resource, str) or not 1 <= len(resource) <= MAX_RESOURCE_LEN:
        raise PolicyError(f"{where}.resource must be a pattern of 1-{MAX_RESOURCE_LEN} characters")
    if action == "connect" and resource != "*":
        raise PolicyError(f"{where}.resource: a connect rule is about the peer alone; its resource is '*'")
    effect = raw.get("effect")
    if effect not in EFFECTS:
        raise PolicyError(f"{where}.effect must be 'allow' or 'deny', not {effect!r}")
    peers = raw.get("peers")
    if isinstance(peers, str):
        peers = [peers]
    if not isinstance(peers, list) or not peers:
        raise PolicyError(f"{where}.peers must list peer IDs, group:NAME entries or *")
    if len(peers) > MAX_PEERS_PER_RULE:
        raise PolicyError(f"{where}.peers: at most {MAX_PEERS_PER_RULE} entries")
    out: list[str] = []
    for p in peers:
        if not isinstance(p, str):
            raise PolicyError(f"{where}.peers: {p!r} is not a string")
        if p == "*":
            out.append(p)
        elif p.startswith("group:"):
            if p[6:] not in groups:
                raise PolicyError(f"{where}.peers: group {p[6:]!r} is not defined in policy.groups")
            out.append(p)
        else:
            try:
                out.append(parse_peer_id(p).to_base58())
            except ValueError as exc:
                raise PolicyError(f"{where}.peers: {exc}") from None
    if effect == "deny" and any(p.startswith("group:") for p in out):
        # A peer shows the certificates it likes: withholding one escapes a
        # deny. Groups grant; deny by peer ID, or allow the others and deny "*".
        raise PolicyError(f"{where}: a deny rule cannot name a group (a member can withhold its certificate); "
                          "groups can only grant — deny by peer ID, or allow what is allowed and deny '*' after it")
    return Rule(action, resource, tuple(out), effect)
