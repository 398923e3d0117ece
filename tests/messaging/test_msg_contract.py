"""Messaging uses its node only through the service contract (agentp2p.contract).

The service is handed a context that lets through exactly what
:class:`~agentp2p.contract.NodeContext` names — and a dialer that lets
through only what :class:`~agentp2p.contract.Dialing` names, recording each
call — and must still do everything: send, request/response, dial.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from agentp2p.contract import Dialing, NodeContext
from agentp2p.messaging.config import PROTOCOL_ID
from agentp2p.messaging.message import IncomingMessage
from agentp2p.messaging.service import MessagingService
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


def _members(proto: type) -> set[str]:
    return set(getattr(proto, "__annotations__", {})) | {n for n in vars(proto) if not n.startswith("_")}


class _Only:
    """Lets through the attributes of ``proto``; anything else is a contract breach."""

    def __init__(self, target: Any, proto: type, calls: list[tuple[str, tuple[Any, ...]]] | None = None) -> None:
        self._target, self._allowed, self._calls = target, _members(proto), calls

    def __getattr__(self, name: str) -> Any:
        if name not in self._allowed:
            raise AttributeError(f"{name!r} is not in the service contract")
        value = getattr(self._target, name)
        if self._calls is None or not callable(value):
            return value
        calls = self._calls

        def recorded(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, args))
            return value(*args, **kwargs)

        return recorded


class ContractOnlyMessaging(MessagingService):
    """MessagingService, attached and run with a context narrowed to the contract."""

    def __init__(self) -> None:
        super().__init__()
        self.dials: list[tuple[str, tuple[Any, ...]]] = []
        self._narrow: Any = None

    def _ctx_of(self, ctx: NodeContext) -> Any:
        if self._narrow is None:
            narrow = _Only(ctx, NodeContext)
            dialer = _Only(ctx.dialer, Dialing, self.dials)
            self._narrow = type("Ctx", (), {"__getattr__": lambda _s, n: dialer if n == "dialer" else getattr(narrow, n)})()
        return self._narrow

    def attach(self, ctx: NodeContext) -> None:
        super().attach(self._ctx_of(ctx))

    async def run(self, ctx: NodeContext, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await super().run(self._ctx_of(ctx), task_status=task_status)


async def test_messaging_needs_nothing_beyond_the_contract() -> None:
    sa, sb = ContractOnlyMessaging(), ContractOnlyMessaging()
    async with Node(local_config(), services=[sa]) as a, Node(local_config(), services=[sb]) as b:
        await a.connect(b.addrs[0])

        async def echo(msg: IncomingMessage) -> bytes:
            return b"echo:" + msg.payload

        sb.set_handler("echo", echo)
        got: list[bytes] = []

        async def take() -> None:
            got.append((await sb.receive()).payload)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(take)
                await sa.send(b.peer_id, b"hello", timeout=15)  # returns once b's reader took it
            assert got == [b"hello"]
            assert await sa.request(b.peer_id, b"ping", type="echo", timeout=15) == b"echo:ping"
        # Both directions dialed through the node's one dialer, for our protocol only.
        for svc in (sa, sb):
            assert svc.dials and {(name, args[1][0]) for name, args in svc.dials} == {("open_stream", PROTOCOL_ID)}
        await wait_until(lambda: sa.stats()["acked"] == 2, what="both acked")
        st = json.loads(json.dumps(sa.stats()))  # JSON-ready as it is
        assert st["sent"] == 2 and "dht_lookups" not in st  # lookups are the dialer's to count
