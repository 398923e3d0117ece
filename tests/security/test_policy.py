"""The policy's decisions and checks, membership certificates and the book
that keeps peers' certificates: pure, no sockets."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from agentp2p.config import NodeConfig, build_config
from agentp2p.errors import ConfigError
from agentp2p.network.identity import Identity
from agentp2p.security.authorizer import Authorizer
from agentp2p.security.certificates import (
    MAX_LIFETIME_MS,
    CertificateError,
    CertificateExpired,
    decode_certificate_text,
    encode_certificate_text,
    issue,
    open_certificate,
)
from agentp2p.security.envelope import seal
from agentp2p.security.membership import REFRESH_MS, RETRY_MS, MembershipBook
from agentp2p.security.policy import Decision, Policy, PolicyError

NOW = 1_800_000_000_000
HOUR = 3_600_000
ISSUER = Identity.generate()
A, B = Identity.generate(), Identity.generate()


def cert(subject: Identity, group: str = "ops", issuer: Identity = ISSUER, start: int = NOW - HOUR,
         end: int = NOW + HOUR) -> bytes:
    return issue(issuer.private_key, group, subject.peer_id, not_before_ms=start, not_after_ms=end)


def policy(*rules: dict, default: str = "allow") -> Policy:
    return Policy.from_dict({"default": default, "groups": {"ops": str(ISSUER.peer_id)}, "rules": list(rules)})


# ------------------------------------------------------------------ policy


def test_the_first_matching_rule_decides_and_the_default_otherwise() -> None:
    p = policy(
        {"action": "publish", "resource": "alerts.*", "peers": ["group:ops"], "effect": "allow"},
        {"action": "publish", "resource": "alerts.*", "peers": ["*"], "effect": "deny"},
        {"action": "*", "resource": "*", "peers": [str(B.peer_id)], "effect": "deny"},
    )
    a, b = str(A.peer_id), str(B.peer_id)
    assert p.decide("publish", "alerts.fire", a, frozenset({"ops"})).allowed
    assert p.decide("publish", "alerts.fire", a, frozenset({"ops"})).rule == 0
    refused = p.decide("publish", "alerts.fire", a)
    assert not refused.allowed and refused.rule == 1 and refused.why() == "rule 1"
    assert p.decide("publish", "news", a).allowed and p.decide("publish", "news", a).rule is None
    assert not p.decide("send", "hello", b).allowed  # rule 2: any action
    # A member of ops is let through rule 0 even if rule 2 names it.
    assert p.decide("publish", "alerts.x", b, frozenset({"ops"})).allowed
    assert p.governs("publish") and p.governs("send") and p.uses_groups("publish") and not p.uses_groups("send")
    # Decided by ID alone, or not (a group rule comes first).
    assert p.decide_by_id("send", "x", b) == Decision(False, 2)
    assert p.decide_by_id("publish", "alerts.x", b) is None
    assert p.decide_by_id("publish", "news", a) == Decision(True, None)
    with pytest.raises(PolicyError, match="connect rule"):
        policy({"action": "connect", "resource": "x", "peers": ["*"], "effect": "deny"})
    closed = policy(default="deny")
    assert not closed.decide("call", "x", a).allowed and closed.governs("call")
    # The node's own protocol topics stay open when only the default would refuse them...
    assert closed.decide("subscribe", "/agentp2p/records/1.0.0", a).allowed
    assert closed.decide_by_id("publish", "/agentp2p/records/1.0.0", a) == Decision(True, None)
    assert not closed.decide("subscribe", "/other/records", a).allowed
    # ...and a rule that names them still decides.
    named = policy({"action": "publish", "resource": "/agentp2p/*", "peers": [a], "effect": "deny"}, default="deny")
    assert not named.decide("publish", "/agentp2p/records/1.0.0", a).allowed
    assert not Policy() and not Policy().governs("send")


def test_a_policy_round_trips_and_every_mistake_is_named() -> None:
    doc = {"default": "deny", "groups": {"ops": str(ISSUER.peer_id)},
           "rules": [{"action": "call", "resource": "deploy", "peers": ["group:ops", str(A.peer_id)],
                      "effect": "allow"}]}
    assert Policy.from_dict(doc).to_dict() == doc
    assert Policy.from_dict(json.loads(json.dumps(doc))).to_dict() == doc
    bad = [
        ({"default": "maybe"}, "policy.default"),
        ({"colour": 1}, "unknown key 'colour'"),
        ({"groups": {"bad name!": str(ISSUER.peer_id)}}, "invalid group name"),
        ({"groups": {"ops": "not-a-peer"}}, "policy.groups.ops"),
        ({"rules": [{"action": "fly", "peers": ["*"], "effect": "allow"}]}, r"rules\[0\].action"),
        ({"rules": [{"action": "send", "peers": ["*"], "effect": "perhaps"}]}, r"rules\[0\].effect"),
        ({"rules": [{"action": "send", "peers": [], "effect": "allow"}]}, r"rules\[0\].peers"),
        ({"rules": [{"action": "send", "peers": ["group:nobody"], "effect": "allow"}]}, "not defined"),
        ({"rules": [{"action": "send", "peers": ["x"], "effect": "allow"}]}, "not a valid peer ID"),
        ({"rules": [{"action": "send", "peers": ["*"], "effect": "allow", "when": 1}]}, "unknown key 'when'"),
        ({"rules": [{"action": "send", "peers": ["*"], "effect": "allow"}] * 257}, "at most 256"),
        ({"groups": {"ops": str(ISSUER.peer_id)},
          "rules": [{"action": "send", "peers": ["group:ops"], "effect": "deny"}]}, "cannot name a group"),
    ]
    for doc, message in bad:
        with pytest.raises(PolicyError, match=message):
            Policy.from_dict(doc)


def test_the_config_takes_a_table_or_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rule = {"action": "send", "resource": "x", "peers": ["*"], "effect": "deny"}
    assert NodeConfig(policy={"rules": [rule]}).validate().load_policy().governs("send")
    toml = tmp_path / "policy.toml"
    toml.write_text('[policy]\ndefault = "deny"\n')
    assert not build_config(environ={"AGENTP2P_POLICY": str(toml)}).load_policy().decide("send", "x", "p").allowed
    js = tmp_path / "policy.json"
    js.write_text(json.dumps({"rules": [rule]}))
    assert build_config(environ={"AGENTP2P_POLICY": str(js)}).load_policy().rules[0].effect == "deny"
    js.write_text("{")
    with pytest.raises(ConfigError, match="policy file"):
        build_config(environ={"AGENTP2P_POLICY": str(js)})
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(environ={"AGENTP2P_POLICY": str(tmp_path / "nope.toml")})
    certfile = tmp_path / "ops.cert"
    certfile.write_text("not base64!")
    with pytest.raises(ConfigError, match="certificate file"):
        build_config(environ={"AGENTP2P_CERTIFICATES": str(certfile)})


# ------------------------------------------------------------ certificates


def test_a_certificate_is_checked_for_signature_window_and_form() -> None:
    raw = cert(A)
    c = open_certificate(raw, NOW)
    assert (c.group, c.subject, c.issuer) == ("ops", A.peer_id, ISSUER.peer_id)
    assert decode_certificate_text(encode_certificate_text(raw) + "\n") == raw
    with pytest.raises(CertificateExpired, match="expired"):
        open_certificate(raw, NOW + 2 * HOUR)
    with pytest.raises(CertificateExpired, match="not valid yet"):
        open_certificate(cert(A, start=NOW + HOUR, end=NOW + 2 * HOUR), NOW)
    tampered = bytearray(raw)
    tampered[-70] ^= 1  # inside the signed payload or the signature: either way it must not verify
    with pytest.raises(CertificateError):
        open_certificate(bytes(tampered), NOW)
    # The right signature, for another kind of signed object of ours.
    other = seal("agentp2p-agent-record", bytes.fromhex("828cc001"), b"\x0a\x03ops", ISSUER.private_key).to_bytes()
    with pytest.raises(CertificateError, match="not a valid certificate"):
        open_certificate(other, NOW)
    with pytest.raises(CertificateError, match="too large"):
        open_certificate(b"x" * 4096, NOW)
    with pytest.raises(CertificateError, match="days"):
        cert(A, end=NOW - HOUR + MAX_LIFETIME_MS + 1)
    with pytest.raises(CertificateError, match="group name"):
        cert(A, group="no spaces")
    with pytest.raises(CertificateError, match="base64"):
        decode_certificate_text("%%%")


def test_the_book_keeps_only_certificates_for_the_presenting_peer_from_the_named_issuer() -> None:
    book = MembershipBook(B.peer_id)
    impostor = Identity.generate()
    p = policy()
    refused = book.learn(A.peer_id, [cert(A), cert(A, group="dev"), cert(B), b"junk",
                                     cert(A, group="ops", issuer=impostor)], NOW)
    assert len(refused) == 2 and "names another peer" in refused[0] and "not a valid certificate" in refused[1]
    # "dev" is not a group of the policy, and the impostor is not ops' issuer.
    assert book.groups_of(A.peer_id, p, NOW) == {"ops"}
    assert book.known(A.peer_id, NOW) and not book.known(A.peer_id, NOW + HOUR + 1)  # refreshed at expiry
    assert book.groups_of(A.peer_id, p, NOW + 2 * HOUR) == frozenset()
    book.failed(A.peer_id, NOW)
    assert book.known(A.peer_id, NOW + RETRY_MS - 1) and not book.known(A.peer_id, NOW + RETRY_MS)
    long = cert(A, end=NOW + 100 * HOUR)
    book.learn(A.peer_id, [long], NOW)
    assert not book.known(A.peer_id, NOW + REFRESH_MS)  # asked again even though it lasts
    # Our own: only ours, renewals replace, expired ones drop out.
    with pytest.raises(CertificateError, match="not for this node"):
        book.add_own(cert(A), NOW)
    book.add_own(cert(B), NOW)
    book.add_own(cert(B, end=NOW + 3 * HOUR), NOW)
    assert len(book.own(NOW)) == 1 and book.groups_of(B.peer_id, p, NOW + 2 * HOUR) == {"ops"}
    assert book.own(NOW + 4 * HOUR) == []
    small = MembershipBook(B.peer_id, max_peers=2)
    for who in (A, ISSUER, impostor):
        small.learn(who.peer_id, [], NOW)
    assert len(small) == 2 and not small.known(A.peer_id, NOW)


async def test_the_authorizer_fetches_once_per_peer_and_counts_refusals() -> None:
    calls: list[object] = []
    gate = trio.Event()

    async def fetch(peer):  # type: ignore[no-untyped-def]
        calls.append(peer)
        await gate.wait()
        return [cert(A)]

    auth = Authorizer(B.peer_id, policy({"action": "call", "resource": "*", "peers": ["group:ops"], "effect": "allow"},
                                        default="deny"), clock_ms=lambda: NOW)
    assert not auth.pending(A.peer_id, "call")  # no fetcher: nobody has groups
    auth.fetch = fetch
    assert auth.pending(A.peer_id, "call") and not auth.pending(A.peer_id, "send")
    results: list[bool] = []
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(lambda: _append(results, auth.authorize(A.peer_id, "call", "x")))
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert results == [True, True, True] and len(calls) == 1
    assert not auth.check(Identity.generate().peer_id, "call", "x")
    assert auth.stats()["denied"] == {"call": 1} and auth.stats()["fetched"] == 1

    async def broken(peer):  # type: ignore[no-untyped-def]
        raise OSError("unreachable")

    auth.fetch = broken
    stranger = Identity.generate().peer_id
    assert not await auth.authorize(stranger, "call", "x")
    assert auth.counters["fetch_failed"] == 1 and not auth.pending(stranger, "call")  # not asked again at once


async def _append(out: list[bool], pending) -> None:  # type: ignore[no-untyped-def]
    out.append(await pending)
