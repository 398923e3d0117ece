"""Helpers for testing code that runs agentp2p nodes (used by our own suite).

Everything binds to 127.0.0.1 and waits on conditions with deadlines, never
on fixed sleeps.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from multiaddr import Multiaddr

from agentp2p.config import NodeConfig
from agentp2p.node import Node

#: Listen address for test hosts: loopback, any free port.
LOOPBACK = Multiaddr("/ip4/127.0.0.1/tcp/0")


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


def library_host(**kwargs: Any) -> Any:
    """A bare py-libp2p host: Noise and the library's own Yamux, none of our
    guards — for tests that show the library's behaviour next to ours, and
    for attackers that write raw frames. Listens on 127.0.0.1 (any port)."""
    from libp2p import new_host
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    from agentp2p.network.host import security_options
    from agentp2p.network.identity import Identity

    ident = Identity.generate()
    # one connection per peer: no 250 ms happy-eyeballs wait per dial
    kwargs.setdefault("connection_config", ConnectionConfig(max_connections_per_peer=1))
    return new_host(
        key_pair=ident.key_pair,
        sec_opt=security_options(ident),  # type: ignore[arg-type]
        muxer_opt={TProtocol(YAMUX_ID): Yamux},  # type: ignore[dict-item]
        listen_addrs=[LOOPBACK],
        **kwargs,
    )


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
