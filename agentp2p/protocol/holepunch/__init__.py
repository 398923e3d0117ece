"""DCUtR hole punching: relayed connections become direct ones (libp2p/specs relay/DCUtR.md).

codec.py (messages, the addresses worth a punch), core.py (the two roles,
sans-IO), config.py (``[holepunch]``), service.py (the adapter); the
sockets are network/punch.py's.
"""
