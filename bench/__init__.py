"""Benchmarks (scripts, not tests). Results and commands: docs/benchmarks.md."""
