"""Deterministic virtual-time simulators that drive our sans-IO protocol cores."""
