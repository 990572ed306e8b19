"""gapkit.data (see docs/architecture.md)."""
