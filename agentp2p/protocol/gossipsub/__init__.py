"""Gossipsub v1.1 router (sans-IO core) with peer scoring."""
