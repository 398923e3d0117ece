"""agentp2p: a decentralized, self-organizing network for AI agents.

The public entry points are :class:`Node` and :class:`NodeConfig`; importing
them loads py-libp2p, so they are resolved lazily and ``import agentp2p``
alone stays cheap (the CLI's ``--help`` does not pay for libp2p).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Node", "NodeConfig", "__version__"]

if TYPE_CHECKING:
    from agentp2p.config import NodeConfig
    from agentp2p.node import Node


def __getattr__(name: str) -> Any:
    if name == "Node":
        from agentp2p.node import Node

        return Node
    if name == "NodeConfig":
        from agentp2p.config import NodeConfig

        return NodeConfig
    raise AttributeError(name)
