"""gapkit.evaluate (see docs/architecture.md)."""
