"""py-libp2p's routine peer failures, demoted to DEBUG for every user of agentp2p.

py-libp2p 0.8.1 logs what a peer does wrong — a stream reset mid-read, a
failed multistream handshake, a dial that did not connect, a DHT peer that
would not store — at WARNING and ERROR, often with a traceback, once per
event. On a network those are routine, and the ones that matter are counted
and reported by our own code (throttled, per peer: ``throttled_log.py``), so
the library's lines only bury the application's logs: a 10-node test run
printed thousands. The daemon used to silence the ``libp2p`` logger; Python
users of :class:`~agentp2p.node.Node` got the flood.

:func:`demote_library_logs` (called whenever a node is assembled) puts a
filter on every ``libp2p.*`` logger that turns its records below CRITICAL
into DEBUG records: they show only where DEBUG is enabled for the ``libp2p``
logger (or ``LIBP2P_DEBUG`` is set). Logging configuration stays the
application's; nothing here adds handlers or changes levels.

One thing is undone: ``import libp2p`` (without ``LIBP2P_DEBUG``) leaves
the ``libp2p`` logger with no handler and ``propagate = False``, so its
records reach none of the application's handlers — the ones at WARNING and
above go to Python's last-resort handler on stderr, the demoted ones
nowhere, whatever the application asks for. Propagation is turned back on
whenever that logger has no handler of its own (also over an application's
own ``propagate = False`` there), so they reach the application's handlers
like any other library's. With ``LIBP2P_DEBUG`` set, py-libp2p's own
handler is there, and propagation is left as it made it.
"""

from __future__ import annotations

import logging
import os

__all__ = ["demote_library_logs", "LibraryLogDemotion"]

_ROOT = "libp2p"


class LibraryLogDemotion(logging.Filter):
    """Pass py-libp2p's WARNING/ERROR records on as DEBUG, and only when DEBUG is wanted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL or record.levelno <= logging.DEBUG:
            return True
        if os.environ.get("LIBP2P_DEBUG") or logging.getLogger(_ROOT).isEnabledFor(logging.DEBUG):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return True
        return False


_FILTER = LibraryLogDemotion()

#: py-libp2p loggers first created after a node is built (per stream, per
#: task crash, at shutdown): made now, so that they carry the filter too.
_LATE_LOGGERS = (
    "libp2p.network.stream.net_stream",
    "libp2p.connection_shutdown",
    "libp2p.records.validator",
    "libp2p.tools.anyio_service.TrioManager.Swarm",
)


def demote_library_logs() -> int:
    """Install the filter on every ``libp2p`` logger created so far; returns how many were new.

    Records are filtered by the logger that creates them (a filter on the
    parent does not see its children's records), so each module logger gets
    it. Idempotent and cheap: call it after py-libp2p modules are imported.
    """
    root = logging.getLogger(_ROOT)
    if not root.handlers:
        root.propagate = True  # see the module docstring
    for name in _LATE_LOGGERS:
        logging.getLogger(name)
    added = 0
    for name in list(logging.Logger.manager.loggerDict):
        if name != _ROOT and not name.startswith(_ROOT + "."):
            continue
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
            added += 1
    return added
