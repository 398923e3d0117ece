"""Prometheus metrics of a running node (issue #16; docs/operations.md "Metrics").

:mod:`agentp2p.application.metrics.collector` turns ``node.stats()`` into
``agentp2p_*`` metric families at each scrape: nothing is counted twice and
no hot path knows about Prometheus. The control API serves it at
``/metrics`` when ``[api] metrics`` is on
(:mod:`agentp2p.application.api.metrics`).

This package's ``__init__`` imports nothing, so naming it costs nothing;
``prometheus_client`` is imported only with the collector, i.e. only on a
node that serves metrics.
"""
