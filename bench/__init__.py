"""Benchmarks: each runs with --quick in under a minute and prints a last line BENCH <name> ...."""
