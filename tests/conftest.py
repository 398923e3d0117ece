"""pytest configuration shared by the whole suite.

Test helpers live in :mod:`agentp2p.testing`. Test modules are imported by
basename (pytest's default "prepend" mode, no packages), so every test file
name must be unique across the tree.
"""
