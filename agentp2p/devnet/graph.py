"""The whole devnet as the dashboard's graph (pure: no I/O).

The controller knows what the network *should* be (which nodes are up,
killed, paused, failed); the workers report what each running node *has*
(its connections, its mesh on the devnet topic, how many members its SWIM
counts live). :func:`devnet_view` merges the two into the JSON the dashboard
page draws — the same shape as one node's view
(:mod:`agentp2p.application.dashboard.view`), with ``mode: "devnet"``.

A connection is one undirected edge (both ends usually report it; one is
enough: a paused worker reports nothing), drawn as a mesh link when either
end keeps the other in its mesh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agentp2p.application.dashboard.view import MAX_GRAPH_NODES
from agentp2p.simulation.topology import GraphFigures, figures

__all__ = ["devnet_topology", "devnet_view"]


def _state(index: int, *, reported: Mapping[int, Any], killed: set[int], failed: Mapping[int, str],
           paused: set[int], up: set[int]) -> str:  # fmt: skip
    if index in killed:
        return "killed"
    if index in failed:
        return "failed"
    if index in paused and index in up:
        return "paused"
    if index in reported:
        return "up"
    if index in up:
        return "silent"  # up, but its worker did not answer in time
    return "starting"


def devnet_view(
    *,
    nodes: int,
    peer_ids: Mapping[int, str],
    up: Iterable[int],
    killed: Iterable[int],
    paused: Iterable[int],
    failed: Mapping[int, str],
    reports: Iterable[Mapping[str, Any]],
    published: int = 0,
) -> dict[str, Any]:
    """``{"mode": "devnet", "nodes": [...], "edges": [...], "stats": {...}, "truncated"}``."""
    reported = {int(r["index"]): r for r in reports}
    up_set, killed_set, paused_set = set(up), set(killed), set(paused)
    index_of = {pid: i for i, pid in peer_ids.items()}
    shown = list(range(min(nodes, MAX_GRAPH_NODES)))
    out_nodes = []
    for i in shown:
        r = reported.get(i)
        state = _state(i, reported=reported, killed=killed_set, failed=failed, paused=paused_set, up=up_set)
        entry: dict[str, Any] = {"id": peer_ids.get(i, f"node-{i}"), "index": i, "label": f"n{i}", "state": state}
        if r is not None and state == "up":
            entry.update(connections=len(r.get("peers", [])), mesh=len(r.get("mesh", [])), swim_alive=r.get("swim_alive"))
        if i in failed:
            entry["error"] = failed[i]
        out_nodes.append(entry)
    visible = {peer_ids[i] for i in shown if i in peer_ids}
    links: dict[tuple[str, str], str] = {}
    for i, r in reported.items():
        me = peer_ids.get(i, r.get("peer_id"))
        if me not in visible or i in killed_set:
            continue
        mesh = set(r.get("mesh", []))
        for peer in r.get("peers", []):
            if peer not in visible or index_of.get(peer) in killed_set:
                continue
            key = (me, peer) if me < peer else (peer, me)
            if peer in mesh or links.get(key) == "mesh":
                links[key] = "mesh"
            else:
                links.setdefault(key, "connection")
    edges = [{"a": a, "b": b, "kind": kind} for (a, b), kind in sorted(links.items())]
    delivered = sum(int(r.get("deliveries", 0)) for r in reported.values())
    return {
        "mode": "devnet",
        "nodes": out_nodes,
        "edges": edges,
        "up": sum(1 for n in out_nodes if n["state"] in ("up", "paused", "silent")),
        "total": nodes,
        "stats": {"connections": len(edges), "pubsub": {"published": published, "delivered": delivered}},
        "truncated": nodes > len(shown),
    }


def devnet_topology(reports: Iterable[Mapping[str, Any]], *, seed: int = 1) -> dict[str, GraphFigures]:
    """Small-world figures (clustering, paths, degrees) of the running nodes'
    connection graph and of their meshes on the devnet topic, from the same
    worker reports the graph is drawn from. Every node counts (no cap), links
    to peers that did not report (killed, paused) are left out, and a link
    either end reports counts once, undirected."""
    reported = {str(r["peer_id"]): r for r in reports}
    conn: dict[str, set[str]] = {p: set() for p in reported}
    mesh: dict[str, set[str]] = {p: set() for p in reported}
    for me, r in reported.items():
        for key, graph in (("peers", conn), ("mesh", mesh)):
            for peer in r.get(key, []):
                if peer in reported and peer != me:
                    graph[me].add(peer)
                    graph[peer].add(me)
    return {"connections": figures(conn, seed=seed), "mesh": figures(mesh, seed=seed)}
