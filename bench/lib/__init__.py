"""Shared pieces of the benchmarks (not benchmarks themselves)."""
