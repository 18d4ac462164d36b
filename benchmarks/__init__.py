"""Benchmark harnesses for bnncc (contenders, layer and network benchmarks)."""
