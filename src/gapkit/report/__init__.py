"""Figures (matplotlib) and the self-contained HTML report, built from saved records."""
