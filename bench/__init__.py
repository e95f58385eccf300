"""Benchmarks: each script prints the figures an issue asks for (never a pass/fail test)."""
