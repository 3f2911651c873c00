"""``python -m benchmarks.memory``: see benchmarks/memory/run.py."""

from .run import main

if __name__ == "__main__":
    main()
