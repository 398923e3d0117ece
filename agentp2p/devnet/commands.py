"""The devnet's commands: one line of text -> one :class:`Command`, or an error
that says what is wrong with the line.

Pure: no I/O, no nodes. The same parser reads what a person types at the
prompt, a ``--script`` file and ``--run "cmd; cmd"``, so a script is
exactly a session typed in advance.

Node lists (``I..``) are indices from 0, separated by spaces or commas,
with inclusive ranges: ``kill 3 5 7-9`` and ``kill 3,5,7-9`` name the same
five nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HELP", "Command", "CommandError", "parse_command", "parse_nodes", "format_nodes", "split_run"]

HELP = """\
commands (node lists: 3 5 7-9 or 3,5,7-9; indices from 0):
  kill I..               crash nodes: stop without SWIM's goodbye (peers must detect it)
  pause I.. / resume I.. SIGSTOP / SIGCONT the worker processes holding these nodes
                         (every node of such a worker freezes; see `stats` for the layout)
  partition A-B C-D      the two groups cannot talk: each node denies the other group's peers
  heal                   clear every node's deny list (undo all partitions)
  publish I TEXT         publish TEXT from node I on the devnet topic; waits for deliveries
  find I CAPABILITY      node I's find_agents(CAPABILITY)
  stats [I]              the summary now (and the worker layout), or node I's details
  topology               clustering and path lengths of the connection graph and the topic's mesh
  wait converged [S]     wait (up to S seconds, default 60) until the observer's SWIM view
                         matches the devnet: running reachable nodes alive, the others not
  wait views [S]         wait until every running node's SWIM view matches: the nodes it can
                         reach alive, no member suspect (a failure seen by all; a merge)
  wait records [S]       wait until every running node has published its capability record
  sleep S                wait S seconds (scripts)
  dashboard              print a new one-time login link to the dashboard (with --dashboard)
  help                   this text
  quit                   stop every node and worker, and exit (also Ctrl-C, end of input)"""

#: Commands that take a node list.
_NODE_LIST = ("kill", "pause", "resume")
#: The longest ``wait``/``sleep`` a command may ask for (a typo must not hang a script for a day).
MAX_SECONDS = 3600.0


class CommandError(ValueError):
    """A line that is not a valid command (the message says why)."""


@dataclass(frozen=True)
class Command:
    """One parsed command. Only the fields its ``name`` uses are set."""

    name: str
    #: kill/pause/resume: the nodes; publish/find/stats: one node (or none for stats).
    nodes: tuple[int, ...] = ()
    #: partition: the two groups.
    groups: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
    #: publish: the text; find: the capability; wait: what to wait for.
    text: str = ""
    #: wait: the timeout; sleep: the duration.
    seconds: float = 0.0
    #: The line as given (for echoing results).
    line: str = ""


def parse_nodes(tokens: list[str] | str, n_nodes: int) -> tuple[int, ...]:
    """``["3", "5,7-9"]`` -> ``(3, 5, 7, 8, 9)``: sorted, without repeats, each < ``n_nodes``."""
    if isinstance(tokens, str):
        tokens = [tokens]
    out: set[int] = set()
    for token in tokens:
        for part in token.split(","):
            part = part.strip()
            if not part:
                continue
            lo_text, dash, hi_text = part.partition("-")
            try:
                lo = int(lo_text)
                hi = int(hi_text) if dash else lo
            except ValueError:
                raise CommandError(f"{part!r} is not a node index or range (like 3 or 0-9)") from None
            if lo < 0 or hi < lo:
                raise CommandError(f"{part!r}: a range goes from a low index to a higher one")
            if hi >= n_nodes:
                raise CommandError(f"{part!r}: the devnet has nodes 0-{n_nodes - 1}")
            out.update(range(lo, hi + 1))
    if not out:
        raise CommandError("no node given")
    return tuple(sorted(out))


def format_nodes(nodes: list[int] | tuple[int, ...]) -> str:
    """``(0, 1, 2, 5, 7, 8)`` -> ``"0-2,5,7-8"`` (the inverse of :func:`parse_nodes`)."""
    ordered = sorted(set(nodes))
    runs: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs)


def _seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{what}: {text!r} is not a number of seconds") from None
    if not 0 <= value <= MAX_SECONDS:
        raise CommandError(f"{what}: seconds must be between 0 and {MAX_SECONDS:g}")
    return value


def _one_node(token: str, n_nodes: int, name: str) -> int:
    nodes = parse_nodes(token, n_nodes)
    if len(nodes) != 1:
        raise CommandError(f"{name} takes one node, not {token!r}")
    return nodes[0]


def parse_command(line: str, n_nodes: int) -> Command | None:
    """Parse one line; ``None`` for a blank line or a ``#`` comment."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    name, _, rest = text.partition(" ")
    name = name.lower()
    rest = rest.strip()
    args = rest.split()
    if name in ("help", "?"):
        return Command("help", line=text)
    if name in ("quit", "exit"):
        return Command("quit", line=text)
    if name == "dashboard":
        if args:
            raise CommandError("dashboard takes no arguments (it prints a new login link)")
        return Command("dashboard", line=text)
    if name == "heal":
        if args:
            raise CommandError("heal takes no arguments (it clears every deny list)")
        return Command("heal", line=text)
    if name == "topology":
        if args:
            raise CommandError("topology takes no arguments")
        return Command("topology", line=text)
    if name in _NODE_LIST:
        if not args:
            raise CommandError(f"usage: {name} I.. (e.g. {name} 3 5 7-9)")
        return Command(name, nodes=parse_nodes(args, n_nodes), line=text)
    if name == "partition":
        if len(args) != 2:
            raise CommandError("usage: partition A-B C-D (two groups of nodes, e.g. partition 0-9 10-19)")
        a, b = parse_nodes(args[0], n_nodes), parse_nodes(args[1], n_nodes)
        both = set(a) & set(b)
        if both:
            raise CommandError(f"a node cannot be on both sides: {format_nodes(sorted(both))}")
        return Command("partition", groups=(a, b), line=text)
    if name == "publish":
        node_text, _, message = rest.partition(" ")
        if not node_text or not message.strip():
            raise CommandError("usage: publish I TEXT")
        return Command("publish", nodes=(_one_node(node_text, n_nodes, "publish"),), text=message.strip(), line=text)
    if name == "find":
        if len(args) != 2:
            raise CommandError("usage: find I CAPABILITY")
        return Command("find", nodes=(_one_node(args[0], n_nodes, "find"),), text=args[1], line=text)
    if name == "stats":
        if len(args) > 1:
            raise CommandError("usage: stats [I]")
        nodes = (_one_node(args[0], n_nodes, "stats"),) if args else ()
        return Command("stats", nodes=nodes, line=text)
    if name == "wait":
        if not args or args[0] not in ("converged", "views", "records") or len(args) > 2:
            raise CommandError("usage: wait converged|views|records [SECONDS]")
        seconds = _seconds(args[1], "wait") if len(args) == 2 else 60.0
        return Command("wait", text=args[0], seconds=seconds, line=text)
    if name == "sleep":
        if len(args) != 1:
            raise CommandError("usage: sleep SECONDS")
        return Command("sleep", seconds=_seconds(args[0], "sleep"), line=text)
    raise CommandError(f"unknown command {name!r} (try help)")


def split_run(text: str) -> list[str]:
    """``--run "cmd; cmd"`` -> the command lines (a ``publish`` text cannot contain ``;``)."""
    return [part.strip() for part in text.split(";") if part.strip()]
