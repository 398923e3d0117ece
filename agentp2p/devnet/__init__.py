"""``agentp2p devnet``: many full nodes on 127.0.0.1, grown, watched and poked.

One concern per module:

* :mod:`~agentp2p.devnet.controller` — the run: grow, summarize, execute commands;
* :mod:`~agentp2p.devnet.worker` — a worker process holding a block of nodes;
* :mod:`~agentp2p.devnet.pool` — the controller's handle on a worker process;
* :mod:`~agentp2p.devnet.wire` — the JSON lines between them;
* :mod:`~agentp2p.devnet.commands` — the command language;
* :mod:`~agentp2p.devnet.layout` — nodes to workers, bootstraps, capabilities;
* :mod:`~agentp2p.devnet.partition` — partitions and who can reach whom;
* :mod:`~agentp2p.devnet.summary` — the live summary;
* :mod:`~agentp2p.devnet.console` — output (text or JSON) and stdin.

Nothing here imports py-libp2p except the worker, so the controller starts
in a fraction of a second. Docs: docs/devnet.md.
"""
