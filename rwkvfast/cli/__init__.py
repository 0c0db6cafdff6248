"""Command-line entry points (plain Python on top of the public API)."""
