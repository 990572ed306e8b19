"""gapkit.train (see docs/architecture.md)."""
