"""The devnet controller: grows the network, keeps the summary, runs commands.

One trio program in the ``agentp2p devnet`` process. It owns no node; the
nodes live in the worker processes (:mod:`agentp2p.devnet.worker`, handled
through :mod:`agentp2p.devnet.pool`), and the controller keeps the ground
truth about them: which nodes are up, killed, paused, which partitions are
in force (:mod:`agentp2p.devnet.partition`) — what the network *should*
look like, to hold the nodes' own views against it.

Life of a devnet:

1. start the workers (``--procs``), each given a contiguous block of node
   indices (:mod:`agentp2p.devnet.layout`);
2. grow: node 0 alone, then the other ``--seeds``, then the other nodes,
   each worker starting its own ``--concurrency`` at a time (and at most
   ``--join-rate`` a second in all), each node bootstrapping from
   ``--bootstraps`` seeds already up, picked at random (so the joins
   spread over the seeds); a progress line counts them; then wait (bounded)
   until every node's mesh on the topic has D_lo peers (``ready``);
3. run: a summary every ``--interval`` seconds (:mod:`agentp2p.devnet.summary`),
   a discovery probe, background traffic on the devnet topic (``--rate``),
   and the commands (:mod:`agentp2p.devnet.commands`) from stdin or a script;
4. stop on ``quit``, end of input, Ctrl-C or SIGTERM: every worker ends
   (:meth:`WorkerHandle.stop`), and only then does the controller exit. A
   second Ctrl-C kills the workers at once.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from agentp2p.devnet.commands import HELP, Command, CommandError, format_nodes, parse_command
from agentp2p.devnet.console import Console, stdin_lines
from agentp2p.devnet.layout import blocks, capability_of, choose_bootstraps, worker_of
from agentp2p.devnet.partition import Partitions
from agentp2p.devnet.pool import WorkerError, WorkerGone, WorkerHandle
from agentp2p.devnet.summary import ProbeResult, RateMeter, Summary, converged, summarize, swim_counts
from agentp2p.devnet.views import ViewWait, decode_bitmap, expected_masks, quantiles

__all__ = ["DevnetOptions", "Devnet"]

#: A node start may take this long (the worker's start and connect bounds, and a margin for a busy machine).
START_REQUEST_TIMEOUT = 120.0
#: How long the controller waits for a worker's stats before the summary goes without them.
STATS_TIMEOUT = 15.0
#: How long to wait, once every node is up, for the meshes to form (see Devnet._settle).
SETTLE_TIMEOUT = 60.0
#: How often ``wait views`` asks every worker for its nodes' views (at most:
#: never more often than one poll takes to answer).
VIEWS_POLL = 0.25
#: A find (probe or command) gives up after this long.
FIND_TIMEOUT = 60.0


@dataclass
class DevnetOptions:
    """What ``agentp2p devnet`` was asked for (the CLI flags, one for one)."""

    nodes: int
    procs: int = 2
    #: The first nodes, started first: the bootstrap nodes of everyone else.
    seeds: int = 3
    #: Seeds every other node bootstraps from (at random, spreading the joins).
    bootstraps: int = 2
    #: Nodes one worker starts at once.
    concurrency: int = 4
    #: At most this many node starts a second across the devnet, after node
    #: 0, the seeds included (0: as fast as the workers start them): a network that grows as
    #: nodes arrive in practice, not all at once (docs/scale.md, "A real
    #: network on this machine", measured 100 nodes both ways).
    join_rate: float = 0.0
    #: Distinct capabilities, round-robin: node i offers cap-(i mod caps).
    caps: int = 10
    topic: str = "devnet"
    #: Seconds between summaries (0: none).
    interval: float = 3.0
    #: Seconds between discovery probes (None: the interval; 0: none).
    probe_every: float | None = None
    #: Background publishes per second on the topic, from random nodes (0: none).
    rate: float = 1.0
    #: How long ``publish`` waits for every reachable node to receive the message.
    deliver_timeout: float = 10.0
    #: TOML node config applied to every node (keys as in NodeConfig).
    config: Path | None = None
    #: Directory for the workers' logs (None: discarded).
    log_dir: Path | None = None
    log_level: str = "warning"
    #: Script mode: run these command lines once the network is up, then quit. None: read stdin.
    commands: list[str] | None = None
    json: bool = False
    seed: int | None = None
    #: How long a worker may take to stop its nodes before it is killed.
    grace: float = 25.0
    #: Serve the dashboard of the whole devnet on this HOST:PORT (None: no dashboard).
    dashboard: str | None = None


class Devnet:
    """One devnet run. ``await Devnet(options, console).run()`` -> exit status."""

    def __init__(self, options: DevnetOptions, console: Console) -> None:
        if options.nodes < 1 or options.procs < 1:
            raise ValueError("a devnet needs at least one node and one worker")
        self.opts = options
        self.console = console
        self.layout = blocks(options.nodes, options.procs)
        self.rng = random.Random(options.seed)
        #: Each worker's loop lag and collector pauses, as it last reported them.
        self.stalls: dict[int, dict[str, Any]] = {}
        self.workers: list[WorkerHandle] = []
        self.peer_ids: dict[int, str] = {}
        self.addrs: dict[int, str] = {}
        self.index_of: dict[str, int] = {}
        self.up: set[int] = set()
        self.killed: set[int] = set()
        #: Nodes that failed to start, or stopped by themselves, and why.
        self.failed: dict[int, str] = {}
        self.partitions = Partitions()
        self.rates = RateMeter()
        self.last_rate: float | None = None
        self.last_probe: ProbeResult | None = None
        self.grown = False
        self.converged_reported = False
        self.rc = 0
        self.quitting = False
        self._seq = 0
        #: worker index -> roster size last sent to it (``wait views``)
        self._roster_sent: dict[int, int] = {}
        self._next_join = -math.inf  # trio time of the next start --join-rate allows
        self._t0 = time.monotonic()
        self._scope = trio.CancelScope()
        self._lines_send, self._lines = trio.open_memory_channel[str](64)
        #: The dashboard server (agentp2p.devnet.dashboard), with --dashboard.
        self.dashboard: Any = None

    # -- the run ---------------------------------------------------------------------

    async def run(self) -> int:
        self._t0 = time.monotonic()
        async with trio.open_nursery() as outer:
            await outer.start(self._watch_signals)
            if self.opts.commands is None:
                outer.start_soon(self._read_stdin)
            try:
                with self._scope:
                    await self._session()
            except* (WorkerError, OSError) as group:
                for exc in group.exceptions:
                    self.console.event("error", f"error: {exc}", error=str(exc))
                self.rc = 1
            finally:
                await self._stop_workers()
                outer.cancel_scope.cancel()
        return self.rc

    def quit(self, why: str = "quit") -> None:
        self.quitting = True
        self._scope.cancel()

    async def _session(self) -> None:
        async with trio.open_nursery() as nursery:
            if self.opts.dashboard is not None:
                await self._start_dashboard(nursery)
            await self._start_workers(nursery)
            if self.opts.commands is None:
                nursery.start_soon(self._execute_stdin)
            if not await self._grow():
                self.rc = 1
                nursery.cancel_scope.cancel()
                return
            self.grown = True
            if self.opts.interval > 0:
                nursery.start_soon(self._summaries)
            probe_every = self.opts.interval if self.opts.probe_every is None else self.opts.probe_every
            if probe_every > 0:
                nursery.start_soon(self._probes, probe_every)
            if self.opts.rate > 0:
                nursery.start_soon(self._traffic)
            if self.opts.commands is not None:
                await self._run_script(self.opts.commands)
                nursery.cancel_scope.cancel()

    async def _start_dashboard(self, nursery: trio.Nursery) -> None:
        """Serve the dashboard before the nodes start, to watch the network grow."""
        from agentp2p.devnet.dashboard import DevnetDashboard

        self.dashboard = DevnetDashboard(self, self.opts.dashboard or "127.0.0.1:0")
        await nursery.start(self.dashboard.serve)
        url = self.dashboard.login_url()
        self.console.event("dashboard", f"dashboard: open {url} (works once; the `dashboard` command prints another)",
                           url=url)  # fmt: skip

    async def network_view(self) -> dict[str, Any]:
        """The whole devnet as the dashboard draws it (agentp2p.devnet.graph)."""
        from agentp2p.devnet.graph import devnet_view

        replies, _silent = await self._ask_all("graph")
        paused = {i for w in self.workers if w.paused for i in w.nodes}
        return devnet_view(
            nodes=self.opts.nodes, peer_ids=self.peer_ids, up=self.up, killed=self.killed, paused=paused,
            failed=self.failed, reports=[n for r in replies.values() for n in r.get("nodes", [])], published=self._seq,
        )  # fmt: skip

    async def _watch_signals(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            count = 0
            async for signum in signals:
                count += 1
                if count == 1:
                    self.console.event("info", f"{signal.Signals(signum).name}: stopping (again to kill the workers now)",
                                       signal=signal.Signals(signum).name)  # fmt: skip
                    self.quit("signal")
                else:
                    for w in self.workers:
                        if w.pid is not None:
                            with contextlib.suppress(ProcessLookupError, PermissionError):
                                os.killpg(w.pid, signal.SIGKILL)

    async def _read_stdin(self) -> None:
        async with self._lines_send:
            async for line in stdin_lines():
                await self._lines_send.send(line)
        if not self.quitting:
            self.console.event("info", "end of input: stopping", reason="eof")
            self.quit("eof")

    async def _execute_stdin(self) -> None:
        async for line in self._lines:
            await self._run_line(line)

    async def _run_script(self, lines: list[str]) -> None:
        for line in lines:
            if not line.strip() or line.strip().startswith("#"):
                continue
            if not self.opts.json:
                self.console.event("info", f"> {line.strip()}")
            if not await self._run_line(line):
                self.rc = 1

    # -- workers -----------------------------------------------------------------------

    async def _start_workers(self, nursery: trio.Nursery) -> None:
        o = self.opts
        args = ["--parent", str(os.getpid()), "--topic", o.topic, "--log-level", o.log_level]
        if o.config is not None:
            args += ["--config", str(o.config)]
        if o.log_dir is not None:
            o.log_dir.mkdir(parents=True, exist_ok=True)
        self.workers = [
            WorkerHandle(w, block, args, log_file=o.log_dir / f"worker-{w}.log" if o.log_dir is not None else None)
            for w, block in enumerate(self.layout)
        ]
        async with trio.open_nursery() as starting:
            for w in self.workers:
                starting.start_soon(w.start, nursery)
        self.console.event(
            "workers",
            f"{len(self.workers)} workers ready at {self._elapsed():.1f}s: "
            + ", ".join(f"pid {w.pid} nodes {_span(w.nodes)}" for w in self.workers),
            seconds=round(self._elapsed(), 2), workers=[{"index": w.index, "pid": w.pid, "nodes": [w.nodes.start, w.nodes.stop - 1]} for w in self.workers],
        )  # fmt: skip

    async def _stop_workers(self) -> None:
        with trio.CancelScope(shield=True):
            t0 = time.monotonic()
            async with trio.open_nursery() as nursery:
                for w in self.workers:
                    nursery.start_soon(w.stop, self.opts.grace)
            self.console.event("stopped", f"stopped {len(self.workers)} workers in {time.monotonic() - t0:.1f}s",
                               seconds=round(time.monotonic() - t0, 2), rc=self.rc)  # fmt: skip

    def _worker(self, index: int) -> WorkerHandle:
        return self.workers[worker_of(index, self.layout)]

    def _running(self, index: int) -> bool:
        if index not in self.up or index in self.killed or index in self.failed:
            return False
        w = self._worker(index)
        return not w.paused and not w.gone

    def _running_nodes(self) -> list[int]:
        return [i for i in sorted(self.up) if self._running(i)]

    def _observer(self) -> int | None:
        running = self._running_nodes()
        return running[0] if running else None

    def _reachable(self, index: int) -> set[int]:
        """Running nodes ``index`` can reach (itself excluded)."""
        return self.partitions.component(index, self._running_nodes()) - {index}

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    # -- growing -----------------------------------------------------------------------

    async def _grow(self) -> bool:
        self.console.progress(0, self.opts.nodes, 0)
        if not await self._start_node(0, []):
            self.console.event("error", f"error: node 0 did not start: {self.failed.get(0)}", error=self.failed.get(0))
            return False
        # The other seeds first, then everyone else; each node bootstraps from
        # seeds already up, at the join rate. (The seeds once all joined node 0
        # at once: with ``--seeds N`` that was every node, on one node, at full
        # speed, whatever ``--join-rate`` said.)
        for seeds in (True, False):
            async with trio.open_nursery() as nursery:
                for w in self.workers:
                    nursery.start_soon(self._grow_worker, w, seeds)
        t = self._elapsed()
        self.console.progress(len(self.up), self.opts.nodes, len(self.failed), final=True)
        self.console.event(
            "up", f"up: {len(self.up)}/{self.opts.nodes} nodes in {t:.1f}s" + (f", {len(self.failed)} failed" if self.failed else "")
            + " (type help for commands)" * (self.opts.commands is None and not self.opts.json),
            up=len(self.up), total=self.opts.nodes, failed={str(i): e for i, e in self.failed.items()},
            seconds=round(t, 2), load=round(os.getloadavg()[0], 2),
        )  # fmt: skip
        await self._settle()
        return True

    async def _settle(self) -> None:
        """Wait (at most SETTLE_TIMEOUT) until every running node's mesh on the topic
        has reached D_lo peers (4 by default; fewer in a smaller network): before
        that the meshes need not connect every node, a message misses the nodes
        they leave out (gossipsub keeps nothing for peers that arrive later), and
        a script's first ``publish`` would fail for no interesting reason.
        Records may take longer (DHT queries time out on a busy machine and
        rounds are retried): ``wait records`` waits for them."""
        if len(self.up) < 2:
            return
        t0 = time.monotonic()
        no_mesh: list[int] = []
        published = running = 0
        while True:
            replies, _ = await self._ask_all("stats")
            nodes = [n for r in replies.values() for n in r.get("nodes", []) if n.get("running")]
            want = len(nodes) - 1
            no_mesh = sorted(n["index"] for n in nodes if n.get("mesh", 0) < min(n.get("mesh_low", 1), want))
            published, running = sum(1 for n in nodes if n.get("published")), len(nodes)
            if not no_mesh or time.monotonic() - t0 >= SETTLE_TIMEOUT:
                break
            await trio.sleep(0.5)
        t = self._elapsed()
        records = f"records published by {published}/{running} nodes"
        if no_mesh:
            self.console.event("info", f"after {SETTLE_TIMEOUT:g}s the meshes of nodes {format_nodes(no_mesh)} are "
                               f"still below D_lo ({records}); going on", no_mesh=no_mesh, published=published)  # fmt: skip
        else:
            self.console.event("ready", f"ready at {t:.1f}s: every node's mesh on {self.opts.topic!r} has D_lo peers; "
                               f"{records}", seconds=round(t, 2), published=published)  # fmt: skip

    async def _grow_worker(self, worker: WorkerHandle, seeds: bool) -> None:
        """Start this worker's seeds (``seeds``) or its other nodes, node 0 aside."""
        slots = trio.Semaphore(max(1, self.opts.concurrency))
        async with trio.open_nursery() as nursery:
            for i in worker.nodes:
                if i == 0 or (i < self.opts.seeds) != seeds:
                    continue
                await slots.acquire()
                await self._join_turn()
                nursery.start_soon(self._start_released, i, slots)

    async def _join_turn(self) -> None:
        """With ``join_rate`` R: wait for this start's turn, 1/R after the last one."""
        if self.opts.join_rate <= 0:
            return
        at = max(trio.current_time(), self._next_join)
        self._next_join = at + 1 / self.opts.join_rate
        await trio.sleep_until(at)

    async def _start_released(self, index: int, slots: trio.Semaphore) -> None:
        try:
            seeds = [i for i in sorted(self.up) if i < self.opts.seeds and i not in self.killed]
            await self._start_node(index, choose_bootstraps(seeds, self.opts.bootstraps, self.rng))
        finally:
            slots.release()

    async def _start_node(self, index: int, bootstraps: list[int]) -> bool:
        try:
            reply = await self._worker(index).request(
                "start", timeout=START_REQUEST_TIMEOUT, index=index, capability=capability_of(index, self.opts.caps),
                bootstrap=[self.addrs[b] for b in bootstraps],
            )  # fmt: skip
        except (WorkerError, trio.TooSlowError) as exc:
            self.failed[index] = str(exc) or type(exc).__name__
        else:
            self.peer_ids[index] = reply["peer_id"]
            self.addrs[index] = reply["addr"]
            self.index_of[reply["peer_id"]] = index
            self.up.add(index)
        self.console.progress(len(self.up), self.opts.nodes, len(self.failed))
        return index in self.up

    # -- summary, probes, traffic ---------------------------------------------------------

    async def _summaries(self) -> None:
        while True:
            await trio.sleep(self.opts.interval)
            s = await self.summary()
            self.console.event("summary", s.text(), **s.as_dict())

    async def _ask_all(self, op: str, **fields: Any) -> tuple[dict[int, dict[str, Any]], list[int]]:
        """``op`` to every worker that can answer, concurrently: (replies by worker, silent workers)."""
        replies: dict[int, dict[str, Any]] = {}
        silent: list[int] = []

        async def ask(w: WorkerHandle) -> None:
            try:
                replies[w.index] = await w.request(op, timeout=STATS_TIMEOUT, **fields)
            except (WorkerError, trio.TooSlowError):
                silent.append(w.index)

        async with trio.open_nursery() as nursery:
            for w in self.workers:
                if not w.paused and not w.gone:
                    nursery.start_soon(ask, w)
                elif w.gone:
                    silent.append(w.index)
        return replies, sorted(silent)

    def _view(self, members: dict[str, str], observer: int) -> dict[int, str]:
        """The observer's SWIM view by node index (peers that are not devnet nodes left out)."""
        return {self.index_of[p]: s for p, s in members.items() if p in self.index_of and self.index_of[p] != observer}

    async def summary(self, *, rate: bool = True, counters: bool = False) -> Summary:
        """The summary now. ``rate=False`` (the ``stats`` command) shows the last
        messages-per-second figure instead of one over a fraction of an interval;
        ``counters``: with the SWIM counters summed over the running nodes."""
        observer = self._observer()
        replies, silent = await self._ask_all("stats", observer=observer, counters=counters)
        self.stalls.update({w: r["stalls"] for w, r in replies.items() if "stalls" in r})
        node_stats = [n for r in replies.values() for n in r.get("nodes", [])]
        for n in node_stats:
            if not n.get("running") and not n.get("killed") and n["index"] in self.up and n.get("error"):
                self.failed.setdefault(n["index"], n["error"])
        view = None
        for r in replies.values():
            if "members" in r and observer is not None:
                view = self._view(r["members"], observer)
        paused = {i for w in self.workers if w.paused for i in w.nodes if i in self.up and i not in self.killed}
        running_others = set(self._running_nodes()) - {observer}
        s = summarize(
            t=self._elapsed(), nodes=self.opts.nodes, node_stats=node_stats, paused=paused, observer=observer,
            view=view, running_expected=running_others,
            msgs_per_s=self._msgs_per_s(node_stats) if rate else self.last_rate,
            probe=self.last_probe, silent_workers=silent,
        )  # fmt: skip
        if (view is not None and observer is not None and self.grown and not self.converged_reported
                and converged(view, self._reachable(observer))):  # fmt: skip
            self.converged_reported = True
            self.console.event("converged", f"converged: node {observer}'s SWIM sees all {len(view)} others alive "
                               f"at {s.t:.1f}s", seconds=round(s.t, 2), observer=observer)  # fmt: skip
        return s

    def _msgs_per_s(self, node_stats: list[dict[str, Any]]) -> float | None:
        self.last_rate = self.rates.update(time.monotonic(), {n["index"]: n.get("deliveries", 0) for n in node_stats})
        return self.last_rate

    async def _probes(self, every: float) -> None:
        while True:
            await trio.sleep(every)
            running = self._running_nodes()
            if not running:
                continue
            index = self.rng.choice(running)
            capability = capability_of(self.rng.randrange(min(self.opts.caps, self.opts.nodes)), self.opts.caps)
            self.last_probe, _ = await self._find(index, capability)

    async def _find(self, index: int, capability: str) -> tuple[ProbeResult, list[int]]:
        offering = {i for i in self._reachable(index) | {index} if capability_of(i, self.opts.caps) == capability}
        try:
            reply = await self._worker(index).request("find", timeout=FIND_TIMEOUT, index=index,
                                                      capability=capability, limit=self.opts.nodes)  # fmt: skip
        except (WorkerError, trio.TooSlowError) as exc:
            return ProbeResult(index, capability, 0.0, 0, len(offering), error=str(exc) or "timed out"), []
        found = sorted(self.index_of[p] for p in reply["peers"] if p in self.index_of)
        return ProbeResult(index, capability, float(reply["seconds"]), len(set(found) & offering), len(offering)), found

    async def _traffic(self) -> None:
        while True:
            await trio.sleep(1.0 / self.opts.rate)
            running = self._running_nodes()
            if not running:
                continue
            index = self.rng.choice(running)
            self._seq += 1
            with contextlib.suppress(WorkerError, trio.TooSlowError):
                await self._worker(index).request("publish", timeout=10, index=index, msg=f"bg{self._seq}", text="")

    # -- commands ------------------------------------------------------------------------

    async def _run_line(self, line: str) -> bool:
        """Parse and run one command line; False if it failed."""
        try:
            cmd = parse_command(line, self.opts.nodes)
        except CommandError as exc:
            self.console.result(line.strip(), False, str(exc), error=str(exc))
            return False
        if cmd is None:
            return True
        try:
            return await getattr(self, f"_cmd_{cmd.name}")(cmd)
        except (WorkerError, trio.TooSlowError) as exc:
            message = f"{cmd.name}: {exc or 'timed out'}"
            self.console.result(cmd.line, False, message, error=message)
            return False

    def _fail(self, cmd: Command, message: str, **data: Any) -> bool:
        self.console.result(cmd.line, False, message, error=message, **data)
        return False

    def _paused_workers(self, nodes: Iterable[int]) -> list[WorkerHandle]:
        return sorted({self._worker(i).index: self._worker(i) for i in nodes if self._worker(i).paused}.values(),
                      key=lambda w: w.index)  # fmt: skip

    async def _cmd_help(self, cmd: Command) -> bool:
        self.console.result(cmd.line, True, HELP, help=HELP)
        return True

    async def _cmd_dashboard(self, cmd: Command) -> bool:
        if self.dashboard is None:
            return self._fail(cmd, "no dashboard: start the devnet with --dashboard")
        url = self.dashboard.login_url()
        self.console.result(cmd.line, True, f"dashboard: open {url} (works once)", url=url)
        return True

    async def _cmd_quit(self, cmd: Command) -> bool:
        self.console.result(cmd.line, True, "stopping", stopping=True)
        self.quit("quit")
        return True

    async def _cmd_sleep(self, cmd: Command) -> bool:
        await trio.sleep(cmd.seconds)
        self.console.result(cmd.line, True, f"slept {cmd.seconds:g}s", seconds=cmd.seconds)
        return True

    async def _cmd_kill(self, cmd: Command) -> bool:
        targets = [i for i in cmd.nodes if i in self.up and i not in self.killed and i not in self.failed
                   and not self._worker(i).gone]  # fmt: skip
        paused = self._paused_workers(targets)
        if paused:
            return self._fail(cmd, f"worker {','.join(str(w.index) for w in paused)} is paused: resume it first")
        killed: list[int] = []
        async with trio.open_nursery() as nursery:
            for w in self.workers:
                mine = [i for i in targets if i in w.nodes]
                if mine:
                    nursery.start_soon(self._kill_in, w, mine, killed)
        self.killed.update(killed)
        skipped = sorted(set(cmd.nodes) - set(killed))
        text = f"killed {format_nodes(killed) or 'none'}" + (f" (not running: {format_nodes(skipped)})" if skipped else "")
        self.console.result(cmd.line, True, text, killed=sorted(killed), skipped=skipped)
        return True

    async def _kill_in(self, w: WorkerHandle, nodes: list[int], killed: list[int]) -> None:
        try:
            reply = await w.request("kill", timeout=30, indices=nodes)
        except WorkerGone:  # it died meanwhile: its nodes are not running, reported as skipped
            return
        killed.extend(int(i) for i in reply["killed"])

    async def _cmd_pause(self, cmd: Command) -> bool:
        workers = sorted({worker_of(i, self.layout) for i in cmd.nodes})
        for w in workers:
            self.workers[w].pause()
        text = "; ".join(f"paused worker {w} (pid {self.workers[w].pid}): nodes {_span(self.layout[w])} frozen"
                         for w in workers)  # fmt: skip
        self.console.result(cmd.line, True, text, workers=workers,
                            nodes=[i for w in workers for i in self.layout[w]])  # fmt: skip
        return True

    async def _cmd_resume(self, cmd: Command) -> bool:
        workers = sorted({worker_of(i, self.layout) for i in cmd.nodes})
        for w in workers:
            self.workers[w].resume()
        text = "; ".join(f"resumed worker {w}: nodes {_span(self.layout[w])}" for w in workers)
        self.console.result(cmd.line, True, text, workers=workers)
        return True

    async def _cmd_partition(self, cmd: Command) -> bool:
        a, b = cmd.groups
        paused = self._paused_workers([*a, *b])
        if paused:
            return self._fail(cmd, f"worker {','.join(str(w.index) for w in paused)} is paused: resume it first")
        live = {i: p for i, p in self.peer_ids.items() if i not in self.killed}
        deny = self.partitions.deny_lists(a, b, live)
        self.partitions.add(a, b)
        async with trio.open_nursery() as nursery:
            for w in self.workers:
                mine = {str(i): peers for i, peers in deny.items() if i in w.nodes}
                if mine and not w.gone:  # a worker that died holds no node to tell
                    nursery.start_soon(self._deny_in, w, mine)
        text = f"partition {format_nodes(a)} | {format_nodes(b)}: each side denies the other's peers"
        self.console.result(cmd.line, True, text, groups=[list(a), list(b)])
        return True

    @staticmethod
    async def _deny_in(w: WorkerHandle, deny: dict[str, list[str]]) -> None:
        with contextlib.suppress(WorkerGone):  # it died meanwhile: no node of it is left to tell
            await w.request("deny", timeout=30, deny=deny)

    async def _cmd_heal(self, cmd: Command) -> bool:
        paused = [w for w in self.workers if w.paused]
        if paused:
            return self._fail(cmd, f"worker {','.join(str(w.index) for w in paused)} is paused: resume it first "
                              "(its nodes would keep their deny lists)")  # fmt: skip
        replies, silent = await self._ask_all("allow")
        silent = [i for i in silent if not self.workers[i].gone]  # a worker that died holds no deny list
        self.partitions.clear()
        cleared = sum(int(r.get("cleared", 0)) for r in replies.values())
        if silent:
            return self._fail(cmd, f"worker {','.join(map(str, silent))} did not answer: its deny lists may remain")
        self.console.result(cmd.line, True, f"healed: {cleared} deny-list entries cleared", cleared=cleared)
        return True

    async def _cmd_publish(self, cmd: Command) -> bool:
        index = cmd.nodes[0]
        if not self._running(index):
            return self._fail(cmd, f"node {index} is not running")
        self._seq += 1
        msg = f"p{self._seq}"
        expected = self._reachable(index)
        t0 = time.monotonic()
        held = await self._worker(index).request("publish", timeout=30, index=index, msg=msg, text=cmd.text)
        latency: dict[int, float] = {}  # node -> seconds from the publish to its delivery
        deadline = t0 + self.opts.deliver_timeout
        while True:
            replies, _ = await self._ask_all("delivered", msgs=[msg])
            latency = {int(i): float(s) for r in replies.values() for i, s in r["delivered"].get(msg, {}).items()}
            got = set(latency)
            if expected <= got or time.monotonic() >= deadline:
                break
            await trio.sleep(0.1)
        seconds = time.monotonic() - t0
        missing = sorted(expected - got)
        reached = len(expected & got)
        # Each node's own delivery time (stamped where it happened), beside
        # `seconds` (until this controller saw the last one, its polls included).
        lat = {i: s for i, s in latency.items() if i in expected}
        spread: dict[str, Any] | None = quantiles(list(lat.values()))
        if spread is not None:
            spread["slowest"] = [[i, round(s, 3)] for i, s in sorted(lat.items(), key=lambda kv: -kv[1])[:3]]
            # Of that, how long the publisher's node.publish took before it let go.
            spread["publish_s"] = held.get("publish_s")
        text = f"published {msg} from {index}: delivered to {reached}/{len(expected)} reachable nodes in {seconds:.2f}s"
        if spread:
            text += f" (each node: P50 {spread['p50']:.3f}s, P99 {spread['p99']:.3f}s, last {spread['max']:.3f}s)"
        if missing:
            text += f" (missing {format_nodes(missing)} after {self.opts.deliver_timeout:g}s)"
        self.console.result(cmd.line, not missing, text, msg=msg, delivered=reached, expected=len(expected),
                            missing=missing, unexpected=sorted(got - expected - {index}),
                            seconds=round(seconds, 3), latency=spread)  # fmt: skip
        return not missing

    async def _cmd_find(self, cmd: Command) -> bool:
        index = cmd.nodes[0]
        if not self._running(index):
            return self._fail(cmd, f"node {index} is not running")
        probe, found = await self._find(index, cmd.text)
        if probe.error:
            return self._fail(cmd, f"find {cmd.text} from {index}: {probe.error}")
        text = (f"find {cmd.text} from {index}: {probe.found}/{probe.expected} live agents in {probe.seconds:.2f}s"
                + (f": nodes {format_nodes(found)}" if found else ""))  # fmt: skip
        self.console.result(cmd.line, True, text, found=found, matched=probe.found, expected=probe.expected,
                            seconds=probe.seconds)  # fmt: skip
        return True

    async def _cmd_stats(self, cmd: Command) -> bool:
        if cmd.nodes:
            index = cmd.nodes[0]
            if not self._running(index):
                return self._fail(cmd, f"node {index} is not running")
            reply = await self._worker(index).request("node", timeout=STATS_TIMEOUT, index=index)
            reply.pop("id", None)
            reply.pop("ok", None)
            peers = reply.pop("peer_ids", None)
            if peers is not None:  # devnet nodes by index, anything else by peer ID
                reply["peers"] = sorted(self.index_of[p] for p in peers if p in self.index_of) + sorted(
                    p for p in peers if p not in self.index_of)
            text = "\n".join(f"  {k}: {v}" for k, v in reply.items())
            self.console.result(cmd.line, True, f"node {index}:\n{text}", node=reply)
            return True
        s = await self.summary(rate=False, counters=True)
        lines = [s.text()]
        workers = []
        for w in self.workers:
            state = "gone" if w.gone else "paused" if w.paused else "running"
            cpu, rss = w.cpu_s(), w.rss_mb()  # each one read of /proc
            stalls = self.stalls.get(w.index)
            workers.append({"index": w.index, "pid": w.pid, "nodes": [w.nodes.start, w.nodes.stop - 1],
                            "state": state, "cpu_s": round(cpu, 2), "rss_mb": round(rss, 1), "stalls": stalls})  # fmt: skip
            lines.append(f"  worker {w.index}: pid {w.pid}, nodes {_span(w.nodes)}, {state}, cpu {cpu:.1f}s, "
                         f"memory {rss:.0f} MiB" + (f", {_stall_text(stalls)}" if stalls else ""))  # fmt: skip
        for a, b in self.partitions.splits:
            lines.append(f"  partition {format_nodes(sorted(a))} | {format_nodes(sorted(b))}")
        if self.killed:
            lines.append(f"  killed: {format_nodes(sorted(self.killed))}")
        if self.failed:
            lines.append(f"  failed: {format_nodes(sorted(self.failed))}")
        lines.append(f"  load average {os.getloadavg()[0]:.2f}")
        self.console.result(cmd.line, True, "\n".join(lines), summary=s.as_dict(), workers=workers,
                            partitions=[[sorted(a), sorted(b)] for a, b in self.partitions.splits],
                            load=round(os.getloadavg()[0], 2))  # fmt: skip
        return True

    async def _cmd_topology(self, cmd: Command) -> bool:
        """Is the live network a small world? (issue #14: clustering > 0.5, paths <= log2 N)."""
        from agentp2p.devnet.graph import devnet_topology

        replies, silent = await self._ask_all("graph")
        figs = devnet_topology([n for r in replies.values() for n in r.get("nodes", [])])
        lines, data = [], {}
        for name, f in figs.items():
            lines.append(f"  {name}: {f.nodes} nodes, mean degree {f.mean_degree:.1f}, clustering {f.clustering:.3f} "
                         f"(a random graph's {f.random_clustering:.3f}), path {f.mean_path:.2f} hops (max "
                         f"{f.max_path}), {f.reachable:.1%} of pairs connected")  # fmt: skip
            data[name] = f.as_dict(digits=4)
        if silent:
            lines.append(f"  (workers that did not answer: {len(silent)})")
        self.console.result(cmd.line, True, "topology:\n" + "\n".join(lines), topology=data, silent=sorted(silent))
        return True

    async def _cmd_wait(self, cmd: Command) -> bool:
        if cmd.text == "records":
            return await self._wait_records(cmd)
        if cmd.text == "views":
            return await self._wait_views(cmd)
        return await self._wait_converged(cmd)

    async def _wait_records(self, cmd: Command) -> bool:
        """``wait records``: every running node has published its capability record."""
        t0 = time.monotonic()
        while True:
            replies, silent = await self._ask_all("stats")
            nodes = [n for r in replies.values() for n in r.get("nodes", []) if n.get("running")]
            missing = sorted(n["index"] for n in nodes if not n.get("published"))
            if not missing and not silent:
                seconds = time.monotonic() - t0
                self.console.result(cmd.line, True, f"records published by all {len(nodes)} running nodes "
                                    f"(waited {seconds:.1f}s)", published=len(nodes), seconds=round(seconds, 2))  # fmt: skip
                return True
            if time.monotonic() - t0 >= cmd.seconds:
                text = f"after {cmd.seconds:g}s, records not published by nodes {format_nodes(missing) or '-'}"
                if silent:
                    text += f"; no answer from worker {','.join(map(str, silent))}"
                return self._fail(cmd, text, missing=missing)
            await trio.sleep(0.5)

    async def _wait_converged(self, cmd: Command) -> bool:
        """``wait converged``: the observer's SWIM view holds alive exactly the
        running nodes it can reach, and nothing else alive."""
        t0 = time.monotonic()
        deadline = t0 + cmd.seconds
        view: dict[int, str] = {}
        expected: set[int] = set()
        observer = None
        while True:
            observer = self._observer()
            if observer is not None:
                expected = self._reachable(observer)
                with contextlib.suppress(WorkerError, trio.TooSlowError):
                    reply = await self._worker(observer).request("members", timeout=STATS_TIMEOUT, index=observer)
                    view = self._view(reply["members"], observer)
                    if converged(view, expected):
                        break
            if time.monotonic() >= deadline:
                alive = {i for i, s in view.items() if s == "alive"}
                message = (f"not converged after {cmd.seconds:g}s: node {observer} sees {len(alive)} alive, "
                           f"expected {len(expected)}")  # fmt: skip
                if expected - alive:
                    message += f"; not alive: {format_nodes(sorted(expected - alive))}"
                if alive - expected:
                    message += f"; alive but should not be: {format_nodes(sorted(alive - expected))}"
                return self._fail(cmd, message, observer=observer, swim=swim_counts(view.values()),
                                  expected=len(expected))  # fmt: skip
            await trio.sleep(0.5)
        seconds = time.monotonic() - t0
        counts = swim_counts(view.values())
        self.console.result(
            cmd.line, True,
            f"converged in {seconds:.1f}s: node {observer} sees alive {counts['alive']} suspect {counts['suspect']} "
            f"dead {counts['dead']} left {counts['left']}",
            seconds=round(seconds, 2), observer=observer, swim=counts,
        )  # fmt: skip
        return True


    async def _views(self) -> dict[int, tuple[int, int]]:
        """Every running node's SWIM view: node -> (alive mask, suspect mask)."""
        replies: dict[int, dict[str, Any]] = {}

        async def ask(w: WorkerHandle) -> None:
            fields: dict[str, Any] = {}
            if self._roster_sent.get(w.index) != len(self.index_of):
                fields = {"roster": dict(self.index_of), "n": self.opts.nodes}
            with contextlib.suppress(WorkerError, trio.TooSlowError):
                replies[w.index] = await w.request("views", timeout=STATS_TIMEOUT, **fields)
                self._roster_sent[w.index] = int(replies[w.index].get("roster", 0))

        async with trio.open_nursery() as nursery:
            for w in self.workers:
                if not w.paused and not w.gone:
                    nursery.start_soon(ask, w)
        return {int(n["index"]): (decode_bitmap(n["alive"]), decode_bitmap(n["suspect"]))
                for r in replies.values() for n in r.get("nodes", [])}  # fmt: skip

    def _expected_views(self) -> dict[int, int]:
        """Every running node -> the mask of the running nodes it can reach."""
        running = self._running_nodes()
        return expected_masks(running, lambda i: self.partitions.component(i, running))

    async def _wait_views(self, cmd: Command) -> bool:
        """``wait views``: every running node's SWIM view holds alive exactly
        the running nodes it can reach and no member suspect (views.py) — a
        failure seen by all, a partition seen from both sides, a merge."""
        t0 = time.monotonic()
        wait = ViewWait()
        while True:
            expected = self._expected_views()
            if not expected:
                return self._fail(cmd, "no running node to wait for")
            asked = time.monotonic()
            views = await self._views()
            # A node matched by the time its view was read: stamped when the replies are in.
            if wait.update(time.monotonic() - t0, expected, views):
                break
            if time.monotonic() - t0 >= cmd.seconds:
                worst = sorted(wait.mismatched.items(), key=lambda kv: -sum(kv[1]))[:5]
                text = (f"after {cmd.seconds:g}s, {len(wait.mismatched)} of {len(expected)} running nodes' views "
                        f"do not match ({sum(1 for i in wait.first_match if i in expected)} matched at some point)")  # fmt: skip
                if worst:
                    text += "; e.g. " + ", ".join(f"node {i}: {a} not alive, {b} alive wrongly, {c} suspect"
                                                  for i, (a, b, c) in worst)  # fmt: skip
                if wait.unanswered:
                    text += f"; {wait.unanswered} did not answer"
                firsts = [t for i, t in wait.first_match.items() if i in expected]  # still running
                return self._fail(cmd, text, mismatched=len(wait.mismatched), nodes=len(expected),
                                  matched=len(firsts), first_match=quantiles(firsts))  # fmt: skip
            # Every poll reads every node's whole view: never more often than a
            # poll takes, and never past the deadline.
            now = time.monotonic()
            await trio.sleep(min(max(VIEWS_POLL, now - asked), max(0.0, t0 + cmd.seconds - now)))
        seconds = time.monotonic() - t0
        firsts = [t for i, t in wait.first_match.items() if i in expected]  # nodes that died meanwhile left out
        q = quantiles(firsts)
        assert q is not None  # every running node matched
        self.console.result(cmd.line, True, f"every view matches ({len(expected)} running nodes) after "
                            f"{seconds:.1f}s; each node's first match (not necessarily for good) P50 "
                            f"{q['p50']:.1f}s, P99 {q['p99']:.1f}s, last {q['max']:.1f}s", seconds=round(seconds, 2),
                            nodes=len(expected), matched=len(firsts), first_match=q)  # fmt: skip
        return True


def _stall_text(stalls: dict[str, Any]) -> str:
    """A worker's stalls (agentp2p.devnet.stalls) in a few words."""
    full = stalls["gc"]["gen2"]
    return (f"loop late {stalls['late_s']:g}s in {stalls['stalls']} stalls (longest {stalls['max_lag_s']:g}s), "
            f"full collections {full['count']} taking {full['total_s']:g}s (longest {full['max_s']:g}s)")


def _span(nodes: range) -> str:
    return f"{nodes.start}-{nodes.stop - 1}" if len(nodes) > 1 else str(nodes.start)
