"""gapkit.metrics (see docs/architecture.md)."""
