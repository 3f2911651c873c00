"""The memory benchmark: ``python -m benchmarks.memory`` (see run.py)."""
