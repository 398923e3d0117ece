"""CLI commands that talk to a running daemon through its control API (#7).

``agentp2p status | peers | connect | disconnect | ping | publish | subscribe
| dht ...`` find the daemon through ``api.addr`` and ``api.token`` next to its
identity file (``--identity`` picks another daemon's directory; ``--api`` and
``--token-file`` override). Every failure ends in one line on stderr and exit
status 1: no daemon running, wrong token, unknown peer...

The daemon side: :func:`add_daemon_api_flags` adds ``--api`` and
``--api-token-file`` to ``agentp2p daemon``, and :func:`daemon_services`
turns them into the :class:`~agentp2p.application.api.ApiService` the
daemon's node runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentp2p.client.discovery import ADDR_FILE_NAME, DEFAULT_API_LISTEN, TOKEN_FILE_NAME, daemon_home

EXIT_OK = 0
EXIT_ERROR = 1

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
        help=f"API token file (default {TOKEN_FILE_NAME} next to the identity file)",
    )


def daemon_services(args: argparse.Namespace, config: Any) -> list[Any]:
    """The services ``agentp2p daemon`` runs for these flags (the API, unless --api off)."""
    api = getattr(args, "api", None)
    if api == "off":
        return []
    from agentp2p.application.api import ApiService

    home = daemon_home(config.identity_path)
    token_flag = getattr(args, "api_token_file", None)
    token_file = Path(token_flag).expanduser() if token_flag else home / TOKEN_FILE_NAME
    return [
        ApiService(
            api or DEFAULT_API_LISTEN,
            token_file=token_file,
            addr_file=home / ADDR_FILE_NAME,
            fallback=api is None,
        )
    ]


# -- client commands ----------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", metavar="HOST:PORT", help=f"daemon API address (default: read {ADDR_FILE_NAME})")
    p.add_argument("--token-file", metavar="PATH", help=f"API token file (default: {TOKEN_FILE_NAME} next to the identity)")
    p.add_argument("--identity", metavar="PATH", help="the daemon's identity file; its directory holds api.addr and api.token")
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
    p = cmd("publish", _publish, "publish DATA on TOPIC")
    p.add_argument("topic")
    p.add_argument("data", help="message text; '-' reads raw bytes from stdin")
    p = cmd("subscribe", _subscribe, "print messages on TOPIC as they arrive (one per line)")
    p.add_argument("topic")
    p.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    p = cmd("dht", _dht, "DHT: get KEY | put KEY VALUE | provide KEY | providers KEY | find-peer PEER_ID")
    p.add_argument("op", choices=["get", "put", "provide", "providers", "find-peer"])
    p.add_argument("key", metavar="KEY|PEER_ID")
    p.add_argument("value", nargs="?", help="for put: the value text; '-' reads raw bytes from stdin")


def run_client_command(args: argparse.Namespace) -> int:
    """Run the client subcommand ``args`` was parsed for; returns the exit status."""
    from agentp2p.client import ClientError, SyncClient

    handler = args.client_handler
    try:
        home = daemon_home(args.identity) if args.identity else None
        with SyncClient(args.api, token_file=args.token_file, home=home, timeout=args.timeout) as client:
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
    topics = stats.get("pubsub", {}).get("topics", [])
    print(f"topics:        {', '.join(topics) if topics else '-'}")
    print("addresses:")
    for addr in info.addrs:
        print(f"  {addr}")
    return EXIT_OK


def _peers(client: Any, args: argparse.Namespace) -> int:
    peers = client.peers()
    if args.json:
        _print_json([{"peer_id": p.peer_id, "connections": [c.__dict__ for c in p.connections]} for p in peers])
        return EXIT_OK
    for p in peers:
        conns = ", ".join(f"{c.direction} {' '.join(c.remote_addrs)}".strip() for c in p.connections)
        print(f"{p.peer_id}  {conns}")
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
        client.dht_put(key, _read_data(args.value))
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
