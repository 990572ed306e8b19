"""gapkit.report (see docs/architecture.md)."""
