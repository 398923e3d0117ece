"""Drive single SwimCores by hand on virtual time."""

from __future__ import annotations

import random

from agentp2p.protocol.swim import (
    Action,
    MemberEvent,
    Message,
    Received,
    RosterBase,
    Send,
    SwimConfig,
    SwimCore,
    Tick,
)
from agentp2p.simulation.swim import sim_signer, sim_verify


def pid(name: str) -> bytes:
    return name.encode()


def make_core(name: str, others: list[str], *, seed: int = 1, config: SwimConfig | None = None,
              now: float = 0.0, incarnation: int = 0) -> SwimCore:
    """A core with the simulator's stand-in signatures (sim_signer: cheap,
    insecure); the signature tests use real Ed25519 keys.

    Without a ``config``, gossip is off: these tests step the core timer by
    timer and expect the probe's; test_swim_gossip.py covers gossip."""
    if config is None:
        config = SwimConfig(gossip_interval=0)
    base = RosterBase((pid(o), (b"\x04" + bytes(4) + b"\x06\x0f\xa1",)) for o in others) if others else None
    return SwimCore(pid(name), rng=random.Random(seed), now=now, config=config, base=base, incarnation=incarnation,
                    sign=sim_signer(pid(name)), verify=sim_verify)


def run_until(core: SwimCore, t: float) -> list[Action]:
    """Fire every timer due up to t (inclusive), in order."""
    out: list[Action] = []
    while (dl := core.next_deadline()) is not None and dl <= t:
        out += core.handle(dl, Tick())
    return out


def next_tick(core: SwimCore) -> tuple[float, list[Action]]:
    dl = core.next_deadline()
    assert dl is not None
    return dl, core.handle(dl, Tick())


def sends(actions: list[Action], body: type | None = None, to: bytes | None = None) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and (body is None or isinstance(a.message.body, body))
            and (to is None or a.to == to)]


def events(actions: list[Action]) -> list[tuple[str, bytes]]:
    return [(a.kind.value, a.peer_id) for a in actions if isinstance(a, MemberEvent)]


def deliver(core: SwimCore, now: float, sender: bytes, msg: Message) -> list[Action]:
    return core.handle(now, Received(sender, msg))
