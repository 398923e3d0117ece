"""Messaging layer."""
