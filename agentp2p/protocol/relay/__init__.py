"""Circuit relay v2 (``/libp2p/circuit/relay/0.2.0/{hop,stop}``): reaching nodes nobody can dial.

One concern per file: ``codec.py`` (the messages), ``reservations.py`` (the
relay's books: who may hold what), ``splice.py`` (one circuit, within its
limits), ``hop.py`` (the relay's side), ``client.py`` (reserving, dialing
through a relay, accepting a circuit), ``config.py``, and ``service.py`` (the
whole on a node). docs/reachability.md explains the design.
"""

from .config import RelayConfig

__all__ = ["RelayConfig"]
