"""agentp2p: a decentralized, self-organizing network for AI agents."""

__version__ = "0.1.0"
