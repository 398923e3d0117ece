"""Security layer."""
