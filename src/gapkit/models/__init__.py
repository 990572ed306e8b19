"""gapkit.models (see docs/architecture.md)."""
