"""Benchmark tooling for featpipe: dataset preparation and (elsewhere) benchmark runners.

Run ``python -m benchmarks.datasets --help`` from the repository root.
"""
