"""``python -m benchmarks.accuracy``: see benchmarks/accuracy/run.py."""

from .run import main

if __name__ == "__main__":
    main()
