"""AutoNAT v1 (``/libp2p/autonat/1.0.0``): is this node reachable from outside?

One concern per file: ``codec.py`` (the messages), ``dialpolicy.py`` (which
addresses a server may dial back), ``verdict.py`` (answers to a verdict),
``core.py`` (the sans-IO client: whom to ask and when), ``config.py``, and
``service.py`` (the adapter on libp2p streams, client and server).
docs/reachability.md explains the whole.
"""

from .config import AutoNATConfig
from .verdict import Reachability

__all__ = ["AutoNATConfig", "Reachability"]
