"""CLI subcommands: one module per command (HELP, add_arguments(parser), run(args) -> int).

Modules are discovered automatically by gapkit.cli; keep module-level imports light.
"""
