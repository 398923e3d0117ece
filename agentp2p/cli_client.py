"""CLI commands that talk to a running daemon through its control API (#7).

``agentp2p status | peers | connect | disconnect | ping | publish | subscribe
| pubsub peers | dht ... | send | request | incoming | members | find | record`` find the daemon through ``api.addr`` and ``api.token`` next to its
identity file (``--identity`` picks another daemon's directory; ``--api`` and
``--token-file`` override). Every failure ends in one line on stderr and exit
status 1: no daemon running, wrong token, unknown peer...

The daemon side: :func:`add_daemon_api_flags` adds ``--api`` and
``--api-token-file`` to ``agentp2p daemon`` (and ``--swim``, ``--agent-name``,
``--agent-description``, ``--capability``, ``--agent-card``), and
:func:`daemon_services` turns them into the services the daemon's node runs:
the :class:`~agentp2p.application.api.ApiService` and a
capability record.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentp2p.client.discovery import ADDR_FILE_NAME, DEFAULT_API_LISTEN, TOKEN_FILE_NAME, api_files

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # as argparse

# -- the daemon's flags ------------------------------------------------------------------


def add_daemon_api_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        metavar="HOST:PORT",
        help=f"control API address (default {DEFAULT_API_LISTEN}, another port if that is taken; "
        "unix:/path for a Unix socket; 'off' to disable)",
    )
    parser.add_argument(
        "--api-token-file",
        metavar="PATH",
        help=f"API token file (default {TOKEN_FILE_NAME} next to the identity file, named after it unless it is "
        "identity.key)",
    )
    parser.add_argument(
        "--swim", action="store_true", help="run SWIM membership (on by default; overrides swim = false in the config)"
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics at /metrics on the control API, behind its token "
        "(also [api] metrics = true, AGENTP2P_API__METRICS=1; docs/operations.md)",
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the live dashboard at /dashboard/ on the control API; log in with 'agentp2p dashboard' "
        "(also [api] dashboard = true, AGENTP2P_API__DASHBOARD=1; docs/dashboard.md)",
    )
    parser.add_argument(
        "--agent-name", metavar="NAME", help="publish a capability record under this agent name (agentp2p find)"
    )
    parser.add_argument("--agent-description", metavar="TEXT", default="", help="the record's description")
    parser.add_argument(
        "--capability",
        action="append",
        default=[],
        metavar="NAME[:TAG,TAG]",
        help="a capability in the record, with optional tags (repeatable; needs --agent-name)",
    )
    parser.add_argument(
        "--agent-card", metavar="FILE", help="publish this A2A Agent Card (JSON) as the record, instead of --agent-name"
    )


def parse_capability(text: str) -> tuple[str, tuple[str, ...]]:
    """``translate:fr,en`` -> ``("translate", ("fr", "en"))``."""
    name, _, tags = text.partition(":")
    name = name.strip()
    tag_list = tuple(t.strip() for t in tags.split(",") if t.strip()) if tags else ()
    if not name:
        raise ValueError(f"--capability {text!r}: the name is empty (NAME[:TAG,TAG])")
    return name, tag_list


def _record_service(args: argparse.Namespace) -> Any:
    """The RecordService these flags ask for, or None."""
    from agentp2p.errors import ConfigError

    name = getattr(args, "agent_name", None)
    card_path = getattr(args, "agent_card", None)
    caps_flags = getattr(args, "capability", None) or []
    if card_path is None and name is None:
        if caps_flags or getattr(args, "agent_description", ""):
            raise ConfigError("--capability and --agent-description need --agent-name (or --agent-card)")
        return None
    from agentp2p.application.records.errors import InvalidRecord
    from agentp2p.application.records.model import Capability
    from agentp2p.application.records.service import RecordService

    metadata: dict[str, str] = {}
    if card_path is not None:
        if name is not None or caps_flags:
            raise ConfigError("--agent-card replaces --agent-name/--capability; give one or the other")
        from agentp2p.application.records.a2a import card_fields

        try:
            card_text = Path(card_path).expanduser().read_text()
            name, description, capabilities, metadata = card_fields(card_text)
        except OSError as exc:
            raise ConfigError(f"--agent-card {card_path}: {exc.strerror}") from None
        except InvalidRecord as exc:
            raise ConfigError(f"--agent-card {card_path}: not a usable A2A Agent Card: {exc.detail}") from None
    else:
        description = args.agent_description
        try:
            parsed = [parse_capability(c) for c in caps_flags]
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        capabilities = tuple(Capability(n, tags=t) for n, t in parsed)

    try:
        return RecordService(name, description, capabilities, metadata)
    except InvalidRecord as exc:
        raise ConfigError(f"the agent record would be invalid: {exc.detail}") from None


def daemon_services(args: argparse.Namespace, config: Any) -> list[Any]:
    """The services ``agentp2p daemon`` runs for these flags: the API (unless
    --api off) and a capability record with --agent-name or --agent-card.
    SWIM is the node's own (``config.swim``, on by default)."""
    services: list[Any] = []
    # SWIM and messaging are not built here: ``--swim`` sets
    # ``[swim] enabled`` (cli._daemon_config) and agentp2p.assembly builds
    # them from their config sections and wires SWIM into records.
    records = _record_service(args)
    if records is not None:
        services.append(records)
    api = getattr(args, "api", None)
    if api == "off":
        from agentp2p.errors import ConfigError

        if config.api.metrics:
            raise ConfigError("metrics are served by the control API: --api off and metrics cannot go together")
        if config.api.dashboard:
            raise ConfigError("the dashboard is served by the control API: --api off and the dashboard cannot go together")
        return services
    from agentp2p.application.api import ApiService

    # Named after the identity file: daemons sharing a directory never
    # overwrite each other's api.addr (client.discovery.api_files).
    addr_file, default_token_file = api_files(config.identity_path)
    token_flag = getattr(args, "api_token_file", None)
    token_file = Path(token_flag).expanduser() if token_flag else default_token_file
    services.append(
        ApiService(
            api or DEFAULT_API_LISTEN,
            token_file=token_file,
            addr_file=addr_file,
            fallback=api is None,
        )
    )
    return services


# -- client commands ----------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", metavar="HOST:PORT", help=f"daemon API address (default: read {ADDR_FILE_NAME})")
    p.add_argument("--token-file", metavar="PATH", help=f"API token file (default: {TOKEN_FILE_NAME} next to the identity)")
    p.add_argument(
        "--identity",
        metavar="PATH",
        help="talk to the daemon running on this identity file (its api.addr/api.token are beside it, "
        "named after it: alice.key -> alice.api.addr)",
    )
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="per-request timeout (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_client_commands(sub: Any) -> None:
    """Register the client subcommands on the ``agentp2p`` subparsers object."""

    def cmd(name: str, fn: Callable[[Any, argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help)
        _common(p)
        p.set_defaults(client_handler=fn)
        return p

    cmd("status", _status, "show the running daemon's peer ID, addresses and counters")
    cmd("peers", _peers, "list connected peers")
    connect = cmd("connect", _connect, "connect the daemon to a peer")
    connect.add_argument("addr", metavar="MADDR", help="multiaddr ending in /p2p/<peer id>")
    cmd("disconnect", _disconnect, "disconnect the daemon from a peer").add_argument("peer", metavar="PEER_ID")
    cmd("ping", _ping, "round-trip time to a connected peer").add_argument("peer", metavar="PEER_ID")
    p = cmd("deny", _deny, "refuse PEERs both ways and close their connections, until 'allow' or the daemon "
            "stops (lasting: deny = [...] in the config); no PEER: list the denied peers")
    p.add_argument("peers", nargs="*", metavar="PEER_ID")
    p = cmd("allow", _allow, "take PEERs off the deny list")
    p.add_argument("peers", nargs="*", metavar="PEER_ID")
    p.add_argument("--all", action="store_true", help="clear the whole deny list")
    p = cmd("allow-list", _allow_list, "the allow list (on with allow_only = true in the config): show it, "
            "or add/remove PEERs (remove also cuts their connections)")
    p.add_argument("op", nargs="?", choices=["show", "add", "remove"], default="show")
    p.add_argument("peers", nargs="*", metavar="PEER_ID")
    p = cmd("trust", _trust, "trust scores: every peer the daemon has an opinion of (lowest first), or "
            "PEER's; --pin trusted|banned|none pins it (kept across restarts; banned cuts it off)")
    p.add_argument("peer", nargs="?", metavar="PEER_ID")
    p.add_argument("--pin", choices=["trusted", "banned", "none"])
    p = cmd("policy", _policy, "the authorization policy: show it, set it from a TOML/JSON FILE (in force at "
            "once, until the daemon stops), clear it, show the groups PEER proved, or check FILE (no daemon needed)")
    p.add_argument("op", nargs="?", choices=["show", "set", "clear", "groups", "check"], default="show")
    p.add_argument("arg", nargs="?", metavar="FILE|PEER_ID")
    p.add_argument("--refresh", action="store_true", help="groups: ask the peer again")
    p.set_defaults(offline_ops={"check"})
    p = cmd("cert", _cert, "membership certificates: issue one with an issuer key (no daemon needed), "
            "add FILE to those the daemon presents, or list them")
    p.add_argument("op", choices=["issue", "add", "list"])
    p.add_argument("file", nargs="?", metavar="FILE", help="add: the certificate file")
    p.add_argument("--issuer-key", metavar="PATH", help="issue: the issuer's identity key file "
                   "(made by 'agentp2p id --identity PATH'; its peer ID goes in the policy's groups)")
    p.add_argument("--group", metavar="NAME", help="issue: the group")
    p.add_argument("--peer", metavar="PEER_ID", help="issue: the member")
    p.add_argument("--hours", type=float, default=24.0, help="issue: valid for this long from now (default 24)")
    p.add_argument("--out", metavar="FILE", help="issue: write here (default: stdout)")
    p.set_defaults(offline_ops={"issue"})
    p = cmd("publish", _publish, "publish DATA on TOPIC")
    p.add_argument("topic")
    p.add_argument("data", help="message text; '-' reads raw bytes from stdin")
    p = cmd("subscribe", _subscribe, "print messages on TOPIC as they arrive (one per line)")
    p.add_argument("topic")
    p.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    p = cmd("pubsub", _pubsub, "pub/sub: peers TOPIC — its subscribers, this daemon's mesh for it, and their scores")
    p.add_argument("op", choices=["peers"])
    p.add_argument("topic")
    p = cmd("dht", _dht, "DHT: get KEY | put KEY VALUE | provide KEY | providers KEY | find-peer PEER_ID")
    p.add_argument("op", choices=["get", "put", "provide", "providers", "find-peer"])
    p.add_argument("key", metavar="KEY|PEER_ID")
    p.add_argument("value", nargs="?", help="for put: the value text; '-' reads raw bytes from stdin")
    p = cmd("send", _send, "send a direct message to PEER; prints its ID (with --receipt: ID<TAB>RECEIPT<TAB>when "
            "each receipt came; stored: the peer's durable inbox has it; consumed: its application took it)")
    p.add_argument("peer", metavar="PEER_ID")
    p.add_argument("data", help="message text; '-' reads raw bytes from stdin")
    p.add_argument("--type", default=None, help="message type (default 'message')")
    p.add_argument("--seal", action="store_true", help="encrypt end to end to the peer's key")
    p.add_argument("--wait", choices=["stored", "consumed"], default=None,
                   help="return once the peer's durable inbox has it (stored, the default) "
                   "or once its application took it (consumed)")
    p.add_argument("--receipt", action="store_true",
                   help="print ID<TAB>RECEIPT<TAB>the seconds to each receipt instead of the ID alone")
    p = cmd("request", _request, "send a request to PEER and print the response")
    p.add_argument("peer", metavar="PEER_ID")
    p.add_argument("data", help="request text; '-' reads raw bytes from stdin")
    p.add_argument("--type", default=None, help="request type (default 'request')")
    p.add_argument("--seal", action="store_true", help="encrypt end to end to the peer's key")
    p = cmd("incoming", _incoming, "print direct messages as they arrive: SENDER<TAB>TYPE<TAB>TEXT "
            "(each acknowledged once printed)")
    p.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    p = cmd("members", _members, "list SWIM members")
    p.add_argument("--all", action="store_true", help="include dead and left members")
    p.add_argument("--watch", action="store_true", help="then print membership changes as they happen")
    p = cmd("find", _find, "find live agents offering a capability, best first")
    p.add_argument("--capability", required=True, metavar="NAME")
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="required tag (repeatable)")
    p.add_argument("--limit", type=int, default=10, metavar="N")
    p.add_argument("--card", action="store_true", help="with --json: include A2A Agent Cards")
    p = cmd("record", _record, "show this agent's record (or PEER's), or change it: record set --name ... ")
    p.add_argument("op", nargs="?", choices=["show", "set"], default="show")
    p.add_argument("peer", nargs="?", metavar="PEER_ID", help="show: another agent's record")
    p.add_argument("--name")
    p.add_argument("--description")
    p.add_argument("--capability", action="append", metavar="NAME[:TAG,TAG]", help="set: replaces the capabilities (repeatable)")
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="set: replaces the metadata (repeatable)")
    p.add_argument("--card", metavar="FILE", help="set: publish this A2A Agent Card (JSON) instead")


def run_client_command(args: argparse.Namespace) -> int:
    """Run the client subcommand ``args`` was parsed for; returns the exit status."""
    from agentp2p.client import ClientError, SyncClient

    handler = args.client_handler
    if getattr(args, "op", None) in getattr(args, "offline_ops", ()):
        return int(handler(None, args))  # needs no daemon
    try:
        endpoint = _choose_daemon(args)
        with SyncClient(endpoint=endpoint, timeout=args.timeout) as client:
            return int(handler(client, args))
    except ClientError as exc:
        print(f"agentp2p: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`agentp2p subscribe t | head -1`): that is how it ends.
        sys.stderr.close()
        return EXIT_OK


def _choose_daemon(args: argparse.Namespace) -> Any:
    """The daemon this command talks to, said out loud when it is ambiguous.

    ``--api`` or ``--identity`` pick one. Otherwise the daemon of the default
    identity (``~/.agentp2p/identity.key``); when other daemons also run from
    ``~/.agentp2p``, a line on stderr says which one is used and how to pick
    another; with no default daemon, the only one running is used (and
    named), and with several the user must choose.
    """
    from agentp2p.client import ClientError
    from agentp2p.client.discovery import DEFAULT_HOME, DEFAULT_IDENTITY_STEM, locate, running_daemons

    if args.api is not None or args.identity is not None:
        return locate(args.api, token_file=args.token_file, identity=args.identity)
    running = running_daemons()
    if not running or [d.name for d in running] == [DEFAULT_IDENTITY_STEM]:
        return locate(token_file=args.token_file)  # the usual case, or "no daemon found"
    if running[0].name != DEFAULT_IDENTITY_STEM and len(running) > 1:
        names = ", ".join(f"{DEFAULT_HOME}/{d.name}.key" for d in running)
        raise ClientError(
            f"{len(running)} agentp2p daemons are running ({names}) and none on the default identity; "
            "choose one with --identity"
        )
    chosen, others = running[0], [d.name for d in running[1:]]
    note = f"talking to the daemon of {DEFAULT_HOME}/{chosen.name}.key at {chosen.address}"
    if others:
        note += f"; also running: {', '.join(others)} (choose with --identity)"
    print(f"agentp2p: {note}", file=sys.stderr)
    identity = DEFAULT_HOME.expanduser() / f"{chosen.name}.key"
    return locate(token_file=args.token_file, identity=identity)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None if not sys.stdout.isatty() else 2), flush=True)


def _read_data(arg: str) -> bytes | str:
    return sys.stdin.buffer.read() if arg == "-" else arg


def _status(client: Any, args: argparse.Namespace) -> int:
    info = client.node()
    stats = client.stats()
    if args.json:
        _print_json({"node": info.__dict__, "stats": stats})
        return EXIT_OK
    print(f"peer id:       {info.peer_id}")
    print(f"agent version: {info.agent_version}")
    print(f"uptime:        {info.uptime_s:.0f} s")
    print(f"connections:   {stats.get('connections')}")
    print(f"routing table: {stats.get('routing_table_size')}")
    reach = stats.get("autonat") or {}
    if reach:
        at = ", ".join(reach.get("public_addrs") or [])
        asked = (reach.get("client") or {}).get("asked", 0)
        print(f"reachability:  {reach.get('reachability')}{f' at {at}' if at else ''} ({asked} peer(s) asked)")
    relay = stats.get("relay") or {}
    if relay:
        served = relay.get("relay") or {}
        mine = relay.get("circuit_addrs") or []
        print(f"relay:         {'serving' if relay.get('service') else 'not serving'}"
              + (f" ({served.get('reservations_held', 0)} reservations, {served.get('circuits_open', 0)} circuits)"
                 if relay.get("service") else "")
              + (f"; reachable through {len(relay.get('reservations') or {})} relay(s)" if mine else ""))
        for addr in mine:
            print(f"  {addr}")
    punch = stats.get("holepunch") or {}
    if punch.get("enabled"):
        made = punch.get("direct_after_ms") or {}
        ways = ", ".join(f"{how} {punch[f'direct_by_{how}']}" for how in ("punch", "reversal")
                         if punch.get(f"direct_by_{how}"))
        print(f"hole punching: {made.get('count', 0)} relayed connection(s) made direct"
              + (f" ({ways})" if ways else "") + f", {punch.get('failed', 0)} stayed relayed"
              + (f"; median {made['p50']:.0f} ms" if made.get("count") else ""))
    topics = stats.get("pubsub", {}).get("topics", [])
    print(f"topics:        {', '.join(topics) if topics else '-'}")
    policy, trust = stats.get("policy") or {}, stats.get("trust") or {}
    if policy:
        denied = ", ".join(f"{a} {n}" for a, n in sorted((policy.get("denied") or {}).items())) or "none"
        print(f"policy:        {policy.get('rules', 0)} rules, default {policy.get('default')}; refused: {denied}")
    if trust:
        levels = ", ".join(f"{n} {lv}" for lv, n in sorted((trust.get("levels") or {}).items()) if lv != "normal")
        print(f"trust:         {levels or 'no peer below normal'}; cut off {trust.get('cutoffs', 0)} time(s)")
    print("addresses:")
    for addr in info.addrs:
        print(f"  {addr}")
    return EXIT_OK


def _peers(client: Any, args: argparse.Namespace) -> int:
    peers = client.peers()
    banned = client.banned_peers()
    denied = client.denied()
    if args.json:
        _print_json(
            {
                "peers": [{"peer_id": p.peer_id, "connections": [c.__dict__ for c in p.connections],
                           "trust": {"score": p.trust_score, "level": p.trust_level}} for p in peers],
                "banned": [b.__dict__ for b in banned],
                "denied": denied,
                "trust": client.trust_scores(),
            }
        )
        return EXIT_OK
    for p in peers:
        conns = ", ".join(f"{c.direction}{' relayed' if c.relayed else ''} {' '.join(c.remote_addrs)}".strip()
                          for c in p.connections)
        trust = "" if p.trust_score is None else f"  trust {p.trust_score:g} {p.trust_level}"
        print(f"{p.peer_id}  {conns}{trust}")
    distrusted = [t for t in client.trust_scores() if t["level"] != "normal" or t["score"] < 0]
    if distrusted:
        print("trust (lowest first; 'agentp2p trust PEER' for more):")
        for t in distrusted:
            print(f"  {_trust_line(t)}")
    if banned:
        print("banned (penalty box):")
        for b in banned:
            print(f"  {b.peer_id}  {b.remaining_s:.0f}s left, {b.offences} offences, last: {b.reason}")
    if denied:
        print("denied (deny list; 'agentp2p allow' takes a peer off):")
        for peer in denied:
            print(f"  {peer}")
    return EXIT_OK


def _deny(client: Any, args: argparse.Namespace) -> int:
    if not args.peers:
        denied = client.denied()
        if args.json:
            _print_json({"denied": denied})
        else:
            for peer in denied:
                print(peer)
        return EXIT_OK
    changed = {peer: client.deny(peer) for peer in args.peers}
    if args.json:
        _print_json({"denied": list(changed), "newly_denied": [p for p, new in changed.items() if new]})
    else:
        for peer, new in changed.items():
            print(f"denied {peer}" if new else f"{peer} was already denied")
    return EXIT_OK


def _allow(client: Any, args: argparse.Namespace) -> int:
    if args.all == bool(args.peers):
        print("agentp2p: error: name the peers to allow, or --all", file=sys.stderr)
        return EXIT_USAGE
    allowed = client.allow() if args.all else [p for peer in args.peers for p in client.allow(peer)]
    if args.json:
        _print_json({"allowed": allowed})
    else:
        for peer in args.peers:
            print(f"allowed {peer}" if peer in allowed else f"{peer} was not denied")
        if args.all:
            print(f"allowed {len(allowed)} peers" + "".join(f"\n  {p}" for p in allowed))
    return EXIT_OK


def _allow_list(client: Any, args: argparse.Namespace) -> int:
    if (args.op == "show") == bool(args.peers):
        print("agentp2p: error: 'show' takes no peers; 'add' and 'remove' need them", file=sys.stderr)
        return EXIT_USAGE
    if args.op == "show":
        allowed = client.allow_list()
        if args.json:
            _print_json({"allow_only": allowed is not None, "allowed": allowed or []})
        elif allowed is None:
            print("the allow list is off (allow_only = false): every peer not denied or banned may connect")
        else:
            print("\n".join(allowed) if allowed else "the allow list is on and empty: no peer may connect")
        return EXIT_OK
    change = client.add_to_allow_list if args.op == "add" else client.remove_from_allow_list
    changed = {peer: change(peer) for peer in args.peers}
    if args.json:
        _print_json({"op": args.op, "changed": [p for p, c in changed.items() if c]})
    else:
        verb = "added" if args.op == "add" else "removed"
        for peer, c in changed.items():
            print(f"{verb} {peer}" if c else f"{peer}: no change")
    return EXIT_OK


def _trust_line(t: dict[str, Any]) -> str:
    why = ", ".join(f"{reason} x{n}" for reason, n in list(t["reasons"].items())[:4]) or "no offences"
    pin = f", pinned {t['pin']}" if t["pin"] else ""
    refused = f", refused for {t['refused_for_s']:.0f}s more" if t["refused_for_s"] else ""
    return f"{t['peer_id']}  {t['score']:g} {t['level']}{pin}{refused}: {why}"


def _trust(client: Any, args: argparse.Namespace) -> int:
    if args.pin is not None and args.peer is None:
        print("agentp2p: error: --pin needs a PEER_ID", file=sys.stderr)
        return EXIT_USAGE
    if args.pin is not None:
        rows = [client.pin(args.peer, None if args.pin == "none" else args.pin)]
    elif args.peer is not None:
        rows = [client.trust(args.peer)]
    else:
        rows = client.trust_scores()
    if args.json:
        _print_json(rows[0] if args.peer is not None else {"peers": rows})
        return EXIT_OK
    for t in rows:
        print(_trust_line(t))
    if not rows:
        print("no peer has lost (or been pinned) any trust")
    return EXIT_OK


def _policy(client: Any, args: argparse.Namespace) -> int:
    if (args.op in ("set", "groups", "check")) != (args.arg is not None):
        print("agentp2p: error: 'set' and 'check' need a FILE, 'groups' a PEER_ID; 'show' and 'clear' take nothing",
              file=sys.stderr)
        return EXIT_USAGE
    if args.op == "check":
        checked = _read_policy(args.arg)
        if checked is None:
            return EXIT_USAGE
        if args.json:
            _print_json(checked.to_dict())
        else:
            print(f"{args.arg}: a valid policy: {len(checked.rules)} rules, {len(checked.groups)} groups, "
                  f"default {checked.default}")
        return EXIT_OK
    if args.op == "groups":
        seen = client.peer_groups(args.arg, refresh=args.refresh)
        if args.json:
            _print_json(seen)
            return EXIT_OK
        print(f"groups: {', '.join(seen['groups']) or '(none)'}")
        for c in seen["certificates"]:
            print(f"  certificate: group {c['group']} by {c['issuer']} until {_when(c['not_after_ms'])}")
        for why in seen["refused"]:
            print(f"  refused: {why}")
        if seen["fetch_failed"]:
            print("  (the peer could not be asked)")
        return EXIT_OK
    if args.op == "show":
        policy = client.policy()
    else:
        doc: dict[str, Any] = {}
        if args.op == "set":
            read = _read_policy(args.arg)  # checked here, with named errors
            if read is None:
                return EXIT_USAGE
            doc = read.to_dict()
        policy = client.set_policy(doc)
    if args.json:
        _print_json(policy)
        return EXIT_OK
    print(f"default: {policy['default']}")
    for name, issuer in policy["groups"].items():
        print(f"group {name}: issuer {issuer}")
    for i, r in enumerate(policy["rules"]):
        print(f"rule {i}: {r['effect']} {r['action']} {r['resource']} for {', '.join(r['peers'])}")
    if not policy["rules"]:
        print("no rules: every peer may " + ("do everything" if policy["default"] == "allow" else "do nothing"))
    return EXIT_OK


def _read_policy(path: str) -> Any:
    """The checked policy in the TOML/JSON file ``path``; None (the reason on stderr) if it is not one."""
    from agentp2p.config import NodeConfig
    from agentp2p.errors import ConfigError

    try:
        return NodeConfig(policy=path).load_policy()
    except ConfigError as exc:
        print(f"agentp2p: error: {exc}", file=sys.stderr)
        return None


def _when(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cert(client: Any, args: argparse.Namespace) -> int:
    if args.op == "issue":
        return _issue_cert(args)
    if args.op == "add":
        if args.file is None:
            print("agentp2p: error: 'cert add' needs the certificate FILE", file=sys.stderr)
            return EXIT_USAGE
        try:
            text = Path(args.file).expanduser().read_text()[:16384]
        except (OSError, UnicodeDecodeError) as exc:
            print(f"agentp2p: error: cannot read {args.file}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        added = client.add_certificate(text.strip())
        certs = [added]
    else:
        certs = client.certificates()
    if args.json:
        _print_json({"certificates": certs})
        return EXIT_OK
    for c in certs:
        print(f"group {c['group']} by {c['issuer']} until {_when(c['not_after_ms'])}")
    if not certs:
        print("this daemon presents no certificates")
    return EXIT_OK


def _issue_cert(args: argparse.Namespace) -> int:
    import time

    from agentp2p.errors import AgentP2PError
    from agentp2p.network.addresses import parse_peer_id
    from agentp2p.network.identity import load_identity
    from agentp2p.security.certificates import CertificateError, encode_certificate_text, issue

    missing = [flag for flag, value in (("--issuer-key", args.issuer_key), ("--group", args.group),
                                        ("--peer", args.peer)) if not value]
    if missing:
        print(f"agentp2p: error: 'cert issue' needs {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    if not 0 < args.hours <= 366 * 24:
        print("agentp2p: error: --hours must be in (0, 8784]", file=sys.stderr)
        return EXIT_USAGE
    try:
        issuer = load_identity(Path(args.issuer_key).expanduser())
        subject = parse_peer_id(args.peer)
        now = int(time.time() * 1000)
        raw = issue(issuer.private_key, args.group, subject, not_before_ms=now,
                    not_after_ms=now + int(args.hours * 3_600_000))
    except (AgentP2PError, CertificateError, ValueError) as exc:
        print(f"agentp2p: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = encode_certificate_text(raw) + "\n"
    if args.out:
        Path(args.out).expanduser().write_text(text)
        print(f"wrote a certificate for {subject} in group {args.group!r} by issuer {issuer.peer_id}, "
              f"valid {args.hours:g} h, to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _connect(client: Any, args: argparse.Namespace) -> int:
    peer_id = client.connect(args.addr)
    _print_json({"peer_id": peer_id}) if args.json else print(f"connected to {peer_id}")
    return EXIT_OK


def _disconnect(client: Any, args: argparse.Namespace) -> int:
    client.disconnect(args.peer)
    if not args.json:
        print(f"disconnected from {args.peer}")
    return EXIT_OK


def _ping(client: Any, args: argparse.Namespace) -> int:
    rtt = client.ping(args.peer)
    _print_json({"peer_id": args.peer, "rtt_ms": rtt * 1000}) if args.json else print(f"{args.peer}: {rtt * 1000:.2f} ms")
    return EXIT_OK


def _publish(client: Any, args: argparse.Namespace) -> int:
    size = client.publish(args.topic, _read_data(args.data))
    if args.json:
        _print_json({"topic": args.topic, "size": size})
    return EXIT_OK


def _message_line(msg: Any, as_json: bool) -> str:
    try:
        text: str | None = msg.data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if as_json:
        return json.dumps(
            {"topic": msg.topic, "sender": msg.sender, "data": text, "data_b64": base64.b64encode(msg.data).decode()}
        )
    return text if text is not None else "base64:" + base64.b64encode(msg.data).decode()


def _subscribe(client: Any, args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        print("agentp2p: error: --count must be at least 1", file=sys.stderr)
        return 2
    seen = 0
    with client.subscribe(args.topic) as sub:
        # To stderr, so stdout stays just the messages: scripts (and tests)
        # can wait for this line before publishing.
        print(f"subscribed to {args.topic}", file=sys.stderr, flush=True)
        for msg in sub:
            print(_message_line(msg, args.json), flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    if sub.dropped:
        print(f"agentp2p: warning: {sub.dropped} message(s) dropped because we read too slowly", file=sys.stderr)
    return EXIT_OK


def _pubsub(client: Any, args: argparse.Namespace) -> int:
    """``pubsub peers TOPIC``: one line per peer, mesh peers first, best score first."""
    view = client.pubsub_peers(args.topic)
    if args.json:
        _print_json(view.__dict__)
        return EXIT_OK
    mesh = set(view.mesh)
    rows = sorted({*view.peers, *view.mesh}, key=lambda p: (p not in mesh, -view.scores.get(p, 0.0), p))
    for peer in rows:
        where = "mesh" if peer in mesh else "subscribed"
        score = f"{view.scores.get(peer, 0.0):.2f}" if view.scoring else "-"
        print(f"{peer}  {where:<10}  score {score}")
    if not view.scoring:
        print("peer scoring is off on this daemon ([pubsub] scoring = false)", file=sys.stderr)
    if not view.subscribed:
        print(f"this daemon is not subscribed to {args.topic!r}, so it has no mesh for it", file=sys.stderr)
    if not rows:
        print(f"no peer is known to subscribe to {args.topic!r}", file=sys.stderr)
    return EXIT_OK


def _dht(client: Any, args: argparse.Namespace) -> int:
    op, key = args.op, args.key
    if (op == "put") != (args.value is not None):
        print("agentp2p: error: dht put needs KEY VALUE; the other operations take one argument", file=sys.stderr)
        return 2
    if op == "get":
        value = client.dht_get(key)
        if value is None:
            print(f"agentp2p: error: no value for {key!r}", file=sys.stderr)
            return EXIT_ERROR
        if args.json:
            _print_json({"key": key, "value_b64": base64.b64encode(value).decode()})
        else:
            sys.stdout.buffer.write(value + (b"" if value.endswith(b"\n") else b"\n"))
            sys.stdout.flush()
    elif op == "put":
        stored = client.dht_put(key, _read_data(args.value))
        if args.json:
            _print_json({"key": key, "stored": stored})
        elif stored == 0:
            print(f"stored {key!r} on this node only: no peer to store it at", file=sys.stderr)
        else:
            print(f"stored {key!r} at {stored} peer{'s' if stored != 1 else ''}")
    elif op == "provide":
        client.provide(key)
    elif op == "providers":
        providers = client.find_providers(key)
        if args.json:
            _print_json([p.__dict__ for p in providers])
        for p in providers if not args.json else []:
            print(f"{p.peer_id}  {' '.join(p.addrs)}")
    else:
        found = client.find_peer(key)
        if found is None:
            print(f"agentp2p: error: peer {key} not found", file=sys.stderr)
            return EXIT_ERROR
        _print_json(found.__dict__) if args.json else print("\n".join(found.addrs))
    return EXIT_OK


# -- direct messages, membership, records -------------------------------------------------


def _text_or_none(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _payload_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def _send(client: Any, args: argparse.Namespace) -> int:
    receipt = client.send_with_receipt(
        args.peer, _read_data(args.data), type=args.type, timeout=args.timeout, seal=args.seal, wait=args.wait
    )
    if args.json:  # the id and peer_id as always, and the receipt
        _print_json({"id": receipt.id, "peer_id": args.peer, "receipt": receipt.receipt,
                     "stored_after": receipt.stored_after, "consumed_after": receipt.consumed_after})
        return EXIT_OK
    if not args.receipt:
        print(receipt.id)  # the ID alone, as scripts have always read it
        return EXIT_OK
    times = [f"{name} after {after:.3f} s" for name, after in
             (("stored", receipt.stored_after), ("consumed", receipt.consumed_after)) if after is not None]
    print(f"{receipt.id}\t{receipt.receipt}\t{', '.join(times)}")
    return EXIT_OK


def _request(client: Any, args: argparse.Namespace) -> int:
    response = client.request(args.peer, _read_data(args.data), type=args.type, timeout=args.timeout, seal=args.seal)
    if args.json:
        _print_json({"peer_id": args.peer, "data_b64": base64.b64encode(response).decode(), "data": _text_or_none(response)})
    else:
        print(_payload_text(response), flush=True)
    return EXIT_OK


def _incoming(client: Any, args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        print("agentp2p: error: --count must be at least 1", file=sys.stderr)
        return 2
    seen = 0
    # Each message is acknowledged once it is printed (and flushed): killed
    # before that, it is printed again by the next `incoming` (same id).
    with client.incoming(auto_ack=False) as inbox:
        print("waiting for messages", file=sys.stderr, flush=True)
        for msg in inbox:
            if args.json:
                print(json.dumps({"id": msg.id, "sender": msg.sender, "type": msg.type, "sealed": msg.sealed,
                                  "timestamp": msg.timestamp, "data_b64": base64.b64encode(msg.data).decode(),
                                  "data": _text_or_none(msg.data)}), flush=True)
            else:
                print(f"{msg.sender}\t{msg.type}\t{_payload_text(msg.data)}", flush=True)
            inbox.ack(msg)
            seen += 1
            if args.count is not None and seen >= args.count:
                break
    return EXIT_OK


def _members(client: Any, args: argparse.Namespace) -> int:
    states = ["alive", "suspect", "dead", "left"] if args.all else None
    members = client.members(states)
    if args.json:
        _print_json([m.__dict__ for m in members])
    for m in members if not args.json else []:
        print(f"{m.peer_id}  {m.state:<7}  incarnation {m.incarnation}  {' '.join(m.addrs[:1])}")
    if not args.watch:
        return EXIT_OK
    with client.member_events() as events:
        for ev in events:
            if args.json:
                print(json.dumps(ev.__dict__), flush=True)
            else:
                print(f"{ev.kind:<9} {ev.peer_id}  incarnation {ev.incarnation}", flush=True)
    return EXIT_OK


def _find(client: Any, args: argparse.Namespace) -> int:
    agents = client.find_agents(args.capability, args.tag, args.limit, card=args.card)
    if args.json:
        _print_json([
            {"peer_id": a.peer_id, "name": a.name, "liveness": a.liveness, "rtt_ms": a.rtt_ms,
             "capability": a.capability, **({"card": a.record.card} if args.card else {})}
            for a in agents
        ])
        return EXIT_OK
    for a in agents:
        rtt = f"{a.rtt_ms:.1f} ms" if a.rtt_ms is not None else "-"
        tags = ",".join(a.capability.get("tags", []))
        print(f"{a.peer_id}  {a.name}  {a.liveness}  {rtt}  {tags}")
    if not agents:
        print(f"no live agent offers {args.capability!r}", file=sys.stderr)
    return EXIT_OK


def _print_record(record: Any, as_json: bool) -> None:
    if as_json:
        _print_json(record.__dict__)
        return
    print(f"peer id:      {record.peer_id}")
    print(f"name:         {record.name}")
    if record.description:
        print(f"description:  {record.description}")
    print(f"seq:          {record.seq}")
    for cap in record.capabilities:
        tags = f" [{', '.join(cap.get('tags', []))}]" if cap.get("tags") else ""
        print(f"capability:   {cap['name']}{tags}")
    for key, value in sorted(record.metadata.items()):
        print(f"metadata:     {key}={value}")


def _record(client: Any, args: argparse.Namespace) -> int:
    if args.op == "show":
        if any(v is not None for v in (args.name, args.description, args.capability, args.metadata, args.card)):
            print("agentp2p: error: --name/--description/--capability/--metadata/--card go with 'record set'", file=sys.stderr)
            return 2
        record = client.get_record(args.peer) if args.peer else client.record()
        if record is None:
            print(f"agentp2p: error: no record found for {args.peer}", file=sys.stderr)
            return EXIT_ERROR
        _print_record(record, args.json)
        return EXIT_OK
    if args.peer:
        print("agentp2p: error: 'record set' changes this agent's own record; it takes no PEER_ID", file=sys.stderr)
        return 2
    fields: dict[str, Any] = {}
    if args.card is not None:
        if any(v is not None for v in (args.name, args.description, args.capability, args.metadata)):
            print("agentp2p: error: --card replaces the other fields; give one or the other", file=sys.stderr)
            return 2
        try:
            fields["card"] = json.loads(Path(args.card).expanduser().read_text())
        except (OSError, ValueError) as exc:
            print(f"agentp2p: error: cannot read the card {args.card}: {exc}", file=sys.stderr)
            return 2
    if args.name is not None:
        fields["name"] = args.name
    if args.description is not None:
        fields["description"] = args.description
    if args.capability is not None:
        try:
            parsed = [parse_capability(c) for c in args.capability]
        except ValueError as exc:
            print(f"agentp2p: error: {exc}", file=sys.stderr)
            return 2
        fields["capabilities"] = [{"name": n, "tags": list(t)} for n, t in parsed]
    if args.metadata is not None:
        pairs = [m.partition("=") for m in args.metadata]
        if any(not k or not sep for k, sep, _ in pairs):
            print("agentp2p: error: --metadata takes KEY=VALUE", file=sys.stderr)
            return 2
        fields["metadata"] = {k: v for k, _, v in pairs}
    if not fields:
        print("agentp2p: error: record set needs --name, --description, --capability, --metadata or --card", file=sys.stderr)
        return 2
    _print_record(client.update_record(**fields), args.json)
    return EXIT_OK
