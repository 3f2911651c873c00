"""The GPU check: ``python -m benchmarks.gpu`` (see run.py), with ``python -m benchmarks.gpu.prepare`` first."""
