"""Protocol layer."""
