"""The ``agentp2p`` command: ``daemon`` runs a node, ``id`` shows its identity,
``psk new`` makes a private network key, ``devnet`` runs a local test network,
``dashboard`` logs a browser in to a daemon's dashboard.

Every failure a user can cause (bad multiaddr, port in use, unknown config
key, corrupt key file) ends in one line on stderr and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from agentp2p import __version__
from agentp2p.cli_client import add_client_commands, add_daemon_api_flags, daemon_services, run_client_command
from agentp2p.cli_dashboard import add_dashboard_command
from agentp2p.cli_devnet import add_devnet_command
from agentp2p.errors import AgentP2PError, ConfigError

log = logging.getLogger("agentp2p.daemon")

EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage dump
        print(f"agentp2p: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="agentp2p", description="A decentralized network for AI agents.")
    p.add_argument("--version", action="version", version=f"agentp2p {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("daemon", help="run a node until SIGINT/SIGTERM")
    d.add_argument("--listen", action="append", metavar="MADDR", help="listen address (repeatable); default /ip4/0.0.0.0/tcp/4001")
    d.add_argument("--bootstrap", action="append", metavar="MADDR", help="bootstrap peer, ending in /p2p/<id> (repeatable)")
    d.add_argument("--identity", metavar="PATH", help="identity key file (default ~/.agentp2p/identity.key)")
    d.add_argument("--config", metavar="FILE", help="TOML config file (also AGENTP2P_CONFIG)")
    d.add_argument("--log-format", choices=["text", "json"], help="stderr log format")
    d.add_argument("--json-logs", action="store_true", help="same as --log-format json")
    d.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    d.add_argument("--mdns", action="store_true", help="discover peers on the LAN with mDNS")
    d.add_argument(
        "--psk",
        metavar="FILE",
        help="join the private network of this pre-shared key file (also psk = \"FILE\" in TOML, AGENTP2P_PSK)",
    )
    d.add_argument(
        "--policy",
        metavar="FILE",
        help="authorization policy, a TOML or JSON file (also policy = ... in TOML, AGENTP2P_POLICY; docs/security.md)",
    )
    d.add_argument(
        "--certificate",
        action="append",
        metavar="FILE",
        help="a membership certificate to present, from 'agentp2p cert issue' (repeatable)",
    )
    d.add_argument(
        "--full-import",
        action="store_true",
        help="load all of py-libp2p (by default the daemon skips QUIC/TLS/metrics packages it never uses, ~20 MB)",
    )
    add_daemon_api_flags(d)

    i = sub.add_parser("id", help="print the peer ID of the identity file (creating it if absent)")
    i.add_argument("--identity", metavar="PATH", help="identity key file (default ~/.agentp2p/identity.key)")

    k = sub.add_parser("psk", help="private network keys (docs/security.md)")
    ksub = k.add_subparsers(dest="psk_command", required=True, parser_class=_Parser)
    new = ksub.add_parser("new", help="write a fresh key file, mode 0600 (never overwrites)")
    new.add_argument("file", nargs="?", metavar="FILE", help="where to write it (default ~/.agentp2p/swarm.key)")
    add_devnet_command(sub)
    add_client_commands(sub)
    add_dashboard_command(sub)
    return p


def _daemon_config(args: argparse.Namespace) -> Any:
    from agentp2p.config import DAEMON_DEFAULT_LISTEN, NodeConfig, build_config
    from agentp2p.network.identity import DEFAULT_IDENTITY_FILE

    base = NodeConfig(listen=[DAEMON_DEFAULT_LISTEN], identity_path=DEFAULT_IDENTITY_FILE.expanduser())
    overrides: dict[str, Any] = {}
    if args.listen:
        overrides["listen"] = args.listen
    if args.bootstrap:
        overrides["bootstrap"] = args.bootstrap
    if args.identity:
        overrides["identity_path"] = args.identity
    if args.json_logs:
        overrides["log_format"] = "json"
    if args.log_format:
        overrides["log_format"] = args.log_format
    if args.log_level:
        overrides["log_level"] = args.log_level
    if args.mdns:
        overrides["mdns"] = True
    if args.psk:
        overrides["psk"] = args.psk
    if args.policy:
        overrides["policy"] = args.policy
    if args.certificate:
        overrides["certificates"] = args.certificate
    if getattr(args, "swim", False):
        overrides["swim"] = {"enabled": True}
    api_overrides = {key: True for key in ("metrics", "dashboard") if getattr(args, key, False)}
    if api_overrides:
        overrides["api"] = api_overrides
    config_file = args.config or os.environ.get("AGENTP2P_CONFIG")
    cfg = build_config(Path(config_file) if config_file else None, overrides=overrides, base=base)
    if cfg.messaging.store is None and cfg.identity_path is not None:
        # Durable outbox next to the identity it belongs to (one per identity).
        cfg.messaging = dataclasses.replace(cfg.messaging, store=cfg.identity_path.with_suffix(".messages.db"))
    return cfg


def _metrics_requested(args: argparse.Namespace) -> bool:
    """Whether this daemon will serve /metrics, decided before libp2p (and so
    agentp2p.config) is imported: the lean import must keep prometheus_client
    real exactly then, and stub it otherwise (no import cost when off).

    Same precedence as the config (flag > AGENTP2P_API__METRICS > the file's
    ``[api] metrics``). When unsure — an unreadable file, an odd value — say
    yes: the real config load reports the error, or the package is merely
    imported for nothing.
    """
    if getattr(args, "metrics", False):
        return True
    env = os.environ.get("AGENTP2P_API__METRICS")
    if env is not None:
        return env.strip().lower() not in ("0", "false", "no", "off")
    config_file = args.config or os.environ.get("AGENTP2P_CONFIG")
    if not config_file:
        return False
    import tomllib

    try:
        with open(Path(config_file).expanduser(), "rb") as f:
            api = tomllib.load(f).get("api", {})
    except (OSError, tomllib.TOMLDecodeError):
        return True
    return not isinstance(api, dict) or api.get("metrics", False) is not False


def _quic_requested(args: argparse.Namespace) -> bool:
    """Whether this daemon may listen on QUIC (a ``/quic-v1`` listen address in
    the flags, the environment or the config file), decided before libp2p is
    imported, as :func:`_metrics_requested`: only then is aioquic real. A
    mention anywhere in the file is enough (no parse needed to be safe)."""
    if any("quic" in a for a in (args.listen or [])):
        return True
    if any(k.startswith("AGENTP2P_LISTEN") and "quic" in v for k, v in os.environ.items()):
        return True
    config_file = args.config or os.environ.get("AGENTP2P_CONFIG")
    if not config_file:
        return False
    try:
        return "quic" in Path(config_file).expanduser().read_text(errors="replace")
    except OSError:
        return True


def _freeze_startup_heap(config: Any) -> None:
    """The daemon's collector settings (agentp2p/gc_policy.py), once everything is
    imported and before the node and its services are built."""
    from agentp2p import gc_policy

    if not config.gc_policy:
        log.debug("garbage collector: CPython's defaults (gc_policy = false)")
        return
    importlib.import_module("agentp2p.node")  # what _run_daemon imports: loaded, then frozen
    frozen = gc_policy.apply()
    log.debug("garbage collector: %d startup objects frozen, thresholds %s", frozen, gc.get_threshold())


async def _run_daemon(config: Any, services: Any = ()) -> None:
    import trio

    from agentp2p.node import Node

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with Node(config, services=services) as node:
            for addr in node.addrs:  # a wildcard bind as each interface's address
                print(addr, flush=True)
            if config.psk is not None:
                # Before "running as": that line tells scripts (and our tests) the
                # daemon is up, so everything it says about itself comes first.
                from agentp2p.network.psk import fingerprint, read_psk_file

                key_id = fingerprint(read_psk_file(config.psk))
                log.info("private network: only peers with the key in %s can connect (fingerprint %s)", config.psk, key_id)
            log.info("agentp2p %s running as %s", __version__, node.peer_id)
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                break
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "client_handler", None) is not None:
        return run_client_command(args)
    try:
        if args.command == "id":
            from agentp2p.network.identity import DEFAULT_IDENTITY_FILE, load_or_create_identity

            path = Path(args.identity) if args.identity else DEFAULT_IDENTITY_FILE
            print(load_or_create_identity(path).peer_id)
            return 0
        if args.command == "psk":
            from agentp2p.network.psk import DEFAULT_PSK_FILE, PSKError, fingerprint, write_psk_file

            path = Path(args.file if args.file else DEFAULT_PSK_FILE).expanduser()
            try:
                key = write_psk_file(path)
            except PSKError as exc:  # exists, or cannot be written: not a usage error
                print(f"agentp2p: error: {exc}", file=sys.stderr)
                return EXIT_ERROR
            print(f"wrote a new private network key to {path} (fingerprint {fingerprint(key)})")
            print(f"give it to every node of the network (keep it secret), and run: agentp2p daemon --psk {path}")
            return 0
        if args.command == "devnet":
            from agentp2p.cli_devnet import run_devnet

            return run_devnet(args)
        if args.command == "daemon":
            if not args.full_import:
                # Must run before anything imports libp2p (config does).
                from agentp2p import _lean_import

                mdns_possible = bool(
                    args.mdns or args.config or os.environ.get("AGENTP2P_MDNS") or os.environ.get("AGENTP2P_CONFIG")
                )
                _lean_import.install(mdns=mdns_possible, metrics=_metrics_requested(args), quic=_quic_requested(args))
            import trio

            from agentp2p.log import setup_logging

            config = _daemon_config(args)
            setup_logging(config.log_format, config.log_level)
            _freeze_startup_heap(config)
            trio.run(_run_daemon, config, daemon_services(args, config))
            return 0
    except ConfigError as exc:
        print(f"agentp2p: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AgentP2PError as exc:
        print(f"agentp2p: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
