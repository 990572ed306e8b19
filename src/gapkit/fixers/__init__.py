"""gapkit.fixers (see docs/architecture.md)."""
