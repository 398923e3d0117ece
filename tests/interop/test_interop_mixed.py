"""A mixed network: three agentp2p nodes and three go-libp2p peers.

One node of each kind is a seed (the Go seed joins through the Python seed);
every other node is given both seeds and nothing else. Then:

* every node finds every other node by peer ID through the DHT, and the
  addresses it gets are the target's real listen address;
* one gossipsub topic reaches all six nodes, from a Python publisher and
  from a Go publisher.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from agentp2p.node import Node, Subscription
from agentp2p.testing import local_config, wait_until
from tests.interop.gopeer import GoPeer

pytestmark = pytest.mark.interop

TOPIC = "agentp2p/interop/mixed"


def transport_part(addr: object) -> str:
    return str(addr).split("/p2p/", 1)[0]


@dataclass
class Mixed:
    py: list[Node]
    go: list[GoPeer]

    def ids(self) -> list[str]:
        return [str(n.peer_id) for n in self.py] + [g.peer_id for g in self.go]

    def listen(self) -> dict[str, str]:
        """peer ID -> its transport address."""
        out = {str(n.peer_id): transport_part(n.addrs[0]) for n in self.py}
        out.update({g.peer_id: transport_part(g.addr) for g in self.go})
        return out


@contextlib.asynccontextmanager
async def mixed_network(binary: Path, n_py: int = 3, n_go: int = 3) -> AsyncIterator[Mixed]:
    async with contextlib.AsyncExitStack() as stack:
        py_seed = await stack.enter_async_context(Node(local_config()))
        go_seed = await stack.enter_async_context(GoPeer(binary, bootstrap=[py_seed.addrs[0]]))
        seeds = [py_seed.addrs[0], go_seed.addr]
        net = Mixed([py_seed], [go_seed])
        for _ in range(n_py - 1):
            net.py.append(await stack.enter_async_context(Node(local_config(bootstrap=seeds))))
        for _ in range(n_go - 1):
            net.go.append(await stack.enter_async_context(GoPeer(binary, bootstrap=seeds)))
        # Everyone is in the routing tables of both seeds before any lookup.
        for node in net.py:
            await wait_until(lambda node=node: len(node.dht.routing_table_peers()) >= 1, what="a routing table entry")
        await wait_until(
            lambda: len(py_seed.dht.routing_table_peers()) >= n_py + n_go - 1, what="Python seed knows all"
        )
        await go_seed.rt_wait(n_py + n_go - 1)
        yield net


async def test_every_node_finds_every_other_by_id(go_peer_binary: Path) -> None:
    async with mixed_network(go_peer_binary) as net:
        listen = net.listen()
        found: dict[tuple[str, str], str] = {}

        async def py_find(seeker: Node, target: str) -> None:
            info = await seeker.find_peer(target)
            assert info is not None, f"{seeker.peer_id} could not find {target}"
            found[(str(seeker.peer_id), target)] = next(
                (transport_part(a) for a in info.addrs if transport_part(a) == listen[target]), "wrong addrs"
            )

        async def go_find(seeker: GoPeer, target: str) -> None:
            addrs = await seeker.find_peer(target)
            found[(seeker.peer_id, target)] = listen[target] if listen[target] in addrs else f"wrong addrs {addrs}"

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for node in net.py:
                    for target in net.ids():
                        if target != str(node.peer_id):
                            nursery.start_soon(py_find, node, target)
                for go in net.go:
                    for target in net.ids():
                        if target != go.peer_id:
                            nursery.start_soon(go_find, go, target)

        expected = {(s, t): listen[t] for s in net.ids() for t in net.ids() if s != t}
        assert found == expected


def mesh_is_connected(edges: dict[str, set[str]], nodes: list[str]) -> bool:
    """Whether the (undirected) mesh graph spans ``nodes`` in one component."""
    adjacency: dict[str, set[str]] = {n: set() for n in nodes}
    for a, peers in edges.items():
        for b in peers:
            if b in adjacency:
                adjacency[a].add(b)
                adjacency[b].add(a)
    seen, todo = {nodes[0]}, [nodes[0]]
    while todo:
        for nxt in adjacency[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen == set(nodes)


async def test_one_topic_reaches_all_six(go_peer_binary: Path) -> None:
    async with mixed_network(go_peer_binary) as net, contextlib.AsyncExitStack() as stack:
        subs: list[Subscription] = [await stack.enter_async_context(n.subscribe(TOPIC)) for n in net.py]
        for go in net.go:
            await go.subscribe(TOPIC)

        async def mesh_edges() -> dict[str, set[str]]:
            edges = {str(n.peer_id): {str(p) for p in n.pubsub.mesh_peers(TOPIC)} for n in net.py}
            for go in net.go:
                edges[go.peer_id] = set(await go.mesh_peers(TOPIC))
            return edges

        async def connected() -> bool:
            return mesh_is_connected(await mesh_edges(), net.ids())

        # A message travels along mesh links; wait until they join all six.
        await net.go[0].wait_until(connected, timeout=20, what="a gossipsub mesh spanning all six nodes")

        receivers: dict[str, Subscription | GoPeer] = {str(n.peer_id): sub for n, sub in zip(net.py, subs)}
        receivers.update({go.peer_id: go for go in net.go})

        async def expect(receiver: Subscription | GoPeer, sender: str, data: bytes, got: dict[str, bytes], me: str) -> None:
            """Wait for ``data`` authored by ``sender`` (skipping anything else)."""
            with trio.fail_after(20):
                while True:
                    if isinstance(receiver, GoPeer):
                        gm = await receiver.next_message(timeout=20)
                        author, payload = gm.from_peer, gm.data
                    else:
                        m = await receiver.receive()
                        author, payload = str(m.sender), m.data
                    if (author, payload) == (sender, data):
                        got[me] = payload
                        return

        for publisher, data in [(net.py[1], b"hello from python"), (net.go[1], b"hello from go")]:
            sender = str(publisher.peer_id)
            got: dict[str, bytes] = {}
            async with trio.open_nursery() as nursery:
                for me, receiver in receivers.items():
                    if me != sender:
                        nursery.start_soon(expect, receiver, sender, data, got, me)
                await publisher.publish(TOPIC, data)
            # Reached all six: the publisher and the five others.
            assert set(got) == set(net.ids()) - {sender}
