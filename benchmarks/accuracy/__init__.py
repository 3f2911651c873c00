"""The accuracy benchmark: ``python -m benchmarks.accuracy`` (see run.py)."""
