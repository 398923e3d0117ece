"""What authorization and trust cost on the hot paths.

    .venv/bin/python benchmarks/policy.py [--messages N] [--rules R] [--json]

* ``decide``: one ``Authorizer.check`` with a policy of R rules (none naming
  the peer, the worst case: every rule is looked at), first call and cached;
  ``open_certificate``: checking one membership certificate (an Ed25519
  verification); ``trust.record``: one offence into the trust book.
* ``messaging``: N acknowledged direct messages between two nodes in this
  process, without a policy and with R send/call rules that let them through
  (each message is checked against the policy before delivery).
* ``pubsub``: N messages published by one node and delivered to another,
  without a policy and with R publish/subscribe rules that let them through
  (with publish rules, every received message goes through validation).

Both nodes share this process and its core, so the end-to-end figures are
lower than between two processes; what matters is the difference with and
without the policy. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import trio

from agentp2p.network.identity import Identity
from agentp2p.node import Node
from agentp2p.security.authorizer import Authorizer
from agentp2p.security.certificates import issue, open_certificate
from agentp2p.security.policy import Policy
from agentp2p.security.trust import TrustBook
from agentp2p.testing import local_config, wait_until


def _rules(n: int, actions: tuple[str, ...], stranger: str) -> list[dict[str, Any]]:
    """``n`` rules for ``actions`` that never match (they name a stranger), then one allowing everyone."""
    out = [{"action": actions[i % len(actions)], "resource": f"x{i}.*", "peers": [stranger], "effect": "deny"}
           for i in range(n - 1)]
    out += [{"action": a, "resource": "*", "peers": ["*"], "effect": "allow"} for a in (*actions, "connect")]
    return out


def micro(rules: int) -> dict[str, float]:
    me, peer, stranger = (Identity.generate().peer_id for _ in range(3))
    doc = {"default": "deny", "rules": _rules(rules, ("send",), str(stranger))}
    auth = Authorizer(me, Policy.from_dict(doc))
    n = 20_000
    types = [f"t{i}" for i in range(n)]
    t0 = time.perf_counter()
    for t in types:
        auth.check(peer, "send", t)
    first = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        auth.check(peer, "send", "t1")
    cached = (time.perf_counter() - t0) / n
    issuer = Identity.generate()
    now = int(time.time() * 1000)
    raw = issue(issuer.private_key, "ops", peer, not_before_ms=now, not_after_ms=now + 3_600_000)
    t0 = time.perf_counter()
    for _ in range(2000):
        open_certificate(raw, now)
    cert = (time.perf_counter() - t0) / 2000
    trust = TrustBook()
    t0 = time.perf_counter()
    for i in range(n):
        trust.record(f"p{i % 100}", "x", -0.001)
    rec = (time.perf_counter() - t0) / n
    return {"decide_first_us": first * 1e6, "decide_cached_us": cached * 1e6,
            "open_certificate_us": cert * 1e6, "trust_record_us": rec * 1e6}


async def messaging(n: int, policy: dict[str, Any] | None) -> float:
    async with Node(local_config()) as a:
        async with Node(local_config(policy=policy or {})) as b:
            await a.connect(b.addrs[0])
            got = 0
            done = trio.Event()

            async def read() -> None:
                nonlocal got
                async for _ in b.incoming():
                    got += 1
                    if got == n:
                        done.set()

            async def send_some(k: int) -> None:
                for _ in range(k):
                    await a.send(b.peer_id, b"x" * 100, type="bench", timeout=120)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                t0 = trio.current_time()
                workers = 200
                for _ in range(workers):
                    nursery.start_soon(send_some, n // workers)
                await done.wait()
                elapsed = trio.current_time() - t0
                nursery.cancel_scope.cancel()
            return n / elapsed


async def pubsub(n: int, policy: dict[str, Any] | None) -> float:
    async with Node(local_config(policy=policy or {})) as a, Node(local_config(policy=policy or {})) as b:
        async with a.subscribe("bench"), b.subscribe("bench") as sub:
            await a.connect(b.addrs[0])
            await wait_until(lambda: b.peer_id in a.topic_peers("bench"), what="subscription seen")
            got = 0
            t0 = trio.current_time()

            async def read() -> None:
                nonlocal got
                while got < n:
                    await sub.receive()
                    got += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                for _ in range(n):
                    await a.publish("bench", b"x" * 128)
            return n / (trio.current_time() - t0)


async def macro(n: int, rules: int) -> dict[str, float]:
    stranger = str(Identity.generate().peer_id)
    out: dict[str, float] = {}
    out["messaging_msgs_per_s"] = await messaging(n, None)
    out["messaging_with_policy_msgs_per_s"] = await messaging(n, {"default": "deny",
                                                                 "rules": _rules(rules, ("send", "call"), stranger)})
    out["pubsub_msgs_per_s"] = await pubsub(n, None)
    out["pubsub_with_policy_msgs_per_s"] = await pubsub(n, {"default": "deny", "rules": _rules(
        rules, ("publish", "subscribe"), stranger)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--rules", type=int, default=50)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    figures = micro(args.rules)
    figures.update(trio.run(macro, args.messages, args.rules))
    if not args.json:
        print(f"policy of {args.rules} rules, {args.messages:,} messages")
        for k, v in figures.items():
            print(f"  {k:36s} {v:12,.1f}")
    print(json.dumps({"rules": args.rules, "messages": args.messages, **{k: round(v, 2) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
