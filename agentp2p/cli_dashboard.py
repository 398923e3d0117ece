"""``agentp2p dashboard``: a one-time login link to a running daemon's dashboard.

The daemon must serve it (``agentp2p daemon --dashboard``). The command asks
the daemon, with the API token, for a login code and prints the URL that
redeems it (``--open`` also opens it in the default browser). The link is
good for one use within a minute; the browser then holds a session cookie,
never the token. Finding the daemon works as for every client command
(``--identity``, ``--api``, ``--token-file``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agentp2p.cli_client import EXIT_ERROR, EXIT_OK, _common

__all__ = ["add_dashboard_command"]

LOGIN_CODE_PATH = "/dashboard/login-code"


def add_dashboard_command(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "dashboard",
        help="print a one-time login link to the running daemon's dashboard (agentp2p daemon --dashboard)",
    )
    _common(p)
    p.add_argument("--open", action="store_true", help="also open the link in the default web browser")
    p.set_defaults(client_handler=_dashboard)


def _dashboard(client: Any, args: argparse.Namespace) -> int:
    from agentp2p.client.calls import Call
    from agentp2p.client.errors import NotFound

    try:
        answer = client.call(Call("POST", LOGIN_CODE_PATH, dict))
    except NotFound:
        print(
            "agentp2p: error: this daemon does not serve the dashboard; start it with --dashboard "
            "(or [api] dashboard = true in its config)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    url = answer["url"]
    if args.json:
        print(json.dumps({"url": url, "expires_s": answer["expires_s"]}), flush=True)
    else:
        print(url, flush=True)
        print(
            f"agentp2p: open this link within {answer['expires_s']:.0f} s; it works once, and logs that browser in "
            "(run 'agentp2p dashboard' again for another browser)",
            file=sys.stderr,
        )
    if args.open:
        import webbrowser

        if not webbrowser.open(url):
            print("agentp2p: no browser could be started here; open the link by hand", file=sys.stderr)
    return EXIT_OK
