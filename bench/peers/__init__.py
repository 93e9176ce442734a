"""Peers of the compile benchmark (``bench/bench_compile.py``), each a standalone script."""
