"""Network layer."""
