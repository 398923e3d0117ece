"""Application layer."""
