"""Benchmarks of hpc-radr's sweep against a naive one-process-per-configuration sweep and against its floor.

Run ``.venv/bin/python -m benchmarks.run --help``; see benchmarks/README.md.
"""
