"""Benchmark scenarios; results in bench/results/."""
