"""``python -m benchmarks.speed``: see benchmarks/speed/run.py."""

from .run import main

if __name__ == "__main__":
    main()
