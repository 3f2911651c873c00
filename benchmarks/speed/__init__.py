"""The speed benchmark: ``python -m benchmarks.speed`` (see run.py)."""
