"""The project's benchmarks and experiments: code and results (not installed with hf_cakd).

Each benchmark runs from the repository root as ``python -m benchmarks.<name>`` (accuracy, speed,
memory, gpu) and writes its results, charts and tables beside its code; see the README's Benchmarks, and
benchmarks/README.md for the GPU check.
"""
