"""Helpers for testing code that runs agentp2p nodes (used by our own suite).

Everything binds to 127.0.0.1 and waits on conditions with deadlines, never
on fixed sleeps.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import trio

from agentp2p.config import NodeConfig
from agentp2p.node import Node


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait for ``predicate()`` to hold, failing the test after ``timeout`` seconds.

    libp2p state (routing tables, mesh membership) changes without events we
    can await, so we re-check on each scheduler tick batch; the deadline is
    what makes a hang a failure instead of a stuck CI job.
    """
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def local_config(**kwargs) -> NodeConfig:  # type: ignore[no-untyped-def]
    kwargs.setdefault("listen", ["/ip4/127.0.0.1/tcp/0"])
    return NodeConfig(**kwargs)


@contextlib.asynccontextmanager
async def network(n: int, **kwargs) -> AsyncIterator[list[Node]]:  # type: ignore[no-untyped-def]
    """``n`` nodes: the first is the bootstrap node, the others bootstrap from it."""
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(Node(local_config(**kwargs)))
        nodes = [boot]
        for _ in range(n - 1):
            cfg = local_config(bootstrap=[boot.addrs[0]], **kwargs)
            nodes.append(await stack.enter_async_context(Node(cfg)))
        await wait_until(lambda: all(len(x.peers()) >= 1 for x in nodes[1:]), what="bootstrap connections")
        yield nodes
