"""The garbage-collector settings of a process that runs agentp2p nodes (the daemon, devnet workers).

CPython frees most objects by reference counting; its cyclic collector only
finds cycles, but a *full* collection walks every container object alive.
Right after its imports (py-libp2p, protobuf, multiaddr, trio) a node process
holds 80,000 (the daemon, with its lean import) to 108,000 (a full import) of
them, and each full collection took 40–70 ms here. For that
long every connection of the process stalls: at 5,000 msg/s the pub/sub
benchmark queued a few hundred messages behind each pause, and P99
publish-to-deliver rose from ~15 ms to 46–52 ms (docs/pubsub.md, "Measured").

:func:`apply` does three things, once, before the node starts:

* **Freeze the startup heap** (``gc.freeze``): what is alive after the imports
  and configuration moves to a generation the collector never walks. Objects
  created later (connections, caches, messages) stay collectable as before.
  The cost: an object frozen here that later becomes cyclic garbage is never
  freed. Call it after the imports and before the node and its services are
  built, so that what is frozen is module-level state and the configuration,
  which live as long as the process anyway.
* **Collect the young generation less often**: the first threshold goes
  from 700 to YOUNG_COLLECTION_SPACING (net new container objects between
  two young collections). Most objects a node makes (frames, messages,
  timers) are freed by reference counting within milliseconds; a young
  collection only walks the ones still alive, so at 700 it walked the same
  in-flight state ~40 times a second, moving what survived a generation up,
  and every tenth (a middle collection) moved it on into the generation the
  full collections walk. A 100-node
  devnet (50 nodes a worker, 2026-12-07) spent 21–32 % of its workers' CPU
  in the collector with this policy but CPython's young threshold; one
  worker made 37,377 young collections (73 s), 3,397 middle ones (107 s)
  and 33 full ones (76 s, up to 3.0 s each: the whole worker stands still)
  in 865 s. Cyclic garbage waits longer to be
  found: at most this many young container objects (and whatever they hold,
  buffers included). A threshold of 0 (collection turned off) is kept.
* **Space out full collections**: the third threshold goes from 10 to 100
  (a full collection at most once per 100 second-generation collections).
  With the startup heap frozen the long-lived heap is small, so CPython's
  other gate (collect only once it has grown by a quarter) no longer holds
  full collections back. Cyclic garbage that survives two young collections
  then waits longer to be freed. An
  interpreter whose collector has no third threshold (CPython's incremental
  collector) keeps its own schedule: only the freeze applies there.

It changes process-wide state, so the library never calls it on its own: the
daemon (``agentp2p daemon``; config ``gc_policy = false`` or
``AGENTP2P_GC_POLICY=false`` leaves CPython's defaults) and devnet workers
do, and an application that embeds nodes may call it once at start-up.
"""

from __future__ import annotations

import gc

__all__ = ["FULL_COLLECTION_SPACING", "YOUNG_COLLECTION_SPACING", "apply"]

#: gc threshold2: second-generation collections between two full ones (CPython: 10).
FULL_COLLECTION_SPACING = 100
#: gc threshold0: net new container objects between two young collections (CPython: 700).
YOUNG_COLLECTION_SPACING = 10_000


def apply() -> int:
    """Freeze what is alive now and space out young and full collections; returns the objects frozen."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    if len(thresholds) >= 3 and thresholds[2] > 0:  # a generational collector with a full-collection gate
        young = max(thresholds[0], YOUNG_COLLECTION_SPACING) if thresholds[0] > 0 else 0  # 0: turned off, kept
        gc.set_threshold(young, thresholds[1], FULL_COLLECTION_SPACING)
    return gc.get_freeze_count()
