"""The client side of circuit relay v2: reserve, accept circuits, dial through a relay.

* :func:`reserve` asks a relay for a slot (hop RESERVE) and returns what it
  granted: until when, the relay's addresses, the circuit limits.
* :func:`accept` answers a relay's stop CONNECT: OK, then the stream is a
  new inbound connection from the initiator, handed to the node's inbound
  path (admission, Noise, Yamux) like a TCP socket.
* :func:`dial` opens a circuit (hop CONNECT) and runs the outbound upgrade
  over it: the relayed connection has its own Noise and Yamux, end to end,
  so the relay sees only ciphertext.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.peer.id import ID
from multiaddr import Multiaddr

from agentp2p.network.framing import length_prefixed, read_message
from agentp2p.network.streams import close_quietly

from .codec import HOP_PROTOCOL, MAX_MESSAGE_BYTES, decode_hop, decode_stop, pb

__all__ = ["Granted", "RelayError", "accept_stop", "open_circuit", "reserve", "split_circuit"]


class RelayError(Exception):
    """The relay refused or failed (``status`` is the spec's code, 0 if none came)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Granted:
    relay: ID
    expire: int  # unix time
    addrs: tuple[str, ...]  # the relay's addresses, ending in /p2p/<relay>
    duration: int  # circuit limits (0: none)
    data: int


def _status_name(code: int) -> str:
    try:
        return pb.Status.Name(code)
    except ValueError:
        return str(code)


async def reserve(dialer: Any, relay: ID, timeout: float) -> Granted:
    """Reserve a slot on ``relay`` (connected or dialable); :class:`RelayError` if refused."""
    stream = None
    try:
        with trio.fail_after(timeout):
            stream = await dialer.open_stream(relay, [HOP_PROTOCOL], timeout=timeout, lookup=False)
            await stream.write(length_prefixed(pb.HopMessage(type=pb.HopMessage.RESERVE).SerializeToString()))
            msg = decode_hop(await read_message(stream, MAX_MESSAGE_BYTES))
    except trio.TooSlowError:
        raise RelayError(f"relay {relay}: no answer to RESERVE within {timeout:g}s") from None
    except RelayError:
        raise
    except Exception as exc:  # noqa: BLE001 — dial, negotiation (not a relay), garbage
        raise RelayError(f"relay {relay}: {exc}") from None
    finally:
        if stream is not None:
            await close_quietly(stream)
    if msg.type != pb.HopMessage.STATUS or msg.status != pb.OK:
        raise RelayError(f"relay {relay} refused the reservation: {_status_name(msg.status)}", msg.status)
    if not msg.HasField("reservation") or msg.reservation.expire <= time.time():
        raise RelayError(f"relay {relay} said OK without a reservation that lasts")
    addrs = []
    for raw in msg.reservation.addrs[:16]:
        with contextlib.suppress(Exception):
            text = str(Multiaddr(raw))
            if "p2p-circuit" not in text and text.endswith(f"/p2p/{relay}"):
                addrs.append(text)
    return Granted(relay, int(msg.reservation.expire), tuple(addrs), int(msg.limit.duration), int(msg.limit.data))


async def open_circuit(dialer: Any, relay: ID, target: ID, timeout: float) -> Any:
    """A hop stream to ``relay`` that now carries a circuit to ``target``."""
    stream = None
    try:
        with trio.fail_after(timeout):
            stream = await dialer.open_stream(relay, [HOP_PROTOCOL], timeout=timeout, lookup=False)
            connect = pb.HopMessage(type=pb.HopMessage.CONNECT, peer=pb.Peer(id=target.to_bytes()))
            await stream.write(length_prefixed(connect.SerializeToString()))
            msg = decode_hop(await read_message(stream, MAX_MESSAGE_BYTES))
    except BaseException as exc:
        if stream is not None:
            await close_quietly(stream, reset=True)
        if isinstance(exc, trio.TooSlowError):
            raise RelayError(f"relay {relay}: no circuit to {target} within {timeout:g}s") from None
        if isinstance(exc, Exception):
            raise RelayError(f"relay {relay}: {exc}") from None
        raise
    if msg.type != pb.HopMessage.STATUS or msg.status != pb.OK:
        await close_quietly(stream, reset=True)
        raise RelayError(f"relay {relay} could not connect to {target}: {_status_name(msg.status)}", msg.status)
    return stream


async def accept_stop(stream: Any, timeout: float, allowed: bool) -> ID | None:
    """Read a relay's stop CONNECT and answer it; the initiator, or None (refused)."""
    try:
        with trio.fail_after(timeout):
            msg = decode_stop(await read_message(stream, MAX_MESSAGE_BYTES))
        if msg.type != pb.StopMessage.CONNECT or not msg.HasField("peer"):
            status = pb.UNEXPECTED_MESSAGE
            initiator = None
        else:
            initiator = ID(msg.peer.id)
            initiator.to_base58()
            status = pb.OK if allowed else pb.PERMISSION_DENIED
        reply = pb.StopMessage(type=pb.StopMessage.STATUS, status=status)
        with trio.fail_after(timeout):
            await stream.write(length_prefixed(reply.SerializeToString()))
    except Exception:  # noqa: BLE001 — a relay speaking garbage: no circuit
        await close_quietly(stream, reset=True)
        return None
    if status != pb.OK:
        await close_quietly(stream)
        return None
    return initiator


def split_circuit(addr: Multiaddr | str) -> tuple[Multiaddr, ID, ID | None] | None:
    """``/…/p2p/R/p2p-circuit[/p2p/T]`` -> (relay address with /p2p/R, R, T); None if not a circuit."""
    text = str(addr)
    if "/p2p-circuit" not in text:
        return None
    head, _, tail = text.partition("/p2p-circuit")
    try:
        relay_addr = Multiaddr(head)
        relay = ID.from_base58(relay_addr.value_for_protocol("p2p"))
        target = ID.from_base58(tail.rsplit("/p2p/", 1)[1]) if "/p2p/" in tail else None
    except Exception:  # noqa: BLE001
        return None
    return relay_addr, relay, target
