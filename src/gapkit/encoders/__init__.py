"""gapkit.encoders (see docs/architecture.md)."""
