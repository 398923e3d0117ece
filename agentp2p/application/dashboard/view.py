"""The network as one node sees it, as the graph the dashboard draws.

A node knows three things about the others: whom it is connected to, whom
its gossipsub router keeps in a topic's mesh (a subset of those), and whom
SWIM counts as a member, connected or not (every node of the network once
membership has converged). So the graph has this node in the middle, an
edge to each connected peer (``mesh`` when the peer is in at least one of
our meshes), and every other SWIM member as a node without an edge, styled
by its state — a node that leaves becomes ``left`` or ``dead``, then drops
out when SWIM forgets it.

Labels are agent names from the records this node has verified (its cache),
else the end of the peer ID. The same JSON shape is what
``agentp2p devnet --dashboard`` serves for the whole network
(``mode: "devnet"``), so the page draws either.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_GRAPH_NODES", "node_view"]

#: The graph is for eyes: past this many nodes it is a blur, and the page's layout is O(n^2).
MAX_GRAPH_NODES = 400


def _names(node: Any) -> dict[str, str]:
    svc = node.services.get("records")
    if svc is None:
        return {}
    from agentp2p.application.records.validator import wall_clock_ms

    names = {str(e.record.peer_id): e.record.name for e in svc.cache.entries(wall_clock_ms())}
    own = svc.record if getattr(svc, "publishes", False) else None
    if own is not None:
        names[str(own.peer_id)] = own.name
    return names


def node_view(node: Any) -> dict[str, Any]:
    """``{"mode": "node", "self", "nodes": [...], "edges": [...], "truncated"}``."""
    me = str(node.peer_id)
    names = _names(node)
    pubsub = node.pubsub
    in_mesh: dict[str, list[str]] = {}
    for topic in pubsub.topics():
        for peer in pubsub.mesh_peers(topic):
            in_mesh.setdefault(str(peer), []).append(topic)
    connected = sorted(str(p) for p in node.peers())
    members: dict[str, str] = {}
    swim = node.services.get("swim")
    if swim is not None:
        members = {str(m.peer_id): m.state for m in swim.members()}

    def entry(peer: str, state: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": peer, "label": names.get(peer) or peer[-6:], "state": state}
        if peer in members:
            out["swim"] = members[peer]
        if peer in in_mesh:
            out["topics"] = sorted(in_mesh[peer])
        return out

    nodes = [entry(me, "self")]
    edges = []
    for peer in connected:
        nodes.append(entry(peer, "connected"))
        edges.append({"a": me, "b": peer, "kind": "mesh" if peer in in_mesh else "connection"})
    seen = {me, *connected}
    for peer, state in sorted(members.items()):
        if peer not in seen:
            nodes.append(entry(peer, state))
    truncated = len(nodes) > MAX_GRAPH_NODES
    if truncated:
        kept = {n["id"] for n in nodes[:MAX_GRAPH_NODES]}
        nodes = nodes[:MAX_GRAPH_NODES]
        edges = [e for e in edges if e["b"] in kept]
    return {"mode": "node", "self": me, "swim": swim is not None, "nodes": nodes, "edges": edges, "truncated": truncated}
