"""gapkit.sim (see docs/architecture.md)."""
