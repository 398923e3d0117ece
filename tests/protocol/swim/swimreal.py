"""Helpers for the real-socket SWIM tests (10 nodes on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import trio
from libp2p.peer.id import ID

from agentp2p.network.identity import Identity
from agentp2p.node import Node
from agentp2p.protocol.swim import SwimConfig
from agentp2p.protocol.swim.service import MembershipEvent, SwimService
from agentp2p.testing import ChildProcess, local_config, wait_until

#: Fast enough that the whole file runs in seconds, slow enough for 10 nodes
#: sharing one busy process (py-libp2p costs ~ms of CPU per frame). With a
#: 0.3 s period the default suspicion_mult (2) would leave a suspect 0.6 s to
#: refute: memberlist's 4 keeps a loaded machine's stalls inside the window.
FAST = SwimConfig(probe_interval=0.3, probe_timeout=0.15, reconnect_every=2, suspicion_mult=4)

RUNNER = Path(__file__).with_name("swim_node_proc.py")


class Stalls:
    """How late this process's scheduler ran: every delay over ``NOTED`` s.

    All in-process members share one event loop. When the machine is
    starved (other processes on 2 cores), timers fire late and in bursts,
    and a suspicion window can expire before the refutation queued behind
    it is read: a false "failed" that says nothing about SWIM. Tests use
    this to tell the two apart (see :func:`false_failures`).
    """

    NOTED = 0.1
    TICK = 0.05

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (when it ran, how late)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[no-untyped-def]
        task_status.started()
        while True:
            before = trio.current_time()
            await trio.sleep(self.TICK)
            now = trio.current_time()
            late = now - before - self.TICK
            if late > self.NOTED:
                self.samples.append((now, late))

    def worst_since(self, t: float) -> float:
        return max((late for at, late in self.samples if at >= t), default=0.0)


@dataclass
class Member:
    node: Node
    swim: SwimService
    log: list[MembershipEvent]
    stalls: Stalls = field(default_factory=Stalls)

    @property
    def peer_id(self) -> ID:
        return self.node.peer_id


async def _record(svc: SwimService, log: list[MembershipEvent], task_status=trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[no-untyped-def]
    async with svc.events() as events:
        task_status.started()
        async for ev in events:
            log.append(ev)


@contextlib.asynccontextmanager
async def swim_network(n: int, config: SwimConfig = FAST, *, expect: int | None = None) -> AsyncIterator[list[Member]]:
    """``n`` in-process nodes with SWIM, bootstrapped from the first, with every
    membership event recorded; yields once each sees ``expect`` (default n-1)
    members alive."""
    async with contextlib.AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        members: list[Member] = []
        stalls = Stalls()
        await nursery.start(stalls.run)
        for i in range(n):
            svc = SwimService(config, seed=i)
            log: list[MembershipEvent] = []
            await nursery.start(_record, svc, log)
            boot = [members[0].node.addrs[0]] if members else []
            node = await stack.enter_async_context(Node(local_config(bootstrap=boot), services=[svc]))
            members.append(Member(node, svc, log, stalls))
        want = n - 1 if expect is None else expect
        views = lambda: describe(members)  # noqa: E731
        await wait_until(lambda: all(m.swim.alive_count() >= want for m in members), 40, f"{want} members alive",
                         detail=views)
        # Starting n nodes in one process opens ~n^2 streams per protocol at
        # once (SWIM, DHT, pubsub); py-libp2p needs seconds of CPU for that,
        # and SWIM suspects (rarely fails) members meanwhile. Scenarios start
        # from a settled network: every view all-alive, no suspects.
        await wait_until(
            lambda: all(sorted(x.state for x in m.swim.members()).count("alive") >= want for m in members),
            30,
            "a settled network (no suspects)",
            detail=views,
        )
        yield members


def failures_since(members: list[Member], t: float, live: set[ID]) -> list[tuple[ID, MembershipEvent]]:
    """'failed' verdicts about live members, issued after time ``t``."""
    return [(m.peer_id, e) for m in members for e in m.log if e.kind == "failed" and e.at >= t and e.peer_id in live]


#: A scheduler stall this long (more than three FAST probe periods) is the
#: machine's doing, not the protocol's; below it a false verdict is a bug.
STALL_EXCUSES = 1.0


def false_failures(members: list[Member], t: float, live: set[ID]) -> str:
    """Why the 'failed' verdicts about live members since ``t`` are a
    defect, or "" when there are none — or when this process stalled for
    over ``STALL_EXCUSES`` s meanwhile and every such member is alive again
    in every view (SWIM corrected itself; the starved machine, not SWIM,
    broke the timing assumption). The stall is printed either way."""
    wrong = failures_since(members, t, live)
    worst = members[0].stalls.worst_since(t) if members else 0.0
    print(f"\nscheduler: worst stall {worst:.2f} s; false 'failed' verdicts: {len(wrong)}")
    if not wrong:
        return ""
    if worst > STALL_EXCUSES and all(set(states(members, p)) == {"alive"} for p in {e.peer_id for _, e in wrong}):
        return ""
    return f"{len(wrong)} false 'failed' verdicts (worst scheduler stall {worst:.2f} s): {wrong}\n{describe(members)}"


def describe(members: list[Member]) -> str:
    """Each node's view and counters, for failure messages."""
    lines = []
    for i, m in enumerate(members):
        st = m.swim.stats()
        t = st["transport"]
        lines.append(
            f"{i} {str(m.peer_id)[-6:]} conns={len(m.node.peers())} members={st['members']} inc={st['incarnation']} "
            f"aw={st['awareness']} out={t['frames_out']} in={t['frames_in']} drop_dial={t['dropped_dial']} "
            f"dial_fail={t['dial_failures']} drop_write={t['dropped_write']} qfull={t['dropped_queue_full']} "
            f"rate_limited={t['dropped_rate_limit']} core={ {k: v for k, v in st['core'].items() if v} } "
            f"events={[(e.kind, str(e.peer_id)[-6:]) for e in m.log][-12:]}"
        )
    return "\n".join(lines)


def states(members: list[Member], peer: ID) -> list[str | None]:
    return [m.swim.state_of(peer) for m in members if m.peer_id != peer]


def kinds(member: Member, peer: ID) -> list[str]:
    return [e.kind for e in member.log if e.peer_id == peer]


class ProcNode:
    """A SWIM node in a subprocess (swim_node_proc.py), so it can be SIGKILLed.

    :meth:`start` again after :meth:`kill` restarts it: same identity, new
    process and port. The process itself is an :class:`agentp2p.testing.ChildProcess`.
    """

    def __init__(self, seed: bytes, bootstrap: str, config: SwimConfig = FAST) -> None:
        self.seed = seed
        self.bootstrap = bootstrap
        self.config = config
        self.peer_id = Identity.from_seed(seed).peer_id
        self.child: ChildProcess | None = None
        self.addrs: list[str] = []

    async def start(self, timeout: float = 30.0) -> None:
        if self.child is not None:
            await self.child.aclose()
        cfg = json.dumps(dataclasses.asdict(self.config))
        self.child = ChildProcess(
            [sys.executable, str(RUNNER), "--seed", self.seed.hex(), "--bootstrap", self.bootstrap, "--config", cfg],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            name=f"swim node {str(self.peer_id)[-6:]}",
        )
        await self.child.start_async(timeout)
        info = json.loads(self.child.lines[0])
        assert info["peer_id"] == str(self.peer_id)
        self.addrs = info["addrs"]

    def kill(self) -> None:
        """SIGKILL: no goodbye, no connection close by the process."""
        assert self.child is not None
        self.child.kill()

    async def stop_gracefully(self, timeout: float = 15.0) -> int:
        """SIGTERM: the node announces "left" and exits; its exit status."""
        assert self.child is not None
        return await self.child.stop_async(signal.SIGTERM, timeout)

    def close(self) -> None:
        if self.child is not None and self.child.proc is not None:
            self.child.kill()
            self.child.close()


@contextlib.asynccontextmanager
async def running_transport(node: Node, dial_timeout: float = 10.0, write_timeout: float = 5.0) -> AsyncIterator[Any]:
    """A SwimTransport of ``node``'s, running (frames it receives are dropped), stopped on exit."""
    from agentp2p.protocol.swim.transport import SwimTransport

    transport = SwimTransport(node.dialer, lambda _p, _f: None, dial_timeout=dial_timeout, write_timeout=write_timeout)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.run)
        await wait_until(lambda: transport.running, what="the transport to run")
        yield transport
        nursery.cancel_scope.cancel()


__all__ = ["FAST", "Member", "ProcNode", "describe", "failures_since", "false_failures", "Stalls", "kinds", "running_transport", "states", "swim_network", "wait_until"]
